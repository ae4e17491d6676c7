// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test, Vm} from "./utils/Test.sol";
import {NetFixture, NetTree} from "./utils/NetFixture.sol";
import {StreamChannels} from "../src/StreamChannels.sol";
import {SettlementAVS} from "../src/SettlementAVS.sol";
import {NetSettlement} from "../src/NetSettlement.sol";

/// @title NetHandler
/// @notice Random histories of vouchers, roots (correct ones and ones with one wrong leaf), net claims,
///         direct claims, challenges, top-ups and exits (closes, finalisations, releases) over four channels
///         (two payers, two payee nodes). It plays the honest watcher: before time passes a live root's
///         window, every wrong root is challenged, and the challenge must succeed; every correct root is
///         challenged too, and that must fail. Operators slashed by a void are replaced by fresh ones.
contract NetHandler {
    Vm internal constant vm = Vm(0x7109709ECfa91a80626fF3989D68f67F5b1DD12D);
    uint256 internal constant EPOCH_BLOCKS = 10;

    StreamChannels public immutable sc;
    SettlementAVS public immutable avs;
    NetSettlement public immutable net;

    uint256[2] internal payerKeys = [uint256(0xA11CE), 0xB0B];
    address[2] public nodes = [address(0xBEEF01), address(0xBEEF02)];
    uint256[4] public ids;
    mapping(uint256 id => uint256) public signed; // highest voucher its payer signed

    uint256[] internal opKeys;
    uint256 internal nextOpKey = 0x1000;
    uint256 public nextEpoch = 1;

    struct Proposal {
        uint256 epoch;
        uint8 kind; // 0 correct, 1 unsupported entry, 2 wrong sum
        uint8 wrongNode;
        uint8 wrongEntry;
        bool voided;
        bytes data; // abi.encode(uint256[2] amounts, Entry[] a, Entry[] b, bytes32[] leaves, address[] signers)
    }

    Proposal[] internal proposals;

    uint256 public ghostDeposited;
    bool public wrongRootNotVoidable;
    bool public correctRootVoided;
    bool public wrongRootPaid;
    uint256 public roots;
    uint256 public voids;
    uint256 public netClaims;
    uint256 public directClaims;

    constructor(
        StreamChannels sc_,
        SettlementAVS avs_,
        NetSettlement net_,
        uint256[4] memory ids_,
        uint256[] memory keys
    ) {
        (sc, avs, net, ids, opKeys) = (sc_, avs_, net_, ids_, keys);
        for (uint256 i; i < 4; i++) {
            (,, uint256 deposit,,,) = sc.channel(ids[i]);
            ghostDeposited += deposit;
        }
    }

    receive() external payable {}

    /*//////////////////////////////////////////////////////////////
                                ACTIONS
    //////////////////////////////////////////////////////////////*/

    function sign(uint256 idSeed, uint256 amount) external {
        uint256 id = ids[idSeed % 4];
        (,, uint256 deposit,,,) = sc.channel(id);
        if (deposit == 0) return;
        uint256 s = signed[id];
        amount = s + amount % (deposit - s + 1);
        signed[id] = amount;
    }

    function topUp(uint256 idSeed, uint256 amount) external {
        uint256 id = ids[idSeed % 4];
        (,,,,, bool settled) = sc.channel(id);
        if (settled) return;
        amount = amount % 5 ether;
        vm.deal(address(0xF00D), amount);
        vm.prank(address(0xF00D));
        sc.topUp{value: amount}(id);
        ghostDeposited += amount;
    }

    function directClaim(uint256 idSeed, uint256 amountSeed) external {
        uint256 i = idSeed % 4;
        uint256 id = ids[i];
        uint256 amount = amountSeed % (signed[id] + 1);
        try sc.claim(id, amount, _voucher(i, amount)) {
            directClaims++;
        } catch {} // settled or past its window: the payee was too late, nothing moves
    }

    function propose(uint256 kindSeed, uint256 fracSeed, uint256 bump) external {
        _ensureOperators();
        uint256 epoch = nextEpoch;
        uint256 end = (epoch + 1) * EPOCH_BLOCKS;
        if (block.number < end) vm.roll(end);
        nextEpoch = epoch + 1;

        Proposal memory p;
        p.epoch = epoch;
        p.kind = uint8(kindSeed % 4 == 3 ? 1 : kindSeed % 4 == 2 ? 2 : 0);
        p.wrongNode = uint8((kindSeed >> 8) % 2);
        p.wrongEntry = uint8((kindSeed >> 16) % 2);
        bump = 1 + bump % 3 ether;

        uint256[2] memory amounts;
        NetSettlement.Entry[][2] memory entries;
        for (uint256 n; n < 2; n++) {
            entries[n] = new NetSettlement.Entry[](2);
            for (uint256 e; e < 2; e++) {
                uint256 i = n * 2 + e;
                uint256 s = signed[ids[i]];
                uint256 amount = s - (s * ((fracSeed >> (8 * i)) % 4)) / 8; // a voucher the payer signed
                entries[n][e] = NetSettlement.Entry(ids[i], amount, _voucher(i, amount));
                if (p.kind == 1 && n == p.wrongNode && e == p.wrongEntry) entries[n][e].cumulativeAmount += bump;
                amounts[n] += entries[n][e].cumulativeAmount;
            }
            if (p.kind == 2 && n == p.wrongNode) amounts[n] += bump;
        }
        bytes32[] memory leaves = new bytes32[](2);
        for (uint256 n; n < 2; n++) {
            leaves[n] = net.leafHash(epoch, nodes[n], amounts[n], entries[n]);
        }
        bytes32 root = NetTree.root(leaves);
        (address[] memory signers, bytes[] memory sigs) = _sign(epoch, root);
        net.proposeRoot(epoch, root, signers, sigs);
        p.data = abi.encode(amounts, entries[0], entries[1], leaves, signers);
        proposals.push(p);
        roots++;
    }

    function challenge(uint256 seed) external {
        if (proposals.length == 0) return;
        _challenge(seed % proposals.length, seed >> 8);
    }

    function claimNet(uint256 seed) external {
        if (proposals.length == 0) return;
        uint256 k = seed % proposals.length;
        Proposal storage p = proposals[k];
        (, uint64 executableAt, bool voided) = net.rootOf(p.epoch);
        if (voided || block.timestamp < executableAt) return;
        uint256 n = (seed >> 8) % 2;
        Decoded memory d = _decode(p.data);
        if (p.kind != 0) wrongRootPaid = true; // the watcher should have voided it before the window ended
        net.claimNet(p.epoch, nodes[n], d.amounts[n], n == 0 ? d.a : d.b, NetTree.proof(d.leaves, n));
        netClaims++;
    }

    function startClose(uint256 idSeed) external {
        uint256 i = idSeed % 4;
        (,,,, uint64 closesAt, bool settled) = sc.channel(ids[i]);
        if (settled || closesAt != 0) return;
        vm.prank(vm.addr(payerKeys[i % 2]));
        sc.startClose(ids[i]);
    }

    function finalizeClose(uint256 idSeed) external {
        uint256 id = ids[idSeed % 4];
        (,,,, uint64 closesAt, bool settled) = sc.channel(id);
        if (settled || closesAt == 0 || block.timestamp < closesAt) return;
        sc.finalizeClose(id);
    }

    function release(uint256 idSeed) external {
        uint256 i = idSeed % 4;
        (,,,,, bool settled) = sc.channel(ids[i]);
        if (settled) return;
        vm.prank(nodes[i / 2]);
        sc.release(ids[i]);
    }

    /// @dev Time passes; the honest watcher first challenges every root whose window this would end.
    function warp(uint256 secondsSeed) external {
        uint256 to = block.timestamp + 1 + secondsSeed % 2 hours;
        for (uint256 k; k < proposals.length; k++) {
            (, uint64 executableAt, bool voided) = net.rootOf(proposals[k].epoch);
            if (!voided && !proposals[k].voided && block.timestamp < executableAt && to >= executableAt) {
                _challenge(k, k);
            }
        }
        vm.warp(to);
    }

    /*//////////////////////////////////////////////////////////////
                                HELPERS
    //////////////////////////////////////////////////////////////*/

    struct Decoded {
        uint256[2] amounts;
        NetSettlement.Entry[] a;
        NetSettlement.Entry[] b;
        bytes32[] leaves;
        address[] signers;
    }

    function _decode(bytes memory data) internal pure returns (Decoded memory d) {
        (d.amounts, d.a, d.b, d.leaves, d.signers) =
            abi.decode(data, (uint256[2], NetSettlement.Entry[], NetSettlement.Entry[], bytes32[], address[]));
    }

    /// @dev Tries one fraud proof against node `n`'s leaf; whether it voided the root.
    function _tryProve(uint256 epoch, uint256 n, bool unsupported, uint256 index, Decoded memory d)
        internal
        returns (bool ok)
    {
        NetSettlement.Entry[] memory e = n == 0 ? d.a : d.b;
        bytes32[] memory proof = NetTree.proof(d.leaves, n);
        if (unsupported) {
            try net.proveUnsupportedEntry(epoch, nodes[n], d.amounts[n], e, proof, index, d.signers) {
                ok = true;
            } catch {}
        } else {
            try net.proveMalformedLeaf(epoch, nodes[n], d.amounts[n], e, proof, d.signers) {
                ok = true;
            } catch {}
        }
    }

    function _challenge(uint256 k, uint256 seed) internal {
        Proposal storage p = proposals[k];
        (, uint64 executableAt, bool voided) = net.rootOf(p.epoch);
        if (voided || block.timestamp >= executableAt) return;
        Decoded memory d = _decode(p.data);
        if (p.kind == 0) {
            // A correct root: neither proof may succeed, on any leaf or entry.
            uint256 n = seed % 2;
            if (_tryProve(p.epoch, n, true, (seed >> 8) % 2, d)) correctRootVoided = true;
            if (_tryProve(p.epoch, n, false, 0, d)) correctRootVoided = true;
            return;
        }
        bool ok = _tryProve(p.epoch, p.wrongNode, p.kind == 1, p.wrongEntry, d);
        if (!ok) wrongRootNotVoidable = true;
        p.voided = ok;
        if (ok) voids++;
    }

    function _voucher(uint256 i, uint256 amount) internal view returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(payerKeys[i % 2], sc.voucherDigest(ids[i], amount));
        return abi.encodePacked(r, s, v);
    }

    /// @dev Keeps three bonded operators: slashed ones are replaced, and the chain moves to the next
    ///      epoch boundary so the new bonds count for the next proposal.
    function _ensureOperators() internal {
        uint256 live;
        for (uint256 i; i < opKeys.length; i++) {
            if (avs.stakeOf(vm.addr(opKeys[i])) != 0) opKeys[live++] = opKeys[i];
        }
        uint256 added;
        while (live + added < 3) {
            uint256 key = nextOpKey++;
            address op = vm.addr(key);
            vm.deal(op, 1 ether);
            vm.prank(op);
            avs.register{value: 1 ether}();
            if (live + added < opKeys.length) opKeys[live + added] = key;
            else opKeys.push(key);
            added++;
        }
        while (opKeys.length > 3) opKeys.pop();
        if (added != 0) {
            nextEpoch = block.number / EPOCH_BLOCKS + 1;
            vm.roll((nextEpoch + 1) * EPOCH_BLOCKS);
        }
    }

    /// @dev All three operators, ascending, with their signatures.
    function _sign(uint256 epoch, bytes32 root) internal view returns (address[] memory signers, bytes[] memory sigs) {
        uint256[3] memory keys = [opKeys[0], opKeys[1], opKeys[2]];
        for (uint256 i; i < 3; i++) {
            for (uint256 j = i + 1; j < 3; j++) {
                if (vm.addr(keys[j]) < vm.addr(keys[i])) (keys[i], keys[j]) = (keys[j], keys[i]);
            }
        }
        signers = new address[](3);
        sigs = new bytes[](3);
        for (uint256 i; i < 3; i++) {
            signers[i] = vm.addr(keys[i]);
            (uint8 v, bytes32 r, bytes32 s) = vm.sign(keys[i], net.rootDigest(epoch, root));
            sigs[i] = abi.encodePacked(r, s, v);
        }
    }

    function payer(uint256 i) external view returns (address) {
        return vm.addr(payerKeys[i % 2]);
    }
}

contract NetSettlementInvariantTest is Test, NetFixture {
    NetHandler internal handler;

    function setUp() public {
        _deploy();
        uint256[2] memory payerKeys = [uint256(0xA11CE), 0xB0B];
        address[2] memory nodes = [address(0xBEEF01), address(0xBEEF02)];
        uint256[4] memory ids;
        uint64 period = sc.MIN_CHALLENGE_PERIOD();
        for (uint256 n; n < 2; n++) {
            for (uint256 p; p < 2; p++) {
                address payer = vm.addr(payerKeys[p]);
                vm.deal(payer, 10 ether);
                vm.prank(payer);
                ids[n * 2 + p] = sc.open{value: 10 ether}(nodes[n], period);
            }
        }
        uint256[] memory keys = new uint256[](3);
        for (uint256 i; i < 3; i++) {
            keys[i] = opKeys[i];
        }
        handler = new NetHandler(sc, avs, net, ids, keys);
        targetContract(address(handler));
    }

    /// @notice Every wei deposited is held, paid to a payee or refunded to its payer.
    function invariant_everyWeiHeldPaidOrRefunded() public view {
        uint256 held = address(sc).balance;
        uint256 paid = handler.nodes(0).balance + handler.nodes(1).balance;
        uint256 refunded = handler.payer(0).balance + handler.payer(1).balance;
        assertEq(held + paid + refunded, handler.ghostDeposited(), "deposits = held + paid + refunded");
        uint256 owed;
        for (uint256 i; i < 4; i++) {
            (,, uint256 deposit, uint256 claimed,, bool settled) = sc.channel(handler.ids(i));
            if (!settled) owed += deposit - claimed;
        }
        assertEq(held, owed, "the contract holds exactly the unclaimed deposits of open channels");
    }

    /// @notice No voucher pays twice: each node got exactly its channels' counters, each counter is at
    ///         most the highest voucher its payer signed.
    function invariant_noVoucherPaysTwice() public view {
        for (uint256 n; n < 2; n++) {
            uint256 sum;
            for (uint256 e; e < 2; e++) {
                uint256 id = handler.ids(n * 2 + e);
                (,,, uint256 claimed,,) = sc.channel(id);
                assertLe(claimed, handler.signed(id), "never more than the payer signed");
                sum += claimed;
            }
            assertEq(handler.nodes(n).balance, sum, "a node received exactly its channels' counters");
        }
    }

    /// @notice Every wrong root was voidable (and voided before it paid); no correct root ever was.
    function invariant_wrongRootsVoidCorrectRootsStand() public view {
        assertFalse(handler.wrongRootNotVoidable(), "a wrong root could not be voided");
        assertFalse(handler.correctRootVoided(), "a correct root was voided");
        assertFalse(handler.wrongRootPaid(), "a wrong root paid");
        assertEq(net.rootsVoided(), handler.voids(), "every void is one the watcher proved");
    }
}
