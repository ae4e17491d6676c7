// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {NonReentrant} from "./NonReentrant.sol";
import {SettlementAVS} from "./SettlementAVS.sol";
import {StreamChannels} from "./StreamChannels.sol";

/// @title NetSettlement
/// @author OpenStreaming
/// @notice Executable settlement roots with fraud proofs. Each epoch, payees hand their latest vouchers
///         to the operators instead of claiming them; the operators commit to a Merkle root with one
///         leaf per node, and a quorum of them (two thirds of the epoch's stake in `SettlementAVS`)
///         signs it. Once `proposeRoot` has recorded it and `challengeWindow` has passed without a
///         fraud proof, every node claims its whole share with one `claimNet` and one Merkle proof.
///         During the window anyone can prove the root wrong with a bounded amount of calldata; the
///         root is then voided before it paid anything and every operator that signed it is slashed
///         (a bounty per operator to the prover, the rest burned).
///
///         A node leaf is `(node, amount, entries)`: `entries` are the node's incoming channels, each
///         `(channelId, cumulativeAmount, signature)` with the payer's own EIP-712 voucher for exactly
///         that cumulative amount, strictly ascending by channel id (at most `MAX_ENTRIES`); `amount` is
///         the sum of the entries' cumulative amounts (the node's gross incoming position; its net is
///         that minus what the leaves of its payees credit from its own channels). The leaf hash is
///         `keccak256(bytes.concat(keccak256(abi.encode(epoch, node, amount, entries))))` (double hashed,
///         as OpenZeppelin's `MerkleProof` expects); pairs are hashed in sorted order.
///
///         Provable fraud (each with one leaf, its proof and, for signers, the recorded list):
///           - an entry no payer signature supports: the signature is malformed, is not the channel's
///             payer's voucher for that amount, names a channel that does not exist or whose payee is not
///             the leaf's node, or asks for more than the channel's deposit (deposits only grow, so above
///             it now means above it when the root was made);
///           - a node leaf whose `amount` is not the sum of its entries, or whose entries are not strictly
///             ascending (a channel listed twice), or that has more than `MAX_ENTRIES` entries.
///         An entry *below* a voucher the payee holds is not fraud (the voucher may never have been
///         handed in): the payee claims the rest directly with `StreamChannels.claim`, safely, because a
///         channel's counter only ever moves up and each path pays only what exceeds it.
/// @dev Where the money sits: in `StreamChannels`' per-channel deposits, as for direct claims. A root does
///      not move money between channels; executing a leaf advances each listed channel's `claimed`
///      counter exactly like a voucher claim (`StreamChannels.settleNet`) and pays the node the sum in one
///      transfer. Per-channel deposits were kept over a per-node collateral pool because (1) a voucher
///      stays bound to one deposit, so what a payer risks on a channel is exactly what it signed on it and
///      no payee's money depends on another channel's solvency, (2) the direct-claim fallback needs no
///      root at all and can never be starved by a pool that a root already drained, and (3) one counter
///      per channel, shared by roots and direct claims, is what makes "no voucher pays twice" a local
///      check: through two roots, a root and a direct claim, or a replay of the same leaf, a channel pays
///      only `cumulative - claimed` and then `claimed = cumulative`. The cost is one storage write per
///      channel on execution; nodes claim cumulatively, so a node may skip roots and claim the latest one.
///
///      Trust: a root can only steal if no one proves it wrong within `challengeWindow` (every node checks
///      the roots it is in); operators can stall (sign nothing), and then nodes claim directly within their
///      channels' challenge periods, which must be longer than the window plus the epoch. A root executed
///      after a channel's `closesAt` no longer pays that channel (the payee must claim directly before).
///
///      The quorum rule is `SettlementAVS.attest`'s: signers strictly ascending, each active and bonded
///      unchanged since before the epoch (`signingStake`), together two thirds of `epochStake(epoch)`.
///      They sign `NetRoot(epoch, root)` in this contract's own EIP-712 domain, so a net root can never be
///      mistaken for an AVS flow attestation (and signing both is not equivocation).
contract NetSettlement is EIP712, NonReentrant {
    /*//////////////////////////////////////////////////////////////
                                 ERRORS
    //////////////////////////////////////////////////////////////*/

    /// @notice A zero root.
    error EmptyRoot();
    /// @notice The epoch already has a root that was not voided.
    error RootExists(uint256 epoch, bytes32 root);
    /// @notice `operators` and `signatures` differ in length, or there are more than `MAX_SIGNERS`.
    error BadSignerList();
    /// @notice Signers must be listed in strictly ascending address order.
    error OperatorsNotSorted();
    /// @notice A listed signer has no stake in the epoch (see `SettlementAVS.signingStake`).
    error NoStake(address operator);
    /// @notice A signature is malformed or not the listed operator's.
    error InvalidOperatorSignature(address operator);
    /// @notice Signers hold less than two thirds of the epoch's stake.
    error QuorumNotReached(uint256 signedStake, uint256 totalStake);
    /// @notice The epoch has no root (never proposed).
    error NoRoot(uint256 epoch);
    /// @notice The epoch's root was voided by a fraud proof.
    error RootIsVoided(uint256 epoch);
    /// @notice The challenge window is still open (claims wait for `executableAt`).
    error ChallengeWindowOpen(uint256 epoch, uint64 executableAt);
    /// @notice The challenge window is over: the root can no longer be challenged.
    error ChallengeWindowClosed(uint256 epoch, uint64 executableAt);
    /// @notice The leaf and proof do not lead to the epoch's root.
    error InvalidProof();
    /// @notice The leaf has more than `MAX_ENTRIES` entries or its entries are not strictly ascending
    ///         (thrown by `claimNet`; a challenger uses `proveMalformedLeaf`).
    error MalformedLeaf();
    /// @notice The signer list given does not match the one recorded with the root.
    error SignersMismatch();
    /// @notice The challenged entry or leaf is correct: no fraud.
    error NotFraud();
    /// @notice `index` is past the leaf's entries.
    error EntryOutOfRange(uint256 index, uint256 entries);
    /// @notice The constructor's window is zero.
    error InvalidWindow();

    /*//////////////////////////////////////////////////////////////
                                 EVENTS
    //////////////////////////////////////////////////////////////*/

    /// @notice `epoch`'s root was recorded; it can pay from `executableAt` unless proven wrong before.
    event RootProposed(
        uint256 indexed epoch, bytes32 root, uint64 executableAt, uint256 signedStake, address[] signers
    );
    /// @notice `epoch`'s root was proven wrong by `prover` (`reason` is the fraud's selector) and voided;
    ///         its signers lost `slashed` wei.
    event RootVoided(uint256 indexed epoch, bytes32 root, address indexed prover, bytes4 reason, uint256 slashed);
    /// @notice `node` was paid `amount` wei from `epoch`'s root.
    event NetClaimed(uint256 indexed epoch, address indexed node, uint256 amount);

    /*//////////////////////////////////////////////////////////////
                               CONSTANTS
    //////////////////////////////////////////////////////////////*/

    /// @notice Most entries (incoming channels) in one node leaf; bounds every proof's calldata.
    uint256 public constant MAX_ENTRIES = 64;
    /// @notice Most signers of one root.
    uint256 public constant MAX_SIGNERS = 32;
    /// @notice EIP-712 type hash of `NetRoot(uint256 epoch,bytes32 root)`.
    bytes32 public constant NET_ROOT_TYPEHASH = keccak256("NetRoot(uint256 epoch,bytes32 root)");
    /// @notice Fraud reason: an entry no payer signature supports.
    bytes4 public constant UNSUPPORTED_ENTRY = bytes4(keccak256("UnsupportedEntry"));
    /// @notice Fraud reason: a node leaf that is not the sum of its entries, or malformed.
    bytes4 public constant WRONG_SUM = bytes4(keccak256("WrongSum"));

    /*//////////////////////////////////////////////////////////////
                                STORAGE
    //////////////////////////////////////////////////////////////*/

    /// @notice One incoming channel of a node leaf: the payer's voucher for `cumulativeAmount`.
    struct Entry {
        uint256 channelId;
        uint256 cumulativeAmount;
        bytes signature;
    }

    /// @dev A proposed root, two slots.
    struct Root {
        bytes32 root;
        bytes32 signersHash; // keccak256(abi.encode(signers)); zeroed when voided
        uint64 executableAt;
        bool voided;
    }

    /// @notice The channel contract whose counters roots advance.
    StreamChannels public immutable channels;
    /// @notice The AVS that holds the operators' stake.
    SettlementAVS public immutable avs;
    /// @notice Seconds between `proposeRoot` and the first `claimNet` (the fraud-proof window).
    uint64 public immutable challengeWindow;

    /// @dev Roots by epoch.
    mapping(uint256 epoch => Root) private _roots;

    /// @notice How many roots were voided.
    uint256 public rootsVoided;

    /*//////////////////////////////////////////////////////////////
                              CONSTRUCTOR
    //////////////////////////////////////////////////////////////*/

    /// @param channels_ The channel contract (bind this contract there with `bindNetting`).
    /// @param avs_ The AVS (bind this contract there with `bindJudge`).
    /// @param challengeWindow_ Seconds a root can be challenged before it pays.
    constructor(StreamChannels channels_, SettlementAVS avs_, uint64 challengeWindow_) EIP712("NetSettlement", "1") {
        if (challengeWindow_ == 0) revert InvalidWindow();
        channels = channels_;
        avs = avs_;
        challengeWindow = challengeWindow_;
    }

    /*//////////////////////////////////////////////////////////////
                                 ROOTS
    //////////////////////////////////////////////////////////////*/

    /// @notice Records `epoch`'s net-settlement root, signed by a quorum; it pays from
    ///         `block.timestamp + challengeWindow` unless voided before. A voided epoch can be proposed
    ///         again (by signers that were not slashed).
    /// @param epoch An ended AVS epoch.
    /// @param root The Merkle root of the epoch's node leaves.
    /// @param operators Signers, strictly ascending.
    /// @param signatures Each signer's signature over `rootDigest(epoch, root)`.
    function proposeRoot(uint256 epoch, bytes32 root, address[] calldata operators, bytes[] calldata signatures)
        external
    {
        if (root == bytes32(0)) revert EmptyRoot();
        Root storage r = _roots[epoch];
        if (r.root != bytes32(0) && !r.voided) revert RootExists(epoch, r.root);
        uint256 signed = _signedStake(epoch, root, operators, signatures);
        uint256 total = avs.epochStake(epoch);
        if (signed == 0 || signed * 3 < total * 2) revert QuorumNotReached(signed, total);
        // Cannot overflow in practice: a uint64 of seconds outlasts the sun; a window that would pass it
        // is a deployment error and reverts on the checked addition.
        uint64 executableAt = uint64(block.timestamp) + challengeWindow;
        _roots[epoch] = Root({
            root: root, signersHash: keccak256(abi.encode(operators)), executableAt: executableAt, voided: false
        });
        emit RootProposed(epoch, root, executableAt, signed, operators);
    }

    /// @notice Pays `node` its leaf of `epoch`'s root: each entry's channel is advanced to its cumulative
    ///         amount (only what exceeds the channel's counter pays, so a leaf claimed twice, an older
    ///         root or a channel already claimed directly pays nothing more) and the total goes to the node
    ///         in one payment. Anyone may submit it; the money always goes to the node.
    /// @param epoch The root's epoch.
    /// @param node The leaf's node.
    /// @param amount The leaf's amount (sum of the entries' cumulative amounts).
    /// @param entries The leaf's entries.
    /// @param proof The leaf's Merkle proof.
    /// @return paid Wei paid to `node`.
    function claimNet(uint256 epoch, address node, uint256 amount, Entry[] calldata entries, bytes32[] calldata proof)
        external
        nonReentrant
        returns (uint256 paid)
    {
        Root storage r = _roots[epoch];
        _requireExecutable(epoch, r);
        uint256 n = entries.length;
        if (n > MAX_ENTRIES) revert MalformedLeaf();
        if (!MerkleProof.verifyCalldata(proof, r.root, leafHash(epoch, node, amount, entries))) revert InvalidProof();
        uint256[] memory ids = new uint256[](n);
        uint256[] memory cumulative = new uint256[](n);
        uint256 previous = 0;
        for (uint256 i; i < n;) {
            uint256 id = entries[i].channelId;
            // An executable root is never malformed in a way that pays (a wrong-sum or duplicate leaf
            // could have been proven in the window); this only keeps a channel from being listed twice.
            if (id <= previous) revert MalformedLeaf();
            previous = id;
            ids[i] = id;
            cumulative[i] = entries[i].cumulativeAmount;
            // Cannot overflow: i < n <= MAX_ENTRIES.
            unchecked {
                ++i;
            }
        }
        paid = channels.settleNet(node, ids, cumulative);
        // The event reports what the trusted channel contract paid; this contract has no state to protect
        // and its guard blocks reentry.
        // slither-disable-next-line reentrancy-events
        emit NetClaimed(epoch, node, paid);
    }

    /*//////////////////////////////////////////////////////////////
                              FRAUD PROOFS
    //////////////////////////////////////////////////////////////*/

    /// @notice Voids `epoch`'s root by showing a leaf entry no payer signature supports (see the contract
    ///         header), and slashes its signers; the prover gets the bounties. Reverts with `NotFraud` if
    ///         the entry is supported.
    /// @param epoch The root's epoch (inside its challenge window).
    /// @param node The leaf's node.
    /// @param amount The leaf's amount.
    /// @param entries The leaf's entries.
    /// @param proof The leaf's Merkle proof.
    /// @param index The unsupported entry.
    /// @param signers The root's signers as recorded in `RootProposed`.
    function proveUnsupportedEntry(
        uint256 epoch,
        address node,
        uint256 amount,
        Entry[] calldata entries,
        bytes32[] calldata proof,
        uint256 index,
        address[] calldata signers
    ) external nonReentrant {
        Root storage r = _challengeable(epoch, signers);
        if (entries.length > MAX_ENTRIES) revert MalformedLeaf();
        if (!MerkleProof.verifyCalldata(proof, r.root, leafHash(epoch, node, amount, entries))) revert InvalidProof();
        if (index >= entries.length) revert EntryOutOfRange(index, entries.length);
        if (entrySupported(node, entries[index])) revert NotFraud();
        _void(epoch, r, signers, UNSUPPORTED_ENTRY);
    }

    /// @notice Voids `epoch`'s root by showing a node leaf whose amount is not the sum of its entries, whose
    ///         entries are not strictly ascending, or that has more than `MAX_ENTRIES` entries; slashes
    ///         its signers. Reverts with `NotFraud` if the leaf is well formed.
    /// @param epoch The root's epoch (inside its challenge window).
    /// @param node The leaf's node.
    /// @param amount The leaf's amount.
    /// @param entries The leaf's entries.
    /// @param proof The leaf's Merkle proof.
    /// @param signers The root's signers as recorded in `RootProposed`.
    function proveMalformedLeaf(
        uint256 epoch,
        address node,
        uint256 amount,
        Entry[] calldata entries,
        bytes32[] calldata proof,
        address[] calldata signers
    ) external nonReentrant {
        Root storage r = _challengeable(epoch, signers);
        if (!MerkleProof.verifyCalldata(proof, r.root, leafHash(epoch, node, amount, entries))) revert InvalidProof();
        if (leafWellFormed(amount, entries)) revert NotFraud();
        _void(epoch, r, signers, WRONG_SUM);
    }

    /*//////////////////////////////////////////////////////////////
                                  VIEWS
    //////////////////////////////////////////////////////////////*/

    /// @notice The EIP-712 digest an operator signs for `NetRoot(epoch, root)`.
    function rootDigest(uint256 epoch, bytes32 root) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(NET_ROOT_TYPEHASH, epoch, root)));
    }

    /// @notice A node leaf's hash (see the contract header).
    function leafHash(uint256 epoch, address node, uint256 amount, Entry[] calldata entries)
        public
        pure
        returns (bytes32)
    {
        return keccak256(bytes.concat(keccak256(abi.encode(epoch, node, amount, entries))));
    }

    /// @notice `epoch`'s root record: root (zero if none), when it pays, and whether it was voided.
    function rootOf(uint256 epoch) external view returns (bytes32 root, uint64 executableAt, bool voided) {
        Root storage r = _roots[epoch];
        return (r.root, r.executableAt, r.voided);
    }

    /// @notice Whether `entry` is supported: a channel whose payee is `node`, an amount within its
    ///         deposit, and the channel payer's valid voucher for exactly that amount.
    function entrySupported(address node, Entry calldata entry) public view returns (bool) {
        // Only the parties and the deposit matter here; the counter and close state do not make an entry
        // more or less supported.
        // slither-disable-next-line unused-return
        (address payer, address payee, uint256 deposit,,,) = channels.channel(entry.channelId);
        if (payer == address(0) || payee != node || entry.cumulativeAmount > deposit) return false;
        // The third value only details a malformed signature; `err` already rejects it.
        // slither-disable-next-line unused-return
        (address signer, ECDSA.RecoverError err,) =
            ECDSA.tryRecoverCalldata(channels.voucherDigest(entry.channelId, entry.cumulativeAmount), entry.signature);
        return err == ECDSA.RecoverError.NoError && signer == payer;
    }

    /// @notice Whether a leaf is well formed: at most `MAX_ENTRIES` entries, strictly ascending channel
    ///         ids, and `amount` equal to the sum of the entries' cumulative amounts.
    function leafWellFormed(uint256 amount, Entry[] calldata entries) public pure returns (bool) {
        uint256 n = entries.length;
        if (n > MAX_ENTRIES) return false;
        uint256 sum = 0;
        uint256 previous = 0;
        for (uint256 i; i < n; ++i) {
            uint256 id = entries[i].channelId;
            if (id <= previous) return false;
            previous = id;
            uint256 value = entries[i].cumulativeAmount;
            // A sum past 2**256 cannot equal any amount: report the leaf as malformed.
            if (value > type(uint256).max - sum) return false;
            sum += value;
        }
        return sum == amount;
    }

    /*//////////////////////////////////////////////////////////////
                            INTERNAL LOGIC
    //////////////////////////////////////////////////////////////*/

    /// @dev Stake of `operators` in `epoch`, reverting unless each is listed once, in ascending order,
    ///      has stake in the epoch and signed `rootDigest(epoch, root)`.
    function _signedStake(uint256 epoch, bytes32 root, address[] calldata operators, bytes[] calldata signatures)
        private
        view
        returns (uint256 signed)
    {
        uint256 n = operators.length;
        if (signatures.length != n || n > MAX_SIGNERS) revert BadSignerList();
        bytes32 digest = rootDigest(epoch, root);
        address previous = address(0);
        for (uint256 i; i < n;) {
            address operator = operators[i];
            if (operator <= previous) revert OperatorsNotSorted();
            previous = operator;
            // signingStake reverts for an epoch that has not ended.
            // The AVS is this contract's immutable, trusted stake registry, and MAX_SIGNERS bounds the loop.
            // slither-disable-next-line calls-loop
            uint256 stake = avs.signingStake(operator, epoch);
            if (stake == 0) revert NoStake(operator);
            // The third value only details a malformed signature; `err` already rejects it.
            // slither-disable-next-line unused-return
            (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signatures[i]);
            if (err != ECDSA.RecoverError.NoError || signer != operator) revert InvalidOperatorSignature(operator);
            // Cannot overflow: distinct operators' stakes sum to at most the ETH bonded in the AVS.
            unchecked {
                signed += stake;
                ++i;
            }
        }
    }

    /// @dev Reverts unless `epoch`'s root exists, was not voided and its window is over.
    function _requireExecutable(uint256 epoch, Root storage r) private view {
        if (r.root == bytes32(0)) revert NoRoot(epoch);
        if (r.voided) revert RootIsVoided(epoch);
        uint64 executableAt = r.executableAt;
        // Validators shift timestamps by seconds; a window is much longer than that.
        // slither-disable-next-line timestamp
        if (block.timestamp < executableAt) revert ChallengeWindowOpen(epoch, executableAt); // forge-lint: disable-line(block-timestamp)
    }

    /// @dev The root of `epoch` if it can still be challenged, with `signers` its recorded signers.
    function _challengeable(uint256 epoch, address[] calldata signers) private view returns (Root storage r) {
        r = _roots[epoch];
        if (r.root == bytes32(0)) revert NoRoot(epoch);
        if (r.voided) revert RootIsVoided(epoch);
        uint64 executableAt = r.executableAt;
        // Exclusive end, as for channel claims: from `executableAt` the root pays and cannot be voided.
        // slither-disable-next-line timestamp
        if (block.timestamp >= executableAt) revert ChallengeWindowClosed(epoch, executableAt); // forge-lint: disable-line(block-timestamp)
        if (keccak256(abi.encode(signers)) != r.signersHash) revert SignersMismatch();
    }

    /// @dev Voids the root (effects first) and has the AVS slash its signers, bounties to the prover.
    function _void(uint256 epoch, Root storage r, address[] calldata signers, bytes4 reason) private {
        r.voided = true;
        r.signersHash = bytes32(0);
        // Cannot overflow: one void per proposal, each a transaction.
        unchecked {
            ++rootsVoided;
        }
        bytes32 root = r.root;
        uint256 slashed = avs.slashWrongRoot(signers, epoch, msg.sender);
        emit RootVoided(epoch, root, msg.sender, reason, slashed);
    }
}
