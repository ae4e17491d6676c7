"""envs.compiled_features: the environment's compiled observation is agents.features' to the bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.features import N_FEATURES, SLOTS, DecisionContext, build_observation
from agents.memory import NeighbourMemory
from envs import kernels
from envs.compiled_features import FIELDS, fill_observation

pytestmark = pytest.mark.skipif(not kernels.ENABLED, reason="numba not installed or OPENSTREAMING_NUMBA=0")

# Values that sit on the rules' thresholds (0.95 success, 0.8 cooperation, equal quotes), zeros and
# ties, beside random ones.
EDGES = np.array([0.0, 0.5, 0.8, 0.95, 1.0, 2.0, 3.0, 10.0])


def _random_state(rng: np.random.Generator, nodes: int, rows: int) -> tuple[NeighbourMemory, DecisionContext]:
    memory = NeighbourMemory(nodes, SLOTS)
    shape = (nodes, SLOTS)
    for name in FIELDS:
        edge = rng.random(shape) < 0.4
        value = np.where(edge, rng.choice(EDGES, shape), rng.random(shape) * rng.choice([1.0, 5.0, 50.0]))
        setattr(memory, name, np.ascontiguousarray(value))
    memory.ever_lost = rng.random(shape) < 0.5
    memory.quote = np.where(rng.random(shape) < 0.3, 1.0, memory.quote + 0.01)  # tied and positive quotes
    n = rows
    mask = rng.random((n, SLOTS)) < rng.choice([0.0, 0.5, 0.9, 1.0])
    ctx = DecisionContext(
        rows=rng.integers(0, nodes, n),
        mask=mask,
        link_latency=rng.integers(0, 6, (n, SLOTS)).astype(np.float64),
        route_latency=rng.integers(0, 30, (n, SLOTS)).astype(np.float64),
        is_destination=(rng.random((n, SLOTS)) < 0.2) & mask,
        time_left=rng.integers(-5, 80, n).astype(np.float64),
        value=rng.random(n),
        size=0.5 + rng.random(n),
        hops=rng.integers(0, 16, n).astype(np.float64),
        own_queue=rng.random(n),
        active=rng.random(n) < 0.9,
    )
    return memory, ctx


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), nodes=st.integers(1, 12), rows=st.integers(0, 30))
def test_compiled_observation_is_build_observation_bit_for_bit(seed, nodes, rows):
    rng = np.random.default_rng(seed)
    memory, ctx = _random_state(rng, nodes, rows)
    expected = build_observation(memory, ctx)
    total = rows + 3
    out_rows = np.sort(rng.choice(total, rows, replace=False))
    features = np.full((total, SLOTS, N_FEATURES), 7.0, dtype=np.float32)
    coherence, seed_score = np.full((total, SLOTS), 7.0), np.full((total, SLOTS), 7.0)
    coherent = np.ones((total, SLOTS), dtype=bool)
    assert fill_observation(memory, ctx, out_rows, features, coherence, coherent, seed_score)
    # The same bits (a -0.0 for a 0.0 would show), and rows not asked for left as they were.
    np.testing.assert_array_equal(features[out_rows].view(np.uint32), expected.features.view(np.uint32))
    np.testing.assert_array_equal(coherence[out_rows], expected.coherence)
    np.testing.assert_array_equal(coherent[out_rows], expected.coherent)
    np.testing.assert_array_equal(seed_score[out_rows], expected.seed_score)
    others = np.setdiff1d(np.arange(total), out_rows)
    assert (features[others] == 7.0).all() and coherent[others].all()


def test_a_wrongly_shaped_output_is_refused():
    memory, ctx = _random_state(np.random.default_rng(0), 2, 2)
    with pytest.raises(ValueError, match="float32"):
        fill_observation(memory, ctx, np.arange(2), np.zeros((2, SLOTS, N_FEATURES)), *np.zeros((3, 2, SLOTS)))
