"""Proof of delivery: receipt signing and checks, and what NodeCore believes, learns and pays for.

The NodeCore tests put a hand-driven peer ``h`` between an honest source ``s`` and the destination
``d``: ``s`` forwards pieces to ``h`` and every frame ``h`` "sends" back is crafted here.
"""

from __future__ import annotations

import msgspec
import pytest

from runtime.chain.anvil import DEV_PRIVATE_KEYS
from runtime.chain.vouchers import SECP256K1_N
from runtime.node.receipts import Expected, KeySigner, ReceiptVerifier, make_receipt, payload_hash, receipt_digest
from runtime.node.wire import Ack, MalformedFrameError, Outcome, Piece, decode_payload, encode
from tests.runtime.node.fakes import Fabric, line

D_KEY = DEV_PRIVATE_KEYS[2]
H_KEY = DEV_PRIVATE_KEYS[1]
PAYLOAD = b"story" * 10


def _receipt(key: str, pid: int, src: str = "s", dst: str = "d", payload: bytes = PAYLOAD, size: float = 1.0):
    return make_receipt(KeySigner(key).sign, pid, src, dst, payload_hash(payload), size)


# ------------------------------------------------------------------ the receipts module


def test_a_receipt_verifies_only_against_its_destination_and_every_field():
    d = KeySigner(D_KEY)
    r = _receipt(D_KEY, 7)
    ok = Expected(7, "s", "d", d.address, payload_hash(PAYLOAD), 1.0)
    v = ReceiptVerifier()
    assert v.check(r, ok) is None
    assert v.check(r, ok) is None  # again, through the remembered key
    assert v.check(r, Expected(7, "s", "d", d.address.lower(), ok.payload_hash, 1.0)) is None
    other = KeySigner(H_KEY).address
    assert v.check(r, Expected(7, "s", "d", other, ok.payload_hash, 1.0)).startswith("forged receipt")
    assert v.check(r, Expected(8, "s", "d", d.address, ok.payload_hash, 1.0)).startswith("receipt mismatch: piece")
    assert "names destination" in v.check(r, Expected(7, "s", "e", d.address, ok.payload_hash, 1.0))
    assert "names source" in v.check(r, Expected(7, "t", "d", d.address, ok.payload_hash, 1.0))
    assert "another payload" in v.check(r, Expected(7, "s", "d", d.address, payload_hash(b"x"), 1.0))
    assert "size" in v.check(r, Expected(7, "s", "d", d.address, ok.payload_hash, 1.5))
    # a field changed in the frame itself breaks the signature, not only the comparison
    tampered = msgspec.structs.replace(r, size=2.0)
    assert v.check(tampered, Expected(7, "s", "d", d.address, ok.payload_hash, 2.0)).startswith("forged receipt")


def test_receipt_signatures_the_contract_would_reject_are_rejected():
    d = KeySigner(D_KEY)
    r = _receipt(D_KEY, 7)
    ok = Expected(7, "s", "d", d.address, payload_hash(PAYLOAD), 1.0)
    s_int = int.from_bytes(r.signature[32:64], "big")
    high_s = r.signature[:32] + (SECP256K1_N - s_int).to_bytes(32, "big") + bytes((r.signature[64] ^ 1,))
    for sig in (high_s, r.signature[:64] + b"\x05", bytes(65)):
        reason = ReceiptVerifier().check(msgspec.structs.replace(r, signature=sig), ok)
        assert reason is not None and reason.startswith("forged receipt"), reason


def test_the_digest_binds_every_field_and_is_domain_separated():
    base = (7, "s", "d", payload_hash(PAYLOAD), 1.0)
    digests = {
        receipt_digest(*base),
        receipt_digest(8, *base[1:]),
        receipt_digest(7, "s2", "d", base[3], 1.0),
        receipt_digest(7, "s", "d2", base[3], 1.0),
        receipt_digest(7, "sd", "", base[3], 1.0),  # the separators keep ("s", "d") and ("sd", "") apart
        receipt_digest(7, "s", "d", payload_hash(b""), 1.0),
        receipt_digest(7, "s", "d", base[3], 1.0000001),
    }
    assert len(digests) == 7
    with pytest.raises(ValueError):
        receipt_digest(7, "s", "d", b"short", 1.0)


def test_key_signer_never_shows_its_key():
    signer = KeySigner(D_KEY)
    assert D_KEY[2:] not in repr(signer) and signer.address in repr(signer)


def test_receipt_frames_are_strictly_decoded():
    r = _receipt(D_KEY, 7)
    assert decode_payload(encode(r)[4:]) == r
    raw = msgspec.msgpack.decode(encode(r)[4:])
    for field, bad in (("signature", b"\x01" * 64), ("payload_hash", b"\x01" * 31), ("size", -1.0), ("dst", "")):
        with pytest.raises(MalformedFrameError):
            decode_payload(msgspec.msgpack.encode({**raw, field: bad}))
    with pytest.raises(MalformedFrameError):
        decode_payload(msgspec.msgpack.encode({**raw, "extra": 1}))
    with pytest.raises(MalformedFrameError):  # a piece's destination address is an address or nothing
        decode_payload(msgspec.msgpack.encode({**msgspec.msgpack.decode(encode(Piece(1, "a", "b", 0, 1, 1, 1, 0))[4:]),
                                                "dst_addr": "0x12"}))  # fmt: skip


# ------------------------------------------------------------------ what a node believes


def relay(payment: str = "on_delivery") -> tuple[Fabric, int]:
    """s - h - d with channels both ways; h is then driven by hand. Returns the fabric and s's conn to h."""
    fab = Fabric()
    Fabric._keys = {"s": 0, "h": 1, "d": 2}
    fab.add("s", 0, ["h"], payment=payment)
    fab.add("h", 1, ["s", "d"], payment=payment)
    fab.add("d", 2, ["h"], payment=payment)
    fab.connect("s", "h")
    fab.connect("h", "d")
    for a, b in (("s", "h"), ("h", "s"), ("h", "d"), ("d", "h")):
        fab.open_channel(a, b)
    fab.advance(0.5)
    fab.mute.add("h")
    return fab, fab.cores["s"].peers["h"].conn


def hand_over(fab: Fabric, pid: int, charge: bool = True, ack: bool = True) -> int:
    """s forwards piece ``pid`` (for d) to h; h acks it with an honest charge. Returns the charge."""
    s = fab.cores["s"]
    p = s.peers["h"]
    piece = Piece(pid, "s", "d", fab.now, fab.now + 0.3, 1.0, 1.0, 0, PAYLOAD, KeySigner(D_KEY).address)
    fab.run("s", s._forward(piece, None, fab.now, p, fab.now))
    amount = p.quote_wei if charge else 0
    if ack:
        fab.inject("s", p.conn, encode(Ack(pid, True, amount)))
    return amount


def rejected(fab: Fabric, reason: str) -> None:
    reasons = fab.reasons("s")
    assert any(r.startswith(reason) for r in reasons), reasons
    assert fab.cores["s"].peers["h"].conn is None  # that connection is closed


def test_a_valid_receipt_is_a_success_and_pays_exactly_the_charge_on_delivery():
    fab, conn = relay()
    s = fab.cores["s"]
    charge = hand_over(fab, 1)
    assert s.stats["paid_wei"] == 0 and s.peers["h"].pay_pending == charge  # acked, not yet paid
    before = s.peers["h"].pay_cumulative
    fab.inject("s", conn, encode(_receipt(D_KEY, 1)))
    assert s.stats["receipts_verified"] == 1 and s.stats["outcomes_ok"] == 1
    assert s.peers["h"].pay_cumulative == before + charge and s.stats["paid_wei"] == charge
    assert s.peers["h"].pay_pending == 0 and not fab.reasons("s")
    s.flush_memory()
    assert s.memory.success_count[0, s.peers["h"].slot] == 1


def test_a_receipt_signed_by_the_forwarder_is_forged_and_never_paid():
    fab, conn = relay()
    s = fab.cores["s"]
    hand_over(fab, 2)
    fab.inject("s", conn, encode(_receipt(H_KEY, 2)))  # h signs "d's" receipt with its own key
    rejected(fab, "forged receipt")
    assert s.stats["forged_receipts"] == 1 and s.stats["receipts_verified"] == 0
    assert s.stats["paid_wei"] == 0 and s.stats["outcomes_ok"] == 0
    s.flush_memory()
    assert s.memory.success[0, s.peers["h"].slot] < 1.0  # counted against h
    fab.advance(1.0)  # past deadline + grace: a loss, and the charge is never paid
    assert s.stats["outcomes_lost"] >= 1 and s.stats["paid_wei"] == 0
    assert s.stats["unpaid_for_lack_of_receipt_wei"] > 0


def test_a_receipt_naming_another_destination_is_rejected():
    fab, conn = relay()
    hand_over(fab, 3)
    fab.inject("s", conn, encode(_receipt(D_KEY, 3, dst="h")))  # validly signed by d, but not for "d"
    rejected(fab, "receipt mismatch: names destination h")
    assert fab.cores["s"].stats["paid_wei"] == 0


def test_a_replayed_receipt_is_believed_once_and_pays_once():
    fab, conn = relay()
    s = fab.cores["s"]
    charge = hand_over(fab, 4)
    r = encode(_receipt(D_KEY, 4))
    for _ in range(3):
        fab.inject("s", conn, r)
    assert s.stats["paid_wei"] == charge and s.stats["receipts_verified"] == 1 and s.stats["outcomes_ok"] == 1
    assert s.stats["replayed_receipts"] == 2
    s.flush_memory()
    assert s.memory.success_count[0, s.peers["h"].slot] == 1  # learnt once
    # the same receipt from a peer that never held the piece is a violation
    fab.mute.clear()
    other = fab.cores["h"].peers["s"].conn
    fab.mute.add("s")
    fab.inject("h", other, r)
    assert any(x.startswith("receipt for unknown piece") for x in fab.reasons("h"))


def test_a_receipt_for_an_unknown_piece_is_rejected():
    fab, conn = relay()
    fab.inject("s", conn, encode(_receipt(D_KEY, 5)))
    rejected(fab, "receipt for unknown piece")
    assert fab.cores["s"].stats["paid_wei"] == 0


def test_a_receipt_before_the_ack_is_rejected():
    fab, conn = relay()
    hand_over(fab, 6, ack=False)
    fab.inject("s", conn, encode(_receipt(D_KEY, 6)))
    rejected(fab, "receipt before ack")


def test_an_unsigned_delivery_claim_is_a_violation():
    fab, conn = relay()
    s = fab.cores["s"]
    hand_over(fab, 7)
    fab.inject("s", conn, encode(Outcome(7, True)))
    rejected(fab, "unsigned delivery claim")
    assert s.stats["forged_receipts"] == 1 and s.stats["outcomes_ok"] == 0 and s.stats["paid_wei"] == 0


def test_a_loss_report_is_believed_and_a_late_genuine_receipt_is_paid_once_within_the_window():
    """The credit rule: a record counted lost is kept for the late window; a genuine receipt that
    still verifies against it pays the charge once (the payee delivered and booked it), no violation."""
    fab, conn = relay()
    s = fab.cores["s"]
    charge = hand_over(fab, 8)
    fab.inject("s", conn, encode(Outcome(8, False)))
    assert s.stats["outcomes_lost"] == 1 and s.peers["h"].pay_pending == 0 and s.stats["paid_wei"] == 0
    r = encode(_receipt(D_KEY, 8))
    fab.inject("s", conn, r)
    assert s.stats["late_receipts"] == 1 and s.stats["paid_wei"] == charge and not fab.reasons("s")
    fab.inject("s", conn, r)  # replayed: nothing moves
    assert s.stats["paid_wei"] == charge and s.stats["replayed_receipts"] == 1
    assert s.peers["h"].conn == conn


def test_a_receipt_after_the_late_window_changes_nothing_and_cuts_nothing():
    fab, conn = relay()
    s = fab.cores["s"]
    hand_over(fab, 18)
    fab.inject("s", conn, encode(Outcome(18, False)))
    fab.advance(s.s.late_receipt_window_s + s._grace + 0.5, step=0.05)
    assert 18 not in s.custody.late
    fab.inject("s", conn, encode(_receipt(D_KEY, 18)))
    assert s.stats["late_receipts"] == 1 and s.stats["paid_wei"] == 0 and not fab.reasons("s")
    assert s.peers["h"].conn == conn


def test_per_hop_pays_at_the_ack_and_still_learns_only_from_receipts():
    fab, conn = relay("per_hop")
    s = fab.cores["s"]
    charge = hand_over(fab, 9)
    assert s.stats["paid_wei"] == charge
    fab.inject("s", conn, encode(_receipt(H_KEY, 9)))
    rejected(fab, "forged receipt")
    assert s.stats["paid_wei"] == charge and s.stats["outcomes_ok"] == 0


def test_a_hop_refuses_a_piece_whose_destination_address_it_knows_otherwise():
    fab, _ = relay()
    h = fab.cores["h"]
    fab.mute.clear()
    fab.mute.add("s")  # s's core would answer the refusal; we only look at h
    conn = h.peers["s"].conn
    wrong = KeySigner(H_KEY).address
    fab.inject("h", conn, encode(Piece(10, "s", "d", fab.now, fab.now + 1, 1.0, 1.0, 0, PAYLOAD, wrong)))
    fab.inject("h", conn, encode(Piece(11, "s", "zz", fab.now, fab.now + 1, 1.0, 1.0, 0, PAYLOAD)))
    assert h.stats["refused"] == 2 and h.stats["received"] == 0


# ------------------------------------------------------------------ end to end in memory


def test_receipts_travel_back_hop_by_hop_and_each_payee_is_credited_only_on_them():
    fab = line(4)
    src = fab.cores["n0"]
    src.s.streams = []
    from tests.runtime.node.test_protocol import stream

    stream(fab, "n0", "n3")
    fab.advance(2.0)
    n0, n1, n3 = (fab.cores[f"n{i}"] for i in (0, 1, 3))
    assert n3.stats["receipts_signed"] > 10
    assert n1.stats["receipts_verified"] > 10 and n0.stats["receipts_verified"] > 10
    assert n0.stats["outcomes_ok"] >= n0.stats["generated"] * 0.8
    # what each payee is owed is what it was paid, voucher for voucher, and it is what receipts proved
    for payer, payee in (("n0", "n1"), ("n1", "n2"), ("n2", "n3")):
        assert fab.cores[payee].unpaid_wei(payer) == 0
        got = fab.stores[payee].latest("received")
        assert sum(v.cumulative for v in got.values()) == fab.cores[payer].peers[payee].pay_cumulative > 0
    assert not any(fab.reasons(n) for n in fab.cores)


def test_without_receipts_nobody_is_paid_and_no_credit_is_counted():
    fab = line(3)
    fab.mute.add("n2")  # the destination never answers
    from tests.runtime.node.test_protocol import stream

    stream(fab, "n0", "n2")
    fab.advance(2.0)
    n0, n1 = fab.cores["n0"], fab.cores["n1"]
    assert n0.stats["generated"] > 20 and n0.stats["outcomes_lost"] > 10
    assert n0.stats["paid_wei"] == 0 and n1.stats["paid_wei"] == 0 and n1.stats["earned_wei"] == 0
    assert n1.peers["n0"].owed == 0 and n1.stats["uncredited_for_lack_of_receipt_wei"] > 0
    assert n0.stats["unpaid_for_lack_of_receipt_wei"] > 0


def test_a_forger_earns_nothing_and_its_upstream_learns_it_is_lying():
    fab = Fabric()
    names = ["s", "f", "d"]
    Fabric._keys = {n: i for i, n in enumerate(names)}
    fab.add("s", 0, ["f"])
    fab.add("f", 1, ["s", "d"], kind="forger")
    fab.add("d", 2, ["f"])
    fab.connect("s", "f")
    fab.connect("f", "d")
    for a, b in (("s", "f"), ("f", "d"), ("f", "s"), ("d", "f")):
        fab.open_channel(a, b)
    fab.advance(0.5)
    from tests.runtime.node.test_protocol import stream

    stream(fab, "s", "d")
    s, f = fab.cores["s"], fab.cores["f"]
    for _ in range(5):  # each forged claim closes the connection; the forger comes back each time
        fab.advance(0.4)
        if s.peers["f"].conn is None:
            fab.connect("s", "f")
    fab.advance(1.0)
    reasons = fab.reasons("s")
    assert s.stats["forged_receipts"] >= 1 and f.stats["forged_receipts"] >= 1
    assert any(r.startswith(("forged receipt", "unsigned delivery claim")) for r in reasons), reasons
    assert s.stats["paid_wei"] == 0 and f.stats["earned_wei"] == 0 and s.stats["outcomes_ok"] == 0
    s.flush_memory()
    assert s.memory.success[0, s.peers["f"].slot] < 0.5
