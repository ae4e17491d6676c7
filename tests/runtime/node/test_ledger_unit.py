"""The ledger unit alone (:mod:`runtime.node.ledger`) for two honest parties, under random interleavings.

A payer's :class:`Ledger` (node A, paying B) and a payee's (node B), with no ``NodeCore``: the test
plays the glue the node core plays (custody of each piece at A, the link, FIFO wires both ways, the
payee's store) and drives the ledgers through their sans-IO API. Rules: hand-overs (the charge
accepted at the ack), receipts relayed by B (early, late within its relay cut-off, or after it: then
not relayed) and booked as owed, receipts reaching A (live: paid; counted lost but within the late
window: paid late; replayed or duplicated: nothing), vouchers signed, stored and acked, link breaks
(the forgiveness window) and reconnects (A re-sends its last voucher if B holds less), and payee
restarts (a fresh ledger from B's store: what it lost is raised again by the next voucher).

The credit rule's one assumption is kept: a receipt crosses the link in under half the late window
(and under the forgiveness window), so time never runs past that while one is on the wire.

Invariants: the payer never pays a charge without a receipt it verified (every piece it paid is one
B relayed), each paid once, and it signed exactly what it accepted; at quiescence (link up, wires
empty, past every window) every booked delivery whose receipt was not lost with a link is paid
exactly once, and the payee's ``owed`` equals the payer's ``pay_cumulative`` and the payee's
``recv_paid`` to the wei. Bounded examples by default (a few seconds).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from runtime.node.ledger import Account, Ledger
from runtime.node.wire import Voucher

CHANNEL = 7
PAYER = "0xa"
DEPOSIT = 10**30
LATE_WINDOW = 2.0  # late_receipt_window_s
RECONCILE = 1.0  # reconcile_window_s
TRANSIT = 0.9  # a receipt crosses the link within this (< LATE_WINDOW / 2 and < RECONCILE)
STATS = (
    "vouchers_sent",
    "vouchers_received",
    "paid_wei",
    "earned_wei",
    "late_receipts_paid_wei",
    "forgiven_on_disconnect_wei",
    "unpaid_for_lack_of_receipt_wei",
    "uncredited_for_lack_of_receipt_wei",
)


def _sig(channel: int, cumulative: int) -> bytes:
    return cumulative.to_bytes(32, "big") + channel.to_bytes(32, "big") + b"\x1b"


class _Signer:
    def sign(self, channel: int, cumulative: int) -> bytes:
        return _sig(channel, cumulative)


class _Verifier:
    def verify(self, channel: int, cumulative: int, signature: bytes, payer: str) -> bool:
        return payer == PAYER and bytes(signature) == _sig(channel, cumulative)


@dataclass
class _Piece:
    pid: int
    charge: int
    t_lost: float  # deadline + grace: A counts it lost from then
    gen: int  # the link it was handed over on
    at_a: str = "live"  # "live", "lost" (in its late window), "paid"
    at_b: bool = True  # B holds it (may still relay its receipt)

    @property
    def relay_cutoff(self) -> float:
        return self.t_lost + LATE_WINDOW / 2

    @property
    def window_end(self) -> float:
        return self.t_lost + LATE_WINDOW


def _payee(store: dict) -> tuple[Ledger, Account]:
    stats = dict.fromkeys(STATS, 0)
    return Ledger(True, RECONCILE, stats, verifier=_Verifier(), received=dict(store)), Account(peer="a")


class TwoLedgers(RuleBasedStateMachine):
    """See the module docstring."""

    @initialize()
    def setup(self) -> None:
        self.now = 0.0
        self.pay = Ledger(True, RECONCILE, dict.fromkeys(STATS, 0), signer=_Signer())
        self.a = Account(peer="b")
        self.pay.set_pay_channel(self.a, CHANNEL, DEPOSIT)
        self.store: dict = {}  # B's durable vouchers
        self.recv, self.b = _payee(self.store)
        self.recv.channel_checked(self.b, CHANNEL, DEPOSIT, PAYER)
        self.link_up, self.gen = True, 0
        self.to_a: deque = deque()  # ("receipt", pid, sent_at) | ("vack", VoucherAck), FIFO
        self.to_b: deque[Voucher] = deque()
        self.pieces: dict[int, _Piece] = {}
        self.booked: set[int] = set()  # receipts B relayed with credit
        self.lost_receipts: set[int] = set()  # ... of which died on the wire with a link
        self.paid: list[int] = []
        self.pay.on_vack(self.a, self.recv.vack(self.b), True)  # the first channel answer

    # ------------------------------------------------------------------ helpers

    def _advance_to(self, t: float) -> None:
        self.now = max(self.now, t)
        for p in self.pieces.values():
            if p.at_a == "live" and self.now >= p.t_lost:  # A's timeout: counted lost, pending charge unpaid
                assert not self.pay.settle(self.a, p.charge, delivered=False)
                p.at_a = "lost"

    def _pay(self, p: _Piece) -> None:
        assert p.pid in self.booked and p.pid not in self.paid, "paid without a relayed receipt, or twice"
        signed = self.pay.pay(self.a, p.charge, self.link_up)
        assert signed is not None
        record, voucher = signed
        assert record.cumulative == voucher.cumulative_wei == self.a.pay_cumulative
        self.paid.append(p.pid)
        p.at_a = "paid"
        self.to_b.append(voucher)

    def _on_receipt(self, pid: int) -> None:
        p = self.pieces[pid]
        if p.at_a == "live":
            assert self.pay.settle(self.a, p.charge, delivered=True)
            self._pay(p)
        elif p.at_a == "lost" and self.now <= p.window_end:
            self.pay.settle_late(self.a, p.charge)
            self._pay(p)
        # paid already (a replay or a duplicate) or past its late window: nothing moves

    def _drop_link(self) -> None:
        for item in self.to_a:
            if item[0] == "receipt" and item[1] not in self.paid:  # a copy of a paid one loses nothing
                self.lost_receipts.add(item[1])
        self.to_a.clear()
        self.to_b.clear()
        self.a.pay_confirmed = False  # NodeCore._detach
        self.link_up = False

    # ------------------------------------------------------------------ rules

    @precondition(lambda self: self.link_up)
    @rule(charges=st.lists(st.integers(1, 10**12), min_size=1, max_size=4), horizon=st.floats(0.05, 3.0))
    def hand_over(self, charges: list[int], horizon: float) -> None:
        for charge in charges:
            pid = len(self.pieces) + 1
            self.pieces[pid] = _Piece(pid, charge, self.now + horizon, self.gen)
            assert not self.pay.accept_charge(self.a, charge)  # on_delivery: pending until its receipt

    @precondition(lambda self: any(p.at_b for p in self.pieces.values()))
    @rule(i=st.integers(0, 10**6))
    def relay_receipt(self, i: int) -> None:
        held = [p for p in self.pieces.values() if p.at_b]
        p = held[i % len(held)]
        p.at_b = False
        if self.now > p.relay_cutoff:  # after B's window: not relayed, never owed
            self.recv.forfeit(p.charge)
            return
        linked = self.link_up and p.gen == self.gen
        self.recv.credit(self.b, p.charge, linked, self.now)
        if linked:
            self.booked.add(p.pid)
            self.to_a.append(("receipt", p.pid, self.now))

    @precondition(lambda self: self.link_up and (self.paid or self.to_a))
    @rule(i=st.integers(0, 10**6))
    def replay_receipt(self, i: int) -> None:
        """A receipt A already paid, or one still on the wire, comes (again)."""
        on_wire = [item[1] for item in self.to_a if item[0] == "receipt"]
        choices = self.paid + on_wire
        if self.link_up and choices:
            self.to_a.append(("receipt", choices[i % len(choices)], self.now))

    @precondition(lambda self: self.to_a)
    @rule()
    def deliver_to_a(self) -> None:
        if not self.to_a:
            return
        item = self.to_a.popleft()
        if item[0] == "receipt":
            self._on_receipt(item[1])
            return
        reason, again = self.pay.on_vack(self.a, item[1], self.link_up)
        assert reason is None, reason
        if again is not None:
            self.to_b.append(again)

    @precondition(lambda self: self.to_b)
    @rule()
    def deliver_to_b(self) -> None:
        if not self.to_b:
            return
        reason, record = self.recv.on_voucher(self.b, self.to_b.popleft())
        assert reason is None, reason
        self.store[record.channel_id] = record  # durable before it is acknowledged
        self.to_a.append(("vack", self.recv.vack(self.b)))

    @rule(dt=st.floats(0.01, 0.8))
    def advance(self, dt: float) -> None:
        limit = min((item[2] + TRANSIT for item in self.to_a if item[0] == "receipt"), default=float("inf"))
        self._advance_to(min(self.now + dt, max(self.now, limit)))

    @precondition(lambda self: self.link_up)
    @rule(go=st.integers(0, 2))
    def break_link(self, go: int) -> None:
        if go == 0:  # (one draw in three: breaks are rarer than traffic)
            self._drop_link()
            self.recv.forgive_unacknowledged(self.b, self.now)

    @precondition(lambda self: not self.link_up)
    @rule()
    def reconnect(self) -> None:
        if self.link_up:
            return
        self.link_up, self.gen = True, self.gen + 1
        if self.b.recv_channel is None:  # a restarted payee reads the channel again
            self.recv.channel_checked(self.b, CHANNEL, DEPOSIT, PAYER)
        self.to_a.append(("vack", self.recv.vack(self.b)))  # its answer to A's `channel` frame

    @rule(go=st.integers(0, 3))
    def restart_payee(self, go: int) -> None:
        if go != 0:
            return
        if self.link_up:
            self._drop_link()
        for p in self.pieces.values():
            p.at_b = False  # its custody died with it
        self.recv, self.b = _payee(self.store)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def payer_pays_only_verified_receipts_once(self) -> None:
        if not hasattr(self, "a"):
            return
        assert len(self.paid) == len(set(self.paid))
        assert set(self.paid) <= self.booked
        paid_wei = sum(self.pieces[pid].charge for pid in self.paid)
        assert self.a.pay_cumulative == self.a.accepted_wei == paid_wei == self.pay.stats["paid_wei"]
        assert self.a.pay_pending == sum(p.charge for p in self.pieces.values() if p.at_a == "live")

    @invariant()
    def payee_never_holds_more_than_signed(self) -> None:
        if not hasattr(self, "b"):
            return
        assert 0 <= self.b.recv_paid <= self.b.owed or self.b.recv_channel is None
        assert self.b.recv_paid <= self.a.pay_cumulative

    def teardown(self) -> None:
        if not hasattr(self, "a"):
            return
        if not self.link_up:
            self.reconnect()
        while self.to_a or self.to_b:  # quiescence: everything on the wires arrives (in time)
            self.deliver_to_a()
            self.deliver_to_b()
        self._advance_to(max((p.window_end for p in self.pieces.values()), default=0.0) + 1.0)
        assert self.a.pay_pending == 0
        assert set(self.paid) == self.booked - self.lost_receipts
        assert self.b.owed == self.b.recv_paid == self.a.pay_cumulative, (
            self.b.owed,
            self.b.recv_paid,
            self.a.pay_cumulative,
        )


def test_two_honest_ledgers_agree_to_the_wei():
    TwoLedgers.TestCase.settings = settings(
        max_examples=300,
        stateful_step_count=50,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    TwoLedgers.TestCase().runTest()
