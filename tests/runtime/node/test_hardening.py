"""A node that survives a hostile neighbour (issue 11), driven in memory through real frames.

Each test plays one attack of the review against ``NodeCore`` with a hand-driven (muted) peer and
checks the class of fix: nothing a peer says moves money, every per-peer resource is bounded.
The same attacks run as real processes in ``test_attacks.py``.
"""

from __future__ import annotations

import math

import pytest

from runtime.node.protocol import MAX_ROUTE_STEPS, MAX_ROUTES, CheckChannel, Durable, Send
from runtime.node.wire import (
    MAX_U64,
    Ack,
    ChannelInfo,
    Forwarded,
    OutgoingFrameError,
    Piece,
    Quote,
    Routes,
    VoucherAck,
    decode_payload,
    encode,
)
from tests.runtime.node.fakes import DEPOSIT, Fabric, line


def handed(fab: Fabric, payer: str, payee: str, pid: int, size: float = 1.0) -> None:
    """``payer`` hands piece ``pid`` to ``payee`` (the payee is muted: we answer for it)."""
    core = fab.cores[payer]
    p = core.peers[payee]
    fab.run(payer, core._forward(Piece(pid, payer, payee, fab.now, fab.now + 5, 1.0, size, 0), None, fab.now, p,
                                 fab.now))  # fmt: skip


def sent_vouchers(fab: Fabric, node: str) -> dict[int, int]:
    return {cid: v.cumulative for cid, v in fab.stores[node].latest("sent").items()}


# ------------------------------------------------------------------ money moves only on what we signed


def test_a_forged_vack_moves_no_money():
    fab = line(2, payment="per_hop")  # a voucher follows each accepted charge at once
    fab.mute.add("n1")
    n0 = fab.cores["n0"]
    p = n0.peers["n1"]
    before = p.pay_cumulative
    handed(fab, "n0", "n1", 42)
    fab.inject("n0", p.conn, encode(VoucherAck(p.pay_channel, DEPOSIT - 10**15)))  # the demonstrated drain
    assert n0.rejections["forged vack"] == 1 and n0.rejections_by_peer["n1"]["forged vack"] == 1
    assert p.pay_cumulative == before and p.guard.pay_acked == 0
    fab.inject("n0", p.conn, encode(Ack(42, True, p.quote_wei)))  # then one honest charge (7 wei in the review)
    assert p.pay_cumulative == before + p.quote_wei == p.guard.accepted_wei  # paid that charge, not the forgery
    assert all(v <= before + p.quote_wei for v in sent_vouchers(fab, "n0").values())


def test_an_honest_charge_after_a_forged_vack_is_paid_from_our_own_ledger():
    fab = line(2, payment="per_hop")  # a voucher follows each accepted charge at once
    fab.mute.add("n1")
    n0 = fab.cores["n0"]
    p = n0.peers["n1"]
    handed(fab, "n0", "n1", 7)
    charge = p.quote_wei  # size 1
    fab.inject("n0", p.conn, encode(Ack(7, True, charge)))
    signed = p.pay_cumulative
    assert signed == charge and sent_vouchers(fab, "n0")[p.pay_channel] == charge
    fab.inject("n0", p.conn, encode(VoucherAck(p.pay_channel, signed)))  # a true vack: accepted
    assert p.conn is not None and p.guard.pay_acked == signed
    fab.inject("n0", p.conn, encode(VoucherAck(p.pay_channel, signed - 1)))  # below, never signed: stale
    assert p.conn is not None
    handed(fab, "n0", "n1", 8)
    fab.inject("n0", p.conn, encode(Ack(8, True, charge)))
    # a vack between two signed amounts names one this node never signed
    fab.inject("n0", p.conn, encode(VoucherAck(p.pay_channel, signed + 1)))
    assert n0.rejections["forged vack"] == 1 and p.guard.pay_acked == signed
    assert p.pay_cumulative == 2 * charge == p.guard.accepted_wei


# ------------------------------------------------------------------ pieces: size, credit, fair scheduling


@pytest.mark.parametrize("size", [0.0, 1e12, 4.5])
def test_piece_sizes_outside_the_range_are_refused(size):
    fab = line(2)
    n1 = fab.cores["n1"]
    conn = n1.peers["n0"].conn
    fab.mute.add("n0")
    acts = n1.frame_received(conn, Piece(5, "n0", "n1", fab.now, fab.now + 5, 1.0, size, 0), fab.now)
    assert n1.rejections["piece size"] == 1
    assert [a.msg.accepted for a in acts if isinstance(a, Send) and isinstance(a.msg, Ack)] == [False]
    assert n1.backlog == 0 and n1.peers["n0"].owed == 0 and n1._serving is None


def test_one_peer_with_large_pieces_delays_another_by_at_most_one_piece_per_turn():
    fab = line(3, capacity=1.0, queue_limit=40)
    n1 = fab.cores["n1"]
    fab.mute.update({"n0", "n2"})
    big, small = n1.peers["n0"].conn, n1.peers["n2"].conn
    for i in range(8):  # n0 queues eight of the largest pieces
        fab.inject("n1", big, encode(Piece(100 + i, "n0", "n2", fab.now, fab.now + 60, 1.0, 4.0, 0)))
    t0 = fab.now
    fab.inject("n1", small, encode(Piece(999, "n2", "n0", fab.now, fab.now + 60, 1.0, 0.5, 0)))
    step = n1.s.step_s

    def pending() -> bool:
        serving = n1._serving is not None and n1._serving[1].piece.piece_id == 999
        return serving or any(q.piece.piece_id == 999 for q in n1.peers["n2"].guard.inbox)

    while pending() and fab.now - t0 < 1.0:
        fab.advance(step / 2, step=step / 2)
    waited = (fab.now - t0) / step
    # the 4.0 piece in service and at most one more of n0's (its turn came first), then its own 0.5
    assert waited <= 2 * 4.0 + 0.5 + 1.0, waited
    assert len(n1.peers["n0"].guard.inbox) >= 5  # n0's pieces still wait: they did not go first


def test_queue_share_and_credit_are_checked_when_a_piece_arrives():
    fab = line(3, queue_limit=8, unpaid_limit_wei=10**15)
    n1 = fab.cores["n1"]
    fab.mute.update({"n0", "n2"})
    conn = n1.peers["n0"].conn
    for i in range(10):
        fab.inject("n1", conn, encode(Piece(200 + i, "n0", "n2", fab.now, fab.now + 60, 1.0, 1.0, 0)))
    share = n1._peer_share()
    queued = len(n1.peers["n0"].guard.inbox) + (n1._serving is not None)
    assert queued <= share + 1 and n1.stats["refused"] >= 10 - share - 1
    # credit: a payer whose queued pieces would pass its credit is refused before anything is queued
    fab2 = line(2, unpaid_limit_wei=3 * 24 * 10**9)
    n1 = fab2.cores["n1"]
    fab2.mute.add("n0")
    conn = n1.peers["n0"].conn
    for i in range(6):
        fab2.inject("n1", conn, encode(Piece(300 + i, "n0", "n1", fab2.now, fab2.now + 60, 1.0, 1.0, 0)))
    g = n1.peers["n0"]
    assert g.guard.reserved_wei + g.owed - g.recv_paid <= n1.s.unpaid_limit_wei
    assert n1.stats["refused"] >= 3


def test_a_peer_that_leaves_takes_its_queued_pieces_with_it():
    fab = line(3, queue_limit=40)
    n1 = fab.cores["n1"]
    fab.mute.update({"n0", "n2"})
    conn = n1.peers["n0"].conn
    for i in range(6):
        fab.inject("n1", conn, encode(Piece(400 + i, "n0", "n2", fab.now, fab.now + 60, 1.0, 4.0, 0)))
    assert n1.backlog == 6
    fab.run("n1", n1.connection_lost(conn))
    assert n1.backlog == 1 and not n1.peers["n0"].guard.inbox  # only the one in service remains
    fab.advance(0.2)
    assert n1.backlog == 0 and n1.peers["n0"].owed == 0  # and it is discarded, not charged


# ------------------------------------------------------------------ routes and outgoing frames


def test_a_poisoned_route_is_unreachable_and_every_advertisement_stays_decodable():
    fab = line(3)
    n1 = fab.cores["n1"]
    conn = n1.peers["n0"].conn
    fab.mute.add("n0")
    poison = {f"d{i}": 1e12 for i in range(50)} | {"n2": 1e12, "far": MAX_ROUTE_STEPS + 1, "near": 3.0}
    fab.inject("n1", conn, encode(Routes(poison)))
    assert n1.peers["n0"].routes == {"near": 3.0}
    assert n1.rejections["unreachable routes"] == 1
    msg = n1._routes_msg("n2")
    assert all(0 <= v <= MAX_ROUTE_STEPS for v in msg.dist.values())
    decode_payload(encode(msg)[4:])  # what n2's strict decoder receives
    # many long names: the advertisement is cut to what a frame carries, never above the decoder's limits
    n1.peers["n0"].routes = {("x" * 60) + str(i): 1.0 for i in range(4000)}
    msg = n1._routes_msg("n2")
    assert len(msg.dist) <= MAX_ROUTES and len(encode(msg)) < 64 * 1024
    fab.advance(0.6)
    assert not fab.reasons("n2") and n1.peers["n2"].conn is not None  # n2 never had to drop n1


def test_unsendable_frames_raise_a_protocol_error_not_an_overflow():
    with pytest.raises(OutgoingFrameError):
        encode(Ack(1, True, MAX_U64 + 1))
    with pytest.raises(OutgoingFrameError):
        encode(Routes({"a": 2e12}))
    with pytest.raises(OutgoingFrameError):
        encode(Piece(1, "a", "b", 0.0, 0.0, 1.0, 1.0, 0, payload=bytes(61 * 1024)))
    fab = line(2)
    n1 = fab.cores["n1"]
    n1.quote_wei = n1._last_quote_sent = n1._quote_wei(1e300)  # a quote that would overflow
    assert n1._charge(10.0) <= MAX_U64
    encode(Ack(1, True, n1._charge(4.0)))


# ------------------------------------------------------------------ channel frames, lookups, logs


def test_channel_info_is_idempotent_and_lookups_are_rate_limited():
    fab = line(2)
    n1 = fab.cores["n1"]
    conn = n1.peers["n0"].conn
    cid = n1.peers["n0"].recv_channel
    actions = []
    for _ in range(2000):
        actions.extend(n1.frame_received(conn, ChannelInfo(cid), fab.now))
    assert not any(isinstance(a, CheckChannel | Durable) for a in actions)
    assert sum(isinstance(a, Send) for a in actions) <= 1  # at most one vack per connection
    logged = [e for e, _ in fab.logs["n1"] if e in ("ignore", "reject", "channel_in")]
    assert len(logged) <= 21 and n1.rejections["duplicate channel info"] >= 1999
    # an unverified peer asking repeatedly: one lookup at a time, at most one per interval
    n1.peers["n0"].recv_channel = None
    acts = []
    for _ in range(500):
        acts.extend(n1.frame_received(conn, ChannelInfo(cid), fab.now))
    assert not any(isinstance(a, CheckChannel) for a in acts)  # within the interval of the last lookup: deferred
    fab.now += n1.s.chain_check_interval_s
    acts = n1.poll(fab.now)
    for _ in range(500):
        acts.extend(n1.frame_received(conn, ChannelInfo(cid), fab.now))
    assert sum(isinstance(a, CheckChannel) for a in acts) == 1  # one lookup, then the repeats wait for it


# ------------------------------------------------------------------ prices


def test_a_gouging_neighbour_is_left_out_of_the_market_and_never_routed_to():
    fab = line(3)
    n1 = fab.cores["n1"]
    fair = n1.quote_wei
    gouger = n1.peers["n2"]
    fab.inject("n1", gouger.conn, encode(Quote(fair * 3000)))
    n1._update_quote()
    assert n1.quote_wei < 2 * fair  # it does not follow the outlier
    assert n1.price_ceiling_wei() < fair * 3000
    mask = n1._mask_row(1.0, n1.price_ceiling_wei())
    assert not mask[gouger.slot] and mask[n1.peers["n0"].slot]


def test_honest_quote_changes_around_pieces_in_flight_are_never_an_overcharge():
    fab = line(2, payment="per_hop")  # a voucher follows each accepted charge at once
    fab.mute.add("n1")
    n0, n1 = fab.cores["n0"], fab.cores["n1"]
    p = n0.peers["n1"]
    for pid in range(10, 16):
        handed(fab, "n0", "n1", pid)
        n1.quote_wei = n1.quote_wei * 3  # the target jumps; the announcement rises by at most the step
        for act in n1._update_quote():
            if isinstance(act.msg, Quote):
                fab.inject("n0", p.conn, encode(act.msg))
        fab.inject("n0", p.conn, encode(Ack(pid, True, n1._charge(1.0))))  # charged at the announced quote
    assert p.conn is not None and not fab.reasons("n0")
    assert p.pay_cumulative == p.guard.accepted_wei > 0


@pytest.mark.parametrize("payment", ["per_hop", "on_delivery"])
def test_a_late_ack_is_paid_not_punished_and_an_unknown_one_ignored(payment):
    fab = line(2, payment=payment)
    fab.mute.add("n1")
    n0 = fab.cores["n0"]
    p = n0.peers["n1"]
    handed(fab, "n0", "n1", 77)
    fab.advance(5 + n0._grace + 0.2)  # past the deadline and the grace: counted lost
    assert 77 not in n0.inflight and n0.stats["outcomes_lost"] >= 1
    fab.inject("n0", p.conn, encode(Ack(77, True, p.quote_wei)))
    # per_hop: the charge it took is still owed; on_delivery: no receipt by deadline + grace, never paid
    paid = p.quote_wei if payment == "per_hop" else 0
    assert p.conn is not None and p.pay_cumulative == paid
    fab.inject("n0", p.conn, encode(Ack(123456, True, 10**15)))
    assert p.conn is not None and p.pay_cumulative == paid and n0.rejections["unsolicited ack"] == 1


def test_throughput_and_delay_are_measured_locally_not_from_the_peers_figures():
    samples = []
    for wait in (0.0, 1e6):
        fab = line(2)
        fab.mute.add("n1")
        n0 = fab.cores["n0"]
        p = n0.peers["n1"]
        handed(fab, "n0", "n1", 5)
        fab.advance(0.05)
        fab.inject("n0", p.conn, encode(Ack(5, True, p.quote_wei, wait)))
        fab.inject("n0", p.conn, encode(Forwarded(5, wait)))  # a queue delay it reports about itself
        samples.append((n0._mem_queue["transfers"][1][-1], n0._mem_queue["delays"][1][-1]))
    assert samples[0] == samples[1] and samples[0][0] < 1.0 and samples[0][1] < 10.0


# ------------------------------------------------------------------ handshakes


def test_outbound_dials_do_not_count_and_one_source_cannot_take_every_place():
    fab = line(2, max_pending_handshakes=6, max_pending_per_source=3)
    n1 = fab.cores["n1"]
    for i in range(10):  # our own dials, not yet answered
        n1.connection_made(5000 + i, True, fab.now, expected="n0")
    for i in range(10):
        n1.connection_made(6000 + i, False, fab.now, source="10.0.0.66")
    for i in range(3):
        n1.connection_made(7000 + i, False, fab.now, source="10.0.0.7")
    live = lambda src: [c for c in n1.conns.values() if c.source == src and not c.closed]  # noqa: E731
    assert len(live("10.0.0.66")) == 3 and len(live("10.0.0.7")) == 3
    assert sum(1 for c in n1.conns.values() if c.outbound and not c.closed) == 10
    assert n1.rejections["handshake evicted"] >= 7


# ------------------------------------------------------------------ property: random frames from a peer


def _frames():
    from hypothesis import strategies as st

    from runtime.node.wire import Bye, Forwarded, Outcome, Voucher

    amount = st.one_of(st.integers(0, 10**12), st.integers(0, MAX_U64), st.just(DEPOSIT - 10**15))
    pid = st.integers(0, 40)
    f = st.floats(0, 1e12, allow_nan=False)
    names = st.sampled_from(["n0", "n1", "zz", "x" * 64])
    return st.one_of(
        st.builds(Piece, pid, names, names, f, f, f, st.one_of(st.floats(0, 5), st.just(1e12)), st.integers(0, 20)),
        st.builds(Ack, pid, st.booleans(), amount, f),
        st.builds(Voucher, st.integers(0, 5), amount, st.binary(min_size=65, max_size=65)),
        st.builds(VoucherAck, st.integers(0, 5), amount),
        st.builds(ChannelInfo, st.integers(0, 5)),
        st.builds(Forwarded, pid, f),
        st.builds(Outcome, pid, st.booleans()),
        st.builds(Quote, amount),
        st.builds(Routes, st.dictionaries(names, f, max_size=6)),
        st.builds(Bye, st.text(max_size=10)),
        st.just(b"\x00\x00\x00\x03\x93\x01\x02"),  # malformed
    )


def test_fuzz_random_frames_from_a_peer_never_raise_never_exceed_bounds_never_overpay():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.tuples(_frames(), st.booleans()), max_size=25))
    def run(frames):
        fab = line(2, queue_limit=6)
        fab.mute.add("n1")  # we speak for n1, n0 is under test (as payer and as payee)
        n0 = fab.cores["n0"]
        p = n0.peers["n1"]
        for i, (msg, hand) in enumerate(frames):
            if hand and p.conn is not None:
                handed(fab, "n0", "n1", i)  # a piece of ours in flight, so acks can be real
            if p.conn is None:
                break
            if isinstance(msg, Ack) and n0.inflight and msg.piece_id not in n0.inflight:
                msg = Ack(next(iter(n0.inflight)), msg.accepted, msg.charge_wei, msg.wait)
            fab.inject("n0", p.conn, msg if isinstance(msg, bytes) else encode(msg))
            fab.advance(0.01)
            g = p.guard
            assert len(g.inbox) <= max(2, n0.s.queue_limit) and 0 <= n0.backlog <= n0.s.queue_limit
            assert len(p.routes) <= MAX_ROUTES and all(v <= MAX_ROUTE_STEPS for v in p.routes.values())
            assert len(g.quotes_heard) <= g.quotes_heard.maxlen and len(n0.custody.late) <= 65536
            assert len(n0.conns) <= 2 and p.owed >= 0 and g.reserved_wei >= 0
            # never signs above what was charged and accepted (each charge checked against its quote)
            assert p.pay_cumulative <= g.accepted_wei
            for v in sent_vouchers(fab, "n0").values():
                assert v <= g.accepted_wei
            assert all(math.isfinite(x) for x in n0.memory.observed_bw[0])

    run()


def test_a_voucher_lost_with_its_link_is_sent_again_on_the_next_connection():
    fab = line(2, payment="per_hop")  # a voucher follows the accepted charge at once
    fab.mute.add("n1")  # the voucher for this charge never arrives
    n0, n1 = fab.cores["n0"], fab.cores["n1"]
    p = n0.peers["n1"]
    handed(fab, "n0", "n1", 9)
    fab.inject("n0", p.conn, encode(Ack(9, True, p.quote_wei)))
    signed = p.pay_cumulative
    conn0, conn1 = p.conn, n1.peers["n0"].conn
    fab.links.pop(("n0", conn0), None)
    fab.links.pop(("n1", conn1), None)
    fab.run("n0", n0.connection_lost(conn0))
    fab.run("n1", n1.connection_lost(conn1))
    fab.mute.clear()
    fab.connect("n0", "n1")
    fab.advance(0.1)
    held = fab.stores["n1"].latest("received")[p.pay_channel].cumulative
    assert held == signed > 0 and n1.peers["n0"].recv_paid == signed and not fab.reasons("n1")
