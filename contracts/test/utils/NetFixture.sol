// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Vm} from "./Test.sol";
import {StreamChannels} from "../../src/StreamChannels.sol";
import {SettlementAVS} from "../../src/SettlementAVS.sol";
import {NetSettlement} from "../../src/NetSettlement.sol";

/// @notice Merkle trees the way runtime/settlement builds them: sorted-pair keccak (OpenZeppelin's
///         commutative hash), an odd node carried up unchanged.
library NetTree {
    function _pair(bytes32 a, bytes32 b) private pure returns (bytes32) {
        return a < b ? keccak256(abi.encode(a, b)) : keccak256(abi.encode(b, a));
    }

    function _up(bytes32[] memory level) private pure returns (bytes32[] memory next) {
        uint256 n = level.length;
        next = new bytes32[]((n + 1) / 2);
        for (uint256 i; i + 1 < n; i += 2) {
            next[i / 2] = _pair(level[i], level[i + 1]);
        }
        if (n % 2 == 1) next[n / 2] = level[n - 1];
    }

    function root(bytes32[] memory leaves) internal pure returns (bytes32) {
        bytes32[] memory level = leaves;
        while (level.length > 1) {
            level = _up(level);
        }
        return level[0];
    }

    function proof(bytes32[] memory leaves, uint256 index) internal pure returns (bytes32[] memory out) {
        bytes32[] memory buf = new bytes32[](64);
        uint256 len;
        bytes32[] memory level = leaves;
        while (level.length > 1) {
            uint256 sibling = index ^ 1;
            if (sibling < level.length) buf[len++] = level[sibling];
            level = _up(level);
            index /= 2;
        }
        out = new bytes32[](len);
        for (uint256 i; i < len; ++i) {
            out[i] = buf[i];
        }
    }
}

/// @notice Deploys StreamChannels + SettlementAVS + NetSettlement, binds them, bonds three operators
///         (1 ether each, sorted by address) and leaves the chain where epoch 1 has ended.
contract NetFixture {
    Vm internal constant vm_ = Vm(0x7109709ECfa91a80626fF3989D68f67F5b1DD12D);
    uint256 internal constant EPOCH_BLOCKS = 10;
    uint64 internal constant WINDOW = 30 minutes;

    StreamChannels public sc;
    SettlementAVS public avs;
    NetSettlement public net;
    uint256[3] internal opKeys = [uint256(0x0A1), 0x0A2, 0x0A3];
    address[3] internal ops;

    function _deploy() internal {
        sc = new StreamChannels();
        avs = new SettlementAVS(EPOCH_BLOCKS);
        net = new NetSettlement(sc, avs, WINDOW);
        sc.bindNetting(address(net));
        avs.bindJudge(address(net));
        for (uint256 i; i < 3; i++) {
            ops[i] = vm_.addr(opKeys[i]);
        }
        for (uint256 i; i < 3; i++) {
            for (uint256 j = i + 1; j < 3; j++) {
                if (ops[j] < ops[i]) {
                    (ops[i], ops[j]) = (ops[j], ops[i]);
                    (opKeys[i], opKeys[j]) = (opKeys[j], opKeys[i]);
                }
            }
        }
        vm_.roll(1);
        for (uint256 i; i < 3; i++) {
            vm_.deal(ops[i], 1 ether);
            vm_.prank(ops[i]);
            avs.register{value: 1 ether}();
        }
        vm_.roll(2 * EPOCH_BLOCKS);
    }

    function _sig(uint256 key, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm_.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    function _voucher(uint256 payerKey, uint256 id, uint256 amount) internal view returns (bytes memory) {
        return _sig(payerKey, sc.voucherDigest(id, amount));
    }

    /// @dev Signers `ops[which[i]]` (ascending indexes) and their signatures over `(epoch, root)`.
    function _signers(uint256 epoch, bytes32 root, uint256[] memory which)
        internal
        view
        returns (address[] memory signers, bytes[] memory sigs)
    {
        signers = new address[](which.length);
        sigs = new bytes[](which.length);
        for (uint256 i; i < which.length; i++) {
            signers[i] = ops[which[i]];
            sigs[i] = _sig(opKeys[which[i]], net.rootDigest(epoch, root));
        }
    }

    function _two() internal pure returns (uint256[] memory w) {
        w = new uint256[](2);
        (w[0], w[1]) = (0, 1);
    }

    function _leaf(uint256 epoch, address node, uint256 amount, NetSettlement.Entry[] memory entries)
        internal
        view
        returns (bytes32)
    {
        return net.leafHash(epoch, node, amount, entries);
    }
}
