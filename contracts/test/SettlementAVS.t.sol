// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {SettlementAVS} from "../src/SettlementAVS.sol";

/// @title SettlementAVSTest
/// @notice Bonding, exit delay, two-thirds stake quorum over a per-epoch snapshot, attestation of ended
///         epochs only, equivocation slashing with a bounty the equivocator cannot profit from.
contract SettlementAVSTest is Test {
    SettlementAVS internal avs;
    uint256 internal constant EPOCH = 10; // blocks per epoch; operators register at block 1, in epoch 0

    uint256[4] internal keys = [uint256(0x1001), 0x1002, 0x1003, 0x1004];
    address[4] internal ops;
    address internal constant REPORTER = address(0x4E90);
    bytes32 internal constant ROOT = keccak256("epoch 1 settlement");
    bytes32 internal constant OTHER_ROOT = keccak256("a different settlement");

    function setUp() public {
        avs = new SettlementAVS(EPOCH);
        for (uint256 i; i < 4; i++) {
            ops[i] = vm.addr(keys[i]);
            vm.deal(ops[i], 100 ether);
        }
        // Sort by address so the helpers can pass signers in ascending order.
        for (uint256 i; i < 4; i++) {
            for (uint256 j = i + 1; j < 4; j++) {
                if (ops[j] < ops[i]) {
                    (ops[i], ops[j]) = (ops[j], ops[i]);
                    (keys[i], keys[j]) = (keys[j], keys[i]);
                }
            }
        }
    }

    /*//////////////////////////////////////////////////////////////
                                HELPERS
    //////////////////////////////////////////////////////////////*/

    function _register(uint256 i, uint256 stake) internal {
        vm.prank(ops[i]);
        avs.register{value: stake}();
    }

    /// @dev Moves to the first block after `epoch`, so it can be attested.
    function _end(uint256 epoch) internal {
        uint256 next = (epoch + 1) * EPOCH;
        if (block.number < next) vm.roll(next);
    }

    /// @dev Signatures of `root` for `epoch` by the operators whose bit is set in `mask` (ascending).
    function _sigs(uint256 epoch, bytes32 root, uint256 mask)
        internal
        view
        returns (address[] memory signers, bytes[] memory sigs)
    {
        uint256 count;
        for (uint256 i; i < 4; i++) {
            if ((mask >> i) & 1 != 0) count++;
        }
        signers = new address[](count);
        sigs = new bytes[](count);
        uint256 k;
        bytes32 digest = avs.attestationDigest(epoch, root);
        for (uint256 i; i < 4; i++) {
            if ((mask >> i) & 1 == 0) continue;
            signers[k] = ops[i];
            sigs[k] = signDigest(keys[i], digest);
            k++;
        }
    }

    /*//////////////////////////////////////////////////////////////
                                 BONDING
    //////////////////////////////////////////////////////////////*/

    function test_register_bondsStake() public {
        _register(0, 2 ether);
        assertEq(avs.stakeOf(ops[0]), 2 ether, "stake");
        assertEq(avs.totalActiveStake(), 2 ether, "total");
        _register(0, 0.5 ether); // top-up below MIN_STAKE is fine once bonded
        assertEq(avs.stakeOf(ops[0]), 2.5 ether, "increased");
    }

    function test_register_revertsBelowMinStake() public {
        uint256 min = avs.MIN_STAKE();
        vm.prank(ops[0]);
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.StakeTooLow.selector, min - 1, min));
        avs.register{value: min - 1}();
    }

    function test_exit_waitsForDelayThenPaysBack() public {
        _register(0, 3 ether);
        uint256 before = ops[0].balance;
        vm.prank(ops[0]);
        avs.requestExit();
        assertEq(avs.totalActiveStake(), 0, "exiting stake stops counting");
        assertEq(avs.stakeOf(ops[0]), 3 ether, "but stays bonded");
        uint64 exitAt = uint64(block.timestamp) + avs.EXIT_DELAY();
        vm.warp(exitAt - 1);
        vm.prank(ops[0]);
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.ExitDelayActive.selector, ops[0], exitAt));
        avs.withdrawStake();
        vm.warp(exitAt);
        vm.prank(ops[0]);
        avs.withdrawStake();
        assertEq(ops[0].balance - before, 3 ether, "bond returned");
        assertEq(avs.stakeOf(ops[0]), 0, "gone");
    }

    function test_exit_reverts() public {
        vm.prank(ops[0]);
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.NotOperator.selector, ops[0]));
        avs.requestExit();
        _register(0, 1 ether);
        vm.prank(ops[0]);
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.ExitNotRequested.selector, ops[0]));
        avs.withdrawStake();
        vm.startPrank(ops[0]);
        avs.requestExit();
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.OperatorExiting.selector, ops[0]));
        avs.requestExit();
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.OperatorExiting.selector, ops[0]));
        avs.register{value: 1 ether}();
        vm.stopPrank();
    }

    /*//////////////////////////////////////////////////////////////
                              ATTESTATION
    //////////////////////////////////////////////////////////////*/

    function test_attest_finalisesWithTwoThirds() public {
        for (uint256 i; i < 3; i++) {
            _register(i, 1 ether);
        }
        (address[] memory signers, bytes[] memory sigs) = _sigs(1, ROOT, 0x3); // 2 of 3 equal stakes
        _end(1);
        vm.expectEmit(true, false, false, true, address(avs));
        emit SettlementAVS.EpochFinalized(1, ROOT, 2 ether, 3 ether);
        avs.attest(1, ROOT, signers, sigs);
        assertEq(avs.finalizedRoot(1), ROOT, "final");
    }

    function test_attest_revertsBelowTwoThirds() public {
        _register(0, 1 ether);
        _register(1, 1 ether);
        _register(2, 2 ether);
        (address[] memory signers, bytes[] memory sigs) = _sigs(1, ROOT, 0x3); // 2 of 4 ether
        _end(1);
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.QuorumNotReached.selector, 2 ether, 4 ether));
        avs.attest(1, ROOT, signers, sigs);
    }

    function test_attest_revertsWithNoSigners() public {
        _end(1);
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.QuorumNotReached.selector, 0, 0));
        avs.attest(1, ROOT, new address[](0), new bytes[](0));
    }

    function test_attest_revertsOnDuplicateOrUnsortedSigners() public {
        _register(0, 1 ether);
        _register(1, 1 ether);
        (address[] memory signers, bytes[] memory sigs) = _sigs(1, ROOT, 0x3);
        _end(1);
        (signers[0], signers[1]) = (signers[1], signers[0]);
        (sigs[0], sigs[1]) = (sigs[1], sigs[0]);
        vm.expectRevert(SettlementAVS.OperatorsNotSorted.selector);
        avs.attest(1, ROOT, signers, sigs);
        signers[0] = signers[1];
        sigs[0] = sigs[1];
        vm.expectRevert(SettlementAVS.OperatorsNotSorted.selector);
        avs.attest(1, ROOT, signers, sigs);
    }

    function test_attest_revertsOnWrongSignature() public {
        _register(0, 1 ether);
        (address[] memory signers,) = _sigs(1, ROOT, 0x1);
        bytes[] memory sigs = new bytes[](1);
        sigs[0] = signDigest(keys[0], avs.attestationDigest(1, OTHER_ROOT));
        _end(1);
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.InvalidOperatorSignature.selector, ops[0]));
        avs.attest(1, ROOT, signers, sigs);
    }

    function test_attest_revertsForInactiveOperator() public {
        _register(0, 1 ether);
        _register(1, 1 ether);
        vm.prank(ops[1]);
        avs.requestExit();
        (address[] memory signers, bytes[] memory sigs) = _sigs(1, ROOT, 0x3);
        _end(1);
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.NotActiveOperator.selector, ops[1]));
        avs.attest(1, ROOT, signers, sigs);
    }

    function test_attest_revertsOnceFinalisedAndOnEmptyRoot() public {
        _register(0, 1 ether);
        (address[] memory signers, bytes[] memory sigs) = _sigs(1, ROOT, 0x1);
        _end(2);
        avs.attest(1, ROOT, signers, sigs);
        (signers, sigs) = _sigs(1, OTHER_ROOT, 0x1);
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.EpochAlreadyFinalized.selector, 1, ROOT));
        avs.attest(1, OTHER_ROOT, signers, sigs);
        vm.expectRevert(SettlementAVS.EmptyRoot.selector);
        avs.attest(2, bytes32(0), signers, sigs);
        vm.expectRevert(SettlementAVS.LengthMismatch.selector);
        avs.attest(2, ROOT, signers, new bytes[](0));
    }

    function testFuzz_attest_quorumIsTwoThirdsOfStake(uint96[4] memory stakes, uint8 mask) public {
        uint256 total;
        uint256 signed;
        mask = uint8(bound(mask, 1, 15));
        for (uint256 i; i < 4; i++) {
            uint256 s = bound(stakes[i], 1 ether, 50 ether);
            _register(i, s);
            total += s;
            if ((mask >> i) & 1 != 0) signed += s;
        }
        (address[] memory signers, bytes[] memory sigs) = _sigs(7, ROOT, mask);
        _end(7);
        if (signed * 3 < total * 2) {
            vm.expectRevert(abi.encodeWithSelector(SettlementAVS.QuorumNotReached.selector, signed, total));
            avs.attest(7, ROOT, signers, sigs);
        } else {
            avs.attest(7, ROOT, signers, sigs);
            assertEq(avs.finalizedRoot(7), ROOT, "finalised");
        }
    }

    /*//////////////////////////////////////////////////////////////
                                SLASHING
    //////////////////////////////////////////////////////////////*/

    function test_slash_equivocationPaysBountyAndBurnsRest() public {
        _register(0, 4 ether);
        _register(1, 2 ether);
        bytes memory sigA = signDigest(keys[0], avs.attestationDigest(3, ROOT));
        bytes memory sigB = signDigest(keys[0], avs.attestationDigest(3, OTHER_ROOT));
        uint256 bounty = avs.SLASH_BOUNTY();
        vm.expectEmit(true, true, true, true, address(avs));
        emit SettlementAVS.OperatorSlashedForEquivocation(ops[0], 3, REPORTER, 4 ether, bounty);
        vm.prank(REPORTER);
        avs.slashEquivocation(ops[0], 3, ROOT, sigA, OTHER_ROOT, sigB);
        assertEq(REPORTER.balance, bounty, "the fixed bounty to the reporter");
        assertEq(avs.burned(), 4 ether - bounty, "the rest burned");
        assertEq(avs.stakeOf(ops[0]), 0, "bond gone");
        assertEq(avs.totalActiveStake(), 2 ether, "quorum base shrinks");
        vm.prank(ops[0]);
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.OperatorSlashed.selector, ops[0]));
        avs.register{value: 1 ether}();
    }

    function test_slash_exitingOperatorIsStillSlashable() public {
        _register(0, 2 ether);
        vm.prank(ops[0]);
        avs.requestExit();
        bytes memory sigA = signDigest(keys[0], avs.attestationDigest(3, ROOT));
        bytes memory sigB = signDigest(keys[0], avs.attestationDigest(3, OTHER_ROOT));
        vm.prank(REPORTER);
        avs.slashEquivocation(ops[0], 3, ROOT, sigA, OTHER_ROOT, sigB);
        assertEq(REPORTER.balance, avs.SLASH_BOUNTY(), "bounty");
        vm.warp(block.timestamp + avs.EXIT_DELAY());
        vm.prank(ops[0]);
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.NotOperator.selector, ops[0]));
        avs.withdrawStake();
    }

    function test_slash_revertsWithoutEquivocation() public {
        _register(0, 2 ether);
        bytes memory sigA = signDigest(keys[0], avs.attestationDigest(3, ROOT));
        bytes memory sigOtherEpoch = signDigest(keys[0], avs.attestationDigest(4, OTHER_ROOT));
        bytes memory sigByOther = signDigest(keys[1], avs.attestationDigest(3, OTHER_ROOT));
        vm.expectRevert(SettlementAVS.NotEquivocation.selector);
        avs.slashEquivocation(ops[0], 3, ROOT, sigA, ROOT, sigA);
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.InvalidOperatorSignature.selector, ops[0]));
        avs.slashEquivocation(ops[0], 3, ROOT, sigA, OTHER_ROOT, sigOtherEpoch);
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.InvalidOperatorSignature.selector, ops[0]));
        avs.slashEquivocation(ops[0], 3, ROOT, sigA, OTHER_ROOT, sigByOther);
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.NotOperator.selector, ops[2]));
        avs.slashEquivocation(ops[2], 3, ROOT, sigA, OTHER_ROOT, sigByOther);
    }

    function test_slash_rejectsHighS() public {
        _register(0, 2 ether);
        bytes memory sigA = highS(keys[0], avs.attestationDigest(3, ROOT));
        bytes memory sigB = signDigest(keys[0], avs.attestationDigest(3, OTHER_ROOT));
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.InvalidOperatorSignature.selector, ops[0]));
        avs.slashEquivocation(ops[0], 3, ROOT, sigA, OTHER_ROOT, sigB);
    }

    /*//////////////////////////////////////////////////////////////
                     EPOCH TIMING AND STAKE SNAPSHOT
    //////////////////////////////////////////////////////////////*/

    function test_constructor_revertsOnZeroEpochLength() public {
        vm.expectRevert(SettlementAVS.InvalidEpochLength.selector);
        new SettlementAVS(0);
    }

    function test_attest_revertsForEpochNotEnded() public {
        for (uint256 i; i < 4; i++) {
            _register(i, 1 ether);
        }
        vm.roll(3 * EPOCH + 4); // inside epoch 3
        (address[] memory signers, bytes[] memory sigs) = _sigs(3, ROOT, 0xF);
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.EpochNotEnded.selector, 3, 3));
        avs.attest(3, ROOT, signers, sigs);
        // A future epoch: the full stake cannot finalise a root for payments that have not happened.
        (signers, sigs) = _sigs(1_000, ROOT, 0xF);
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.EpochNotEnded.selector, 1_000, 3));
        avs.attest(1_000, ROOT, signers, sigs);
        vm.roll(4 * EPOCH); // first block of epoch 4: epoch 3 has ended
        (signers, sigs) = _sigs(3, ROOT, 0xF);
        avs.attest(3, ROOT, signers, sigs);
        assertEq(avs.finalizedRoot(3), ROOT, "finalised once ended");
    }

    function testFuzz_attest_onlyEndedEpochs(uint256 epoch, uint256 height) public {
        for (uint256 i; i < 4; i++) {
            _register(i, 1 ether);
        }
        epoch = bound(epoch, 1, 1_000);
        height = bound(height, EPOCH, 1_100 * EPOCH);
        vm.roll(height);
        (address[] memory signers, bytes[] memory sigs) = _sigs(epoch, ROOT, 0xF);
        if (height < (epoch + 1) * EPOCH) {
            vm.expectRevert(abi.encodeWithSelector(SettlementAVS.EpochNotEnded.selector, epoch, height / EPOCH));
        }
        avs.attest(epoch, ROOT, signers, sigs);
    }

    function test_attest_stakeBoughtInDuringOrAfterEpochHasNoSay() public {
        _register(0, 1 ether);
        _register(1, 1 ether);
        _register(2, 1 ether);
        vm.roll(2 * EPOCH + 3); // inside epoch 2
        _register(3, 100 ether); // a whale buys in mid-epoch
        _end(2);
        (address[] memory signers, bytes[] memory sigs) = _sigs(2, OTHER_ROOT, 0x8);
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.NoStakeForEpoch.selector, ops[3], 2));
        avs.attest(2, OTHER_ROOT, signers, sigs);
        assertEq(avs.epochStake(2), 3 ether, "the whale is not in epoch 2's denominator either");
        assertEq(avs.signingStake(ops[3], 2), 0, "nor can it sign for it");
        // The operators that were bonded through the epoch finalise it as usual.
        (signers, sigs) = _sigs(2, ROOT, 0x3);
        avs.attest(2, ROOT, signers, sigs);
        assertEq(avs.finalizedRoot(2), ROOT, "finalised by the stake at risk during the epoch");
        // From the next epoch on the whale counts.
        _end(3);
        assertEq(avs.epochStake(3), 103 ether, "counted from epoch 3");
        assertEq(avs.signingStake(ops[3], 3), 100 ether, "and signs for it");
    }

    function test_attest_topUpSitsOutEpochsAlreadyStarted() public {
        _register(0, 1 ether);
        _register(1, 1 ether);
        vm.roll(EPOCH + 1);
        _register(0, 5 ether); // top-up inside epoch 1
        _end(1);
        assertEq(avs.signingStake(ops[0], 1), 0, "its bond changed during epoch 1");
        assertEq(avs.signingStake(ops[1], 1), 1 ether, "the other one still counts");
        assertEq(avs.epochStake(1), 2 ether, "epoch 1's denominator is the stake before it began");
    }

    function test_attest_exitAfterEpochCannotShrinkItsQuorum() public {
        for (uint256 i; i < 4; i++) {
            _register(i, 1 ether);
        }
        _end(1);
        // Two operators walk out after epoch 1; the other two are only half of epoch 1's stake.
        vm.prank(ops[2]);
        avs.requestExit();
        vm.prank(ops[3]);
        avs.requestExit();
        assertEq(avs.totalActiveStake(), 2 ether, "active stake now");
        (address[] memory signers, bytes[] memory sigs) = _sigs(1, OTHER_ROOT, 0x3);
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.QuorumNotReached.selector, 2 ether, 4 ether));
        avs.attest(1, OTHER_ROOT, signers, sigs);
        // An exiting operator's signature no longer counts, for any epoch.
        (signers, sigs) = _sigs(1, OTHER_ROOT, 0xF);
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.NotActiveOperator.selector, ops[2]));
        avs.attest(1, OTHER_ROOT, signers, sigs);
    }

    function test_views_revertForEpochNotEnded() public {
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.EpochNotEnded.selector, 0, 0));
        avs.epochStake(0);
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.EpochNotEnded.selector, 0, 0));
        avs.signingStake(ops[0], 0);
        assertEq(avs.currentEpoch(), 0, "block 1 is in epoch 0");
    }

    /*//////////////////////////////////////////////////////////////
                      SLASHING: BOUNTY AND EVIDENCE
    //////////////////////////////////////////////////////////////*/

    function test_slash_selfReportRecoversOnlyTheBounty() public {
        _register(0, 10 ether);
        address secondAddress = address(0x5E1F); // the equivocator's own other account
        bytes memory sigA = signDigest(keys[0], avs.attestationDigest(3, ROOT));
        bytes memory sigB = signDigest(keys[0], avs.attestationDigest(3, OTHER_ROOT));
        vm.prank(secondAddress);
        avs.slashEquivocation(ops[0], 3, ROOT, sigA, OTHER_ROOT, sigB);
        assertEq(secondAddress.balance, avs.SLASH_BOUNTY(), "self-reporting recovers only the bounty");
        assertEq(avs.burned(), 10 ether - avs.SLASH_BOUNTY(), "the rest of the bond is gone");
    }

    function testFuzz_slash_selfReportAlwaysLosesAtLeast99Percent(uint256 stake) public {
        stake = bound(stake, avs.MIN_STAKE(), 90 ether);
        _register(0, stake);
        bytes memory sigA = signDigest(keys[0], avs.attestationDigest(5, ROOT));
        bytes memory sigB = signDigest(keys[0], avs.attestationDigest(5, OTHER_ROOT));
        uint256 before = ops[0].balance;
        vm.prank(ops[0]); // reporting itself from its own address
        avs.slashEquivocation(ops[0], 5, ROOT, sigA, OTHER_ROOT, sigB);
        uint256 recovered = ops[0].balance - before;
        assertLe(recovered * 100, stake, "recovered at most 1 % of the bond");
        assertEq(avs.burned(), stake - recovered, "everything else burned");
    }

    function test_slash_evidenceUsableForTheWholeExitDelay() public {
        assertTrue(avs.EXIT_DELAY() >= avs.EVIDENCE_WINDOW(), "exit delay covers the evidence window");
        _register(0, 2 ether);
        _register(1, 2 ether);
        (address[] memory signers, bytes[] memory sigs) = _sigs(1, ROOT, 0x3);
        _end(1);
        avs.attest(1, ROOT, signers, sigs);
        // op0 signed another root for epoch 1 too, and walks out right after the attestation.
        bytes memory sigB = signDigest(keys[0], avs.attestationDigest(1, OTHER_ROOT));
        vm.prank(ops[0]);
        avs.requestExit();
        vm.prank(ops[1]);
        avs.requestExit();
        uint64 exitAt = uint64(block.timestamp) + avs.EXIT_DELAY();
        vm.warp(exitAt - 1); // the last second of the window: the evidence still works
        vm.prank(ops[0]);
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.ExitDelayActive.selector, ops[0], exitAt));
        avs.withdrawStake();
        vm.prank(REPORTER);
        avs.slashEquivocation(ops[0], 1, ROOT, sigs[0], OTHER_ROOT, sigB);
        assertEq(avs.stakeOf(ops[0]), 0, "slashed before it could leave");
        vm.warp(exitAt); // the honest one leaves at exitAt
        vm.prank(ops[1]);
        avs.withdrawStake();
        assertEq(avs.stakeOf(ops[1]), 0, "withdrawn");
    }

    function testFuzz_slash_evidenceWorksAnyTimeBeforeWithdrawal(uint256 elapsed) public {
        _register(0, 2 ether);
        vm.prank(ops[0]);
        avs.requestExit();
        elapsed = bound(elapsed, 0, 2 * uint256(avs.EXIT_DELAY()));
        vm.warp(block.timestamp + elapsed);
        if (elapsed >= avs.EVIDENCE_WINDOW()) {
            // After the window the operator may leave (and then there is nothing left to slash).
            vm.prank(ops[0]);
            avs.withdrawStake();
            return;
        }
        vm.prank(ops[0]);
        vm.expectRevert();
        avs.withdrawStake(); // inside the evidence window the bond cannot leave ...
        bytes memory sigA = signDigest(keys[0], avs.attestationDigest(9, ROOT));
        bytes memory sigB = signDigest(keys[0], avs.attestationDigest(9, OTHER_ROOT));
        vm.prank(REPORTER);
        avs.slashEquivocation(ops[0], 9, ROOT, sigA, OTHER_ROOT, sigB); // ... and the evidence takes it
        assertEq(avs.stakeOf(ops[0]), 0, "slashed inside the window");
    }

    function test_attestationDigest_isEip712() public view {
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("SettlementAVS"),
                keccak256("1"),
                block.chainid,
                address(avs)
            )
        );
        bytes32 structHash = keccak256(abi.encode(keccak256("Attestation(uint256 epoch,bytes32 root)"), 5, ROOT));
        assertEq(avs.attestationDigest(5, ROOT), keccak256(abi.encodePacked("\x19\x01", domain, structHash)), "digest");
    }
}
