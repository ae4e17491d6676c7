"""The environment's adaptive dishonest kinds on the live node: grey hole, on-off, selective."""

from __future__ import annotations

import pytest

from runtime.node.protocol import StreamSpec
from runtime.node.wire import Piece
from tests.runtime.node.fakes import line


def _piece(value: float = 1.0) -> Piece:
    return Piece(piece_id=1, src="n0", dst="n2", born=0.0, deadline=10.0, value=value, size=1.0, hops=1)


def _delivered_through(kind: str, **settings) -> tuple[int, int]:
    fab = line(3)
    n1 = fab.cores["n1"]
    n1.s.kind = kind
    for name, value in settings.items():
        setattr(n1.s, name, value)
    src = fab.cores["n0"]
    src.s.streams = [StreamSpec(["n2"], rate=50.0)]
    src._next_emit, src._rr = [0.0], [0]
    src.start_streams(fab.now)
    fab.advance(2.0)
    return src.stats["generated"], fab.cores["n2"].stats["delivered"]


@pytest.mark.parametrize(
    ("kind", "settings", "expect"),
    [
        ("grey_hole", {"drop_probability": 1.0}, "none"),  # a grey hole that always drops is a blackhole
        ("grey_hole", {"drop_probability": 0.0}, "all"),
        ("grey_hole", {"drop_probability": 0.5}, "some"),
        ("selective", {"value_threshold": 0.0}, "none"),  # every piece is worth more than 0
        ("selective", {"value_threshold": 2.0}, "all"),  # values are at most 1.5 x the stream's 1.0
    ],
)
def test_what_an_adaptive_kind_lets_through(kind: str, settings: dict, expect: str) -> None:
    generated, delivered = _delivered_through(kind, **settings)
    assert generated > 20
    if expect == "none":
        assert delivered == 0
    elif expect == "all":
        assert delivered >= 0.8 * generated
    else:
        assert 0.2 * generated < delivered < 0.8 * generated


def test_selective_drops_only_pieces_above_its_threshold() -> None:
    n1 = line(3).cores["n1"]
    n1.s.kind, n1.s.value_threshold = "selective", 1.2
    assert n1._drops(_piece(1.3), 0.0) and not n1._drops(_piece(1.1), 0.0)


def test_on_off_drops_exactly_in_its_attack_phase() -> None:
    n1 = line(3).cores["n1"]
    n1.s.kind, n1.s.honest_steps, n1.s.attack_steps = "on_off", 4, 2
    drops = [n1._drops(_piece(), (k + 0.5) * n1.s.step_s) for k in range(24)]
    assert drops == [(k + n1._onoff_phase) % 6 >= 4 for k in range(24)]
    assert sum(drops) == 8  # two steps of every six


@pytest.mark.parametrize("kind", ["grey_hole", "on_off", "selective"])
def test_adaptive_kinds_attract_traffic_like_blackholes(kind: str) -> None:
    n1 = line(3).cores["n1"]
    n1.peers["n2"].link_steps = 4.0
    n1.s.kind = kind
    assert n1._routes_msg().dist["n2"] == 2.0
