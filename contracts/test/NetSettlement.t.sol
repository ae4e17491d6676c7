// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {NetFixture, NetTree} from "./utils/NetFixture.sol";
import {StreamChannels} from "../src/StreamChannels.sol";
import {SettlementAVS} from "../src/SettlementAVS.sol";
import {NetSettlement} from "../src/NetSettlement.sol";

contract NetSettlementTest is Test, NetFixture {
    uint256 internal constant P1 = 0xA11CE;
    uint256 internal constant P2 = 0xB0B;
    address internal constant NODE = address(0xBEEF01);
    address internal constant OTHER = address(0xBEEF02);
    address internal constant PROVER = address(0x9807E);
    uint256 internal constant EPOCH = 1;

    uint256 internal c1; // P1 -> NODE
    uint256 internal c2; // P2 -> NODE
    uint256 internal c3; // P1 -> OTHER
    uint64 internal period;

    /// @dev The test contract proves fraud too and takes the bounties.
    receive() external payable {}

    function setUp() public {
        _deploy();
        period = sc.MIN_CHALLENGE_PERIOD();
        vm.deal(vm.addr(P1), 100 ether);
        vm.deal(vm.addr(P2), 100 ether);
        vm.prank(vm.addr(P1));
        c1 = sc.open{value: 10 ether}(NODE, period);
        vm.prank(vm.addr(P2));
        c2 = sc.open{value: 10 ether}(NODE, period);
        vm.prank(vm.addr(P1));
        c3 = sc.open{value: 10 ether}(OTHER, period);
    }

    /*//////////////////////////////////////////////////////////////
                                HELPERS
    //////////////////////////////////////////////////////////////*/

    struct Built {
        bytes32 root;
        bytes32[] leaves;
        NetSettlement.Entry[] nodeEntries;
        uint256 nodeAmount;
        NetSettlement.Entry[] otherEntries;
        uint256 otherAmount;
    }

    /// @dev The honest root for vouchers a1 (c1), a2 (c2), a3 (c3); `bump` is added to c2's amount in the
    ///      leaf (keeping P2's signature for a2) and `sumBump` to NODE's leaf amount.
    function _build(uint256 a1, uint256 a2, uint256 a3, uint256 bump, uint256 sumBump)
        internal
        view
        returns (Built memory b)
    {
        b.nodeEntries = new NetSettlement.Entry[](2);
        b.nodeEntries[0] = NetSettlement.Entry(c1, a1, _voucher(P1, c1, a1));
        b.nodeEntries[1] = NetSettlement.Entry(c2, a2 + bump, _voucher(P2, c2, a2));
        b.nodeAmount = a1 + a2 + bump + sumBump;
        b.otherEntries = new NetSettlement.Entry[](1);
        b.otherEntries[0] = NetSettlement.Entry(c3, a3, _voucher(P1, c3, a3));
        b.otherAmount = a3;
        b.leaves = new bytes32[](2);
        b.leaves[0] = _leaf(EPOCH, NODE, b.nodeAmount, b.nodeEntries);
        b.leaves[1] = _leaf(EPOCH, OTHER, b.otherAmount, b.otherEntries);
        b.root = NetTree.root(b.leaves);
    }

    function _propose(bytes32 root) internal returns (address[] memory signers) {
        bytes[] memory sigs;
        (signers, sigs) = _signers(EPOCH, root, _two());
        net.proposeRoot(EPOCH, root, signers, sigs);
    }

    function _claimNode(Built memory b) internal returns (uint256) {
        return net.claimNet(EPOCH, NODE, b.nodeAmount, b.nodeEntries, NetTree.proof(b.leaves, 0));
    }

    /*//////////////////////////////////////////////////////////////
                                BINDING
    //////////////////////////////////////////////////////////////*/

    function test_bind_onlyOnceAndOnlyByDeployer() public {
        vm.expectRevert(StreamChannels.NettingBindingRefused.selector);
        sc.bindNetting(address(0xBAD));
        vm.expectRevert(SettlementAVS.JudgeBindingRefused.selector);
        avs.bindJudge(address(0xBAD));
        StreamChannels fresh = new StreamChannels();
        vm.prank(PROVER);
        vm.expectRevert(StreamChannels.NettingBindingRefused.selector);
        fresh.bindNetting(address(0xBAD));
    }

    function test_settleNet_onlyNetting() public {
        uint256[] memory ids = new uint256[](1);
        uint256[] memory amounts = new uint256[](1);
        (ids[0], amounts[0]) = (c1, 1 ether);
        vm.expectRevert(abi.encodeWithSelector(StreamChannels.NotNetting.selector, address(this)));
        sc.settleNet(NODE, ids, amounts);
    }

    function test_slashWrongRoot_onlyJudge() public {
        address[] memory signers = new address[](1);
        signers[0] = ops[0];
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.NotJudge.selector, address(this)));
        avs.slashWrongRoot(signers, EPOCH, address(this));
    }

    /*//////////////////////////////////////////////////////////////
                              PROPOSALS
    //////////////////////////////////////////////////////////////*/

    function test_propose_needsTwoThirds() public {
        Built memory b = _build(1 ether, 2 ether, 3 ether, 0, 0);
        uint256[] memory one = new uint256[](1);
        (address[] memory signers, bytes[] memory sigs) = _signers(EPOCH, b.root, one);
        vm.expectRevert(abi.encodeWithSelector(NetSettlement.QuorumNotReached.selector, 1 ether, 3 ether));
        net.proposeRoot(EPOCH, b.root, signers, sigs);
    }

    function test_propose_refusesUnendedEpochBadSigAndUnsorted() public {
        Built memory b = _build(1 ether, 2 ether, 3 ether, 0, 0);
        (address[] memory signers, bytes[] memory sigs) = _signers(EPOCH, b.root, _two());
        vm.expectRevert(abi.encodeWithSelector(SettlementAVS.EpochNotEnded.selector, 2, 2));
        net.proposeRoot(2, b.root, signers, sigs);
        (signers[0], signers[1]) = (signers[1], signers[0]);
        (sigs[0], sigs[1]) = (sigs[1], sigs[0]);
        vm.expectRevert(NetSettlement.OperatorsNotSorted.selector);
        net.proposeRoot(EPOCH, b.root, signers, sigs);
        (signers[0], signers[1]) = (signers[1], signers[0]);
        (sigs[0], sigs[1]) = (sigs[1], sigs[0]);
        sigs[1] = sigs[0];
        vm.expectRevert(abi.encodeWithSelector(NetSettlement.InvalidOperatorSignature.selector, signers[1]));
        net.proposeRoot(EPOCH, b.root, signers, sigs);
    }

    function test_propose_onlyOneLiveRootPerEpoch() public {
        Built memory b = _build(1 ether, 2 ether, 3 ether, 0, 0);
        _propose(b.root);
        Built memory b2 = _build(1 ether, 1 ether, 3 ether, 0, 0);
        (address[] memory signers, bytes[] memory sigs) = _signers(EPOCH, b2.root, _two());
        vm.expectRevert(abi.encodeWithSelector(NetSettlement.RootExists.selector, EPOCH, b.root));
        net.proposeRoot(EPOCH, b2.root, signers, sigs);
    }

    /*//////////////////////////////////////////////////////////////
                              EXECUTION
    //////////////////////////////////////////////////////////////*/

    function test_claimNet_paysAfterWindowOnceInOneTransfer() public {
        Built memory b = _build(1 ether, 2 ether, 3 ether, 0, 0);
        _propose(b.root);
        (, uint64 executableAt,) = net.rootOf(EPOCH);
        vm.expectRevert(abi.encodeWithSelector(NetSettlement.ChallengeWindowOpen.selector, EPOCH, executableAt));
        _claimNode(b);
        vm.warp(executableAt);
        assertEq(_claimNode(b), 3 ether, "the node's two channels in one claim");
        assertEq(NODE.balance, 3 ether, "pushed to the node");
        assertEq(_claimNode(b), 0, "the same leaf again pays nothing");
        (,,, uint256 claimed1,,) = sc.channel(c1);
        assertEq(claimed1, 1 ether, "the channel counter advanced");
        // The payer's voucher claimed directly now pays nothing more; a later one pays only the rest.
        sc.claim(c2, 2 ether, _voucher(P2, c2, 2 ether));
        assertEq(NODE.balance, 3 ether, "a voucher already paid by the root pays nothing again");
        sc.claim(c2, 2.5 ether, _voucher(P2, c2, 2.5 ether));
        assertEq(NODE.balance, 3.5 ether, "a later voucher pays only what exceeds the root");
    }

    function test_claimNet_afterDirectClaimPaysOnlyTheRest() public {
        sc.claim(c1, 0.6 ether, _voucher(P1, c1, 0.6 ether));
        Built memory b = _build(1 ether, 2 ether, 3 ether, 0, 0);
        _propose(b.root);
        vm.warp(block.timestamp + WINDOW);
        assertEq(_claimNode(b), 2.4 ether, "the root pays what the direct claim did not");
        assertEq(NODE.balance, 3 ether, "in total exactly the vouchers");
    }

    function test_claimNet_rejectsBadProofAndOtherEpochs() public {
        Built memory b = _build(1 ether, 2 ether, 3 ether, 0, 0);
        vm.expectRevert(abi.encodeWithSelector(NetSettlement.NoRoot.selector, EPOCH));
        _claimNode(b);
        _propose(b.root);
        vm.warp(block.timestamp + WINDOW);
        vm.expectRevert(NetSettlement.InvalidProof.selector);
        net.claimNet(EPOCH, NODE, b.nodeAmount + 1, b.nodeEntries, NetTree.proof(b.leaves, 0));
        vm.expectRevert(NetSettlement.InvalidProof.selector);
        net.claimNet(EPOCH, OTHER, b.nodeAmount, b.nodeEntries, NetTree.proof(b.leaves, 0));
    }

    function test_claimNet_skipsChannelPastItsChallengePeriod() public {
        Built memory b = _build(1 ether, 2 ether, 3 ether, 0, 0);
        _propose(b.root);
        vm.prank(vm.addr(P1));
        sc.startClose(c1);
        vm.warp(block.timestamp + period);
        assertEq(_claimNode(b), 2 ether, "c1 is past closesAt: only c2 pays");
        sc.finalizeClose(c1);
        assertEq(vm.addr(P1).balance, 100 ether - 20 ether + 10 ether, "c1's whole deposit went back");
    }

    function test_claimNet_cappedByDepositNeverRevertsTheRest() public {
        // A root that passed its window unchallenged still cannot take more than a channel holds.
        NetSettlement.Entry[] memory e = new NetSettlement.Entry[](2);
        e[0] = NetSettlement.Entry(c1, 11 ether, _voucher(P1, c1, 11 ether));
        e[1] = NetSettlement.Entry(c2, 1 ether, _voucher(P2, c2, 1 ether));
        bytes32[] memory leaves = new bytes32[](1);
        leaves[0] = _leaf(EPOCH, NODE, 12 ether, e);
        _propose(NetTree.root(leaves));
        vm.warp(block.timestamp + WINDOW);
        assertEq(net.claimNet(EPOCH, NODE, 12 ether, e, new bytes32[](0)), 1 ether, "c1 skipped, c2 paid");
    }

    /*//////////////////////////////////////////////////////////////
                              FRAUD PROOFS
    //////////////////////////////////////////////////////////////*/

    function test_fraud_unsupportedEntryVoidsAndSlashes() public {
        // Two of three operators sign a root that overpays NODE on c2 by 1 ether.
        Built memory b = _build(1 ether, 2 ether, 3 ether, 1 ether, 0);
        address[] memory signers = _propose(b.root);
        uint256 burnedBefore = avs.burned();
        vm.prank(PROVER);
        net.proveUnsupportedEntry(EPOCH, NODE, b.nodeAmount, b.nodeEntries, NetTree.proof(b.leaves, 0), 1, signers);
        (,, bool voided) = net.rootOf(EPOCH);
        assertTrue(voided, "voided");
        assertEq(net.rootsVoided(), 1, "counted");
        assertEq(avs.stakeOf(signers[0]) + avs.stakeOf(signers[1]), 0, "both signers lost their bond");
        assertEq(avs.stakeOf(ops[2]), 1 ether, "the operator that did not sign keeps it");
        assertEq(PROVER.balance, 2 * avs.SLASH_BOUNTY(), "a bounty per signer to the prover");
        assertEq(avs.burned() - burnedBefore, 2 ether - 2 * avs.SLASH_BOUNTY(), "the rest burned");
        vm.warp(block.timestamp + WINDOW);
        vm.expectRevert(abi.encodeWithSelector(NetSettlement.RootIsVoided.selector, EPOCH));
        _claimNode(b);
        // The honest operator alone cannot re-propose; the node claims directly and loses nothing.
        Built memory honest = _build(1 ether, 2 ether, 3 ether, 0, 0);
        uint256[] memory last = new uint256[](1);
        last[0] = 2;
        (address[] memory s2, bytes[] memory sig2) = _signers(EPOCH, honest.root, last);
        vm.expectRevert(abi.encodeWithSelector(NetSettlement.QuorumNotReached.selector, 1 ether, 3 ether));
        net.proposeRoot(EPOCH, honest.root, s2, sig2);
        sc.claim(c1, 1 ether, _voucher(P1, c1, 1 ether));
        sc.claim(c2, 2 ether, _voucher(P2, c2, 2 ether));
        assertEq(NODE.balance, 3 ether, "exactly what the vouchers say");
    }

    function test_fraud_wrongSumAndDuplicateVoid() public {
        Built memory b = _build(1 ether, 2 ether, 3 ether, 0, 1);
        address[] memory signers = _propose(b.root);
        net.proveMalformedLeaf(EPOCH, NODE, b.nodeAmount, b.nodeEntries, NetTree.proof(b.leaves, 0), signers);
        (,, bool voided) = net.rootOf(EPOCH);
        assertTrue(voided, "a node amount that is not the sum of its entries voids the root");
    }

    function test_fraud_duplicateEntryVoids() public {
        NetSettlement.Entry[] memory e = new NetSettlement.Entry[](2);
        e[0] = NetSettlement.Entry(c1, 1 ether, _voucher(P1, c1, 1 ether));
        e[1] = e[0];
        bytes32[] memory leaves = new bytes32[](1);
        leaves[0] = _leaf(EPOCH, NODE, 2 ether, e);
        address[] memory signers = _propose(NetTree.root(leaves));
        net.proveMalformedLeaf(EPOCH, NODE, 2 ether, e, new bytes32[](0), signers);
        (,, bool voided) = net.rootOf(EPOCH);
        assertTrue(voided, "a channel listed twice voids the root");
    }

    function test_fraud_foreignChannelAndForgedSignatureVoid() public {
        // c3 is P1 -> OTHER, listed in NODE's leaf with P1's real voucher: not NODE's channel.
        NetSettlement.Entry[] memory e = new NetSettlement.Entry[](1);
        e[0] = NetSettlement.Entry(c3, 1 ether, _voucher(P1, c3, 1 ether));
        bytes32[] memory leaves = new bytes32[](2);
        leaves[0] = _leaf(EPOCH, NODE, 1 ether, e);
        NetSettlement.Entry[] memory f = new NetSettlement.Entry[](1);
        f[0] = NetSettlement.Entry(c1, 1 ether, _voucher(P2, c1, 1 ether)); // signed by the wrong payer
        leaves[1] = _leaf(EPOCH, NODE, 1 ether, f);
        bytes32 root = NetTree.root(leaves);
        address[] memory signers = _propose(root);
        uint256 snap = vm.snapshotState();
        net.proveUnsupportedEntry(EPOCH, NODE, 1 ether, e, NetTree.proof(leaves, 0), 0, signers);
        vm.revertToState(snap);
        net.proveUnsupportedEntry(EPOCH, NODE, 1 ether, f, NetTree.proof(leaves, 1), 0, signers);
        (,, bool voided) = net.rootOf(EPOCH);
        assertTrue(voided, "either proof voids it");
    }

    function test_fraud_correctRootCannotBeVoided() public {
        Built memory b = _build(1 ether, 2 ether, 3 ether, 0, 0);
        address[] memory signers = _propose(b.root);
        for (uint256 i; i < 2; i++) {
            vm.expectRevert(NetSettlement.NotFraud.selector);
            net.proveUnsupportedEntry(EPOCH, NODE, b.nodeAmount, b.nodeEntries, NetTree.proof(b.leaves, 0), i, signers);
        }
        vm.expectRevert(NetSettlement.NotFraud.selector);
        net.proveMalformedLeaf(EPOCH, NODE, b.nodeAmount, b.nodeEntries, NetTree.proof(b.leaves, 0), signers);
        vm.expectRevert(NetSettlement.NotFraud.selector);
        net.proveMalformedLeaf(EPOCH, OTHER, b.otherAmount, b.otherEntries, NetTree.proof(b.leaves, 1), signers);
        // Wrong signer list, leaf not in the root, out-of-range entry: refused, not a void.
        address[] memory wrong = new address[](1);
        wrong[0] = ops[2];
        vm.expectRevert(NetSettlement.SignersMismatch.selector);
        net.proveMalformedLeaf(EPOCH, NODE, b.nodeAmount, b.nodeEntries, NetTree.proof(b.leaves, 0), wrong);
        vm.expectRevert(abi.encodeWithSelector(NetSettlement.EntryOutOfRange.selector, 2, 2));
        net.proveUnsupportedEntry(EPOCH, NODE, b.nodeAmount, b.nodeEntries, NetTree.proof(b.leaves, 0), 2, signers);
        // A later deposit top-up cannot make a correct entry provable either.
        (,, bool voided) = net.rootOf(EPOCH);
        assertFalse(voided, "still live");
    }

    function test_fraud_refusedAfterWindow() public {
        Built memory b = _build(1 ether, 2 ether, 3 ether, 1 ether, 0);
        address[] memory signers = _propose(b.root);
        (, uint64 executableAt,) = net.rootOf(EPOCH);
        vm.warp(executableAt);
        vm.expectRevert(abi.encodeWithSelector(NetSettlement.ChallengeWindowClosed.selector, EPOCH, executableAt));
        net.proveUnsupportedEntry(EPOCH, NODE, b.nodeAmount, b.nodeEntries, NetTree.proof(b.leaves, 0), 1, signers);
    }

    /*//////////////////////////////////////////////////////////////
                                 FUZZ
    //////////////////////////////////////////////////////////////*/

    /// @dev A root and direct claims in any order pay each channel exactly its highest voucher, once.
    function testFuzz_rootAndDirectClaimNeverPayTwice(uint96 rootAmount, uint96 directAmount, bool directFirst) public {
        uint256 r = bound(rootAmount, 0, 10 ether);
        uint256 d = bound(directAmount, 0, 10 ether);
        Built memory b = _build(r, 0, 0, 0, 0);
        _propose(b.root);
        vm.warp(block.timestamp + WINDOW);
        if (directFirst) sc.claim(c1, d, _voucher(P1, c1, d));
        _claimNode(b);
        if (!directFirst) sc.claim(c1, d, _voucher(P1, c1, d));
        _claimNode(b);
        uint256 top = r > d ? r : d;
        assertEq(NODE.balance, top, "paid exactly the highest voucher");
        (,,, uint256 claimed,,) = sc.channel(c1);
        assertEq(claimed, top, "the counter says so");
    }

    /// @dev Any bump of one entry above what the payer signed, or of the sum, is provable.
    function testFuzz_anyWrongLeafIsVoidable(uint96 a1, uint96 a2, uint96 bump, bool bumpSum) public {
        uint256 x = bound(a1, 0, 5 ether);
        uint256 y = bound(a2, 0, 5 ether);
        uint256 z = bound(bump, 1, 5 ether);
        Built memory b = bumpSum ? _build(x, y, 0, 0, z) : _build(x, y, 0, z, 0);
        address[] memory signers = _propose(b.root);
        bytes32[] memory proof = NetTree.proof(b.leaves, 0);
        if (bumpSum) {
            net.proveMalformedLeaf(EPOCH, NODE, b.nodeAmount, b.nodeEntries, proof, signers);
        } else {
            net.proveUnsupportedEntry(EPOCH, NODE, b.nodeAmount, b.nodeEntries, proof, 1, signers);
        }
        (,, bool voided) = net.rootOf(EPOCH);
        assertTrue(voided, "voided");
    }
}
