"""Rating frames (issue 22): strict, bounded, signed; aggregated by the environment's own rule."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from agents.gossip import Reports, aggregate
from agents.memory import NeighbourMemory
from runtime.node.gossip import MAX_FRAMES_PER_PERIOD, Gossip, rating_digest
from runtime.node.receipts import KeySigner
from runtime.node.trust_report import TrustTracker
from runtime.node.wire import RATING_VERSION, MalformedFrameError, Rating, RatingItem, decode_payload, encode

U = KeySigner(3)


def frame(seq: int, items: list[RatingItem], signer: KeySigner = U, reporter: str = "u") -> Rating:
    return Rating(
        RATING_VERSION, reporter, seq, items, signer.sign(rating_digest(RATING_VERSION, reporter, seq, items))
    )


def fresh() -> NeighbourMemory:
    m = NeighbourMemory(1, 8)
    m.reset(np.zeros((1, 8)), np.zeros((1, 8)))
    return m


SLOTS = {"u": 0, "x": 1, "v": 2}


def test_the_decoder_refuses_out_of_range_and_over_long_frames():
    ok = frame(1, [RatingItem("x", 0.5, 3.0)])
    assert decode_payload(encode(ok)[4:]) == ok
    many = [RatingItem(f"s{i}", 1.0, 1.0) for i in range(9)]
    for bad in ([RatingItem("x", 1.5, 3.0)], [RatingItem("x", 0.5, 51.0)], many):
        payload = encode(Rating(RATING_VERSION, "u", 1, [], bytes(65)))[4:]
        raw = msgspec.msgpack.decode(payload)
        raw["items"] = [[it.subject, it.rate, it.count] for it in bad]
        with pytest.raises(MalformedFrameError):
            decode_payload(msgspec.msgpack.encode(raw))


def test_receive_checks_reporter_rate_subjects_sequence_and_signature():
    g = Gossip("w", period_s=1.0)
    assert g.receive(0, "u", U.address, frame(1, [RatingItem("x", 0.0, 50.0)], reporter="v"), SLOTS, 0.0).startswith(
        "rating mismatch"
    )
    # about nobody known (and about the receiver itself, and the reporter): unread, no signature check
    items = [RatingItem("ghost", 0, 50), RatingItem("w", 0, 50), RatingItem("u", 1, 1)]
    unread = Rating(RATING_VERSION, "u", 2, items, bytes(65))
    assert g.receive(0, "u", U.address, unread, SLOTS, 0.1) is None and g.stats["ratings_unread"] == 1
    assert 0 not in g.heard
    g2 = Gossip("w", period_s=1.0)
    assert g2.receive(0, "u", U.address, frame(5, [RatingItem("x", 0.2, 9.0)]), SLOTS, 0.0) is None
    assert g2.receive(0, "u", U.address, frame(5, [RatingItem("x", 0.2, 9.0)]), SLOTS, 0.1).startswith(
        "rating mismatch"
    )
    assert g2.receive(
        0, "u", U.address, frame(6, [RatingItem("x", 0.2, 9.0)], signer=KeySigner(4)), SLOTS, 2.0
    ).startswith("forged rating")
    for i in range(MAX_FRAMES_PER_PERIOD - 1):
        assert g2.receive(0, "u", U.address, frame(7 + i, [RatingItem("x", 0.3, 9.0)]), SLOTS, 2.1) is None
    assert g2.receive(0, "u", U.address, frame(20, [RatingItem("x", 0.3, 9.0)]), SLOTS, 2.2).startswith("rating flood")
    h = g2.heard[0]
    assert h.subjects.tolist() == [1] and h.rate.tolist() == [0.3]  # only the latest frame is kept


def test_the_live_aggregation_is_the_environments_rule():
    g = Gossip("w", period_s=1.0)
    v = KeySigner(5)
    g.receive(0, "u", U.address, frame(1, [RatingItem("x", 0.0, 50.0)]), SLOTS, 0.0)
    g.receive(2, "v", v.address, frame(1, [RatingItem("x", 0.1, 20.0)], signer=v, reporter="v"), SLOTS, 0.0)
    live = fresh()
    g.aggregate(live, 0.5)
    env = fresh()
    aggregate(env, Reports(np.zeros(2, dtype=np.int64), np.array([1, 1]), np.array([0, 2]), np.array([0.0, 0.1]),
                           np.array([50.0, 20.0])), np.zeros(1, dtype=np.int64))  # fmt: skip
    for name in ("net_rate", "net_weight", "net_reporters", "credibility"):
        assert np.array_equal(getattr(live, name), getattr(env, name)), name
    assert live.net_rate[0, 1] < 0.5 and live.net_reporters[0, 1] == 2


def test_the_tracker_counts_majorities_of_honest_neighbours():
    ids, kinds = ["a", "b", "c", "x"], ["honest", "honest", "honest", "blackhole"]
    links = [("a", "x", 1), ("b", "x", 1), ("c", "x", 1), ("a", "b", 1)]
    t = TrustTracker(ids, kinds, links)
    snap = lambda r: {"peers": {"x": {"rating": r}, "a": {"rating": 1.0}, "b": {"rating": 1.0}}}  # noqa: E731
    t.check({"a": snap(0.2), "b": snap(0.9), "c": snap(0.9)}, 1.0)
    assert "x" not in t.detected_at
    t.check({"a": snap(0.2), "b": snap(0.3), "c": snap(0.9)}, 2.0)
    rep = t.report({}, 10.0)
    assert rep["detection_s"] == {"blackhole": 2.0} and rep["false_accusations"] == 0.0
