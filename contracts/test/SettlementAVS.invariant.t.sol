// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test, Vm} from "./utils/Test.sol";
import {SettlementAVS} from "../src/SettlementAVS.sol";

/// @title OperatorsHandler
/// @notice Random but valid operator histories: bonding, top-ups, exits, withdrawals, attestations
///         and equivocation slashing by four operators with known keys.
contract OperatorsHandler {
    Vm internal constant vm = Vm(0x7109709ECfa91a80626fF3989D68f67F5b1DD12D);

    SettlementAVS public immutable avs;
    uint256[4] internal keys = [uint256(0x2001), 0x2002, 0x2003, 0x2004];
    address public constant REPORTER = address(0x4E90);
    uint256 public ghostBonded;
    uint256 public ghostWithdrawn;
    uint256 public ghostRewards;
    uint256 public slashEpoch;
    uint256 public attested;

    constructor(SettlementAVS avs_) {
        avs = avs_;
    }

    function operator(uint256 i) public view returns (address) {
        return vm.addr(keys[i % 4]);
    }

    function register(uint256 seed, uint256 amount) external {
        address op = operator(seed);
        (uint256 stake, uint64 exitAt, bool slashed) = avs.operatorInfo(op);
        if (slashed || exitAt != 0) return;
        amount = amount % 20 ether;
        if (stake + amount < avs.MIN_STAKE()) amount = avs.MIN_STAKE() - stake;
        vm.deal(op, amount);
        vm.prank(op);
        avs.register{value: amount}();
        ghostBonded += amount;
    }

    function requestExit(uint256 seed) external {
        address op = operator(seed);
        (uint256 stake, uint64 exitAt,) = avs.operatorInfo(op);
        if (stake == 0 || exitAt != 0) return;
        vm.prank(op);
        avs.requestExit();
    }

    function withdraw(uint256 seed) external {
        address op = operator(seed);
        (uint256 stake, uint64 exitAt,) = avs.operatorInfo(op);
        if (stake == 0 || exitAt == 0) return;
        if (block.timestamp < exitAt) vm.warp(exitAt);
        uint256 before = op.balance;
        vm.prank(op);
        avs.withdrawStake();
        require(op.balance - before == stake, "withdrew the wrong amount");
        ghostWithdrawn += stake;
    }

    function slash(uint256 seed) external {
        address op = operator(seed);
        if (avs.stakeOf(op) == 0) return;
        uint256 e = ++slashEpoch;
        bytes32 a = keccak256(abi.encode("a", e));
        bytes32 b = keccak256(abi.encode("b", e));
        (bytes memory sigA, bytes memory sigB) = (_sign(seed, e, a), _sign(seed, e, b));
        uint256 before = REPORTER.balance;
        vm.prank(REPORTER);
        avs.slashEquivocation(op, e, a, sigA, b, sigB);
        ghostRewards += REPORTER.balance - before;
    }

    /// @dev Ends the current epoch and attests it with every operator whose signature counts for it.
    function attestAll() external {
        vm.roll(block.number + avs.epochBlocks());
        uint256 e = avs.currentEpoch() - 1;
        if (avs.finalizedRoot(e) != bytes32(0)) return;
        bytes32 root = keccak256(abi.encode("root", e));
        address[] memory signers = new address[](4);
        bytes[] memory sigs = new bytes[](4);
        uint256 n;
        uint256 signed;
        // ascending addresses among the operators that count for epoch e
        address last;
        for (uint256 round; round < 4; round++) {
            address best;
            uint256 bestIndex;
            for (uint256 i; i < 4; i++) {
                address op = operator(i);
                if (avs.signingStake(op, e) == 0 || op <= last) continue;
                if (best == address(0) || op < best) (best, bestIndex) = (op, i);
            }
            if (best == address(0)) break;
            (signers[n], sigs[n]) = (best, _sign(bestIndex, e, root));
            signed += avs.signingStake(best, e);
            last = best;
            n++;
        }
        uint256 total = avs.epochStake(e);
        require(signed <= total, "signers hold more than the epoch's stake");
        if (n == 0 || signed * 3 < total * 2) return;
        assembly {
            mstore(signers, n)
            mstore(sigs, n)
        }
        avs.attest(e, root, signers, sigs);
        attested++;
    }

    function roll(uint8 blocks) external {
        vm.roll(block.number + blocks);
    }

    function warp(uint32 secs) external {
        vm.warp(block.timestamp + secs % 10 days);
    }

    function _sign(uint256 seed, uint256 e, bytes32 root) internal view returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(keys[seed % 4], avs.attestationDigest(e, root));
        return abi.encodePacked(r, s, v);
    }
}

/// @title SettlementAVSInvariantTest
/// @notice Every bonded wei is still bonded, withdrawn, paid to a reporter or burned; the quorum base
///         is exactly the stake of active operators.
contract SettlementAVSInvariantTest is Test {
    SettlementAVS internal avs;
    OperatorsHandler internal handler;

    function setUp() public {
        avs = new SettlementAVS(5);
        handler = new OperatorsHandler(avs);
        targetContract(address(handler));
    }

    /// forge-config: default.invariant.runs = 64
    function invariant_balanceIsStakesPlusBurned() public view {
        uint256 stakes;
        for (uint256 i; i < 4; i++) {
            stakes += avs.stakeOf(handler.operator(i));
        }
        assertEq(address(avs).balance, stakes + avs.burned(), "balance != stakes + burned");
    }

    /// forge-config: default.invariant.runs = 64
    function invariant_activeStakeIsSumOfActiveOperators() public view {
        uint256 active;
        for (uint256 i; i < 4; i++) {
            (uint256 stake, uint64 exitAt,) = avs.operatorInfo(handler.operator(i));
            if (exitAt == 0) active += stake;
        }
        assertEq(avs.totalActiveStake(), active, "totalActiveStake != sum of active stakes");
    }

    /// forge-config: default.invariant.runs = 64
    function invariant_moneyIsConserved() public view {
        assertEq(
            handler.ghostBonded(),
            address(avs).balance + handler.ghostWithdrawn() + handler.ghostRewards(),
            "bonded != held + withdrawn + rewards"
        );
    }
}
