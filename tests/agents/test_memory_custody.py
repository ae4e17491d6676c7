"""Custody in the neighbour memory: a loss lands on the neighbour only when it held the piece last."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from agents.memory import INITIAL_CREDIBILITY, NeighbourMemory


def _memory() -> NeighbourMemory:
    m = NeighbourMemory(2, 3)
    m.reset(np.ones((2, 3)), np.ones((2, 3)))
    return m


def test_beyond_loss_leaves_custody_untouched_but_counts() -> None:
    m = _memory()
    rows, cols = np.array([0, 0]), np.array([1, 2])
    m.record_outcomes(rows, cols, np.array([False, False]), own=np.array([False, True]))
    assert m.success[0, 1] < 1.0 and m.success[0, 2] < 1.0  # end to end: both lost
    assert m.custody[0, 1] == 1.0 and m.custody_count[0, 1] == 0  # beyond slot 1: no blame
    assert m.custody[0, 2] < 1.0 and m.custody_count[0, 2] == 1  # slot 2 held it: blamed
    assert m.own_losses[0].tolist() == [0, 0, 1] and m.beyond_losses[0].tolist() == [0, 1, 0]


def test_without_custody_evidence_every_loss_is_own() -> None:
    m = _memory()
    m.record_outcomes(np.array([1]), np.array([0]), np.array([False]))
    assert m.own_losses[1, 0] == 1 and m.beyond_losses[1, 0] == 0
    assert m.custody[1, 0] == m.success[1, 0] < 1.0


def test_forget_resets_custody_and_network_view() -> None:
    m = _memory()
    m.record_outcomes(np.array([0]), np.array([0]), np.array([False]))
    m.net_rate[0, 0], m.net_weight[0, 0], m.net_reporters[0, 0], m.credibility[0, 0] = 0.1, 2.0, 3, 0.9
    m.forget(np.array([0]), np.array([0]), np.array([1.0]), np.array([1.0]))
    assert m.custody[0, 0] == 1.0 and m.custody_count[0, 0] == 0 and m.own_losses[0, 0] == 0
    assert (m.net_rate[0, 0], m.net_weight[0, 0], m.net_reporters[0, 0]) == (1.0, 0.0, 0.0)
    assert m.credibility[0, 0] == INITIAL_CREDIBILITY


@given(st.lists(st.tuples(st.integers(0, 2), st.booleans(), st.booleans()), max_size=40))
def test_custody_counts_add_up(events: list[tuple[int, bool, bool]]) -> None:
    """Every outcome is one delivery, one own loss or one beyond loss; custody counts deliveries and own losses."""
    m = _memory()
    for col, delivered, own in events:
        m.record_outcomes(np.array([0]), np.array([col]), np.array([delivered]), own=np.array([own]))
    for col in range(3):
        mine = [(d, o) for c, d, o in events if c == col]
        delivered = sum(d for d, _ in mine)
        own = sum(1 for d, o in mine if not d and o)
        assert m.success_count[0, col] == len(mine)
        assert m.own_losses[0, col] == own
        assert m.beyond_losses[0, col] == len(mine) - delivered - own
        assert m.custody_count[0, col] == delivered + own
        assert 0.0 <= m.custody[0, col] <= 1.0
