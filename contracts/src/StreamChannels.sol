// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {NonReentrant} from "./NonReentrant.sol";

/// @title StreamChannels
/// @author OpenStreaming
/// @notice One-way ETH payment channels for streamed micropayments. A payer locks a deposit for one
///         payee and signs EIP-712 *cumulative* vouchers `Voucher(channelId, cumulativeAmount)` off
///         chain; the payee (or anyone on its behalf) claims the difference since the last claim, one
///         channel or many per transaction. The payer can close: a challenge period starts in which
///         the payee can still claim, after which the rest of the deposit is refunded to the payer.
///         The payee can end a channel at any time with `release`, refunding the rest immediately.
///
///         Time line of a closing channel: claims are valid while `block.timestamp < closesAt`,
///         `finalizeClose` from `closesAt` on, so no second exists in which both are valid and a payee
///         who claims inside the challenge period can never be raced by a finalisation.
///
///         Payments (claims and refunds) are pushed with at most `PAYOUT_GAS` gas. When a push fails
///         (a recipient contract that rejects ETH, reverts or burns its gas) the amount is credited to
///         `withdrawable(recipient)` instead, and the recipient pulls it later with `withdraw`, so a
///         hostile or broken recipient can neither block a channel nor make anyone else's claim revert.
/// @dev Every channel keeps its own deposit: a voucher can never draw on another channel's money.
///      Ids come from a counter starting at 1 and are never reused. Vouchers are bound to the channel
///      id, this contract's address and the chain id (EIP-712 domain `StreamChannels`, version `1`),
///      so they cannot be replayed across channels, deployments or chains. Signatures go through
///      OpenZeppelin's ECDSA, which rejects malformed and high-s (malleable) signatures.
///
///      Storage: a channel fits in three slots, arranged so that a claim reads two and writes one:
///        slot 0  payer (160) | deposit (88) | settled (8)       read by claim, written by topUp and settling
///        slot 1  payee (160) | claimed (88) | closing (8)       read and written by claim
///        slot 2  challengePeriod (64) | closesAt (64)           written by startClose; read by a claim
///                                                              only while `closing` is set
///      `closing` mirrors `closesAt != 0` inside the slot a claim reads anyway, so a claim on a channel
///      that is not closing never pays for a third slot.
///      Amounts are uint88 (up to ~309 million ETH per channel, above the total ETH supply).
///      Credits for failed pushes live in their own mapping; the contract's balance is always the sum
///      over unsettled channels of `deposit - claimed` plus the sum of credits.
contract StreamChannels is EIP712, NonReentrant {
    /*//////////////////////////////////////////////////////////////
                                 ERRORS
    //////////////////////////////////////////////////////////////*/

    /// @notice The payee is the zero address.
    error InvalidPayee();
    /// @notice `challengePeriod` is below `MIN_CHALLENGE_PERIOD`.
    error ChallengePeriodTooShort(uint64 challengePeriod, uint64 minimum);
    /// @notice The channel's deposit would exceed the uint88 amount range.
    error DepositTooLarge(uint256 deposit);
    /// @notice No channel has this id.
    error ChannelNotFound(uint256 channelId);
    /// @notice The channel is settled: it can no longer be claimed, topped up or closed.
    error ChannelAlreadySettled(uint256 channelId);
    /// @notice A voucher asks for more than the channel's own deposit.
    error AmountExceedsDeposit(uint256 channelId, uint256 cumulativeAmount, uint256 deposit);
    /// @notice The signature is malformed (wrong length, bad `v`, high `s`, or unrecoverable).
    error InvalidSignature(uint256 channelId);
    /// @notice The signature is valid but was not made by the channel's payer.
    error SignerNotPayer(uint256 channelId, address signer);
    /// @notice Only the channel's payer may do this.
    error NotPayer(uint256 channelId, address caller);
    /// @notice Only the channel's payee may do this.
    error NotPayee(uint256 channelId, address caller);
    /// @notice `startClose` was already called for this channel.
    error AlreadyClosing(uint256 channelId);
    /// @notice `finalizeClose` on a channel whose payer never called `startClose`.
    error NotClosing(uint256 channelId);
    /// @notice `finalizeClose` before the challenge period is over.
    error ChallengePeriodActive(uint256 channelId, uint64 closesAt);
    /// @notice The arrays given to `claimBatch` differ in length.
    error LengthMismatch();
    /// @notice A claim at or after `closesAt`: the challenge period is over and only `finalizeClose` is left.
    error ClaimWindowClosed(uint256 channelId, uint64 closesAt);
    /// @notice `withdraw` by an account that has no credit.
    error NothingToWithdraw(address account);
    /// @notice `withdraw` to the zero address.
    error InvalidRecipient();
    /// @notice Too little gas is left to forward the full `PAYOUT_GAS` to a payment's recipient (EIP-150
    ///         passes on at most 63/64 of the gas), so the push is refused before it is tried; send the
    ///         transaction with more gas.
    error InsufficientGas();
    /// @notice Sending ETH to `to` in `withdraw` failed.
    error TransferFailed(address to, uint256 amount);
    /// @notice Only the deployer may bind the netting contract, and only once, to a non-zero address.
    error NettingBindingRefused();
    /// @notice Only the bound netting contract may settle from a root.
    error NotNetting(address caller);

    /*//////////////////////////////////////////////////////////////
                                 EVENTS
    //////////////////////////////////////////////////////////////*/

    /// @notice A channel was opened with `deposit` wei locked for `payee`.
    event ChannelOpened(
        uint256 indexed channelId, address indexed payer, address indexed payee, uint256 deposit, uint64 challengePeriod
    );
    /// @notice `amount` wei were added to a channel's deposit by `from`.
    event ChannelToppedUp(uint256 indexed channelId, address indexed from, uint256 amount, uint256 deposit);
    /// @notice The payee received `amount` wei; the channel's claimed total is now `cumulativeAmount`.
    event Claimed(uint256 indexed channelId, address indexed payee, uint256 amount, uint256 cumulativeAmount);
    /// @notice The payer started closing; the payee can claim until `closesAt`.
    event CloseStarted(uint256 indexed channelId, uint64 closesAt);
    /// @notice The channel is settled and `refund` wei went back to the payer. `byPayee` tells a
    ///         payee's `release` from a `finalizeClose`.
    event ChannelSettled(uint256 indexed channelId, address indexed payer, uint256 refund, bool byPayee);
    /// @notice `claimBatch` left a voucher out instead of reverting. `reason` is the selector of the
    ///         error `claim` would have raised for it (`ChannelNotFound`, `ChannelAlreadySettled`,
    ///         `ClaimWindowClosed`, `AmountExceedsDeposit`, `InvalidSignature` or `SignerNotPayer`).
    event ClaimSkipped(uint256 indexed channelId, bytes4 reason);
    /// @notice Pushing `amount` wei to `account` failed; it was credited to `withdrawable(account)`.
    event PaymentCredited(address indexed account, uint256 amount);
    /// @notice `account` withdrew its credit of `amount` wei to `to`.
    event Withdrawn(address indexed account, address indexed to, uint256 amount);
    /// @notice The netting contract that may settle channels from attested roots is now `netting`.
    event NettingBound(address indexed netting);
    /// @notice An executed net-settlement root paid `payee` `amount` wei over `channels` channels.
    event NetSettled(address indexed payee, uint256 amount, uint256 channels);

    /*//////////////////////////////////////////////////////////////
                               CONSTANTS
    //////////////////////////////////////////////////////////////*/

    /// @notice The shortest challenge period a channel may have, in seconds.
    uint64 public constant MIN_CHALLENGE_PERIOD = 1 hours;

    /// @notice EIP-712 type hash of `Voucher(uint256 channelId,uint256 cumulativeAmount)`.
    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(uint256 channelId,uint256 cumulativeAmount)");

    /// @notice Gas forwarded with every pushed payment. Enough for a smart-contract wallet's `receive`
    ///         (a proxy that emits an event or writes a slot); the same allowance Solady grants as its
    ///         "no grief" stipend. A recipient that needs more is paid by credit and withdraws.
    uint256 public constant PAYOUT_GAS = 100_000;

    /// @notice Gas `_pay` needs left before its call so that the callee surely gets all of `PAYOUT_GAS`:
    ///         `PAYOUT_GAS * 64 / 63` (EIP-150 keeps 1/64 of what is left after the call's own cost) plus
    ///         the call's own cost (cold account 2,600 + value transfer 9,000 + new account 25,000) and a
    ///         margin for the opcodes between the check and the call.
    uint256 public constant PAYOUT_RESERVE = PAYOUT_GAS * 64 / 63 + 1 + 36_600 + 400;

    /// @dev Largest amount a channel can hold (deposit and claimed are uint88).
    uint256 private constant MAX_AMOUNT = type(uint88).max;

    /*//////////////////////////////////////////////////////////////
                                STORAGE
    //////////////////////////////////////////////////////////////*/

    /// @dev One channel, three slots (see the contract's header for the layout).
    struct Channel {
        // slot 0
        address payer;
        uint88 deposit;
        bool settled;
        // slot 1
        address payee;
        uint88 claimed;
        bool closing;
        // slot 2
        uint64 challengePeriod;
        uint64 closesAt;
    }

    /// @dev The id the next channel gets. Starts at 1 so that every `open` rewrites a non-zero slot.
    uint256 private _nextChannelId = 1;

    /// @dev Channels by id.
    mapping(uint256 channelId => Channel) private _channels;

    /// @notice Wei owed to an account whose pushed payment failed; it pulls them with `withdraw`.
    mapping(address account => uint256 amount) public withdrawable;

    /// @notice The `NetSettlement` contract whose executed roots may advance channels (zero until bound).
    address public netting;

    /// @dev Who may bind `netting`, once (the deployer; the binding is the only privileged act).
    address private immutable _deployer;

    /*//////////////////////////////////////////////////////////////
                              CONSTRUCTOR
    //////////////////////////////////////////////////////////////*/

    constructor() EIP712("StreamChannels", "1") {
        _deployer = msg.sender;
    }

    /*//////////////////////////////////////////////////////////////
                                NETTING
    //////////////////////////////////////////////////////////////*/

    /// @notice Binds the `NetSettlement` contract, once, by the deployer (right after deploying both).
    ///         The binding is the deployment's only privileged act: afterwards nobody, the deployer
    ///         included, can change it.
    /// @param netting_ The netting contract; it may call `settleNet`.
    function bindNetting(address netting_) external {
        if (msg.sender != _deployer || netting != address(0) || netting_ == address(0)) {
            revert NettingBindingRefused();
        }
        netting = netting_;
        emit NettingBound(netting_);
    }

    /// @notice Pays `payee` what an executed net-settlement root grants it: each listed channel is
    ///         advanced to its cumulative amount exactly as a `claim` with a voucher would be (the
    ///         difference since the last claim, never twice), and the total is pushed in one payment.
    ///         A channel that `claim` would refuse (unknown, settled, another payee, past its challenge
    ///         period, above its deposit) is skipped with `ClaimSkipped`, like `claimBatch`. The payer
    ///         signatures are not checked here: the netting contract only calls this for a root whose
    ///         challenge window passed without a fraud proof, and every entry of a root carries the
    ///         payer's voucher, so an unsupported entry voids the root before it can pay.
    /// @param payee The node the root's leaf names; every channel must be one of its incoming channels.
    /// @param channelIds The channels, strictly ascending (the netting contract checks it).
    /// @param cumulativeAmounts Each channel's cumulative amount in the root.
    /// @return paid The wei paid to `payee`.
    function settleNet(address payee, uint256[] calldata channelIds, uint256[] calldata cumulativeAmounts)
        external
        nonReentrant
        returns (uint256 paid)
    {
        if (msg.sender != netting) revert NotNetting(msg.sender);
        uint256 n = channelIds.length;
        if (cumulativeAmounts.length != n) revert LengthMismatch();
        for (uint256 i; i < n;) {
            uint256 amount = _advance(channelIds[i], payee, cumulativeAmounts[i]);
            // Cannot overflow: each amount is bounded by its channel's deposit, all of them by the ETH held.
            unchecked {
                paid += amount;
                ++i;
            }
        }
        emit NetSettled(payee, paid, n);
        if (paid != 0) _pay(payee, paid);
    }

    /*//////////////////////////////////////////////////////////////
                            CHANNEL LIFECYCLE
    //////////////////////////////////////////////////////////////*/

    /// @notice Opens a channel from `msg.sender` to `payee`, locking `msg.value` as its deposit.
    /// @param payee Who may be paid from this channel.
    /// @param challengePeriod Seconds the payee has to claim after the payer starts closing.
    /// @return channelId The new channel's id (never reused).
    function open(address payee, uint64 challengePeriod) external payable returns (uint256 channelId) {
        if (payee == address(0)) revert InvalidPayee();
        if (challengePeriod < MIN_CHALLENGE_PERIOD) {
            revert ChallengePeriodTooShort(challengePeriod, MIN_CHALLENGE_PERIOD);
        }
        if (msg.value > MAX_AMOUNT) revert DepositTooLarge(msg.value);

        channelId = _nextChannelId;
        // Cannot overflow: one id per transaction would take longer than the universe's age to reach 2**256.
        unchecked {
            _nextChannelId = channelId + 1;
        }
        _channels[channelId] = Channel({
            payer: msg.sender,
            deposit: uint88(msg.value),
            settled: false,
            payee: payee,
            claimed: 0,
            closing: false,
            challengePeriod: challengePeriod,
            closesAt: 0
        });
        emit ChannelOpened(channelId, msg.sender, payee, msg.value, challengePeriod);
    }

    /// @notice Adds `msg.value` to a channel's deposit. Anyone may top up; a refund always goes to the payer.
    /// @param channelId The channel to fund.
    function topUp(uint256 channelId) external payable {
        Channel storage c = _channels[channelId];
        if (c.payer == address(0)) revert ChannelNotFound(channelId);
        if (c.settled) revert ChannelAlreadySettled(channelId);
        uint256 deposit = uint256(c.deposit) + msg.value;
        if (deposit > MAX_AMOUNT) revert DepositTooLarge(deposit);
        // Casting to uint88 is safe: deposit <= MAX_AMOUNT was just checked.
        // forge-lint: disable-next-line(unsafe-typecast)
        c.deposit = uint88(deposit);
        emit ChannelToppedUp(channelId, msg.sender, msg.value, deposit);
    }

    /// @notice Pays the payee `cumulativeAmount` minus what was already claimed, against the payer's
    ///         voucher. Anyone may submit it; the money always goes to the payee (pushed, or credited to
    ///         `withdrawable(payee)` if the push fails). A voucher at or below the claimed total is valid
    ///         but pays nothing. Claims are accepted until the payer's challenge period is over
    ///         (`block.timestamp < closesAt`) and never once the channel is settled. Strict: an invalid
    ///         voucher, an unknown, settled or expired channel reverts with the matching error.
    /// @param channelId The channel the voucher is for.
    /// @param cumulativeAmount Total the payer has agreed to pay on this channel so far.
    /// @param signature The payer's 65-byte EIP-712 signature over `voucherDigest(channelId, cumulativeAmount)`.
    function claim(uint256 channelId, uint256 cumulativeAmount, bytes calldata signature) external nonReentrant {
        (address payee, uint256 amount) = _claim(channelId, cumulativeAmount, signature, false);
        if (amount != 0) _pay(payee, amount);
    }

    /// @notice Claims many vouchers in one transaction. Not atomic: a voucher `claim` would refuse (its
    ///         channel unknown, settled by a `finalizeClose` or `release` that landed first, past its
    ///         challenge period, the amount above the deposit, a bad signature) is skipped with a
    ///         `ClaimSkipped` event and the rest are paid. Consecutive channels with the same payee are
    ///         paid with one transfer, which cannot revert either: it forwards at most `PAYOUT_GAS` and
    ///         falls back to a credit. A channel listed twice never pays twice: the second voucher only
    ///         pays what exceeds the first. Only mismatched array lengths revert.
    /// @param channelIds The channels, ideally grouped by payee.
    /// @param cumulativeAmounts One cumulative amount per channel.
    /// @param signatures One payer signature per channel.
    function claimBatch(
        uint256[] calldata channelIds,
        uint256[] calldata cumulativeAmounts,
        bytes[] calldata signatures
    ) external nonReentrant {
        uint256 n = channelIds.length;
        if (cumulativeAmounts.length != n || signatures.length != n) revert LengthMismatch();
        address pending = address(0);
        uint256 owed = 0;
        for (uint256 i; i < n;) {
            (address payee, uint256 amount) = _claim(channelIds[i], cumulativeAmounts[i], signatures[i], true);
            if (amount != 0) {
                if (payee != pending) {
                    if (owed != 0) _pay(pending, owed);
                    pending = payee;
                    owed = 0;
                }
                // Cannot overflow: each amount is bounded by its channel's deposit, and all deposits
                // together are bounded by the ETH this contract holds.
                unchecked {
                    owed += amount;
                }
            }
            // Cannot overflow: i < n, and n is bounded by calldata size.
            unchecked {
                ++i;
            }
        }
        if (owed != 0) _pay(pending, owed);
    }

    /// @notice Starts closing a channel: the payee can claim until `block.timestamp + challengePeriod`.
    /// @param channelId The channel to close; only its payer may call this.
    function startClose(uint256 channelId) external {
        Channel storage c = _channels[channelId];
        address payer = c.payer;
        if (payer == address(0)) revert ChannelNotFound(channelId);
        if (msg.sender != payer) revert NotPayer(channelId, msg.sender);
        if (c.settled) revert ChannelAlreadySettled(channelId);
        if (c.closesAt != 0) revert AlreadyClosing(channelId);
        uint256 end = block.timestamp + c.challengePeriod;
        // A challenge period so long that it passes the uint64 range means "never by timeout":
        // the channel then ends only by the payee's `release`.
        // Saturation only, not a time comparison: nothing here depends on the timestamp's precision.
        // slither-disable-next-line timestamp
        if (end > type(uint64).max) end = type(uint64).max;
        // Casting to uint64 is safe: `end` was capped at type(uint64).max just above.
        // forge-lint: disable-next-line(unsafe-typecast)
        uint64 closesAt = uint64(end);
        c.closesAt = closesAt;
        c.closing = true;
        emit CloseStarted(channelId, closesAt);
    }

    /// @notice From `closesAt` on (the first second in which claims are refused), settles the channel and
    ///         refunds `deposit - claimed` to the payer. Anyone may call it; the refund always goes to the
    ///         payer (pushed, or credited to `withdrawable(payer)` if the push fails).
    /// @param channelId The channel to settle.
    function finalizeClose(uint256 channelId) external nonReentrant {
        Channel storage c = _channels[channelId];
        address payer = c.payer;
        if (payer == address(0)) revert ChannelNotFound(channelId);
        if (c.settled) revert ChannelAlreadySettled(channelId);
        uint64 closesAt = c.closesAt;
        if (closesAt == 0) revert NotClosing(channelId);
        // A validator can shift the timestamp by seconds; challenge periods are at least an hour.
        // slither-disable-next-line timestamp
        if (block.timestamp < closesAt) revert ChallengePeriodActive(channelId, closesAt); // forge-lint: disable-line(block-timestamp)
        _settle(channelId, c, payer, false);
    }

    /// @notice The payee ends the channel now: it is settled and `deposit - claimed` goes back to the
    ///         payer (pushed, or credited if the push fails, so a payer contract cannot block it).
    ///         Claim first: unclaimed vouchers are worthless afterwards.
    /// @param channelId The channel to release; only its payee may call this.
    function release(uint256 channelId) external nonReentrant {
        Channel storage c = _channels[channelId];
        address payer = c.payer;
        if (payer == address(0)) revert ChannelNotFound(channelId);
        if (msg.sender != c.payee) revert NotPayee(channelId, msg.sender);
        if (c.settled) revert ChannelAlreadySettled(channelId);
        _settle(channelId, c, payer, true);
    }

    /// @notice Sends `msg.sender`'s whole credit (payments whose push failed) to `to`, with all the gas
    ///         the caller gives. A contract that cannot receive ETH names another recipient.
    /// @param to Where the credit goes.
    function withdraw(address to) external nonReentrant {
        if (to == address(0)) revert InvalidRecipient();
        uint256 amount = withdrawable[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        withdrawable[msg.sender] = 0;
        emit Withdrawn(msg.sender, to, amount);
        bool ok;
        // No return-data copy; the caller chose `to` and the gas, so a failure reverts (the credit stays).
        // slither-disable-next-line assembly
        assembly ("memory-safe") {
            ok := call(gas(), to, amount, 0, 0, 0, 0)
        }
        if (!ok) revert TransferFailed(to, amount);
    }

    /*//////////////////////////////////////////////////////////////
                                  VIEWS
    //////////////////////////////////////////////////////////////*/

    /// @notice The EIP-712 digest a payer signs for `Voucher(channelId, cumulativeAmount)`.
    function voucherDigest(uint256 channelId, uint256 cumulativeAmount) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, cumulativeAmount)));
    }

    /// @notice A channel's state. All zero for an id that was never opened.
    function channel(uint256 channelId)
        external
        view
        returns (address payer, address payee, uint256 deposit, uint256 claimed, uint64 closesAt, bool settled)
    {
        Channel storage c = _channels[channelId];
        return (c.payer, c.payee, c.deposit, c.claimed, c.closesAt, c.settled);
    }

    /// @notice A channel's challenge period in seconds (zero for an id that was never opened).
    function challengePeriodOf(uint256 channelId) external view returns (uint64) {
        return _channels[channelId].challengePeriod;
    }

    /// @notice The id the next `open` will return.
    function nextChannelId() external view returns (uint256) {
        return _nextChannelId;
    }

    /// @notice The EIP-712 domain separator for this contract on this chain.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /*//////////////////////////////////////////////////////////////
                            INTERNAL LOGIC
    //////////////////////////////////////////////////////////////*/

    /// @dev Checks a voucher and records the claim (effects only, no interaction). An invalid voucher
    ///      reverts with its error, or, with `skipInvalid`, emits `ClaimSkipped` and pays nothing.
    /// @return payee Who is owed `amount`.
    /// @return amount What this voucher pays on top of earlier claims (zero if nothing new).
    function _claim(uint256 channelId, uint256 cumulativeAmount, bytes calldata signature, bool skipInvalid)
        private
        returns (address payee, uint256 amount)
    {
        Channel storage c = _channels[channelId];
        address payer = c.payer;
        uint256 deposit = c.deposit;
        if (payer == address(0)) {
            if (!skipInvalid) revert ChannelNotFound(channelId);
            return _skip(channelId, ChannelNotFound.selector);
        }
        if (c.settled) {
            if (!skipInvalid) revert ChannelAlreadySettled(channelId);
            return _skip(channelId, ChannelAlreadySettled.selector);
        }
        if (cumulativeAmount > deposit) {
            if (!skipInvalid) revert AmountExceedsDeposit(channelId, cumulativeAmount, deposit);
            return _skip(channelId, AmountExceedsDeposit.selector);
        }
        if (c.closing) {
            uint64 closesAt = c.closesAt;
            // Exclusive end: at `closesAt` only `finalizeClose` is valid. Validators shift timestamps
            // by seconds; challenge periods are at least an hour.
            // slither-disable-next-line timestamp
            if (block.timestamp >= closesAt) { // forge-lint: disable-line(block-timestamp)
                if (!skipInvalid) revert ClaimWindowClosed(channelId, closesAt);
                return _skip(channelId, ClaimWindowClosed.selector);
            }
        }

        // The third value only details a malformed signature; `err` already rejects it.
        // slither-disable-next-line unused-return
        (address signer, ECDSA.RecoverError err,) =
            ECDSA.tryRecoverCalldata(voucherDigest(channelId, cumulativeAmount), signature);
        if (err != ECDSA.RecoverError.NoError) {
            if (!skipInvalid) revert InvalidSignature(channelId);
            return _skip(channelId, InvalidSignature.selector);
        }
        if (signer != payer) {
            if (!skipInvalid) revert SignerNotPayer(channelId, signer);
            return _skip(channelId, SignerNotPayer.selector);
        }

        payee = c.payee;
        uint256 claimed = c.claimed;
        if (cumulativeAmount <= claimed) return (payee, 0);
        // Cannot underflow: cumulativeAmount > claimed was just checked.
        unchecked {
            amount = cumulativeAmount - claimed;
        }
        // Safe cast: cumulativeAmount <= deposit <= type(uint88).max.
        // forge-lint: disable-next-line(unsafe-typecast)
        c.claimed = uint88(cumulativeAmount);
        emit Claimed(channelId, payee, amount, cumulativeAmount);
    }

    /// @dev `settleNet`'s counterpart of `_claim`: the same checks but the signature's (the root vouched
    ///      for it), plus the payee; an entry `claim` would refuse is skipped, never reverted.
    function _advance(uint256 channelId, address payee, uint256 cumulativeAmount) private returns (uint256 amount) {
        Channel storage c = _channels[channelId];
        if (c.payer == address(0)) {
            (, amount) = _skip(channelId, ChannelNotFound.selector);
            return amount;
        }
        if (c.settled) {
            (, amount) = _skip(channelId, ChannelAlreadySettled.selector);
            return amount;
        }
        if (c.payee != payee) {
            (, amount) = _skip(channelId, NotPayee.selector);
            return amount;
        }
        if (cumulativeAmount > c.deposit) {
            (, amount) = _skip(channelId, AmountExceedsDeposit.selector);
            return amount;
        }
        // Same exclusive end as `claim`: a root executed at or after `closesAt` no longer pays this channel.
        // forge-lint: disable-next-line(block-timestamp)
        // slither-disable-next-line timestamp
        if (c.closing && block.timestamp >= c.closesAt) {
            (, amount) = _skip(channelId, ClaimWindowClosed.selector);
            return amount;
        }
        uint256 claimed = c.claimed;
        if (cumulativeAmount <= claimed) return 0;
        // Cannot underflow: cumulativeAmount > claimed was just checked.
        unchecked {
            amount = cumulativeAmount - claimed;
        }
        // Safe cast: cumulativeAmount <= deposit <= type(uint88).max.
        // forge-lint: disable-next-line(unsafe-typecast)
        c.claimed = uint88(cumulativeAmount);
        emit Claimed(channelId, payee, amount, cumulativeAmount);
    }

    /// @dev Records that `claimBatch` left channel `channelId` out, and pays nothing for it.
    function _skip(uint256 channelId, bytes4 reason) private returns (address payee, uint256 amount) {
        emit ClaimSkipped(channelId, reason);
        return (address(0), 0);
    }

    /// @dev Marks a channel settled and refunds the unclaimed deposit to its payer (CEI: state first).
    function _settle(uint256 channelId, Channel storage c, address payer, bool byPayee) private {
        c.settled = true;
        uint256 refund;
        // Cannot underflow: claimed <= deposit always holds (claims are capped by the deposit and
        // deposits only grow).
        unchecked {
            refund = uint256(c.deposit) - c.claimed;
        }
        emit ChannelSettled(channelId, payer, refund, byPayee);
        if (refund != 0) _pay(payer, refund);
    }

    /// @dev Pushes `amount` wei to `to` with at most `PAYOUT_GAS` gas and no return-data copy (a
    ///      contract recipient can neither grief with a huge return payload nor burn the caller's gas);
    ///      if the push fails, credits `withdrawable[to]` instead. Reentrancy is blocked by the guard.
    ///      The starvation check comes *before* the call: with less than `PAYOUT_RESERVE` left, EIP-150's
    ///      63/64 rule could hand the callee less than `PAYOUT_GAS`, and a recipient that checks `gasleft()`
    ///      and reverts early when short would return most of it, so no check after the call can tell a
    ///      starved push from a refused one. Refusing up front means a failed push is always the
    ///      recipient's own doing, never the submitter's chosen gas limit.
    function _pay(address to, uint256 amount) private {
        if (gasleft() < PAYOUT_RESERVE) revert InsufficientGas();
        bool ok;
        // slither-disable-next-line assembly
        assembly ("memory-safe") {
            ok := call(PAYOUT_GAS, to, amount, 0, 0, 0, 0)
        }
        if (ok) return;
        withdrawable[to] += amount;
        emit PaymentCredited(to, amount);
    }
}
