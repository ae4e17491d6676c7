"""envs.kernels: the compiled path gives the numpy path's values to the bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.gossip import network_view
from agents.memory import NeighbourMemory, _fold
from envs import kernels
from envs.core import MeshCore
from envs.kernels import CompiledMemory, compiled_network_view
from envs.scenario import load_scenario

pytestmark = pytest.mark.skipif(not kernels.ENABLED, reason="numba not installed or OPENSTREAMING_NUMBA=0")


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    nodes=st.integers(1, 6),
    samples=st.integers(0, 40),
    alpha=st.sampled_from([0.05, 0.1, 0.15, 0.2, 0.5, 1.0, 0.37]),
)
def test_compiled_fold_equals_numpy_fold_with_duplicates(seed, nodes, samples, alpha):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(nodes, 8))
    rows = rng.integers(0, nodes, samples)
    cols = rng.integers(0, 2, samples)  # few columns: many duplicate cells
    x = rng.normal(size=samples) * 10.0
    expected = values.copy()
    _fold(expected, rows, cols, x, alpha)
    memory = CompiledMemory(nodes, 8)
    got = values.copy()
    memory._fold(got, rows, cols, x, alpha)
    np.testing.assert_array_equal(got, expected)
    # The scratch arrays are left zeroed for the next call.
    assert not memory._sums.any() and not memory._counts.any()


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300), cells=st.integers(1, 40), decimals=st.integers(0, 3))
def test_compiled_network_view_equals_numpy_with_ties_and_zero_weights(seed, n, cells, decimals):
    rng = np.random.default_rng(seed)
    cell = rng.integers(0, cells, n).astype(np.int64) * 8
    vote = np.round(rng.random(n), decimals)  # few decimals: many tied votes
    trust = rng.random(n) * (rng.random(n) < 0.8)  # some reporters weigh nothing
    evidence = trust * np.minimum(rng.integers(0, 5, n), 3) / 3
    expected = network_view(cell, vote, trust, evidence)
    for got in (
        compiled_network_view(cell, vote, trust, evidence),
        compiled_network_view(cell, vote, trust, evidence, order=np.argsort(cell, kind="stable")),
    ):
        for x, y in zip(expected, got, strict=True):
            np.testing.assert_array_equal(x, y)


def _episode(scenario: str, seeds: list[int], compiled: bool) -> list[np.ndarray]:
    kernels_on = kernels.ENABLED
    kernels.ENABLED = compiled
    try:
        core = MeshCore(load_scenario(scenario), n_meshes=len(seeds), seed=1)
        core.reset(episode_seeds=seeds)
        rng = np.random.default_rng(0)
        trace = []
        for _ in range(core.episode_steps):
            obs = core.agent_observation()
            core.step(rng.integers(0, 8, core.agent_rows.size))
            trace += [obs.features, core.reward.copy(), core.balance.copy()]
        memory = core.memory
        trace += [memory.observed_bw, memory.success, memory.cooperation, memory.delay, memory.success_recent]
        trace += [memory.custody, memory.credibility, memory.net_rate, memory.net_weight, memory.net_reporters]
        trace += [np.array([m[k] for m in core.metrics() for k in sorted(m)])]
        return trace
    finally:
        kernels.ENABLED = kernels_on


@pytest.mark.parametrize("scenario", ["mixed_heavy", "whitewashers", "churn", "slanderers", "ballot_stuffers"])
def test_compiled_core_gives_the_numpy_episode_bit_for_bit(scenario):
    a = _episode(scenario, [5, 6], compiled=True)
    b = _episode(scenario, [5, 6], compiled=False)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_memory_class_in_the_core_is_a_neighbour_memory():
    core = MeshCore(load_scenario("honest"), n_meshes=1, seed=0)
    core.reset()
    assert isinstance(core.memory, NeighbourMemory)


def test_kernels_compile_without_a_cache_where_none_can_be_written(monkeypatch):
    """A read-only install: numba finds no cache locator; the kernel still compiles (a warning)."""
    real_njit = kernels.numba.njit

    def njit(*args, **kwargs):
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file 'x.py'")
        return real_njit(*args, **kwargs)

    monkeypatch.setattr(kernels.numba, "njit", njit)

    def add_one(x):
        return x + 1

    with pytest.warns(UserWarning, match="without a cache"):
        compiled = kernels.jit(add_one)
    assert compiled(41) == 42


@pytest.mark.parametrize("choice", [0, 1, 2])
def test_compiled_gossip_round_equals_numpy_with_learned_liars(choice):
    """The learned attacker's gossip lies (not in the episode test above: it needs a policy)."""
    core = MeshCore(load_scenario("learned"), n_meshes=2, seed=3)
    core.reset(episode_seeds=[1, 2])
    rng = np.random.default_rng(choice)
    for _ in range(60):
        core.step(rng.integers(0, 8, core.agent_rows.size))
    core.gossip_choice[:] = np.where(core.learned, choice, 0)
    fields = ("custody", "credibility", "net_rate", "net_weight", "net_reporters")
    start = {f: getattr(core.memory, f).copy() for f in fields}
    due = np.ones(len(core.meshes), dtype=bool)
    results = []
    for compiled in (True, False):
        for f in fields:
            getattr(core.memory, f)[...] = start[f]
        kernels_on, kernels.ENABLED = kernels.ENABLED, compiled
        try:
            core._gossip(due)
        finally:
            kernels.ENABLED = kernels_on
        results.append([getattr(core.memory, f).copy() for f in fields])
    # Not vacuous: there are learned liars, and the round moved the views.
    assert core.learned.any() and (results[0][3] != start["net_weight"]).any()
    for x, y in zip(*results, strict=True):
        np.testing.assert_array_equal(x, y)
