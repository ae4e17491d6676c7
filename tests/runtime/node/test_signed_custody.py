"""Signed custody (issue 22): the hop ack carries the receiver's signed acceptance, a loss report
carries the downstream acceptance its reporter holds, and the loss lands on the node that held the
piece last. In-memory cores driven by real frames; the same over TCP in ``test_custody_tcp.py``."""

from __future__ import annotations

import pytest

from runtime.node.acceptance import AcceptanceVerifier, custody_digest, sign_acceptance
from runtime.node.protocol import StreamSpec
from runtime.node.receipts import KeySigner
from runtime.node.wire import Outcome, encode
from tests.runtime.node.fakes import Fabric


def chain(kinds: list[str], rate: float = 40.0) -> Fabric:
    """``n0 - n1 - ...`` in a line with the given kinds; n0 streams to the last node."""
    fab = Fabric()
    names = [f"n{i}" for i in range(len(kinds))]
    Fabric._keys = {name: i for i, name in enumerate(names)}
    for i, (name, kind) in enumerate(zip(names, kinds, strict=True)):
        peers = [names[j] for j in (i - 1, i + 1) if 0 <= j < len(names)]
        streams = [StreamSpec([names[-1]], rate=rate)] if i == 0 else []
        fab.add(name, i, peers, kind=kind, streams=streams, id_salt=7, blame_wait_s=0.5)
    for i in range(len(names) - 1):
        fab.connect(names[i], names[i + 1])
    for i in range(len(names) - 1):
        fab.open_channel(names[i], names[i + 1])
        fab.open_channel(names[i + 1], names[i])
    fab.advance(0.6)
    return fab


def test_an_acceptance_verifies_only_for_its_signer_and_its_fields():
    signer, other = KeySigner(1), KeySigner(2)
    phash = bytes(range(32))
    sig = sign_acceptance(signer.sign, 5, phash, "a", "b", 12.5)
    v = AcceptanceVerifier()
    assert v.check(5, phash, "a", "b", 12.5, sig, signer.address) is None
    assert v.check(5, phash, "a", "b", 12.5, sig, signer.address) is None  # the cached key path
    for args in ((6, phash, "a", "b", 12.5), (5, bytes(32), "a", "b", 12.5), (5, phash, "x", "b", 12.5),
                 (5, phash, "a", "c", 12.5), (5, phash, "a", "b", 12.6)):  # fmt: skip
        assert v.check(*args, sig, signer.address).startswith("forged custody")
    assert v.check(5, phash, "a", "b", 12.5, sig, other.address).startswith("forged custody")
    assert v.check(5, phash, "a", "b", 12.5, b"\x01" * 65, signer.address).startswith("forged custody")
    with pytest.raises(ValueError):
        custody_digest(5, b"short", "a", "b", 0.0)


def test_a_loss_beyond_an_honest_relay_lands_on_the_blackhole_that_held_the_piece():
    fab = chain(["honest", "honest", "blackhole", "honest"])
    n0, n1 = fab.cores["n0"], fab.cores["n1"]
    n0.start_streams(fab.now)
    fab.advance(4.0)
    n0.stop()
    fab.advance(2.0)
    m0, m1 = n0.memory, n1.memory
    k01, k12 = n0.peers["n1"].slot, n1.peers["n2"].slot
    assert m1.own_losses[0, k12] > 20 and m1.custody[0, k12] < 0.2  # n1 blames the blackhole
    assert m0.beyond_losses[0, k01] > 20 and m0.own_losses[0, k01] == 0  # n0 clears the honest relay
    assert m0.custody[0, k01] == 1.0 and m0.success[0, k01] < 0.2  # end to end it still failed
    assert n0.stats["custody_verified"] > 20 and n0.stats["forged_custody"] == 0
    assert n1.stats["custody_signed"] > 20 and n0.peers["n1"].conn is not None


def test_a_relay_that_forges_a_downstream_acceptance_is_cut_off_and_takes_the_loss():
    fab = chain(["honest", "blame_shifter", "honest", "honest"])
    n0 = fab.cores["n0"]
    n0.start_streams(fab.now)
    fab.advance(2.0)
    assert n0.rejections.get("forged custody", 0) >= 1
    assert n0.stats["forged_custody"] >= 1 and fab.cores["n1"].stats["forged_custody_sent"] >= 1
    k = n0.peers["n1"].slot
    assert n0.memory.beyond_losses[0, k] == 0 and n0.memory.custody[0, k] < 1.0


def test_evidence_naming_the_reporter_or_the_receiver_itself_is_a_custody_mismatch():
    fab = chain(["honest", "honest", "honest"], rate=0.0)
    fab.mute.add("n1")
    n0 = fab.cores["n0"]
    n0.s.streams[0].rate = 20.0
    n0.start_streams(fab.now)
    fab.advance(0.3)
    pid = next(iter(n0.inflight))
    e = n0.inflight[pid]
    sig = sign_acceptance(KeySigner(1).sign, pid, e.phash, "n1", "n0", 1.0)
    fab.inject("n0", n0.peers["n1"].conn, encode(Outcome(pid, False, "n0", 1.0, sig)))
    assert any(r.startswith("custody mismatch") for r in fab.reasons("n0"))
