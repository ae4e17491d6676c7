// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {Checkpoints} from "@openzeppelin/contracts/utils/structs/Checkpoints.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {NonReentrant} from "./NonReentrant.sol";

/// @title SettlementAVS
/// @author OpenStreaming
/// @notice A local stand-in for an EigenLayer AVS (actively validated service) that attests the
///         mesh's settlement. Operators bond ETH, sign each epoch's settlement root (an EIP-712
///         `Attestation(epoch, root)`), and a root signed by operators holding at least two thirds of
///         the epoch's stake is final. An operator who signs two different roots for one epoch can be
///         slashed by anyone holding both signatures: its whole bond is taken, a fixed `SLASH_BOUNTY`
///         goes to the reporter and the rest is burned (locked here forever).
/// @dev Epochs are block ranges: epoch `e` is blocks `[e * epochBlocks, (e + 1) * epochBlocks)`, the
///      same numbering the operators use to cut the channel contract's events into epochs.
///
///      Rules that keep stake honest around an epoch:
///        - Only ended epochs: `attest(e)` needs `block.number >= (e + 1) * epochBlocks`, so nobody can
///          finalise a root for an epoch whose payments have not all happened yet.
///        - Per-epoch stake snapshot: the quorum's denominator is the active stake at the end of the
///          block before the epoch's first block (`Checkpoints` history of the total), and a signer
///          counts only if its bond has not changed since before that block (`bondedAt`). Stake bought
///          in during or after an epoch has no say over it; an operator that exits stops counting for
///          every epoch at once.
///        - Evidence for as long as stake is at risk: an operator's signature only counts while it is
///          active, and once it requests an exit its bond stays here, slashable, for `EXIT_DELAY`,
///          which is at least `EVIDENCE_WINDOW`. Equivocation evidence therefore works during the
///          whole time any signature of the operator could have mattered plus the evidence window.
///        - A reward the equivocator cannot profit from: see `SLASH_BOUNTY`.
///
///      How real EigenLayer middleware sits behind this same interface:
///        - `register` / `requestExit` / `withdrawStake` map to the operator registering for the AVS's
///          operator set (AllocationManager `registerForOperatorSets`, through the AVS's registrar) and
///          deregistering; the stake is then the operator's restaked allocation (magnitude) to the
///          operator set, read through a stake registry, instead of ETH bonded here, and the exit delay
///          is EigenLayer's deallocation delay, during which stake stays slashable.
///        - `stakeOf` / `totalActiveStake` / `epochStake` read the stake registry's weights (its
///          checkpointed history for the epoch snapshot).
///        - `attest` keeps its arguments; the quorum check becomes the middleware's signature checker
///          (ECDSA stake registry or BLS aggregate) against the same two-thirds threshold at the
///          epoch's reference block.
///        - `slashEquivocation` keeps its evidence check and calls AllocationManager `slashOperator`
///          for the operator set instead of seizing ETH held here; the reporter's bounty comes from
///          the AVS's own reward budget.
///      Wrong roots: the net-settlement roots that move money live in `NetSettlement` (the `judge`); a
///      root proven wrong there is voided and its signers slashed here through `slashWrongRoot`. The
///      flow roots `attest` finalises move nothing; for them only equivocation is slashable.
///      Limits of the stand-in: a slashed operator is
///      barred from registering again; a top-up makes the operator sit out the epochs already started.
contract SettlementAVS is EIP712, NonReentrant {
    using Checkpoints for Checkpoints.Trace208;

    /*//////////////////////////////////////////////////////////////
                                 ERRORS
    //////////////////////////////////////////////////////////////*/

    /// @notice The operator's bond would be below `MIN_STAKE`.
    error StakeTooLow(uint256 stake, uint256 minimum);
    /// @notice The operator was slashed and may not register again.
    error OperatorSlashed(address operator);
    /// @notice The operator has asked to exit (or is not bonded) and cannot do this.
    error OperatorExiting(address operator);
    /// @notice The address has no bond.
    error NotOperator(address operator);
    /// @notice `withdrawStake` without a prior `requestExit`.
    error ExitNotRequested(address operator);
    /// @notice `withdrawStake` before the exit delay is over.
    error ExitDelayActive(address operator, uint64 exitAt);
    /// @notice A zero settlement root.
    error EmptyRoot();
    /// @notice The epoch already has a final root.
    error EpochAlreadyFinalized(uint256 epoch, bytes32 root);
    /// @notice `operators` and `signatures` differ in length.
    error LengthMismatch();
    /// @notice Signers must be listed in strictly ascending address order (so none counts twice).
    error OperatorsNotSorted();
    /// @notice A listed signer is not an active (bonded, not exiting) operator.
    error NotActiveOperator(address operator);
    /// @notice A signature is malformed or was not made by the operator it is listed for.
    error InvalidOperatorSignature(address operator);
    /// @notice Signers hold less than two thirds of the active stake.
    error QuorumNotReached(uint256 signedStake, uint256 totalStake);
    /// @notice Equivocation evidence needs two different roots.
    error NotEquivocation();
    /// @notice `epoch` has not ended yet (the chain is in `currentEpoch`): its root cannot be attested.
    error EpochNotEnded(uint256 epoch, uint256 currentEpoch);
    /// @notice The operator's bond changed during or after `epoch` began, so it has no stake in it.
    error NoStakeForEpoch(address operator, uint256 epoch);
    /// @notice The constructor's epoch length is zero.
    error InvalidEpochLength();
    /// @notice Sending ETH to `to` failed.
    error TransferFailed(address to, uint256 amount);
    /// @notice Only the deployer may bind the fraud judge, and only once, to a non-zero address.
    error JudgeBindingRefused();
    /// @notice Only the bound fraud judge (`NetSettlement`) may slash for a wrong root.
    error NotJudge(address caller);

    /*//////////////////////////////////////////////////////////////
                                 EVENTS
    //////////////////////////////////////////////////////////////*/

    /// @notice `operator` bonded `amount` more wei; its bond is now `stake`.
    event OperatorRegistered(address indexed operator, uint256 amount, uint256 stake);
    /// @notice `operator` stopped counting for quorums and can withdraw at `exitAt`.
    event ExitRequested(address indexed operator, uint64 exitAt);
    /// @notice `operator` withdrew its whole bond.
    event StakeWithdrawn(address indexed operator, uint256 amount);
    /// @notice `epoch`'s settlement root is final, signed by `signedStake` of `totalStake`.
    event EpochFinalized(uint256 indexed epoch, bytes32 root, uint256 signedStake, uint256 totalStake);
    /// @notice `operator` was slashed `amount` wei for equivocating in `epoch`; `reporter` got `reward`
    ///         and the rest was burned.
    event OperatorSlashedForEquivocation(
        address indexed operator, uint256 indexed epoch, address indexed reporter, uint256 amount, uint256 reward
    );

    /// @notice `operator` was slashed `amount` wei for signing a root that `judge` proved wrong;
    ///         `reporter` (the prover) got `reward` and the rest was burned.
    event OperatorSlashedForWrongRoot(
        address indexed operator, uint256 indexed epoch, address indexed reporter, uint256 amount, uint256 reward
    );
    /// @notice The contract that may slash operators for provably wrong roots is now `judge`.
    event JudgeBound(address indexed judge);

    /*//////////////////////////////////////////////////////////////
                               CONSTANTS
    //////////////////////////////////////////////////////////////*/

    /// @notice Smallest bond an operator may hold.
    uint256 public constant MIN_STAKE = 1 ether;
    /// @notice How long after an operator's signature last could count (its `requestExit`) evidence
    ///         against it must still be usable.
    uint64 public constant EVIDENCE_WINDOW = 7 days;
    /// @notice Seconds between `requestExit` and `withdrawStake`; the bond stays slashable meanwhile.
    ///         Equal to `EVIDENCE_WINDOW`: never shorter, or evidence could arrive after the bond left.
    uint64 public constant EXIT_DELAY = EVIDENCE_WINDOW;
    /// @notice What the reporter of an equivocation gets; the rest of the slashed bond is burned.
    /// @dev Any address can be the equivocator's own, and it can front-run every honest reporter, so
    ///      whatever is paid to `msg.sender` must be assumed to go back to the equivocator. The reward is
    ///      therefore a fixed bounty, 1 % of `MIN_STAKE`: it pays an honest reporter's gas many times
    ///      over, while self-reporting still loses at least 99 % of the bond (a share of the bond, as
    ///      this contract paid before, would hand the equivocator that share back).
    uint256 public constant SLASH_BOUNTY = 0.01 ether;
    /// @notice EIP-712 type hash of `Attestation(uint256 epoch,bytes32 root)`.
    bytes32 public constant ATTESTATION_TYPEHASH = keccak256("Attestation(uint256 epoch,bytes32 root)");

    /*//////////////////////////////////////////////////////////////
                                STORAGE
    //////////////////////////////////////////////////////////////*/

    /// @notice Blocks per epoch.
    uint256 public immutable epochBlocks;

    /// @dev An operator's bond, packed in one slot.
    struct Operator {
        uint128 stake;
        uint64 exitAt; // zero while active
        uint48 bondedAt; // block of the last register (bond or top-up)
        bool slashed;
    }

    /// @dev Operators by address.
    mapping(address operator => Operator) private _operators;

    /// @notice The final settlement root of each epoch (zero until finalised).
    mapping(uint256 epoch => bytes32 root) public finalizedRoot;

    /// @dev History of the active stake (bonded, not exiting, not slashed), keyed by block number.
    Checkpoints.Trace208 private _activeStake;

    /// @notice Slashed wei kept locked in this contract forever.
    uint256 public burned;

    /// @notice The `NetSettlement` contract that judges fraud proofs and may slash the signers of a
    ///         root it voided (zero until bound).
    address public judge;

    /// @dev Who may bind `judge`, once (the deployer; the binding is the only privileged act).
    address private immutable _deployer;

    /*//////////////////////////////////////////////////////////////
                              CONSTRUCTOR
    //////////////////////////////////////////////////////////////*/

    /// @param blocksPerEpoch Blocks per epoch (the operators' `epoch_blocks`).
    constructor(uint256 blocksPerEpoch) EIP712("SettlementAVS", "1") {
        if (blocksPerEpoch == 0) revert InvalidEpochLength();
        epochBlocks = blocksPerEpoch;
        _deployer = msg.sender;
    }

    /// @notice Binds the fraud judge (`NetSettlement`), once, by the deployer. Afterwards nobody can
    ///         change it; the judge can only slash the signers of a root whose fraud proof it verified.
    /// @param judge_ The netting contract.
    function bindJudge(address judge_) external {
        if (msg.sender != _deployer || judge != address(0) || judge_ == address(0)) revert JudgeBindingRefused();
        judge = judge_;
        emit JudgeBound(judge_);
    }

    /*//////////////////////////////////////////////////////////////
                               OPERATORS
    //////////////////////////////////////////////////////////////*/

    /// @notice Bonds `msg.value` for `msg.sender` (first bond or an increase). The bond must reach
    ///         `MIN_STAKE`. It counts for the epochs that start after this block; a top-up makes the
    ///         operator sit out the epochs already started (its whole bond changed in them).
    function register() external payable {
        Operator storage op = _operators[msg.sender];
        if (op.slashed) revert OperatorSlashed(msg.sender);
        if (op.exitAt != 0) revert OperatorExiting(msg.sender);
        uint256 stake = uint256(op.stake) + msg.value;
        if (stake < MIN_STAKE) revert StakeTooLow(stake, MIN_STAKE);
        // Safe cast: stake is at most the ETH in existence, far below 2**128.
        // forge-lint: disable-next-line(unsafe-typecast)
        op.stake = uint128(stake);
        op.bondedAt = SafeCast.toUint48(block.number);
        _setActiveStake(totalActiveStake() + msg.value);
        emit OperatorRegistered(msg.sender, msg.value, stake);
    }

    /// @notice Stops counting `msg.sender`'s bond for quorums, of every epoch at once; it stays slashable
    ///         and can be withdrawn after `EXIT_DELAY`.
    function requestExit() external {
        Operator storage op = _operators[msg.sender];
        uint256 stake = op.stake;
        if (stake == 0) revert NotOperator(msg.sender);
        if (op.exitAt != 0) revert OperatorExiting(msg.sender);
        uint64 exitAt = uint64(block.timestamp) + EXIT_DELAY;
        op.exitAt = exitAt;
        _setActiveStake(totalActiveStake() - stake);
        emit ExitRequested(msg.sender, exitAt);
    }

    /// @notice Withdraws `msg.sender`'s whole bond once its exit delay is over.
    function withdrawStake() external nonReentrant {
        Operator storage op = _operators[msg.sender];
        uint256 stake = op.stake;
        uint64 exitAt = op.exitAt;
        if (stake == 0) revert NotOperator(msg.sender);
        if (exitAt == 0) revert ExitNotRequested(msg.sender);
        // A validator can shift the timestamp by seconds; the delay is days.
        // slither-disable-next-line timestamp
        if (block.timestamp < exitAt) revert ExitDelayActive(msg.sender, exitAt); // forge-lint: disable-line(block-timestamp)
        delete _operators[msg.sender];
        emit StakeWithdrawn(msg.sender, stake);
        _pay(msg.sender, stake);
    }

    /*//////////////////////////////////////////////////////////////
                              ATTESTATION
    //////////////////////////////////////////////////////////////*/

    /// @notice Finalises an ended epoch's settlement root with operators' signatures. Each signer must be
    ///         active now and bonded, unchanged, since before the epoch began; together they must hold
    ///         two thirds of the stake that was active just before the epoch's first block.
    /// @param epoch The settlement epoch; it must have ended (`epoch < currentEpoch()`).
    /// @param root The settlement root (for instance a Merkle root of the epoch's channel claims).
    /// @param operators Signers, strictly ascending by address.
    /// @param signatures Each signer's 65-byte signature over `attestationDigest(epoch, root)`.
    function attest(uint256 epoch, bytes32 root, address[] calldata operators, bytes[] calldata signatures) external {
        if (root == bytes32(0)) revert EmptyRoot();
        {
            bytes32 existing = finalizedRoot[epoch];
            if (existing != bytes32(0)) revert EpochAlreadyFinalized(epoch, existing);
        }
        uint256 n = operators.length;
        if (signatures.length != n) revert LengthMismatch();
        uint256 start = _epochStart(epoch);

        bytes32 digest = attestationDigest(epoch, root);
        uint256 signedStake = 0;
        address previous = address(0);
        for (uint256 i; i < n;) {
            address operator = operators[i];
            if (operator <= previous) revert OperatorsNotSorted();
            previous = operator;
            uint256 stake = _signerStake(operator, start, digest, signatures[i]);
            // Cannot overflow: the sum of distinct operators' stakes is at most the total active stake.
            unchecked {
                signedStake += stake;
                ++i;
            }
        }
        uint256 total = _stakeBefore(start);
        if (signedStake == 0 || signedStake * 3 < total * 2) revert QuorumNotReached(signedStake, total);
        finalizedRoot[epoch] = root;
        emit EpochFinalized(epoch, root, signedStake, total);
    }

    /// @notice Slashes `operator`'s whole bond for signing two different roots for `epoch` (any epoch,
    ///         attested or not, while the bond is still here, exiting included); the reporter
    ///         (`msg.sender`) gets `SLASH_BOUNTY`, the rest is burned.
    function slashEquivocation(
        address operator,
        uint256 epoch,
        bytes32 rootA,
        bytes calldata sigA,
        bytes32 rootB,
        bytes calldata sigB
    ) external nonReentrant {
        if (rootA == rootB) revert NotEquivocation();
        Operator storage op = _operators[operator];
        uint256 stake = op.stake;
        if (stake == 0) revert NotOperator(operator);
        if (!_signedBy(operator, attestationDigest(epoch, rootA), sigA)) revert InvalidOperatorSignature(operator);
        if (!_signedBy(operator, attestationDigest(epoch, rootB), sigB)) revert InvalidOperatorSignature(operator);

        uint256 reward = _seize(op, stake);
        // Cannot underflow: reward <= stake.
        unchecked {
            burned += stake - reward;
        }
        emit OperatorSlashedForEquivocation(operator, epoch, msg.sender, stake, reward);
        if (reward != 0) _pay(msg.sender, reward);
    }

    /// @notice Slashes every bond among `operators` for signing `epoch`'s net-settlement root that the
    ///         judge proved wrong: each loses its whole bond, `reporter` gets `SLASH_BOUNTY` per operator
    ///         slashed, the rest is burned. Operators already slashed or gone are skipped (an exiting
    ///         operator is still slashable: its bond stays here for `EXIT_DELAY`).
    /// @param operators The root's signers, as the judge recorded them.
    /// @param epoch The root's epoch (for the event).
    /// @param reporter Who proved the fraud.
    /// @return slashed Total wei taken.
    function slashWrongRoot(address[] calldata operators, uint256 epoch, address reporter)
        external
        nonReentrant
        returns (uint256 slashed)
    {
        if (msg.sender != judge) revert NotJudge(msg.sender);
        uint256 rewards = 0;
        uint256 n = operators.length;
        for (uint256 i; i < n;) {
            Operator storage op = _operators[operators[i]];
            uint256 stake = op.stake;
            if (stake != 0) {
                uint256 reward = _seize(op, stake);
                emit OperatorSlashedForWrongRoot(operators[i], epoch, reporter, stake, reward);
                // Cannot overflow: the sums are bounded by the ETH bonded here.
                unchecked {
                    rewards += reward;
                    slashed += stake;
                }
            }
            // Cannot overflow: i < n, bounded by calldata size.
            unchecked {
                ++i;
            }
        }
        // Cannot underflow: rewards <= slashed (each reward is at most its stake).
        unchecked {
            burned += slashed - rewards;
        }
        if (rewards != 0) _pay(reporter, rewards);
    }

    /*//////////////////////////////////////////////////////////////
                                  VIEWS
    //////////////////////////////////////////////////////////////*/

    /// @notice The EIP-712 digest an operator signs to attest `root` for `epoch`.
    function attestationDigest(uint256 epoch, bytes32 root) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(ATTESTATION_TYPEHASH, epoch, root)));
    }

    /// @notice `operator`'s bond in wei (still counted while exiting, zero once withdrawn or slashed).
    function stakeOf(address operator) external view returns (uint256) {
        return _operators[operator].stake;
    }

    /// @notice `operator`'s full record.
    function operatorInfo(address operator) external view returns (uint256 stake, uint64 exitAt, bool slashed) {
        Operator storage op = _operators[operator];
        return (op.stake, op.exitAt, op.slashed);
    }

    /// @notice Stake of operators that are bonded and not exiting, now.
    function totalActiveStake() public view returns (uint256) {
        return _activeStake.latest();
    }

    /// @notice The epoch the chain is in; every lower epoch has ended.
    function currentEpoch() external view returns (uint256) {
        return block.number / epochBlocks;
    }

    /// @notice The quorum's denominator for an ended `epoch`: the active stake just before its first block.
    function epochStake(uint256 epoch) external view returns (uint256) {
        return _stakeBefore(_epochStart(epoch));
    }

    /// @notice What `operator`'s signature counts for an ended `epoch` if `attest` ran now: its bond if it
    ///         is active and was bonded, unchanged, before the epoch began, else zero.
    function signingStake(address operator, uint256 epoch) external view returns (uint256) {
        uint256 start = _epochStart(epoch);
        Operator storage op = _operators[operator];
        if (op.exitAt != 0 || op.bondedAt >= start) return 0;
        return op.stake;
    }

    /*//////////////////////////////////////////////////////////////
                            INTERNAL LOGIC
    //////////////////////////////////////////////////////////////*/

    /// @dev First block of `epoch`, which must have ended.
    function _epochStart(uint256 epoch) private view returns (uint256) {
        uint256 current = block.number / epochBlocks;
        if (epoch >= current) revert EpochNotEnded(epoch, current);
        // Cannot overflow: epoch < block.number / epochBlocks.
        unchecked {
            return epoch * epochBlocks;
        }
    }

    /// @dev The stake `operator`'s signature adds to `epoch`'s quorum; reverts unless the operator is
    ///      active now, bonded unchanged since before `start`, and `signature` is its signature of `digest`.
    function _signerStake(address operator, uint256 start, bytes32 digest, bytes calldata signature)
        private
        view
        returns (uint256 stake)
    {
        Operator storage op = _operators[operator];
        stake = op.stake;
        if (stake == 0 || op.exitAt != 0) revert NotActiveOperator(operator);
        // Active now and unchanged since before `start`: its whole stake is in the epoch's snapshot.
        if (op.bondedAt >= start) revert NoStakeForEpoch(operator, start / epochBlocks);
        if (!_signedBy(operator, digest, signature)) revert InvalidOperatorSignature(operator);
    }

    /// @dev Active stake at the end of the block before `start` (zero for `start == 0`: nothing can be
    ///      bonded before block 0).
    function _stakeBefore(uint256 start) private view returns (uint256) {
        if (start == 0) return 0;
        // Cannot underflow: start > 0.
        unchecked {
            return _activeStake.upperLookupRecent(SafeCast.toUint48(start - 1));
        }
    }

    /// @dev Records the new active stake total for this block.
    function _setActiveStake(uint256 total) private {
        // push returns the previous and the new value; the caller knows both.
        // slither-disable-next-line unused-return
        _activeStake.push(SafeCast.toUint48(block.number), SafeCast.toUint208(total));
    }

    /// @dev Whether `signature` is a valid (low-s, 65-byte) signature of `digest` by `operator`.
    function _signedBy(address operator, bytes32 digest, bytes calldata signature) private pure returns (bool) {
        // The third value only details a malformed signature; `err` already rejects it.
        // slither-disable-next-line unused-return
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        return err == ECDSA.RecoverError.NoError && signer == operator;
    }

    /// @dev Takes `op`'s whole bond `stake` (marking it slashed) and returns the reporter's bounty; the
    ///      caller adds the rest to `burned`.
    function _seize(Operator storage op, uint256 stake) private returns (uint256 reward) {
        if (op.exitAt == 0) _setActiveStake(totalActiveStake() - stake);
        op.stake = 0;
        op.exitAt = 0;
        op.slashed = true;
        // A bond is at least MIN_STAKE > SLASH_BOUNTY; the min only guards the arithmetic.
        reward = stake < SLASH_BOUNTY ? stake : SLASH_BOUNTY;
    }

    /// @dev Sends `amount` wei to `to` without copying return data; reentrancy is blocked by the guard.
    function _pay(address to, uint256 amount) private {
        bool ok;
        // No return-data copy (a reporter or operator contract cannot grief with a huge payload).
        // slither-disable-next-line assembly
        assembly ("memory-safe") {
            ok := call(gas(), to, amount, 0, 0, 0, 0)
        }
        if (!ok) revert TransferFailed(to, amount);
    }
}
