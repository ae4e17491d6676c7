"""The trust-gossip rule (agents.gossip): loud liars, lone voices and slander against one's own evidence."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from agents.gossip import (
    FULL_VOICE_COUNT,
    MAX_REPORT_COUNT,
    MIN_OWN_EVIDENCE,
    RATING_THRESHOLD,
    Reports,
    aggregate,
    rating,
)
from agents.memory import INITIAL_CREDIBILITY, NeighbourMemory

SLOTS = 8
SUBJECT = 0  # the receiver's slot of the node reported on; reporters sit in slots 1..7


def _memory() -> NeighbourMemory:
    m = NeighbourMemory(1, SLOTS)
    m.reset(np.ones((1, SLOTS)), np.ones((1, SLOTS)))
    return m


def _hear(m: NeighbourMemory, rates: list[float], counts: list[float]) -> None:
    """Node 0 hears one report on its slot SUBJECT from each of slots 1..len(rates)."""
    n = len(rates)
    reports = Reports(
        rows=np.zeros(n, dtype=np.int64),
        subject=np.full(n, SUBJECT),
        reporter=np.arange(1, n + 1),
        rate=np.asarray(rates, dtype=np.float64),
        count=np.asarray(counts, dtype=np.float64),
    )
    aggregate(m, reports, np.array([0]))


@given(
    honest=st.integers(2, 5),
    liars=st.integers(0, 4),
    liar_count=st.floats(1, 1e9),
    honest_count=st.floats(FULL_VOICE_COUNT, MAX_REPORT_COUNT),
)
def test_liars_no_more_than_the_truthful_cannot_move_the_view(honest, liars, liar_count, honest_count):
    """Equally trusted reporters: while the truthful are at least as many as the slanderers, however
    large the count the slanderers claim, the network view stays the truth (the weighted median)."""
    if honest + liars > SLOTS - 1 or liars > honest:
        return
    m = _memory()
    _hear(m, [1.0] * honest + [0.0] * liars, [honest_count] * honest + [liar_count] * liars)
    assert m.net_rate[0, SUBJECT] == 1.0
    assert m.net_reporters[0, SUBJECT] == honest + liars


def test_a_majority_of_trusted_reporters_does_move_the_view():
    """The check above can fail: three reporters of a loss outvote two of deliveries."""
    m = _memory()
    _hear(m, [1.0, 1.0, 0.0, 0.0, 0.0], [10] * 5)
    assert m.net_rate[0, SUBJECT] == 0.0 and m.net_weight[0, SUBJECT] > 0


@given(rate=st.floats(0, 1), count=st.floats(1, 1e6))
def test_a_lone_voice_moves_nothing(rate, count):
    m = _memory()
    _hear(m, [rate], [count])
    assert (m.net_rate[0, SUBJECT], m.net_weight[0, SUBJECT]) == (1.0, 0.0)


def test_claiming_a_large_count_buys_no_more_voice():
    small, large = _memory(), _memory()
    _hear(small, [0.0, 0.0], [FULL_VOICE_COUNT] * 2)
    _hear(large, [0.0, 0.0], [1e12] * 2)
    assert small.net_weight[0, SUBJECT] == large.net_weight[0, SUBJECT] > 0


def test_out_of_range_numbers_are_clipped_not_trusted():
    m = _memory()
    _hear(m, [np.nan, -5.0, 7.0], [np.inf, -1.0, np.nan])
    assert 0.0 <= m.net_rate[0, SUBJECT] <= 1.0 and np.isfinite(m.net_weight).all()


def test_a_reporter_that_contradicts_own_evidence_loses_its_voice():
    m = _memory()
    m.record_outcomes(np.zeros(5, dtype=np.int64), np.full(5, SUBJECT), np.ones(5, dtype=bool))  # delivered
    assert m.custody_count[0, SUBJECT] >= MIN_OWN_EVIDENCE
    for _ in range(5):
        _hear(m, [1.0, 0.0], [10, 10])  # slot 1 truthful, slot 2 a slanderer
    assert m.credibility[0, 2] < 0.2 * INITIAL_CREDIBILITY
    assert m.credibility[0, 1] > INITIAL_CREDIBILITY


def test_the_majority_of_others_never_discredits_a_reporter():
    """Without own evidence, a reporter contradicting the others keeps its credibility: a local
    majority of liars cannot silence the honest minority."""
    m = _memory()
    for _ in range(5):
        _hear(m, [1.0, 0.0, 0.0, 0.0], [10] * 4)
    assert (m.credibility[0, 1:5] == INITIAL_CREDIBILITY).all()


@given(net_rate=st.floats(0, 1), net_weight=st.floats(0, 1e6), own_count=st.integers(10, 100))
def test_slander_cannot_overturn_seasoned_own_experience(net_rate, net_weight, own_count):
    m = _memory()
    m.custody[0, SUBJECT], m.custody_count[0, SUBJECT] = 1.0, own_count
    m.net_rate[0, SUBJECT], m.net_weight[0, SUBJECT] = net_rate, net_weight
    assert rating(m, np.array([0]), np.array([SUBJECT]))[0] > RATING_THRESHOLD


def test_the_network_decides_on_a_neighbour_one_has_never_used():
    m = _memory()
    m.net_rate[0, SUBJECT], m.net_weight[0, SUBJECT] = 0.0, 2.0
    assert rating(m, np.array([0]))[0, SUBJECT] < RATING_THRESHOLD
    assert rating(m, np.array([0]))[0, 1] == 1.0
