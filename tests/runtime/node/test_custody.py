"""One entry, one outcome: the attacks of issue 20 on in-memory cores driven by real frames.

A hand-driven (muted) node speaks for the attacker; every other node is a real ``NodeCore``.
"""

from __future__ import annotations

from agents.features import MAX_HOPS
from runtime.node.protocol import NodeCore, NodeSettings, StreamSpec
from runtime.node.wire import Ack, Piece, encode
from tests.runtime.node.fakes import Fabric, line

PAYLOAD = b"piece" * 8


def piece(fab: Fabric, pid: int, dst: str, hops: int = 0, ttl: float = 2.0, src: str = "n0") -> Piece:
    addr = fab.cores[dst].s.address
    return Piece(pid, src, dst, fab.now, fab.now + ttl, 1.0, 1.0, hops, PAYLOAD, addr)


def send_from(fab: Fabric, attacker: str, to: str, msg) -> None:
    """``attacker`` (muted, hand-driven) sends ``msg`` to ``to`` on their link."""
    core = fab.cores[to]
    fab.inject(to, core.peers[attacker].conn, encode(msg))


def no_honest_cut(fab: Fabric, honest: list[str]) -> None:
    for a in honest:
        for b, p in fab.cores[a].peers.items():
            if b in honest:
                assert p.conn is not None, f"{a} cut {b}: {fab.reasons(a)}"
    for a in honest:
        bad = [r for r in fab.reasons(a) if r.split(":")[0] in ("unpaid credit", "receipt mismatch", "overcharge")]
        assert not bad, (a, bad)


def ledgers_agree(fab: Fabric, payer: str, payee: str) -> None:
    """What the payee books as owed equals what the payer accepted to pay and signed."""
    pr, pe = fab.cores[payer].peers[payee], fab.cores[payee].peers[payer]
    assert pe.owed == pr.guard.accepted_wei == pr.pay_cumulative == pe.recv_paid, (
        payer, payee, pe.owed, pr.guard.accepted_wei, pr.pay_cumulative, pe.recv_paid,
    )  # fmt: skip


def test_piece_id_reuse_is_refused_and_never_drains_the_relay_or_cuts_its_honest_link():
    """High: two pieces with one id (one normal, one a hop short of MAX_HOPS) from a channel-holding
    upstream. Before, the next hop's loss report settled both as lost: the relay never paid the next
    hop for the delivered copy and was cut off for unpaid credit. Now the second copy is refused."""
    fab = line(4)
    fab.mute.add("n0")
    n1, n2 = fab.cores["n1"], fab.cores["n2"]
    rounds = 40
    for i in range(rounds):
        pid = 1000 + i
        send_from(fab, "n0", "n1", piece(fab, pid, "n3"))
        send_from(fab, "n0", "n1", piece(fab, pid, "n3", hops=MAX_HOPS - 1))
        fab.advance(0.1)
    fab.advance(1.0)
    assert n1.stats["duplicate_pieces"] == rounds and n1.rejections["duplicate piece"] == rounds
    assert n1.peers["n0"].conn is not None  # counted, the link kept
    assert fab.cores["n3"].stats["delivered"] == rounds
    # every delivery paid once, every hop: n1 paid n2 exactly what n2 booked
    assert n2.peers["n1"].owed > 0
    ledgers_agree(fab, "n1", "n2")
    ledgers_agree(fab, "n2", "n3")
    assert n1.stats["paid_wei"] == n2.peers["n1"].owed
    no_honest_cut(fab, ["n1", "n2", "n3"])


def test_one_id_to_two_destinations_is_refused_so_a_receipt_never_meets_the_wrong_record():
    """High: two pieces with one id to two destinations through one relay; before, the receipt of
    one was checked against the other's record ("receipt mismatch") and the honest link closed."""
    fab = line(4)
    fab.mute.add("n0")
    n1 = fab.cores["n1"]
    for i in range(10):
        pid = 2000 + i
        send_from(fab, "n0", "n1", piece(fab, pid, "n3"))
        send_from(fab, "n0", "n1", piece(fab, pid, "n2"))
        fab.advance(0.1)
    fab.advance(1.0)
    assert n1.stats["duplicate_pieces"] == 10 and n1.stats["receipts_verified"] == 10
    assert fab.cores["n3"].stats["delivered"] == 10 and fab.cores["n2"].stats["delivered"] == 0
    assert n1.peers["n2"].violations == 0
    ledgers_agree(fab, "n1", "n2")
    no_honest_cut(fab, ["n1", "n2", "n3"])


def test_k_copies_of_one_piece_get_the_downstream_paid_once():
    fab = line(4)
    fab.mute.add("n0")
    n1, n2 = fab.cores["n1"], fab.cores["n2"]
    send_from(fab, "n0", "n1", piece(fab, 3000, "n3"))
    fab.advance(0.02)
    for _ in range(4):  # copies while the first is in flight, then after it was resolved
        send_from(fab, "n0", "n1", piece(fab, 3000, "n3"))
    fab.advance(1.0)
    send_from(fab, "n0", "n1", piece(fab, 3000, "n3"))
    fab.advance(0.5)
    charge = n1.peers["n2"].guard.accepted_wei
    assert n1.stats["duplicate_pieces"] == 5 and n1.stats["receipts_verified"] == 1
    assert 0 < charge == n2.peers["n1"].owed == n1.stats["paid_wei"]  # one delivery, one payment
    assert n2.stats["received"] == 1


def test_a_downstream_acking_for_free_and_never_answering_holds_a_bounded_number_of_records():
    """Medium: zero-charge acks were counted against no credit; records lived up to the horizon."""
    fab = line(3, max_inflight_per_peer=8)
    fab.mute.update({"n0", "n2"})
    n1 = fab.cores["n1"]
    for i in range(40):
        send_from(fab, "n0", "n1", piece(fab, 4000 + i, "n2", ttl=60.0))
        fab.advance(0.02)
        if 4000 + i in n1.inflight:
            send_from(fab, "n2", "n1", Ack(4000 + i, True, 0))
    # each peer holds at most the cap of unsettled records (n1 also routes some back through n0)
    assert n1.custody.in_flight("n2") == 8 and n1.custody.in_flight("n0") <= 8
    assert len(n1.custody.live) <= 16 and n1.stats["dropped"] >= 24  # no route once both are capped


def test_an_upstream_cannot_park_pieces_beyond_its_credit_at_a_silent_downstream():
    fab = line(3, max_inflight_per_peer=1000)
    fab.mute.update({"n0", "n2"})
    n1 = fab.cores["n1"]
    n1.s.unpaid_limit_wei = 5 * n1._charge(1.0)
    for i in range(20):
        send_from(fab, "n0", "n1", piece(fab, 5000 + i, "n2", ttl=60.0))
        fab.advance(0.02)
    assert len(n1.custody.live) <= 5 and n1.custody.exposure_wei("n0") <= n1.s.unpaid_limit_wei
    assert n1.peers["n0"].conn is not None  # refused for credit, not cut: nothing is owed yet


def test_a_receipt_that_comes_back_after_the_payers_deadline_still_reconciles_the_ledgers():
    """Medium: the relay booked credit when it relayed the receipt, while its upstream refused any
    receipt after its own deadline + grace. Now the upstream keeps the record for the late window."""
    fab = line(3)
    n0, n1 = fab.cores["n0"], fab.cores["n1"]
    held: list[tuple[str, int, bytes]] = []
    real_inject = fab.inject

    def slow_return(node: str, conn: int, data: bytes) -> None:  # n1 -> n0 frames wait (a slow link)
        if node == "n0" and hold_back:
            held.append((node, conn, data))
        else:
            real_inject(node, conn, data)

    fab.inject = slow_return
    hold_back = True
    for i in range(5):
        p = piece(fab, 6000 + i, "n2", ttl=0.2)
        fab.run("n0", n0._forward(p, None, fab.now, n0.peers["n1"], fab.now))
    fab.advance(0.2)
    assert n1.peers["n0"].owed > 0  # n1 relayed the receipts and booked the credit
    fab.advance(n0._grace + 0.5)  # n0's deadline + grace pass with the receipts still on the way
    assert not n0.inflight and n0.stats["outcomes_lost"] == 5
    hold_back = False
    for node, conn, data in held:
        real_inject(node, conn, data)
    fab.advance(0.3)
    assert n0.stats["late_receipts"] == 5 and n0.stats["paid_wei"] == n1.peers["n0"].owed
    ledgers_agree(fab, "n0", "n1")
    no_honest_cut(fab, ["n0", "n1", "n2"])


def test_a_restarted_source_draws_new_piece_ids_and_tests_can_pin_them():
    def ids(salt: int | None) -> set[int]:
        fab = Fabric()
        Fabric._keys = {"a": 0, "b": 1}
        core: NodeCore = fab.add("a", 0, ["b"], seed=7, id_salt=salt, streams=[StreamSpec(["b"], rate=100.0)])
        core.s.directory["b"] = "0x" + "22" * 20
        core.start_streams(0.0)
        core._emit(1.0)
        return {p.piece_id for p, *_ in core._ready}

    first, second = ids(None), ids(None)  # two lives of one configured node
    assert len(first) > 20 and not first & second
    assert ids(5) == ids(5)  # pinned: reproducible
    assert NodeSettings("a", "0x" + "1" * 40).id_salt is None


def test_receipts_lost_with_a_crashed_payer_are_forgiven_so_the_ledgers_agree_after_reconnect():
    fab = line(3)
    n0, n1 = fab.cores["n0"], fab.cores["n1"]
    for i in range(3):  # delivered and paid
        fab.run("n0", n0._forward(piece(fab, 7000 + i, "n2"), None, fab.now, n0.peers["n1"], fab.now))
    fab.advance(0.3)
    ledgers_agree(fab, "n0", "n1")
    fab.mute.add("n0")  # n0 "crashes": the receipts of the next pieces never reach it
    for i in range(3):
        fab.run("n0", n0._forward(piece(fab, 7100 + i, "n2"), None, fab.now, n0.peers["n1"], fab.now))
    fab.advance(0.3)
    assert n1.unpaid_wei("n0") > 0  # booked on relaying, never seen by n0
    conn = n1.peers["n0"].conn
    fab.run("n1", n1.connection_lost(conn))
    assert n1.unpaid_wei("n0") == 0 and n1.stats["forgiven_on_disconnect_wei"] > 0
    assert n1.peers["n0"].owed == n0.peers["n1"].pay_cumulative == n1.peers["n0"].recv_paid


def test_old_unpaid_credit_is_not_forgiven_by_a_disconnect():
    fab = line(3)
    fab.mute.add("n0")  # n0 receives receipts but, muted, never pays
    n0, n1 = fab.cores["n0"], fab.cores["n1"]
    for i in range(3):
        fab.run("n0", n0._forward(piece(fab, 7200 + i, "n2"), None, fab.now, n0.peers["n1"], fab.now))
    fab.advance(0.3)
    owed = n1.unpaid_wei("n0")
    assert owed > 0
    fab.advance(n1.s.reconcile_window_s + 0.5, step=0.05)
    fab.run("n1", n1.connection_lost(n1.peers["n0"].conn))
    assert n1.unpaid_wei("n0") == owed  # older than the window: it stands


def test_a_piece_that_loops_back_is_refused_without_blaming_the_honest_peer():
    fab = line(3)
    fab.mute.add("n1")
    n0 = fab.cores["n0"]
    p = piece(fab, 8000, "n2")
    fab.run("n0", n0._forward(p, None, fab.now, n0.peers["n1"], fab.now))
    send_from(fab, "n1", "n0", p)  # n1 routes it back to n0
    assert n0.stats["looped_pieces"] == 1 and n0.rejections["routing loop"] == 1
    assert "n1" not in n0.rejections_by_peer and n0.peers["n1"].conn is not None
    assert n0.custody.in_flight("n1") == 1  # the one record, untouched
