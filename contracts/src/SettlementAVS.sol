// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/// @title SettlementAVS
/// @author OpenStreaming
/// @notice A local stand-in for an EigenLayer AVS (actively validated service) that attests the
///         mesh's settlement. Operators bond ETH, sign each epoch's settlement root (an EIP-712
///         `Attestation(epoch, root)`), and a root signed by operators holding at least two thirds of
///         the bonded stake is final. An operator who signs two different roots for one epoch can be
///         slashed by anyone holding both signatures; half of its bond goes to the reporter and the
///         rest is burned (locked here forever).
/// @dev How real EigenLayer middleware sits behind this same interface:
///        - `register` / `requestExit` / `withdrawStake` map to the operator registering for the AVS's
///          operator set (AllocationManager `registerForOperatorSets`, through the AVS's registrar) and
///          deregistering; the stake is then the operator's restaked allocation (magnitude) to the
///          operator set, read through a stake registry, instead of ETH bonded here, and the exit delay
///          is EigenLayer's deallocation delay, during which stake stays slashable.
///        - `stakeOf` / `totalActiveStake` read the stake registry's current weights.
///        - `attest` keeps its arguments; the quorum check becomes the middleware's signature checker
///          (ECDSA stake registry or BLS aggregate) against the same two-thirds threshold.
///        - `slashEquivocation` keeps its evidence check and calls AllocationManager `slashOperator`
///          for the operator set instead of seizing ETH held here; the reporter's reward comes from
///          the AVS's own reward budget.
///      Limits of the stand-in: the quorum uses stake at the time of `attest`, not a per-epoch
///      snapshot; a slashed operator is barred from registering again.
contract SettlementAVS is EIP712, ReentrancyGuardTransient {
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
    /// @notice Sending ETH to `to` failed.
    error TransferFailed(address to, uint256 amount);

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
    /// @notice `operator` was slashed `amount` wei for equivocating in `epoch`; `reporter` got `reward`.
    event OperatorSlashedForEquivocation(
        address indexed operator, uint256 indexed epoch, address indexed reporter, uint256 amount, uint256 reward
    );

    /*//////////////////////////////////////////////////////////////
                               CONSTANTS
    //////////////////////////////////////////////////////////////*/

    /// @notice Smallest bond an operator may hold.
    uint256 public constant MIN_STAKE = 1 ether;
    /// @notice Seconds between `requestExit` and `withdrawStake`; the bond stays slashable meanwhile.
    uint64 public constant EXIT_DELAY = 7 days;
    /// @notice Share of a slashed bond paid to the reporter, in basis points.
    uint256 public constant SLASH_REWARD_BPS = 5_000;
    /// @notice EIP-712 type hash of `Attestation(uint256 epoch,bytes32 root)`.
    bytes32 public constant ATTESTATION_TYPEHASH = keccak256("Attestation(uint256 epoch,bytes32 root)");

    /*//////////////////////////////////////////////////////////////
                                STORAGE
    //////////////////////////////////////////////////////////////*/

    /// @dev An operator's bond, packed in one slot.
    struct Operator {
        uint128 stake;
        uint64 exitAt; // zero while active
        bool slashed;
    }

    /// @dev Operators by address.
    mapping(address operator => Operator) private _operators;

    /// @notice The final settlement root of each epoch (zero until finalised).
    mapping(uint256 epoch => bytes32 root) public finalizedRoot;

    /// @notice Stake of operators that are bonded and not exiting: the quorum's denominator.
    uint256 public totalActiveStake;

    /// @notice Slashed wei kept locked in this contract forever.
    uint256 public burned;

    /*//////////////////////////////////////////////////////////////
                              CONSTRUCTOR
    //////////////////////////////////////////////////////////////*/

    constructor() EIP712("SettlementAVS", "1") {}

    /*//////////////////////////////////////////////////////////////
                               OPERATORS
    //////////////////////////////////////////////////////////////*/

    /// @notice Bonds `msg.value` for `msg.sender` (first bond or an increase). The bond must reach `MIN_STAKE`.
    function register() external payable {
        Operator storage op = _operators[msg.sender];
        if (op.slashed) revert OperatorSlashed(msg.sender);
        if (op.exitAt != 0) revert OperatorExiting(msg.sender);
        uint256 stake = uint256(op.stake) + msg.value;
        if (stake < MIN_STAKE) revert StakeTooLow(stake, MIN_STAKE);
        // Safe cast: stake is at most the ETH in existence, far below 2**128.
        // forge-lint: disable-next-line(unsafe-typecast)
        op.stake = uint128(stake);
        totalActiveStake += msg.value;
        emit OperatorRegistered(msg.sender, msg.value, stake);
    }

    /// @notice Stops counting `msg.sender`'s bond for quorums; it can be withdrawn after `EXIT_DELAY`.
    function requestExit() external {
        Operator storage op = _operators[msg.sender];
        uint256 stake = op.stake;
        if (stake == 0) revert NotOperator(msg.sender);
        if (op.exitAt != 0) revert OperatorExiting(msg.sender);
        uint64 exitAt = uint64(block.timestamp) + EXIT_DELAY;
        op.exitAt = exitAt;
        totalActiveStake -= stake;
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
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp < exitAt) revert ExitDelayActive(msg.sender, exitAt);
        delete _operators[msg.sender];
        emit StakeWithdrawn(msg.sender, stake);
        _pay(msg.sender, stake);
    }

    /*//////////////////////////////////////////////////////////////
                              ATTESTATION
    //////////////////////////////////////////////////////////////*/

    /// @notice Finalises `epoch`'s settlement root with operators' signatures.
    /// @param epoch The settlement epoch.
    /// @param root The settlement root (for instance a Merkle root of the epoch's channel claims).
    /// @param operators Signers, strictly ascending by address.
    /// @param signatures Each signer's 65-byte signature over `attestationDigest(epoch, root)`.
    function attest(uint256 epoch, bytes32 root, address[] calldata operators, bytes[] calldata signatures) external {
        if (root == bytes32(0)) revert EmptyRoot();
        bytes32 existing = finalizedRoot[epoch];
        if (existing != bytes32(0)) revert EpochAlreadyFinalized(epoch, existing);
        uint256 n = operators.length;
        if (signatures.length != n) revert LengthMismatch();

        bytes32 digest = attestationDigest(epoch, root);
        uint256 signedStake;
        address previous;
        for (uint256 i; i < n;) {
            address operator = operators[i];
            if (operator <= previous) revert OperatorsNotSorted();
            previous = operator;
            Operator storage op = _operators[operator];
            uint256 stake = op.stake;
            if (stake == 0 || op.exitAt != 0) revert NotActiveOperator(operator);
            (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signatures[i]);
            if (err != ECDSA.RecoverError.NoError || signer != operator) revert InvalidOperatorSignature(operator);
            // Cannot overflow: the sum of distinct operators' stakes is at most totalActiveStake.
            unchecked {
                signedStake += stake;
                ++i;
            }
        }
        uint256 total = totalActiveStake;
        if (signedStake == 0 || signedStake * 3 < total * 2) revert QuorumNotReached(signedStake, total);
        finalizedRoot[epoch] = root;
        emit EpochFinalized(epoch, root, signedStake, total);
    }

    /// @notice Slashes `operator`'s whole bond for signing two different roots for `epoch`; the
    ///         reporter (`msg.sender`) gets `SLASH_REWARD_BPS` of it, the rest is burned.
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

        if (op.exitAt == 0) totalActiveStake -= stake;
        op.stake = 0;
        op.exitAt = 0;
        op.slashed = true;
        uint256 reward = stake * SLASH_REWARD_BPS / 10_000;
        // Cannot underflow: reward <= stake since SLASH_REWARD_BPS <= 10_000.
        unchecked {
            burned += stake - reward;
        }
        emit OperatorSlashedForEquivocation(operator, epoch, msg.sender, stake, reward);
        if (reward != 0) _pay(msg.sender, reward);
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

    /*//////////////////////////////////////////////////////////////
                            INTERNAL LOGIC
    //////////////////////////////////////////////////////////////*/

    /// @dev Whether `signature` is a valid (low-s, 65-byte) signature of `digest` by `operator`.
    function _signedBy(address operator, bytes32 digest, bytes calldata signature) private pure returns (bool) {
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        return err == ECDSA.RecoverError.NoError && signer == operator;
    }

    /// @dev Sends `amount` wei to `to` without copying return data; reentrancy is blocked by the guard.
    function _pay(address to, uint256 amount) private {
        bool ok;
        assembly ("memory-safe") {
            ok := call(gas(), to, amount, 0, 0, 0, 0)
        }
        if (!ok) revert TransferFailed(to, amount);
    }
}
