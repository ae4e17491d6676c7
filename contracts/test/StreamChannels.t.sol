// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {StreamChannels} from "../src/StreamChannels.sol";
import {NonReentrant} from "../src/NonReentrant.sol";

/// @notice A payee contract that tries to re-enter the channel contract when it is paid.
contract ReentrantPayee {
    enum Mode {
        None,
        Claim,
        ClaimBatch,
        Release,
        Finalize
    }

    StreamChannels public immutable target;
    Mode public mode;
    uint256 public channelId;
    uint256 public amount;
    bytes public signature;
    uint256 public received;
    uint256 public attempts;
    bool public reentrySucceeded;
    bytes public reentryError;

    constructor(StreamChannels target_) {
        target = target_;
    }

    function arm(Mode mode_, uint256 channelId_, uint256 amount_, bytes calldata signature_) external {
        mode = mode_;
        channelId = channelId_;
        amount = amount_;
        signature = signature_;
    }

    function release(uint256 id) external {
        target.release(id);
    }

    receive() external payable {
        received += msg.value;
        if (mode == Mode.None) return;
        attempts++;
        bytes memory call;
        if (mode == Mode.Claim) {
            call = abi.encodeCall(StreamChannels.claim, (channelId, amount, signature));
        } else if (mode == Mode.ClaimBatch) {
            uint256[] memory ids = new uint256[](1);
            uint256[] memory amounts = new uint256[](1);
            bytes[] memory sigs = new bytes[](1);
            (ids[0], amounts[0], sigs[0]) = (channelId, amount, signature);
            call = abi.encodeCall(StreamChannels.claimBatch, (ids, amounts, sigs));
        } else if (mode == Mode.Release) {
            call = abi.encodeCall(StreamChannels.release, (channelId));
        } else {
            call = abi.encodeCall(StreamChannels.finalizeClose, (channelId));
        }
        (bool ok, bytes memory err) = address(target).call(call);
        reentrySucceeded = ok;
        reentryError = err;
    }
}

/// @notice A payer contract (no key; it never signs) whose refund hook re-enters `finalizeClose`.
contract ReentrantPayer {
    StreamChannels public immutable target;
    uint256 public channelId;
    uint256 public received;
    bool public reentrySucceeded;
    bytes public reentryError;

    constructor(StreamChannels target_) {
        target = target_;
    }

    function open(address payee, uint64 period) external payable {
        channelId = target.open{value: msg.value}(payee, period);
    }

    function startClose() external {
        target.startClose(channelId);
    }

    receive() external payable {
        received += msg.value;
        (bool ok, bytes memory err) = address(target).call(abi.encodeCall(StreamChannels.finalizeClose, (channelId)));
        reentrySucceeded = ok;
        reentryError = err;
    }
}

/// @notice A payee that refuses ETH but can pull its credit to another address.
contract RejectingPayee {
    receive() external payable {
        revert("no thanks");
    }

    function withdrawTo(StreamChannels sc, address to) external {
        sc.withdraw(to);
    }
}

/// @notice An honest contract recipient that needs nearly all of `PAYOUT_GAS` and, when it was given less,
///         reverts early and returns the rest: the recipient the old after-the-call starvation check missed.
contract GasCheckingRecipient {
    uint256 public received;

    receive() external payable {
        // With the full allowance (PAYOUT_GAS plus the 2,300 stipend) far more than this is left here.
        if (gasleft() < 95_000) revert("short of gas");
        received += msg.value;
    }

    function open(StreamChannels sc, address payee, uint64 period) external payable returns (uint256) {
        return sc.open{value: msg.value}(payee, period);
    }

    function startClose(StreamChannels sc, uint256 id) external {
        sc.startClose(id);
    }
}

/// @notice A payee (or payer) whose `receive` burns every unit of gas it is given.
contract GasBurner {
    receive() external payable {
        while (true) {}
    }
}

/// @notice A payer contract (no key; it never signs) that refuses its refunds.
contract RejectingPayer {
    function open(StreamChannels sc, address payee, uint64 period) external payable returns (uint256) {
        return sc.open{value: msg.value}(payee, period);
    }

    function withdrawTo(StreamChannels sc, address to) external {
        sc.withdraw(to);
    }

    receive() external payable {
        revert("no refunds please");
    }
}

/// @title StreamChannelsTest
/// @notice Unit and fuzz tests of StreamChannels: every revert, payments to the wei, replay protection,
///         batch atomicity and reentrancy.
contract StreamChannelsTest is Test {
    StreamChannels internal sc;

    uint256 internal constant PAYER_KEY = 0xA11CE;
    uint256 internal constant OTHER_KEY = 0xB0B;
    address internal payer;
    address internal constant PAYEE = address(0xBEEF);
    address internal constant STRANGER = address(0xCAFE);
    uint64 internal period;

    function setUp() public {
        sc = new StreamChannels();
        payer = vm.addr(PAYER_KEY);
        period = sc.MIN_CHALLENGE_PERIOD();
        vm.deal(payer, 1_000 ether);
        vm.deal(STRANGER, 1_000 ether);
        vm.label(payer, "payer");
        vm.label(PAYEE, "payee");
        vm.label(STRANGER, "stranger");
    }

    /*//////////////////////////////////////////////////////////////
                                HELPERS
    //////////////////////////////////////////////////////////////*/

    function _open(uint256 deposit) internal returns (uint256 id) {
        vm.prank(payer);
        id = sc.open{value: deposit}(PAYEE, period);
    }

    function _voucher(uint256 key, uint256 id, uint256 amount) internal view returns (bytes memory) {
        return signDigest(key, sc.voucherDigest(id, amount));
    }

    function _claimed(uint256 id) internal view returns (uint256 claimed) {
        (,,, claimed,,) = sc.channel(id);
    }

    function _settled(uint256 id) internal view returns (bool settled) {
        (,,,,, settled) = sc.channel(id);
    }

    function _single(uint256 id, uint256 amount, bytes memory sig)
        internal
        pure
        returns (uint256[] memory ids, uint256[] memory amounts, bytes[] memory sigs)
    {
        ids = new uint256[](1);
        amounts = new uint256[](1);
        sigs = new bytes[](1);
        (ids[0], amounts[0], sigs[0]) = (id, amount, sig);
    }

    /*//////////////////////////////////////////////////////////////
                                  OPEN
    //////////////////////////////////////////////////////////////*/

    function test_open_storesChannelAndEmits() public {
        vm.expectEmit(true, true, true, true, address(sc));
        emit StreamChannels.ChannelOpened(1, payer, PAYEE, 3 ether, period);
        uint256 id = _open(3 ether);
        assertEq(id, 1, "first id is 1");
        (address p, address q, uint256 deposit, uint256 claimed, uint64 closesAt, bool settled) = sc.channel(id);
        assertEq(p, payer, "payer");
        assertEq(q, PAYEE, "payee");
        assertEq(deposit, 3 ether, "deposit");
        assertEq(claimed, 0, "claimed");
        assertEq(uint256(closesAt), 0, "closesAt");
        assertEq(settled, false, "settled");
        assertEq(address(sc).balance, 3 ether, "contract holds the deposit");
        assertEq(uint256(sc.challengePeriodOf(id)), uint256(period), "challenge period");
    }

    function test_open_idsCountUpAndAreNeverReused() public {
        uint256 a = _open(1 ether);
        uint256 b = _open(1 ether);
        vm.prank(PAYEE);
        sc.release(a);
        uint256 c = _open(1 ether);
        assertEq(a, 1, "a");
        assertEq(b, 2, "b");
        assertEq(c, 3, "c: settled ids are not reused");
        assertEq(sc.nextChannelId(), 4, "next id");
    }

    function test_open_zeroDepositIsAllowed() public {
        uint256 id = _open(0);
        (,, uint256 deposit,,,) = sc.channel(id);
        assertEq(deposit, 0, "empty channel");
    }

    function test_open_revertsOnZeroPayee() public {
        vm.prank(payer);
        vm.expectRevert(StreamChannels.InvalidPayee.selector);
        sc.open{value: 1 ether}(address(0), period);
    }

    function test_open_revertsBelowMinChallengePeriod() public {
        vm.prank(payer);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.ChallengePeriodTooShort.selector, period - 1, period));
        sc.open{value: 1 ether}(PAYEE, period - 1);
    }

    function testFuzz_open_revertsBelowMinChallengePeriod(uint64 p) public {
        p = uint64(bound(p, 0, period - 1));
        vm.prank(payer);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.ChallengePeriodTooShort.selector, p, period));
        sc.open{value: 1 ether}(PAYEE, p);
    }

    function test_open_revertsOnDepositAboveUint88() public {
        uint256 tooMuch = uint256(type(uint88).max) + 1;
        vm.deal(payer, tooMuch);
        vm.prank(payer);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.DepositTooLarge.selector, tooMuch));
        sc.open{value: tooMuch}(PAYEE, period);
    }

    /*//////////////////////////////////////////////////////////////
                                 TOP UP
    //////////////////////////////////////////////////////////////*/

    function test_topUp_addsToDepositFromAnyone() public {
        uint256 id = _open(1 ether);
        vm.expectEmit(true, true, false, true, address(sc));
        emit StreamChannels.ChannelToppedUp(id, STRANGER, 2 ether, 3 ether);
        vm.prank(STRANGER);
        sc.topUp{value: 2 ether}(id);
        (,, uint256 deposit,,,) = sc.channel(id);
        assertEq(deposit, 3 ether, "deposit grew");
        assertEq(address(sc).balance, 3 ether, "balance");
    }

    function test_topUp_revertsOnSettledChannel() public {
        uint256 id = _open(1 ether);
        vm.prank(PAYEE);
        sc.release(id);
        vm.prank(payer);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.ChannelAlreadySettled.selector, id));
        sc.topUp{value: 1 ether}(id);
    }

    function test_topUp_revertsOnUnknownChannel() public {
        vm.prank(payer);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.ChannelNotFound.selector, 7));
        sc.topUp{value: 1 ether}(7);
    }

    function test_topUp_revertsAboveUint88() public {
        uint256 id = _open(1 ether);
        uint256 add = uint256(type(uint88).max);
        vm.deal(payer, add);
        vm.prank(payer);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.DepositTooLarge.selector, add + 1 ether));
        sc.topUp{value: add}(id);
    }

    /*//////////////////////////////////////////////////////////////
                                 CLAIM
    //////////////////////////////////////////////////////////////*/

    function test_claim_paysPayeeTheDifference() public {
        uint256 id = _open(5 ether);
        vm.expectEmit(true, true, false, true, address(sc));
        emit StreamChannels.Claimed(id, PAYEE, 1 ether, 1 ether);
        sc.claim(id, 1 ether, _voucher(PAYER_KEY, id, 1 ether));
        assertEq(PAYEE.balance, 1 ether, "first claim");
        sc.claim(id, 3 ether, _voucher(PAYER_KEY, id, 3 ether));
        assertEq(PAYEE.balance, 3 ether, "second claim pays only the difference");
        assertEq(_claimed(id), 3 ether, "claimed total");
        assertEq(address(sc).balance, 2 ether, "rest stays locked");
    }

    function test_claim_anyoneSubmitsMoneyGoesToPayee() public {
        uint256 id = _open(2 ether);
        uint256 before = STRANGER.balance;
        vm.prank(STRANGER);
        sc.claim(id, 2 ether, _voucher(PAYER_KEY, id, 2 ether));
        assertEq(PAYEE.balance, 2 ether, "payee paid");
        assertEq(STRANGER.balance, before, "submitter paid nothing");
    }

    function test_claim_atOrBelowClaimedPaysNothing() public {
        uint256 id = _open(5 ether);
        sc.claim(id, 2 ether, _voucher(PAYER_KEY, id, 2 ether));
        sc.claim(id, 2 ether, _voucher(PAYER_KEY, id, 2 ether));
        sc.claim(id, 1 ether, _voucher(PAYER_KEY, id, 1 ether));
        sc.claim(id, 0, _voucher(PAYER_KEY, id, 0));
        assertEq(PAYEE.balance, 2 ether, "replays and older vouchers pay nothing");
        assertEq(_claimed(id), 2 ether, "claimed unchanged");
    }

    function test_claim_revertsWhenSignerIsNotPayer() public {
        uint256 id = _open(5 ether);
        bytes memory forged = _voucher(OTHER_KEY, id, 1 ether);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.SignerNotPayer.selector, id, vm.addr(OTHER_KEY)));
        sc.claim(id, 1 ether, forged);
    }

    function test_claim_revertsOnHighS() public {
        uint256 id = _open(5 ether);
        bytes memory sig = highS(PAYER_KEY, sc.voucherDigest(id, 1 ether));
        // The malleable twin still recovers the payer through the raw precompile ...
        bytes32 r;
        bytes32 s;
        assembly {
            r := mload(add(sig, 32))
            s := mload(add(sig, 64))
        }
        assertEq(ecrecover(sc.voucherDigest(id, 1 ether), uint8(sig[64]), r, s), payer, "twin recovers");
        // ... but the contract rejects it.
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.InvalidSignature.selector, id));
        sc.claim(id, 1 ether, sig);
    }

    function test_claim_revertsOnMalformedSignatures() public {
        uint256 id = _open(5 ether);
        bytes memory good = _voucher(PAYER_KEY, id, 1 ether);
        bytes memory badV = bytes.concat(good);
        badV[64] = bytes1(uint8(29));
        bytes memory zeroR = bytes.concat(bytes32(0), bytes32(uint256(1)), bytes1(uint8(27)));
        bytes[5] memory bad = [new bytes(0), new bytes(64), bytes.concat(good, bytes1(0)), badV, zeroR];
        for (uint256 i; i < bad.length; i++) {
            vm.expectRevert(abi.encodeWithSelector(StreamChannels.InvalidSignature.selector, id));
            sc.claim(id, 1 ether, bad[i]);
        }
    }

    function test_claim_revertsAboveDepositEvenWhenContractHoldsMore() public {
        uint256 id = _open(1 ether);
        _open(50 ether); // another channel's money sits in the same contract
        bytes memory sig = _voucher(PAYER_KEY, id, 1 ether + 1);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.AmountExceedsDeposit.selector, id, 1 ether + 1, 1 ether));
        sc.claim(id, 1 ether + 1, sig);
    }

    function test_claim_revertsAfterFinalize() public {
        uint256 id = _open(2 ether);
        vm.prank(payer);
        sc.startClose(id);
        vm.warp(block.timestamp + period);
        sc.finalizeClose(id);
        bytes memory sig = _voucher(PAYER_KEY, id, 1 ether);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.ChannelAlreadySettled.selector, id));
        sc.claim(id, 1 ether, sig);
    }

    function test_claim_revertsAfterRelease() public {
        uint256 id = _open(2 ether);
        vm.prank(PAYEE);
        sc.release(id);
        bytes memory sig = _voucher(PAYER_KEY, id, 1 ether);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.ChannelAlreadySettled.selector, id));
        sc.claim(id, 1 ether, sig);
    }

    function test_claim_revertsOnUnknownChannel() public {
        bytes memory sig = _voucher(PAYER_KEY, 42, 0);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.ChannelNotFound.selector, 42));
        sc.claim(42, 0, sig);
    }

    function test_claim_voucherDoesNotReplayAcrossChannelsOfSameParties() public {
        uint256 a = _open(2 ether);
        uint256 b = _open(2 ether);
        bytes memory sigA = _voucher(PAYER_KEY, a, 1 ether);
        sc.claim(a, 1 ether, sigA);
        // Same payer, same payee, same amount: the signature recovers someone else on channel b.
        vm.expectRevert();
        sc.claim(b, 1 ether, sigA);
        assertEq(_claimed(b), 0, "channel b untouched");
    }

    function test_claim_voucherDoesNotReplayAcrossContracts() public {
        StreamChannels other = new StreamChannels();
        uint256 id = _open(2 ether);
        vm.prank(payer);
        uint256 otherId = other.open{value: 2 ether}(PAYEE, period);
        assertEq(otherId, id, "same id on both contracts");
        bytes memory sig = _voucher(PAYER_KEY, id, 1 ether);
        vm.expectRevert();
        other.claim(otherId, 1 ether, sig);
        sc.claim(id, 1 ether, sig);
        assertEq(PAYEE.balance, 1 ether, "valid only where it was signed for");
    }

    function test_claim_voucherDoesNotReplayAcrossChainIds() public {
        uint256 id = _open(2 ether);
        bytes memory sig = _voucher(PAYER_KEY, id, 1 ether);
        bytes32 digestHere = sc.voucherDigest(id, 1 ether);
        vm.chainId(block.chainid + 1);
        assertTrue(sc.voucherDigest(id, 1 ether) != digestHere, "digest binds the chain id");
        vm.expectRevert();
        sc.claim(id, 1 ether, sig);
    }

    function test_claim_creditsPayeeThatRejectsEth() public {
        RejectingPayee rejecting = new RejectingPayee();
        vm.prank(payer);
        uint256 id = sc.open{value: 1 ether}(address(rejecting), period);
        bytes memory sig = _voucher(PAYER_KEY, id, 1 ether);
        vm.expectEmit(true, false, false, true, address(sc));
        emit StreamChannels.PaymentCredited(address(rejecting), 1 ether);
        sc.claim(id, 1 ether, sig);
        assertEq(_claimed(id), 1 ether, "the claim is recorded");
        assertEq(sc.withdrawable(address(rejecting)), 1 ether, "and credited, not lost");
        assertEq(address(sc).balance, 1 ether, "the money stays until pulled");
        rejecting.withdrawTo(sc, STRANGER);
        assertEq(sc.withdrawable(address(rejecting)), 0, "credit spent");
        assertEq(STRANGER.balance, 1_000 ether + 1 ether, "pulled to the address the payee named");
    }

    function test_claim_starvedPushRevertsInsteadOfCrediting() public {
        GasBurner burner = new GasBurner();
        vm.prank(payer);
        uint256 id = sc.open{value: 1 ether}(address(burner), period);
        bytes memory data = abi.encodeCall(StreamChannels.claim, (id, 1 ether, _voucher(PAYER_KEY, id, 1 ether)));
        // Too little gas for the callee to get PAYOUT_GAS: the caller, not the payee, starved the push.
        (bool ok, bytes memory err) = address(sc).call{gas: 60_000}(data);
        assertTrue(!ok, "starved claim reverts");
        assertEq(bytes32(err), bytes32(StreamChannels.InsufficientGas.selector), "with InsufficientGas");
        assertEq(_claimed(id), 0, "nothing recorded");
        // With enough gas the burner gets its full allowance, fails, and is credited.
        (ok,) = address(sc).call{gas: 300_000}(data);
        assertTrue(ok, "claim with enough gas succeeds");
        assertEq(sc.withdrawable(address(burner)), 1 ether, "credited");
    }

    /// @dev Sweeps the submitter's gas limit over `data` (a call that pays `recipient` `amount`): at every
    ///      limit the call either reverts (nothing recorded) or pushes the money, never credits it.
    function _sweepNeverCredits(bytes memory data, address recipient, uint256 amount) internal {
        uint256 paidAt;
        for (uint256 g = 30_000; g <= 260_000; g += 1_000) {
            uint256 before = recipient.balance;
            (bool ok,) = address(sc).call{gas: g}(data);
            assertEq(sc.withdrawable(recipient), 0, "a starved push is never turned into a credit");
            if (ok) {
                assertEq(recipient.balance, before + amount, "a call that succeeds pushed the money");
                paidAt = g;
                break;
            }
        }
        assertTrue(paidAt != 0, "with enough gas the push succeeds");
        assertLe(paidAt, 200_000, "and enough is not much");
    }

    function test_pay_gasSweep_claimNeverCreditsAnHonestRecipient() public {
        GasCheckingRecipient r = new GasCheckingRecipient();
        vm.prank(payer);
        uint256 id = sc.open{value: 1 ether}(address(r), period);
        _sweepNeverCredits(
            abi.encodeCall(StreamChannels.claim, (id, 1 ether, _voucher(PAYER_KEY, id, 1 ether))), address(r), 1 ether
        );
        assertEq(r.received(), 1 ether, "the recipient's own receive ran with its full allowance");
    }

    function test_pay_gasSweep_claimBatchNeverCreditsAnHonestRecipient() public {
        GasCheckingRecipient r = new GasCheckingRecipient();
        uint256[] memory ids = new uint256[](2);
        uint256[] memory amounts = new uint256[](2);
        bytes[] memory sigs = new bytes[](2);
        for (uint256 i; i < 2; ++i) {
            vm.prank(payer);
            ids[i] = sc.open{value: 1 ether}(address(r), period);
            amounts[i] = 0.5 ether;
            sigs[i] = _voucher(PAYER_KEY, ids[i], 0.5 ether);
        }
        _sweepNeverCredits(abi.encodeCall(StreamChannels.claimBatch, (ids, amounts, sigs)), address(r), 1 ether);
    }

    function test_pay_gasSweep_finalizeCloseNeverCreditsAnHonestPayer() public {
        GasCheckingRecipient r = new GasCheckingRecipient();
        vm.deal(address(r), 1 ether);
        uint256 id = r.open{value: 1 ether}(sc, PAYEE, period);
        r.startClose(sc, id);
        vm.warp(block.timestamp + period);
        _sweepNeverCredits(abi.encodeCall(StreamChannels.finalizeClose, (id)), address(r), 1 ether);
    }

    function test_withdraw_reverts() public {
        vm.prank(PAYEE);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.NothingToWithdraw.selector, PAYEE));
        sc.withdraw(PAYEE);
        RejectingPayee rejecting = new RejectingPayee();
        vm.prank(payer);
        uint256 id = sc.open{value: 1 ether}(address(rejecting), period);
        sc.claim(id, 1 ether, _voucher(PAYER_KEY, id, 1 ether));
        vm.expectRevert(StreamChannels.InvalidRecipient.selector);
        rejecting.withdrawTo(sc, address(0));
        // Withdrawing to itself fails (it rejects ETH): the credit stays.
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.TransferFailed.selector, address(rejecting), 1 ether));
        rejecting.withdrawTo(sc, address(rejecting));
        assertEq(sc.withdrawable(address(rejecting)), 1 ether, "credit kept after a failed withdrawal");
    }

    function testFuzz_claim_paysExactDifference(uint256 deposit, uint256 first, uint256 second) public {
        deposit = bound(deposit, 1, 500 ether);
        first = bound(first, 0, deposit);
        second = bound(second, 0, deposit);
        uint256 id = _open(deposit);
        sc.claim(id, first, _voucher(PAYER_KEY, id, first));
        sc.claim(id, second, _voucher(PAYER_KEY, id, second));
        uint256 top = first > second ? first : second;
        assertEq(PAYEE.balance, top, "payee gets the highest voucher, once");
        assertEq(_claimed(id), top, "claimed");
        assertEq(address(sc).balance, deposit - top, "rest locked");
    }

    function testFuzz_claim_aboveDepositReverts(uint256 deposit, uint256 amount) public {
        deposit = bound(deposit, 0, 500 ether);
        amount = bound(amount, deposit + 1, type(uint256).max);
        uint256 id = _open(deposit);
        bytes memory sig = _voucher(PAYER_KEY, id, amount);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.AmountExceedsDeposit.selector, id, amount, deposit));
        sc.claim(id, amount, sig);
    }

    function testFuzz_claim_foreignSignerReverts(uint256 key, uint256 amount) public {
        key = bound(key, 1, SECP256K1_N - 1);
        vm.assume(key != PAYER_KEY);
        uint256 id = _open(3 ether);
        amount = bound(amount, 0, 3 ether);
        bytes memory forged = _voucher(key, id, amount);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.SignerNotPayer.selector, id, vm.addr(key)));
        sc.claim(id, amount, forged);
    }

    /*//////////////////////////////////////////////////////////////
                              CLAIM BATCH
    //////////////////////////////////////////////////////////////*/

    function test_claimBatch_paysEveryChannel() public {
        address payee2 = address(0xD00D);
        uint256 a = _open(1 ether);
        uint256 b = _open(2 ether);
        vm.prank(payer);
        uint256 c = sc.open{value: 3 ether}(payee2, period);
        uint256[] memory ids = new uint256[](3);
        uint256[] memory amounts = new uint256[](3);
        bytes[] memory sigs = new bytes[](3);
        (ids[0], ids[1], ids[2]) = (a, b, c);
        (amounts[0], amounts[1], amounts[2]) = (1 ether, 1.5 ether, 2 ether);
        for (uint256 i; i < 3; i++) {
            sigs[i] = _voucher(PAYER_KEY, ids[i], amounts[i]);
        }
        sc.claimBatch(ids, amounts, sigs);
        assertEq(PAYEE.balance, 2.5 ether, "payee of a and b");
        assertEq(payee2.balance, 2 ether, "payee of c");
        assertEq(address(sc).balance, 1.5 ether, "rest");
    }

    function test_claimBatch_duplicatesNeverPayTwice() public {
        uint256 id = _open(5 ether);
        uint256[] memory ids = new uint256[](4);
        uint256[] memory amounts = new uint256[](4);
        bytes[] memory sigs = new bytes[](4);
        uint256[4] memory cumulative = [uint256(2 ether), 2 ether, 1 ether, 3 ether];
        for (uint256 i; i < 4; i++) {
            ids[i] = id;
            amounts[i] = cumulative[i];
            sigs[i] = _voucher(PAYER_KEY, id, cumulative[i]);
        }
        sc.claimBatch(ids, amounts, sigs);
        assertEq(PAYEE.balance, 3 ether, "the highest voucher, paid once");
        assertEq(_claimed(id), 3 ether, "claimed");
    }

    /// @dev Batch arrays for `ids` with one cumulative amount each, signed by `keys`.
    function _batch(uint256[] memory ids, uint256[] memory amounts, uint256[] memory keys)
        internal
        view
        returns (bytes[] memory sigs)
    {
        sigs = new bytes[](ids.length);
        for (uint256 i; i < ids.length; i++) {
            sigs[i] = _voucher(keys[i], ids[i], amounts[i]);
        }
    }

    function test_claimBatch_skipsInvalidVoucherAndPaysTheRest() public {
        uint256 a = _open(1 ether);
        uint256 b = _open(1 ether);
        uint256[] memory ids = new uint256[](3);
        uint256[] memory amounts = new uint256[](3);
        uint256[] memory keys = new uint256[](3);
        (ids[0], ids[1], ids[2]) = (a, b, 99);
        (amounts[0], amounts[1], amounts[2]) = (1 ether, 1 ether, 0);
        (keys[0], keys[1], keys[2]) = (PAYER_KEY, OTHER_KEY, PAYER_KEY); // b forged, 99 unknown
        bytes[] memory sigs = _batch(ids, amounts, keys);
        vm.expectEmit(true, false, false, true, address(sc));
        emit StreamChannels.ClaimSkipped(b, StreamChannels.SignerNotPayer.selector);
        vm.expectEmit(true, false, false, true, address(sc));
        emit StreamChannels.ClaimSkipped(99, StreamChannels.ChannelNotFound.selector);
        sc.claimBatch(ids, amounts, sigs);
        assertEq(_claimed(a), 1 ether, "the valid voucher is paid");
        assertEq(_claimed(b), 0, "the forged one is not");
        assertEq(PAYEE.balance, 1 ether, "payee got exactly the valid voucher");
    }

    function test_claimBatch_skipsChannelsSettledFirst() public {
        uint256 finalized = _open(2 ether);
        uint256 released = _open(2 ether);
        uint256 live = _open(2 ether);
        uint256[] memory ids = new uint256[](3);
        uint256[] memory amounts = new uint256[](3);
        uint256[] memory keys = new uint256[](3);
        (ids[0], ids[1], ids[2]) = (finalized, released, live);
        (amounts[0], amounts[1], amounts[2]) = (1 ether, 1 ether, 1 ether);
        (keys[0], keys[1], keys[2]) = (PAYER_KEY, PAYER_KEY, PAYER_KEY);
        bytes[] memory sigs = _batch(ids, amounts, keys);
        // The payer's finalizeClose and the payee's release land before the batch.
        vm.prank(payer);
        sc.startClose(finalized);
        vm.warp(block.timestamp + period);
        sc.finalizeClose(finalized);
        vm.prank(PAYEE);
        sc.release(released);
        vm.expectEmit(true, false, false, true, address(sc));
        emit StreamChannels.ClaimSkipped(finalized, StreamChannels.ChannelAlreadySettled.selector);
        vm.expectEmit(true, false, false, true, address(sc));
        emit StreamChannels.ClaimSkipped(released, StreamChannels.ChannelAlreadySettled.selector);
        sc.claimBatch(ids, amounts, sigs);
        assertEq(PAYEE.balance, 1 ether, "the live channel is still paid");
        assertEq(_claimed(live), 1 ether, "claimed");
    }

    function test_claimBatch_skipsChannelPastItsChallengePeriod() public {
        uint256 closing = _open(2 ether);
        uint256 live = _open(2 ether);
        vm.prank(payer);
        sc.startClose(closing);
        vm.warp(block.timestamp + period); // == closesAt: claims are over, finalizeClose is valid
        (uint256[] memory ids, uint256[] memory amounts, bytes[] memory sigs) =
            _single(closing, 1 ether, _voucher(PAYER_KEY, closing, 1 ether));
        uint256[] memory ids2 = new uint256[](2);
        uint256[] memory amounts2 = new uint256[](2);
        bytes[] memory sigs2 = new bytes[](2);
        (ids2[0], amounts2[0], sigs2[0]) = (ids[0], amounts[0], sigs[0]);
        (ids2[1], amounts2[1], sigs2[1]) = (live, 1 ether, _voucher(PAYER_KEY, live, 1 ether));
        vm.expectEmit(true, false, false, true, address(sc));
        emit StreamChannels.ClaimSkipped(closing, StreamChannels.ClaimWindowClosed.selector);
        sc.claimBatch(ids2, amounts2, sigs2);
        assertEq(_claimed(closing), 0, "expired channel not paid");
        assertEq(_claimed(live), 1 ether, "live channel paid");
    }

    function test_claimBatch_rejectingOrGasBurningPayeeIsCreditedOthersPaid() public {
        RejectingPayee rejecting = new RejectingPayee();
        GasBurner burner = new GasBurner();
        vm.startPrank(payer);
        uint256 r = sc.open{value: 1 ether}(address(rejecting), period);
        uint256 g = sc.open{value: 1 ether}(address(burner), period);
        vm.stopPrank();
        uint256 honest = _open(1 ether);
        uint256[] memory ids = new uint256[](3);
        uint256[] memory amounts = new uint256[](3);
        uint256[] memory keys = new uint256[](3);
        (ids[0], ids[1], ids[2]) = (r, g, honest);
        (amounts[0], amounts[1], amounts[2]) = (0.5 ether, 0.25 ether, 0.75 ether);
        (keys[0], keys[1], keys[2]) = (PAYER_KEY, PAYER_KEY, PAYER_KEY);
        bytes[] memory sigs = _batch(ids, amounts, keys);
        uint256 gasBefore = gasleft();
        sc.claimBatch(ids, amounts, sigs);
        uint256 used = gasBefore - gasleft();
        assertEq(PAYEE.balance, 0.75 ether, "the honest payee is paid");
        assertEq(sc.withdrawable(address(rejecting)), 0.5 ether, "rejecting payee credited");
        assertEq(sc.withdrawable(address(burner)), 0.25 ether, "gas burner credited");
        // The burner can waste at most PAYOUT_GAS (plus the call's own cost) of the submitter's gas.
        assertLe(used, 3 * 30_000 + sc.PAYOUT_GAS() + 40_000, "gas burned by the payee is capped");
    }

    function testFuzz_claimBatch_skipsExactlyTheInvalid(uint256 seed, uint8 count) public {
        count = uint8(bound(count, 1, 10));
        uint256[] memory ids = new uint256[](count);
        uint256[] memory amounts = new uint256[](count);
        bytes[] memory sigs = new bytes[](count);
        uint256 expected;
        for (uint256 i; i < count; i++) {
            uint256 id = _open(1 ether);
            uint256 kind = uint256(keccak256(abi.encode(seed, i))) % 5;
            uint256 amount = uint256(keccak256(abi.encode(seed, i, "amount"))) % (1 ether + 1);
            uint256 key = PAYER_KEY;
            if (kind == 1) {
                vm.prank(PAYEE);
                sc.release(id); // settled first
            } else if (kind == 2) {
                key = OTHER_KEY; // forged
            } else if (kind == 3) {
                amount = 1 ether + 1; // above the deposit
            } else if (kind == 4) {
                id = 10_000 + i; // unknown
            } else {
                expected += amount;
            }
            (ids[i], amounts[i], sigs[i]) = (id, amount, _voucher(key, id, amount));
        }
        sc.claimBatch(ids, amounts, sigs);
        assertEq(PAYEE.balance, expected, "exactly the valid vouchers are paid");
    }

    function test_claimBatch_revertsOnLengthMismatch() public {
        uint256 id = _open(1 ether);
        (uint256[] memory ids,, bytes[] memory sigs) = _single(id, 1 ether, _voucher(PAYER_KEY, id, 1 ether));
        vm.expectRevert(StreamChannels.LengthMismatch.selector);
        sc.claimBatch(ids, new uint256[](2), sigs);
        vm.expectRevert(StreamChannels.LengthMismatch.selector);
        sc.claimBatch(ids, new uint256[](1), new bytes[](0));
    }

    function test_claimBatch_emptyIsANoOp() public {
        sc.claimBatch(new uint256[](0), new uint256[](0), new bytes[](0));
    }

    function testFuzz_claimBatch_matchesSingleClaims(uint256 seed, uint8 count) public {
        count = uint8(bound(count, 1, 12));
        uint256[] memory ids = new uint256[](count);
        uint256[] memory amounts = new uint256[](count);
        bytes[] memory sigs = new bytes[](count);
        uint256 expected;
        uint256 channels = bound(seed, 1, 4);
        uint256[] memory opened = new uint256[](channels);
        uint256[] memory best = new uint256[](channels);
        for (uint256 j; j < channels; j++) {
            opened[j] = _open(10 ether);
        }
        for (uint256 i; i < count; i++) {
            uint256 j = uint256(keccak256(abi.encode(seed, i))) % channels;
            uint256 amount = uint256(keccak256(abi.encode(seed, i, "amount"))) % (10 ether + 1);
            ids[i] = opened[j];
            amounts[i] = amount;
            sigs[i] = _voucher(PAYER_KEY, opened[j], amount);
            if (amount > best[j]) best[j] = amount;
        }
        for (uint256 j; j < channels; j++) {
            expected += best[j];
        }
        sc.claimBatch(ids, amounts, sigs);
        assertEq(PAYEE.balance, expected, "sum of each channel's highest voucher");
        assertEq(address(sc).balance, channels * 10 ether - expected, "rest");
    }

    /*//////////////////////////////////////////////////////////////
                             CLOSE / RELEASE
    //////////////////////////////////////////////////////////////*/

    function test_startClose_setsClosesAt() public {
        uint256 id = _open(1 ether);
        vm.expectEmit(true, false, false, true, address(sc));
        emit StreamChannels.CloseStarted(id, uint64(block.timestamp) + period);
        vm.prank(payer);
        sc.startClose(id);
        (,,,, uint64 closesAt,) = sc.channel(id);
        assertEq(uint256(closesAt), block.timestamp + period, "closesAt");
    }

    function test_startClose_revertsForAnyoneButPayer() public {
        uint256 id = _open(1 ether);
        vm.prank(PAYEE);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.NotPayer.selector, id, PAYEE));
        sc.startClose(id);
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.NotPayer.selector, id, STRANGER));
        sc.startClose(id);
    }

    function test_startClose_revertsWhenAlreadyClosing() public {
        uint256 id = _open(1 ether);
        vm.startPrank(payer);
        sc.startClose(id);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.AlreadyClosing.selector, id));
        sc.startClose(id);
        vm.stopPrank();
    }

    function test_startClose_revertsWhenSettled() public {
        uint256 id = _open(1 ether);
        vm.prank(PAYEE);
        sc.release(id);
        vm.prank(payer);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.ChannelAlreadySettled.selector, id));
        sc.startClose(id);
    }

    function test_startClose_hugePeriodSaturates() public {
        vm.prank(payer);
        uint256 id = sc.open{value: 1 ether}(PAYEE, type(uint64).max);
        vm.prank(payer);
        sc.startClose(id);
        (,,,, uint64 closesAt,) = sc.channel(id);
        assertEq(uint256(closesAt), type(uint64).max, "saturated");
    }

    function test_finalizeClose_revertsBeforeClosesAt() public {
        uint256 id = _open(1 ether);
        vm.prank(payer);
        sc.startClose(id);
        uint64 closesAt = uint64(block.timestamp) + period;
        vm.warp(closesAt - 1);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.ChallengePeriodActive.selector, id, closesAt));
        sc.finalizeClose(id);
    }

    function test_finalizeClose_revertsWhenNotClosing() public {
        uint256 id = _open(1 ether);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.NotClosing.selector, id));
        sc.finalizeClose(id);
    }

    function test_finalizeClose_revertsTwice() public {
        uint256 id = _open(1 ether);
        vm.prank(payer);
        sc.startClose(id);
        vm.warp(block.timestamp + period);
        sc.finalizeClose(id);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.ChannelAlreadySettled.selector, id));
        sc.finalizeClose(id);
    }

    function test_closeThenClaimInChallengePeriodPaysPayeeAndRefundsExact() public {
        uint256 id = _open(5 ether);
        uint256 payerBefore = payer.balance;
        vm.prank(payer);
        sc.startClose(id);
        vm.warp(block.timestamp + period - 1); // last second of the challenge period
        sc.claim(id, 1.25 ether, _voucher(PAYER_KEY, id, 1.25 ether));
        assertEq(PAYEE.balance, 1.25 ether, "payee claimed inside the challenge period");
        vm.warp(block.timestamp + 1);
        vm.expectEmit(true, true, false, true, address(sc));
        emit StreamChannels.ChannelSettled(id, payer, 3.75 ether, false);
        vm.prank(STRANGER); // anyone may finalise; the refund goes to the payer
        sc.finalizeClose(id);
        assertEq(payer.balance - payerBefore, 3.75 ether, "refund exact to the wei");
        assertEq(address(sc).balance, 0, "nothing left");
        assertTrue(_settled(id), "settled");
    }

    function test_release_refundsRestToPayer() public {
        uint256 id = _open(4 ether);
        sc.claim(id, 1 ether, _voucher(PAYER_KEY, id, 1 ether));
        uint256 payerBefore = payer.balance;
        vm.expectEmit(true, true, false, true, address(sc));
        emit StreamChannels.ChannelSettled(id, payer, 3 ether, true);
        vm.prank(PAYEE);
        sc.release(id);
        assertEq(payer.balance - payerBefore, 3 ether, "refund");
        assertTrue(_settled(id), "settled");
    }

    function test_release_revertsForAnyoneButPayee() public {
        uint256 id = _open(1 ether);
        vm.prank(payer);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.NotPayee.selector, id, payer));
        sc.release(id);
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.NotPayee.selector, id, STRANGER));
        sc.release(id);
    }

    function test_release_revertsWhenSettled() public {
        uint256 id = _open(1 ether);
        vm.startPrank(PAYEE);
        sc.release(id);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.ChannelAlreadySettled.selector, id));
        sc.release(id);
        vm.stopPrank();
    }

    function testFuzz_settle_refundIsExact(uint256 deposit, uint256 topUp, uint256 claimed, bool byPayee) public {
        deposit = bound(deposit, 0, 300 ether);
        topUp = bound(topUp, 0, 300 ether);
        claimed = bound(claimed, 0, deposit + topUp);
        uint256 id = _open(deposit);
        vm.prank(STRANGER);
        sc.topUp{value: topUp}(id);
        sc.claim(id, claimed, _voucher(PAYER_KEY, id, claimed));
        uint256 payerBefore = payer.balance;
        if (byPayee) {
            vm.prank(PAYEE);
            sc.release(id);
        } else {
            vm.prank(payer);
            sc.startClose(id);
            vm.warp(block.timestamp + period);
            sc.finalizeClose(id);
        }
        assertEq(payer.balance - payerBefore, deposit + topUp - claimed, "refund");
        assertEq(PAYEE.balance, claimed, "payee");
        assertEq(address(sc).balance, 0, "empty");
    }

    function testFuzz_startClose_closesAfterChallengePeriod(uint64 p, uint32 elapsed) public {
        p = uint64(bound(p, period, 365 days));
        vm.prank(payer);
        uint256 id = sc.open{value: 1 ether}(PAYEE, p);
        vm.prank(payer);
        sc.startClose(id);
        uint256 closesAt = block.timestamp + p;
        vm.warp(block.timestamp + elapsed);
        if (block.timestamp < closesAt) {
            vm.expectRevert(abi.encodeWithSelector(StreamChannels.ChallengePeriodActive.selector, id, closesAt));
        }
        sc.finalizeClose(id);
    }

    function test_boundary_claimsEndWhereFinalizeBegins() public {
        uint256 id = _open(3 ether);
        vm.prank(payer);
        sc.startClose(id);
        uint64 closesAt = uint64(block.timestamp) + period;
        vm.warp(closesAt - 1); // last second of the challenge period: claim yes, finalize no
        sc.claim(id, 1 ether, _voucher(PAYER_KEY, id, 1 ether));
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.ChallengePeriodActive.selector, id, closesAt));
        sc.finalizeClose(id);
        vm.warp(closesAt); // first second after it: finalize yes, claim no
        bytes memory sig = _voucher(PAYER_KEY, id, 2 ether);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.ClaimWindowClosed.selector, id, closesAt));
        sc.claim(id, 2 ether, sig);
        sc.finalizeClose(id);
        assertEq(PAYEE.balance, 1 ether, "only the claim inside the period was paid");
    }

    function testFuzz_boundary_exactlyOneOfClaimAndFinalizeIsValid(uint64 p, uint64 elapsed) public {
        p = uint64(bound(p, period, 30 days));
        elapsed = uint64(bound(elapsed, 0, 2 * uint256(p)));
        vm.prank(payer);
        uint256 id = sc.open{value: 1 ether}(PAYEE, p);
        vm.prank(payer);
        sc.startClose(id);
        vm.warp(block.timestamp + elapsed);
        // A zero voucher pays nothing and changes nothing: it only asks whether claims are still valid.
        (bool claimOk,) = address(sc).call(abi.encodeCall(StreamChannels.claim, (id, 0, _voucher(PAYER_KEY, id, 0))));
        (bool finalizeOk,) = address(sc).call(abi.encodeCall(StreamChannels.finalizeClose, (id)));
        assertTrue(claimOk != finalizeOk, "exactly one of claim and finalizeClose is valid");
        assertEq(claimOk, elapsed < p, "claims valid exactly while block.timestamp < closesAt");
    }

    function test_release_payerRejectingRefundIsCredited() public {
        RejectingPayer rp = new RejectingPayer();
        uint256 id = rp.open{value: 2 ether}(sc, PAYEE, period);
        vm.prank(PAYEE);
        sc.release(id); // a payer contract that refuses its refund cannot block the payee
        assertTrue(_settled(id), "released");
        assertEq(sc.withdrawable(address(rp)), 2 ether, "refund credited to the payer");
        rp.withdrawTo(sc, STRANGER);
        assertEq(address(sc).balance, 0, "nothing left after the pull");
    }

    function test_finalizeClose_gasBurningPayerIsCredited() public {
        GasBurner burner = new GasBurner();
        // The burner cannot call open itself; vm.prank opens on its behalf.
        vm.deal(address(burner), 1 ether);
        vm.prank(address(burner));
        uint256 id = sc.open{value: 1 ether}(PAYEE, period);
        vm.prank(address(burner));
        sc.startClose(id);
        vm.warp(block.timestamp + period);
        sc.finalizeClose(id);
        assertEq(sc.withdrawable(address(burner)), 1 ether, "refund credited");
    }

    /*//////////////////////////////////////////////////////////////
                                 DIGEST
    //////////////////////////////////////////////////////////////*/

    function test_voucherDigest_isEip712() public view {
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("StreamChannels"),
                keccak256("1"),
                block.chainid,
                address(sc)
            )
        );
        bytes32 structHash =
            keccak256(abi.encode(keccak256("Voucher(uint256 channelId,uint256 cumulativeAmount)"), 7, 123));
        assertEq(sc.domainSeparator(), domain, "domain separator");
        assertEq(sc.voucherDigest(7, 123), keccak256(abi.encodePacked("\x19\x01", domain, structHash)), "digest");
    }

    /*//////////////////////////////////////////////////////////////
                               REENTRANCY
    //////////////////////////////////////////////////////////////*/

    function _reentrantChannel(ReentrantPayee.Mode mode) internal returns (ReentrantPayee evil, uint256 id) {
        evil = new ReentrantPayee(sc);
        vm.prank(payer);
        id = sc.open{value: 5 ether}(address(evil), period);
        _open(20 ether); // other money the attacker would love to drain
        evil.arm(mode, id, 2 ether, _voucher(PAYER_KEY, id, 2 ether));
    }

    function _assertReentryBlocked(ReentrantPayee evil) internal view {
        assertEq(evil.attempts(), 1, "payee tried to re-enter");
        assertEq(evil.reentrySucceeded(), false, "reentry failed");
        assertEq(
            bytes32(evil.reentryError()),
            bytes32(NonReentrant.ReentrancyGuardReentrantCall.selector),
            "blocked by the guard"
        );
    }

    function test_reentrancy_claimDuringClaimIsBlocked() public {
        (ReentrantPayee evil, uint256 id) = _reentrantChannel(ReentrantPayee.Mode.Claim);
        sc.claim(id, 2 ether, evil.signature());
        _assertReentryBlocked(evil);
        assertEq(evil.received(), 2 ether, "paid once");
        assertEq(address(sc).balance, 23 ether, "nothing drained");
    }

    function test_reentrancy_claimBatchDuringBatchIsBlocked() public {
        (ReentrantPayee evil, uint256 id) = _reentrantChannel(ReentrantPayee.Mode.ClaimBatch);
        (uint256[] memory ids, uint256[] memory amounts, bytes[] memory sigs) = _single(id, 2 ether, evil.signature());
        sc.claimBatch(ids, amounts, sigs);
        _assertReentryBlocked(evil);
        assertEq(evil.received(), 2 ether, "paid once");
    }

    function test_reentrancy_releaseDuringClaimIsBlocked() public {
        (ReentrantPayee evil, uint256 id) = _reentrantChannel(ReentrantPayee.Mode.Release);
        sc.claim(id, 2 ether, evil.signature());
        _assertReentryBlocked(evil);
        assertTrue(!_settled(id), "channel still open");
        evil.arm(ReentrantPayee.Mode.None, id, 0, "");
        evil.release(id);
        assertEq(address(sc).balance, 20 ether, "refund of 3 ether went to the payer only");
    }

    function test_reentrancy_finalizeDuringRefundIsBlocked() public {
        ReentrantPayer evilPayer = new ReentrantPayer(sc);
        evilPayer.open{value: 4 ether}(PAYEE, period);
        _open(20 ether);
        evilPayer.startClose();
        vm.warp(block.timestamp + period);
        sc.finalizeClose(evilPayer.channelId());
        assertEq(evilPayer.received(), 4 ether, "refunded once");
        assertEq(evilPayer.reentrySucceeded(), false, "reentry failed");
        assertEq(
            bytes32(evilPayer.reentryError()),
            bytes32(NonReentrant.ReentrancyGuardReentrantCall.selector),
            "blocked by the guard"
        );
        assertEq(address(sc).balance, 20 ether, "other channel untouched");
    }
}
