"""The sans-IO node core, driven by in-memory fakes: routing, payments, feedback, rejections."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from runtime.chain.anvil import DEV_PRIVATE_KEYS
from runtime.chain.vouchers import VoucherSigner, sign_digest
from runtime.node.protocol import NodeSettings, StreamSpec
from runtime.node.wire import Ack, FrameDecoder, Hello, Piece, Voucher, encode
from tests.runtime.node.fakes import CHAIN_ID, CONTRACT, Fabric, line


def stream(fab: Fabric, src: str, dst: str, rate: float = 50.0) -> None:
    core = fab.cores[src]
    core.s.streams = [StreamSpec([dst], rate=rate)]
    core._next_emit = [0.0]
    core._rr = [0]
    core.start_streams(fab.now)


def test_settings_reject_unknown_kind():
    from runtime.node.protocol import NodeCore

    with pytest.raises(ValueError, match="unknown node kind"):
        NodeCore(NodeSettings("a", "0x" + "1" * 40, kind="saint"), [], policy=None)


def test_pieces_cross_a_line_and_every_hop_is_paid_with_stored_vouchers():
    fab = line(3)
    stream(fab, "n0", "n2")
    fab.advance(2.0)
    n0, n1, n2 = (fab.cores[n] for n in ("n0", "n1", "n2"))
    assert n0.stats["generated"] > 20
    assert n2.stats["delivered"] >= n0.stats["generated"] * 0.8
    assert n0.stats["outcomes_ok"] > 0 and n0.memory.success[0].min() > 0.9
    # n0 paid n1, n1 paid n2: each payee holds exactly the payer's last voucher, on disk.
    for payer, payee in (("n0", "n1"), ("n1", "n2")):
        sent = fab.stores[payer].latest("sent")
        got = fab.stores[payee].latest("received")
        assert sent and set(sent) == set(got)
        for cid, v in sent.items():
            assert got[cid].cumulative == v.cumulative > 0
            assert fab.verifier.verify(cid, v.cumulative, got[cid].signature, fab.cores[payer].s.address)
    assert n1.unpaid_wei("n0") == 0 and n1.stats["earned_wei"] > 0
    assert not any(fab.reasons(n) for n in fab.cores)


@pytest.mark.parametrize("payment", ["per_hop", "on_delivery"])
def test_a_blackhole_is_paid_only_per_hop_and_its_upstream_learns_the_loss(payment):
    fab = Fabric()
    names = ["s", "h", "d"]
    Fabric._keys = {n: i for i, n in enumerate(names)}
    fab.add("s", 0, ["h"], payment=payment)
    fab.add("h", 1, ["s", "d"], kind="blackhole", payment=payment)
    fab.add("d", 2, ["h"], payment=payment)
    fab.connect("s", "h")
    fab.connect("h", "d")
    fab.open_channel("s", "h")
    fab.open_channel("h", "d")
    fab.advance(0.5)
    stream(fab, "s", "d")
    fab.advance(2.0)
    s, h, d = fab.cores["s"], fab.cores["h"], fab.cores["d"]
    assert d.stats["delivered"] == 0 and h.stats["dropped"] > 0
    assert s.stats["outcomes_lost"] > 5 and s.memory.success[0, s.peers["h"].slot] < 0.5
    if payment == "per_hop":
        assert s.stats["paid_wei"] > 0 and h.stats["earned_wei"] > 0  # it was paid for pieces it dropped
    else:  # no receipt, no payment: every charge it made stays unpaid
        assert s.stats["paid_wei"] == 0 and h.stats["earned_wei"] == 0 and s.stats["vouchers_sent"] == 0
        assert s.stats["unpaid_for_lack_of_receipt_wei"] > 0 and h.unpaid_wei("s") == 0
        assert not fab.stores["h"].latest("received")
    assert h.snapshot()["scores"] and s.peer_scores()["h"] <= 0.8


def test_blackhole_advertises_shorter_routes():
    fab = line(3)
    n1 = fab.cores["n1"]
    n1.peers["n2"].link_steps = 4.0
    assert n1._routes_msg().dist["n2"] == 4.0
    n1.s.kind = "blackhole"
    assert n1._routes_msg().dist["n2"] == 2.0  # half, like envs.core's BLACKHOLE_ROUTE_DISCOUNT


def test_quotes_follow_the_origin_formula_and_overpricers_multiply():
    from agents.economics import quote_price

    fab = line(3)
    n1 = fab.cores["n1"]
    neighbours = [p.quote_wei / n1.s.wei_per_unit for p in n1.open_peers()]
    n1.backlog = 10  # half the queue limit: load 50 %
    n1._last_quote_sent = 1
    sent = n1._update_quote()
    assert n1.quote_wei == int(quote_price(n1.s.base_cost, 50.0, neighbours) * n1.s.wei_per_unit)
    assert len(sent) == 2  # told both neighbours
    n1.s.price_factor = 4.0
    n1._update_quote()
    assert n1.quote_wei == int(4.0 * quote_price(n1.s.base_cost, 50.0, neighbours) * n1.s.wei_per_unit)
    n1.s.kind = "overpricer"  # marks up its own cost term, ignoring the market (envs.core)
    n1._update_quote()
    assert n1.quote_wei == int(4.0 * quote_price(n1.s.base_cost, 50.0, []) * n1.s.wei_per_unit)


def test_overcharge_closes_the_connection():
    fab = line(2)
    n0 = fab.cores["n0"]
    n0.s.streams = []
    piece = Piece(42, "n0", "n1", fab.now, fab.now + 10, 1.0, 1.0, 0)
    fab.run("n0", n0._forward(piece, None, fab.now, n0.peers["n1"], fab.now)[:0])
    conn = n0.peers["n1"].conn
    fab.inject("n0", conn, encode(Ack(42, True, 10**17)))
    assert any(r.startswith("overcharge") for r in fab.reasons("n0"))


# ------------------------------------------------------------------ rejections


def attacked() -> tuple[Fabric, int, VoucherSigner, int]:
    """n0 - n1 - n2 honest line with a stream n0 -> n2, plus peer x of n1 that we drive by hand."""
    fab = Fabric()
    names = ["n0", "n1", "n2", "x"]
    Fabric._keys = {n: i for i, n in enumerate(names)}
    fab.add("n0", 0, ["n1"])
    fab.add("n1", 1, ["n0", "n2", "x"], unpaid_limit_wei=10**11)
    fab.add("n2", 2, ["n1"])
    fab.add("x", 3, ["n1"])
    fab.connect("n0", "n1")
    fab.connect("n1", "n2")
    _, conn_at_n1 = fab.connect("x", "n1")
    for a, b in (("n0", "n1"), ("n1", "n2"), ("n1", "n0"), ("n2", "n1")):
        fab.open_channel(a, b)
    cid = fab.open_channel("x", "n1", deposit=10**15)
    fab.advance(0.5)
    stream(fab, "n0", "n2")
    fab.advance(0.3)
    fab.mute.add("x")
    signer = VoucherSigner(DEV_PRIVATE_KEYS[3], CHAIN_ID, CONTRACT)
    return fab, conn_at_n1, signer, cid


def forwarding_continues(fab: Fabric) -> None:
    before = fab.cores["n2"].stats["delivered"]
    fab.advance(0.5)
    assert fab.cores["n2"].stats["delivered"] > before
    assert fab.cores["n1"].peers["n0"].conn is not None and fab.cores["n1"].peers["n2"].conn is not None


def hit(fab: Fabric, conn: int, data: bytes, reason: str) -> None:
    fab.inject("n1", conn, data)
    reasons = fab.reasons("n1")
    assert any(r.startswith(reason) for r in reasons), reasons
    assert any(node == "n1" and c == conn for node, c, _ in fab.closed)
    assert fab.cores["n1"].peers["x"].conn is None
    forwarding_continues(fab)


def test_voucher_from_x_is_accepted_when_valid():
    fab, conn, signer, cid = attacked()
    fab.inject("n1", conn, encode(Voucher(cid, 1000, signer.sign(cid, 1000))))
    assert fab.stores["n1"].latest("received")[cid].cumulative == 1000
    assert fab.cores["n1"].peers["x"].conn == conn


def test_replayed_voucher_is_rejected():
    fab, conn, signer, cid = attacked()
    v = encode(Voucher(cid, 1000, signer.sign(cid, 1000)))
    fab.inject("n1", conn, v)
    hit(fab, conn, v, "replayed voucher")


def test_voucher_for_another_channel_is_rejected():
    fab, conn, signer, cid = attacked()
    other = cid + 100
    hit(fab, conn, encode(Voucher(other, 1000, signer.sign(other, 1000))), "voucher for another channel")


def test_voucher_above_deposit_is_rejected():
    fab, conn, signer, cid = attacked()
    amount = 10**15 + 1
    hit(fab, conn, encode(Voucher(cid, amount, signer.sign(cid, amount))), "voucher above deposit")
    assert cid not in fab.stores["n1"].latest("received")


def test_voucher_with_a_bad_signature_is_rejected():
    fab, conn, _, cid = attacked()
    stranger = VoucherSigner(b"\x07" * 32, CHAIN_ID, CONTRACT)
    hit(fab, conn, encode(Voucher(cid, 1000, stranger.sign(cid, 1000))), "bad signature")


def test_malformed_frame_is_rejected():
    fab, conn, _, _ = attacked()
    hit(fab, conn, struct.pack(">I", 3) + b"\x93\x01\x02", "malformed frame")


def test_oversized_frame_is_rejected():
    fab, conn, _, _ = attacked()
    hit(fab, conn, struct.pack(">I", 10**7), "frame of")


def test_second_hello_is_rejected():
    fab, conn, _signer, _ = attacked()
    hit(fab, conn, encode(fab.cores["x"].hello()), "duplicate hello")


def test_unpaid_credit_above_the_limit_cuts_the_payer_off():
    fab, conn, _, _ = attacked()
    n1 = fab.cores["n1"]
    n1.s.queue_limit = 10**6
    for i in range(200):
        fab.inject("n1", conn, encode(Piece(10**6 + i, "x", "n2", fab.now, fab.now + 5, 1.0, 1.0, 0)))
        fab.advance(0.005)
        if n1.peers["x"].conn is None:
            break
    assert any(r.startswith("unpaid credit") for r in fab.reasons("n1"))
    forwarding_continues(fab)


def test_flood_of_hellos_is_refused_while_forwarding_continues():
    fab, _, _, _ = attacked()
    n1 = fab.cores["n1"]
    for i in range(100):
        conn = 10_000 + i
        fab.links[("n1", conn)] = ("nowhere", 0)
        fab.decoders[("n1", conn)] = FrameDecoder()
        fab.run("n1", n1.connection_made(conn, False, fab.now))
        hello = Hello(
            version=1, node_id=f"flood{i}", address="0x" + "9" * 40, claimed_bw=1.0, quote_wei=1, nonce=b"f" * 16
        )
        if i % 2:
            fab.inject("n1", conn, encode(hello))
        pending = [c for c in n1.conns.values() if not c.outbound and not c.open and not c.closed]
        assert len(pending) <= n1.s.max_pending_per_source  # the cap holds at every step
    reasons = fab.reasons("n1")
    assert sum(r.startswith("unknown peer") for r in reasons) >= 1
    assert sum(r.startswith("handshake evicted") for r in reasons) >= 1  # the oldest silent one made room
    fab.links = {k: v for k, v in fab.links.items() if v[0] != "nowhere"}
    fab.advance(2.0)  # silent ones time out before saying hello
    assert any(r.startswith("hello timeout") for r in fab.reasons("n1"))
    assert not [c for c in n1.conns.values() if not c.open]
    forwarding_continues(fab)


def test_piece_without_channel_is_unpaid_for():
    fab = Fabric()
    Fabric._keys = {"a": 0, "b": 1}
    fab.add("a", 0, ["b"])
    fab.add("b", 1, ["a"])
    _ca, cb = fab.connect("a", "b")
    fab.inject("b", cb, encode(Piece(1, "a", "b", fab.now, fab.now + 1, 1.0, 1.0, 0)))
    assert any(r.startswith("unpaid piece") for r in fab.reasons("b"))


def test_learned_memory_matches_features_shape():
    fab = line(3)
    stream(fab, "n0", "n2", rate=20)
    fab.advance(1.0)
    m = fab.cores["n1"].memory
    assert m.claimed_bw.shape == (1, 8) and np.isfinite(m.observed_bw).all()
    assert fab.cores["n0"].stats["decisions"] > 0


# ------------------------------------------------------------------ property: any frame sequence


def _messages():
    from hypothesis import strategies as st

    from runtime.node.wire import Ack, Bye, ChannelInfo, Forwarded, Outcome, Quote, Receipt, Routes, VoucherAck

    ids = st.integers(0, 5)
    amount = st.integers(0, 2**64 - 1)
    f = st.floats(0, 1e6, allow_nan=False)
    return st.one_of(
        st.builds(
            Piece,
            ids,
            st.sampled_from(["n0", "n1", "zz"]),
            st.sampled_from(["n0", "n1", "zz"]),
            f,
            f,
            f,
            st.floats(0, 4),
            st.integers(0, 20),
        ),
        st.builds(Ack, ids, st.booleans(), amount, st.floats(0, 100)),
        st.builds(Voucher, st.integers(0, 5), amount, st.binary(min_size=65, max_size=65)),
        st.builds(VoucherAck, st.integers(0, 5), amount),
        st.builds(ChannelInfo, st.integers(0, 5)),
        st.builds(Forwarded, ids, f),
        st.builds(Outcome, ids, st.booleans()),
        st.builds(
            Receipt,
            ids,
            st.sampled_from(["n0", "n1", "zz"]),
            st.sampled_from(["n0", "n1", "zz"]),
            st.binary(min_size=32, max_size=32),
            st.floats(0, 4),
            st.binary(min_size=65, max_size=65),
        ),
        st.builds(Quote, amount),
        st.builds(Routes, st.dictionaries(st.sampled_from(["n0", "n1", "n2", "zz"]), f, max_size=4)),
        st.builds(Bye, st.text(max_size=10)),
    )


def test_any_frame_sequence_from_a_peer_is_handled_without_crashing():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=40, deadline=None)
    @given(st.lists(_messages(), max_size=12))
    def run(msgs):
        fab = line(2)
        n1 = fab.cores["n1"]
        conn = n1.peers["n0"].conn
        for m in msgs:
            fab.inject("n1", conn, encode(m))
            fab.advance(0.01)
        for p in n1.peers.values():
            assert p.owed >= 0 and p.recv_paid >= 0 and n1.backlog >= 0
        held = fab.stores["n1"].latest("received")
        for cid, v in held.items():  # whatever was stored verifies against the channel's payer
            assert fab.verifier.verify(cid, v.cumulative, v.signature, fab.cores["n0"].s.address)

    run()


def test_a_peer_that_cannot_sign_for_its_address_is_refused():
    fab = Fabric()
    Fabric._keys = {"a": 0, "b": 1}
    fab.add("a", 0, ["b"])
    fab.add("b", 1, ["a"])
    fab.cores["a"].sign_digest = lambda d: sign_digest(b"\x09" * 32, d)  # not a's key
    fab.connect("a", "b")
    assert any(r.startswith("bad hello signature") for r in fab.reasons("b"))
    assert fab.cores["b"].peers["a"].conn is None


def test_only_the_peer_holding_a_piece_may_report_on_it():
    from runtime.node.wire import Forwarded, Outcome

    fab = line(3)
    fab.mute.add("n2")  # keep the piece at n2 from being answered by n2's core
    n1 = fab.cores["n1"]
    piece = Piece(99, "n1", "n2", fab.now, fab.now + 5, 1.0, 1.0, 0)
    n1._forward(piece, None, fab.now, n1.peers["n2"], fab.now)
    delay_before = n1.memory.delay_count[0].copy()
    fab.inject("n1", n1.peers["n0"].conn, encode(Outcome(99, False)))
    fab.inject("n1", n1.peers["n0"].conn, encode(Forwarded(99, 0.0)))
    n1.flush_memory()
    assert 99 in n1.inflight and (n1.memory.delay_count[0] == delay_before).all()
    from runtime.node.receipts import make_receipt, payload_hash

    fab.inject("n1", n1.peers["n2"].conn, encode(Ack(99, True, 0)))
    receipt = make_receipt(lambda d: sign_digest(DEV_PRIVATE_KEYS[2], d), 99, "n1", "n2", payload_hash(b""), 1.0)
    fab.inject("n1", n1.peers["n0"].conn, encode(receipt))  # n0 never held it: not its receipt to give
    assert any(r.startswith("receipt for unknown piece") for r in fab.reasons("n1"))
    assert 99 in n1.inflight
    fab.inject("n1", n1.peers["n2"].conn, encode(receipt))
    assert 99 not in n1.inflight and n1.stats["outcomes_ok"] == 1 and n1.stats["receipts_verified"] == 1


def test_a_quote_raised_before_the_ack_may_be_charged_up_to_twice_the_hand_over_quote():
    from runtime.node.wire import Quote

    fab = line(2)
    fab.mute.add("n1")
    n0 = fab.cores["n0"]
    p = n0.peers["n1"]
    q0 = p.quote_wei
    for pid, new_quote, ok in ((7, int(q0 * 1.8), True), (8, q0 * 4, False)):
        n0._forward(Piece(pid, "n0", "n1", fab.now, fab.now + 5, 1.0, 1.0, 0), None, fab.now, p, fab.now)
        fab.inject("n0", p.conn, encode(Quote(new_quote)))
        fab.inject("n0", p.conn, encode(Ack(pid, True, new_quote)))
        assert (p.conn is not None) is ok
        assert any(r.startswith("overcharge") for r in fab.reasons("n0")) is not ok
        p.quote_wei = q0


def test_a_restarted_payer_resends_its_last_voucher_and_accepts_the_payees_confirmation():
    """The payer signed (and stored) a voucher the payee never got, then restarted: on the new link
    the payee confirms less, the payer sends that voucher again and takes its confirmation as its own."""
    fab = line(2, payment="per_hop")
    n0 = fab.cores["n0"]
    p = n0.peers["n1"]
    cid = p.pay_channel
    for pid, muted in ((5, False), (6, True)):
        if muted:
            fab.mute.add("n1")  # the second voucher is lost with the link
        n0._forward(Piece(pid, "n0", "n1", fab.now, fab.now + 5, 1.0, 1.0, 0), None, fab.now, p, fab.now)
        fab.inject("n0", p.conn, encode(Ack(pid, True, p.quote_wei)))
    signed = p.pay_cumulative
    assert fab.stores["n1"].latest("received")[cid].cumulative < signed
    n1 = fab.cores["n1"]
    conn0, conn1 = p.conn, n1.peers["n0"].conn
    fab.links.pop(("n0", conn0), None)
    fab.links.pop(("n1", conn1), None)
    fab.run("n1", n1.connection_lost(conn1))
    fab.mute.clear()
    fresh = fab.add("n0", 0, ["n1"], payment="per_hop")  # a new life: its ledger comes from its store
    fab.run("n0", fresh.set_pay_channel("n1", cid, p.pay_deposit, signed))
    fab.connect("n0", "n1")
    fab.advance(0.1)
    assert fab.stores["n1"].latest("received")[cid].cumulative == signed
    assert not fab.reasons("n0") and not fab.reasons("n1") and fresh.peers["n1"].pay_confirmed


def _burst(batch: bool) -> Fabric:
    fab = line(3, id_salt=1, batch_signatures=batch)
    stream(fab, "n0", "n2", rate=400.0)
    fab.advance(1.0, step=0.02)  # several pieces per poll: a turn carries many receipts and payments
    fab.cores["n0"].stop()
    fab.advance(2.0, step=0.02)
    return fab


def test_batched_signatures_change_the_number_of_signatures_and_not_a_wei():
    batched, single = _burst(True), _burst(False)
    for name in ("n0", "n1", "n2"):
        b, s = batched.cores[name].stats, single.cores[name].stats
        for key in ("generated", "delivered", "receipts_verified", "paid_wei", "earned_wei", "custody_signed"):
            assert b[key] == s[key], (name, key)
        assert b["vouchers_sent"] <= s["vouchers_sent"]
    n0b, n2b, n0s = batched.cores["n0"].stats, batched.cores["n2"].stats, single.cores["n0"].stats
    assert n0b["vouchers_sent"] < n0s["vouchers_sent"] == n0s["outcomes_ok"] > 50  # a voucher per turn, not per piece
    assert n2b["seals_signed"] < n2b["sealed_frames"]  # the destination's receipts and acks shared signatures
    assert n0b["receipts_verified_sealed"] > 0 and single.cores["n0"].stats["receipts_verified_sealed"] == 0
    # at quiescence the ledgers agree to the wei, and each payee holds the payer's last voucher
    for payer, payee in (("n0", "n1"), ("n1", "n2")):
        sent, got = batched.stores[payer].latest("sent"), batched.stores[payee].latest("received")
        assert {c: v.cumulative for c, v in sent.items()} == {c: v.cumulative for c, v in got.items()}
        assert batched.cores[payee].unpaid_wei(payer) == 0
    assert not any(batched.reasons(n) for n in batched.cores)
