// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test, Vm} from "./utils/Test.sol";
import {StreamChannels} from "../src/StreamChannels.sol";

/// @notice A payee contract that refuses ETH: every payment to it becomes a credit it pulls later.
contract RejectingWallet {
    receive() external payable {
        revert("no ETH here");
    }

    function withdrawTo(StreamChannels sc, address to) external {
        sc.withdraw(to);
    }
}

/// @title ChannelsHandler
/// @notice Drives StreamChannels through random but valid histories for the invariant test: opens,
///         top-ups, claims (single and batched, with duplicates), closes, finalisations and releases
///         by three payers and three payees (one of them a contract that refuses ETH, so it is paid by
///         credit and withdraws). It keeps ghost totals of every wei in and out, and a
///         snapshot of each channel at the moment it was settled.
contract ChannelsHandler {
    Vm internal constant vm = Vm(0x7109709ECfa91a80626fF3989D68f67F5b1DD12D);

    struct Snapshot {
        address payer;
        address payee;
        uint256 deposit;
        uint256 claimed;
        uint64 closesAt;
    }

    StreamChannels public immutable sc;
    uint256[3] internal payerKeys = [uint256(0xA11CE), 0xB0B, 0xC4A5];
    address[3] internal payees;
    RejectingWallet public immutable wallet;
    address public constant SINK = address(0x51D);

    uint256[] public ids;
    mapping(uint256 id => uint256 keyIndex) public keyOf;
    mapping(uint256 id => Snapshot) internal _settledSnapshot;

    uint256 public ghostDeposited;
    uint256 public ghostPaidToPayees;
    uint256 public ghostRefunded;
    uint256 public ghostWithdrawn;
    mapping(bytes32 => uint256) public calls;

    constructor(StreamChannels sc_) {
        sc = sc_;
        wallet = new RejectingWallet();
        payees = [address(0xBEEF01), address(0xBEEF02), address(wallet)];
    }

    /*//////////////////////////////////////////////////////////////
                                ACTIONS
    //////////////////////////////////////////////////////////////*/

    function open(uint256 payerSeed, uint256 payeeSeed, uint256 deposit, uint64 extraPeriod) external {
        uint256 k = payerSeed % 3;
        address payer = vm.addr(payerKeys[k]);
        deposit = deposit % 100 ether;
        uint64 period = sc.MIN_CHALLENGE_PERIOD() + extraPeriod % 2 days;
        vm.deal(payer, deposit);
        vm.prank(payer);
        uint256 id = sc.open{value: deposit}(payees[payeeSeed % 3], period);
        ids.push(id);
        keyOf[id] = k;
        ghostDeposited += deposit;
        calls["open"]++;
    }

    function topUp(uint256 idSeed, uint256 amount) external {
        (bool found, uint256 id) = _openChannel(idSeed);
        if (!found) return;
        amount = amount % 50 ether;
        address funder = address(uint160(0xF00D + idSeed % 5));
        vm.deal(funder, amount);
        vm.prank(funder);
        sc.topUp{value: amount}(id);
        ghostDeposited += amount;
        calls["topUp"]++;
    }

    function claim(uint256 idSeed, uint256 amountSeed, uint256 submitterSeed) external {
        (bool found, uint256 id) = _openChannel(idSeed);
        if (!found) return;
        (, address payee, uint256 deposit, uint256 claimed, uint64 closesAt,) = sc.channel(id);
        if (closesAt != 0 && block.timestamp >= closesAt) return; // only finalizeClose is valid now
        uint256 amount = deposit == 0 ? 0 : amountSeed % (deposit + 1);
        bytes memory sig = _sign(id, amount);
        uint256 before = payee.balance;
        uint256 creditBefore = sc.withdrawable(payee);
        vm.prank(address(uint160(0x5B + submitterSeed % 7)));
        sc.claim(id, amount, sig);
        uint256 paid = payee.balance - before;
        uint256 credited = sc.withdrawable(payee) - creditBefore;
        require(paid + credited == (amount > claimed ? amount - claimed : 0), "claim paid the wrong amount");
        require(paid == 0 || credited == 0, "paid and credited at once");
        ghostPaidToPayees += paid;
        calls["claim"]++;
    }

    function claimBatch(uint256 seed, uint8 count) external {
        uint256 n = uint256(count) % 6 + 1;
        uint256[] memory batchIds = new uint256[](n);
        uint256[] memory amounts = new uint256[](n);
        bytes[] memory sigs = new bytes[](n);
        for (uint256 i; i < n; i++) {
            (bool found, uint256 id) = _openChannel(uint256(keccak256(abi.encode(seed, i))));
            if (!found) return;
            (,, uint256 deposit,,,) = sc.channel(id);
            uint256 amount = deposit == 0 ? 0 : uint256(keccak256(abi.encode(seed, i, 1))) % (deposit + 1);
            (batchIds[i], amounts[i], sigs[i]) = (id, amount, _sign(id, amount));
        }
        uint256 before = _payeeBalances();
        sc.claimBatch(batchIds, amounts, sigs);
        ghostPaidToPayees += _payeeBalances() - before;
        calls["claimBatch"]++;
    }

    function withdrawCredit() external {
        uint256 amount = sc.withdrawable(address(wallet));
        if (amount == 0) return;
        uint256 before = SINK.balance;
        wallet.withdrawTo(sc, SINK);
        require(SINK.balance - before == amount, "withdrew the wrong amount");
        ghostWithdrawn += amount;
        calls["withdraw"]++;
    }

    function startClose(uint256 idSeed) external {
        (bool found, uint256 id) = _openChannel(idSeed);
        if (!found) return;
        (address payer,,,, uint64 closesAt,) = sc.channel(id);
        if (closesAt != 0) return;
        vm.prank(payer);
        sc.startClose(id);
        calls["startClose"]++;
    }

    function finalizeClose(uint256 idSeed) external {
        (bool found, uint256 id) = _openChannel(idSeed);
        if (!found) return;
        (address payer,,,, uint64 closesAt,) = sc.channel(id);
        if (closesAt == 0) return;
        if (block.timestamp < closesAt) vm.warp(closesAt);
        _snapshotAndSettle(id, payer, false);
        calls["finalizeClose"]++;
    }

    function release(uint256 idSeed) external {
        (bool found, uint256 id) = _openChannel(idSeed);
        if (!found) return;
        (address payer,,,,,) = sc.channel(id);
        _snapshotAndSettle(id, payer, true);
        calls["release"]++;
    }

    function warp(uint32 seconds_) external {
        vm.warp(block.timestamp + seconds_ % 3 days);
        calls["warp"]++;
    }

    /*//////////////////////////////////////////////////////////////
                                 VIEWS
    //////////////////////////////////////////////////////////////*/

    function idCount() external view returns (uint256) {
        return ids.length;
    }

    function settledSnapshot(uint256 id) external view returns (Snapshot memory) {
        return _settledSnapshot[id];
    }

    /*//////////////////////////////////////////////////////////////
                                INTERNALS
    //////////////////////////////////////////////////////////////*/

    /// @dev Picks an unsettled channel, starting at a random index and scanning forward.
    function _openChannel(uint256 seed) internal view returns (bool, uint256) {
        uint256 n = ids.length;
        if (n == 0) return (false, 0);
        for (uint256 i; i < n; i++) {
            uint256 id = ids[(seed % n + i) % n];
            (,,,,, bool settled) = sc.channel(id);
            if (!settled) return (true, id);
        }
        return (false, 0);
    }

    function _sign(uint256 id, uint256 amount) internal view returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(payerKeys[keyOf[id]], sc.voucherDigest(id, amount));
        return abi.encodePacked(r, s, v);
    }

    function _payeeBalances() internal view returns (uint256 total) {
        for (uint256 i; i < 3; i++) {
            total += payees[i].balance;
        }
    }

    function _snapshotAndSettle(uint256 id, address payer, bool byPayee) internal {
        uint256 before = payer.balance;
        if (byPayee) {
            (, address payee,,,,) = sc.channel(id);
            vm.prank(payee);
            sc.release(id);
        } else {
            sc.finalizeClose(id);
        }
        ghostRefunded += payer.balance - before;
        (address p, address q, uint256 deposit, uint256 claimed, uint64 closesAt,) = sc.channel(id);
        require(payer.balance - before == deposit - claimed, "refund is not deposit - claimed");
        _settledSnapshot[id] = Snapshot(p, q, deposit, claimed, closesAt);
    }
}

/// @title StreamChannelsInvariantTest
/// @notice Whatever the history, the contract holds exactly the unclaimed deposits of unsettled
///         channels plus the credits of failed pushes, no channel ever pays more than its deposit,
///         and settled channels are frozen.
contract StreamChannelsInvariantTest is Test {
    StreamChannels internal sc;
    ChannelsHandler internal handler;

    function setUp() public {
        sc = new StreamChannels();
        handler = new ChannelsHandler(sc);
        targetContract(address(handler));
    }

    /// @notice balance == Σ over unsettled channels of (deposit - claimed) + Σ credits.
    function invariant_balanceEqualsUnsettledOutstanding() public view {
        uint256 outstanding = sc.withdrawable(address(handler.wallet()));
        uint256 last = sc.nextChannelId();
        for (uint256 id = 1; id < last; id++) {
            (,, uint256 deposit, uint256 claimed,, bool settled) = sc.channel(id);
            if (!settled) outstanding += deposit - claimed;
        }
        assertEq(address(sc).balance, outstanding, "balance != sum of unsettled (deposit - claimed) + credits");
    }

    /// @notice claimed <= deposit for every channel, at every step.
    function invariant_claimedNeverExceedsDeposit() public view {
        uint256 last = sc.nextChannelId();
        for (uint256 id = 1; id < last; id++) {
            (,, uint256 deposit, uint256 claimed,,) = sc.channel(id);
            assertLe(claimed, deposit, "claimed > deposit");
        }
    }

    /// @notice A settled channel never changes again.
    function invariant_settledChannelsAreFrozen() public view {
        uint256 n = handler.idCount();
        for (uint256 i; i < n; i++) {
            uint256 id = handler.ids(i);
            (address p, address q, uint256 deposit, uint256 claimed, uint64 closesAt, bool settled) = sc.channel(id);
            if (!settled) continue;
            ChannelsHandler.Snapshot memory snap = handler.settledSnapshot(id);
            assertEq(p, snap.payer, "payer changed after settlement");
            assertEq(q, snap.payee, "payee changed after settlement");
            assertEq(deposit, snap.deposit, "deposit changed after settlement");
            assertEq(claimed, snap.claimed, "claimed changed after settlement");
            assertEq(uint256(closesAt), uint256(snap.closesAt), "closesAt changed after settlement");
        }
    }

    /// @notice Every wei deposited is either still held, paid to a payee, refunded to a payer, or
    ///         withdrawn from a credit.
    function invariant_moneyIsConserved() public view {
        assertEq(
            handler.ghostDeposited(),
            address(sc).balance + handler.ghostPaidToPayees() + handler.ghostRefunded() + handler.ghostWithdrawn(),
            "deposited != held + paid + refunded + withdrawn"
        );
    }
}
