"""The ledger and custody of honest nodes under random interleavings (hypothesis, stateful).

Three real ``NodeCore``s in a line, ``n0 -> n1 -> n2`` (source, relay, destination), wired by real
frames (:mod:`tests.runtime.node.fakes`). Rules interleave hand-overs with tight or loose deadlines,
time, a slow return link (receipts held back, then released: late receipts), replays and duplicates
of receipts already seen, link breaks and reconnects, and kill-and-restart of the source and of the
destination (a new core restored from its store, as ``runtime.node`` restarts). Invariants, after every step:

* no honest node pays for a piece that was not delivered: every piece a node settled as delivered
  carries the destination's signed receipt, so it is one the destination delivered;
* every delivery is paid at most once: a piece id is settled as delivered at most once per node
  (its record leaves custody) and nobody signed more than it accepted;
* at quiescence (links up, nothing held back, past every late window) both sides of every link agree
  to the wei: what the payee books as owed is what the payer signed and what the payee holds.

The default run is bounded (``max_examples`` small: a few seconds); the long run is deselected by
default (``-m "not hypothesis_long"`` in pytest's addopts) and runs with ``pytest -m hypothesis_long``
(``LEDGER_EXAMPLES=N`` examples, 500 unless set).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from runtime.node.protocol import Close
from runtime.node.wire import FrameDecoder, Piece, Receipt, encode
from tests.runtime.node.fakes import DEPOSIT, line

LATE_WINDOW = 2.0
SETTINGS = {"late_receipt_window_s": LATE_WINDOW, "reconcile_window_s": LATE_WINDOW / 2, "step_s": 0.01}
PAYLOAD = b"ledger" * 4


class HonestLedgers(RuleBasedStateMachine):
    """See the module docstring."""

    @initialize()
    def setup(self) -> None:
        self.fab = line(3, **SETTINGS, id_salt=0)
        self.lives = 0
        self.next_pid = 1
        self.held: list[tuple[str, int, bytes]] = []  # frames to n0 held back (a slow return link)
        self.hold_since: float | None = None
        self.receipts: list[Receipt] = []  # receipts n0 has been sent (for replays)
        self.settled_at_n0: set[int] = set()
        self.delivered: set[int] = set()
        real = self.fab.inject

        def inject(node: str, conn: int, data: bytes) -> None:
            if node == "n0" and data:
                if self.hold_since is not None:
                    self.held.append((node, conn, data))
                    return
                for msg in FrameDecoder().feed(data):  # receipts n0 has received (replayable)
                    if isinstance(msg, Receipt):
                        self.receipts.append(msg)
            real(node, conn, data)

        self._real_inject = real
        self.fab.inject = inject

    # ------------------------------------------------------------------ helpers

    def core(self, name: str):
        return self.fab.cores[name]

    def linked(self, a: str, b: str) -> bool:
        return self.core(a).peers[b].conn is not None and self.core(b).peers[a].conn is not None

    def release(self) -> None:
        held, self.held, self.hold_since = self.held, [], None
        # in their order, ahead of anything sent since (the link is a FIFO, like TCP)
        self.fab.queue.extendleft(reversed(held))
        self.fab.run("n0", [])

    def advance(self, seconds: float, step: float = 0.01) -> None:
        end = self.fab.now + seconds
        while self.fab.now < end:
            # a receipt is held back at most a third of the late window (the credit rule's assumption)
            if self.hold_since is not None and self.fab.now - self.hold_since > LATE_WINDOW / 3:
                self.release()
            self.fab.advance(min(0.05, end - self.fab.now), step=step)

    # ------------------------------------------------------------------ rules

    @precondition(lambda self: self.core("n0").peers["n1"].conn is not None)
    @rule(ttl=st.sampled_from([0.03, 0.08, 0.2, 1.0]), size=st.sampled_from([0.5, 1.0, 1.5]))
    def hand_over(self, ttl: float, size: float) -> None:
        n0, fab = self.core("n0"), self.fab
        pid = (self.lives << 32) + self.next_pid
        self.next_pid += 1
        piece = Piece(pid, "n0", "n2", fab.now, fab.now + ttl, 1.0, size, 0, PAYLOAD, self.core("n2").s.address)
        n0.custody.hold(pid, piece.deadline)
        fab.run("n0", n0._forward(piece, None, fab.now, n0.peers["n1"], fab.now))

    @rule(seconds=st.sampled_from([0.01, 0.05, 0.2, 0.5]))
    def wait(self, seconds: float) -> None:
        self.advance(seconds)

    @precondition(lambda self: self.hold_since is None)
    @rule()
    def slow_return_link(self) -> None:
        self.hold_since = self.fab.now

    @precondition(lambda self: self.hold_since is not None)
    @rule()
    def return_link_catches_up(self) -> None:
        self.release()

    @precondition(lambda self: bool(self.receipts) and self.core("n0").peers["n1"].conn is not None)
    @rule(data=st.data(), times=st.integers(1, 3))
    def replay_receipt(self, data, times: int) -> None:
        r = data.draw(st.sampled_from(self.receipts))
        conn = self.core("n0").peers["n1"].conn
        for _ in range(times):
            self._real_inject("n0", conn, encode(r))

    @rule(pair=st.sampled_from([("n0", "n1"), ("n1", "n2")]))
    def break_link(self, pair: tuple[str, str]) -> None:
        a, b = pair
        conn = self.core(a).peers[b].conn
        if conn is not None:
            self.fab.run(a, [Close(conn, "test: link broken")])

    @rule(pair=st.sampled_from([("n0", "n1"), ("n1", "n2")]))
    def reconnect(self, pair: tuple[str, str]) -> None:
        a, b = pair
        self.release()  # a handshake held back on the slow link would look like no connection
        if self.core(a).peers[b].conn is None and self.core(b).peers[a].conn is None:
            self.fab.connect(a, b)
            self.advance(0.05)

    @rule()
    def kill_and_restart_source(self) -> None:
        """kill -9 of n0: its memory is gone, its store (the vouchers it signed) survives."""
        fab = self.fab
        conn = self.core("n0").peers["n1"].conn
        self.release()
        if conn is not None:
            fab.run("n0", [Close(conn, "test: killed")])
        store = fab.stores["n0"]
        sent = store.latest("sent")
        self.lives += 1
        self.next_pid = 1
        n0 = fab.add("n0", 0, ["n1"], **SETTINGS, id_salt=self.lives)
        fab.stores["n0"] = store
        for cid, v in sent.items():
            fab.run("n0", n0.set_pay_channel("n1", cid, DEPOSIT, v.cumulative))
        if not sent:  # never paid yet: the channel is still the one opened at the start
            cid = next(c for c, (payer, *_rest) in fab.chain.channels.items() if payer == n0.s.address)
            fab.run("n0", n0.set_pay_channel("n1", cid, DEPOSIT))
        self.settled_at_n0 = set()
        self.receipts = []  # an honest relay never brings a dead life's receipts to the new one

    @rule()
    def kill_and_restart_destination(self) -> None:
        """kill -9 of n2 (a payee): its memory is gone, the vouchers it holds survive in its store."""
        fab = self.fab
        conn = self.core("n2").peers["n1"].conn
        if conn is not None:
            fab.run("n2", [Close(conn, "test: killed")])
        store = fab.stores["n2"]
        fab.add("n2", 2, ["n1"], core_kwargs={"received": store.latest("received")}, **SETTINGS, id_salt=0)
        fab.stores["n2"] = store
        n1 = self.core("n1")
        if n1.peers["n2"].conn is None:
            fab.connect("n1", "n2")
            self.advance(0.05)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def only_deliveries_are_paid_and_at_most_once(self) -> None:
        delivered = self.delivered
        delivered |= self.core("n2").delivered_ids  # every life of the destination
        for name in ("n0", "n1"):
            core = self.core(name)
            for pid, (_peer, how) in core.custody.resolved.items():
                if how == "receipt":
                    assert pid in delivered, (name, pid)
            for p in core.peers.values():
                assert p.pay_cumulative <= p.guard.accepted_wei + self._restored(name, p)
        n0 = self.core("n0")
        paid = {pid for pid, (_p, how) in n0.custody.resolved.items() if how == "receipt"}
        assert n0.stats["receipts_verified"] == len(paid)  # each settled once

    def _restored(self, name: str, p) -> int:
        """What a restarted payer signed in earlier lives (its store's base, not re-accepted)."""
        store = self.fab.stores[name]
        latest = store.latest("sent")
        return latest[p.pay_channel].cumulative if p.pay_channel in latest else 0

    def teardown(self) -> None:
        """Quiescence: release, reconnect, wait past every window; then both sides agree to the wei."""
        if not hasattr(self, "fab"):
            return
        self.release()
        for a, b in (("n0", "n1"), ("n1", "n2")):
            if self.core(a).peers[b].conn is None and self.core(b).peers[a].conn is None:
                self.fab.connect(a, b)
        self.advance(LATE_WINDOW + 1.0, step=0.05)
        self.release()
        self.advance(0.3)
        for payer, payee in (("n0", "n1"), ("n1", "n2")):
            pr, pe = self.core(payer).peers[payee], self.core(payee).peers[payer]
            assert pe.owed == pe.recv_paid == pr.pay_cumulative, (
                payer,
                payee,
                pe.owed,
                pe.recv_paid,
                pr.pay_cumulative,
            )
            assert pr.pay_pending == 0
        for name in ("n0", "n1", "n2"):
            bad = [r for r in self.fab.reasons(name) if not r.startswith(("test:",))]
            assert not bad, (name, bad)


EXAMPLES = int(os.environ.get("LEDGER_EXAMPLES", "500"))
LONG = pytest.mark.hypothesis_long


def _run(examples: int, steps: int) -> None:
    HonestLedgers.TestCase.settings = settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    HonestLedgers.TestCase().runTest()


def test_honest_ledgers_reconcile_under_random_interleavings():
    _run(examples=8, steps=20)


@LONG
def test_honest_ledgers_reconcile_long_run():
    _run(examples=EXAMPLES, steps=60)
