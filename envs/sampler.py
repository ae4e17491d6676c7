"""Domain randomisation: a seeded sampler of random scenarios for training mixes.

:func:`sample_scenarios` draws ``count`` scenarios with a ``numpy`` generator seeded by ``seed``,
each with its own topology kind, size, load, dishonest kinds and their parameters, and (with
``dynamics_probability``) churn, turncoats and a load shift. Training adds them to its mix
(``randomise`` in ``conf/train.yaml``); :class:`~envs.core.MeshCore` then draws one scenario of
the mix per mesh per episode, so each episode is a fresh draw of graph, roles and parameters.

The attacker parameter ranges leave room outside them on purpose: the held-out files in
``conf/heldout/`` use values no draw takes (a grey hole dropping 25 %, an on-off cycle of 12/8
steps, a selective node with quantile 0.2, a whitewasher back after 5 steps), so they test
generalisation to attackers the policy never met.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from envs.scenario import ADVERSARY_KINDS, TOPOLOGY_KINDS, Scenario, ScenarioError, as_scenario


@dataclass(frozen=True)
class Ranges:
    """What the sampler draws from; every range is ``(low, high)`` inclusive.

    :param nodes: mesh size.
    :param topologies: topology kinds drawn uniformly.
    :param load: offered load per stream.
    :param dishonest: total fraction of dishonest nodes (split over 1-3 kinds).
    :param kinds: dishonest kinds drawn from.
    :param dynamics_probability: chance of each of churn, turn_dishonest and load_shift.
    :param episode_steps: steps per episode (a mix shares one value).
    """

    nodes: tuple[int, int] = (16, 128)
    topologies: Sequence[str] = TOPOLOGY_KINDS
    load: tuple[float, float] = (0.2, 0.8)
    dishonest: tuple[float, float] = (0.0, 0.4)
    kinds: Sequence[str] = ADVERSARY_KINDS
    dynamics_probability: float = 0.25
    episode_steps: int = 200

    def __post_init__(self) -> None:
        if not 4 <= self.nodes[0] <= self.nodes[1] <= 4096:
            raise ScenarioError(f"randomise.nodes: need 4 <= low <= high <= 4096, got {list(self.nodes)}")
        if not 0 < self.load[0] <= self.load[1] <= 4:
            raise ScenarioError(f"randomise.load: need 0 < low <= high <= 4, got {list(self.load)}")
        if not 0 <= self.dishonest[0] <= self.dishonest[1] <= 0.6:
            raise ScenarioError(f"randomise.dishonest: need 0 <= low <= high <= 0.6, got {list(self.dishonest)}")
        unknown = [k for k in self.kinds if k not in ADVERSARY_KINDS]
        if unknown or not self.kinds:
            expected = ", ".join(ADVERSARY_KINDS)
            raise ScenarioError(f"randomise.kinds: expected some of {expected}, got {list(self.kinds)}")
        bad_topology = [k for k in self.topologies if k not in TOPOLOGY_KINDS]
        if bad_topology or not self.topologies:
            raise ScenarioError(
                f"randomise.topologies: expected some of {', '.join(TOPOLOGY_KINDS)}, got {list(self.topologies)}"
            )
        if not 0 <= self.dynamics_probability <= 1:
            raise ScenarioError(f"randomise.dynamics_probability: must be in [0, 1], got {self.dynamics_probability}")


def _kind_params(kind: str, fraction: float, rng: np.random.Generator) -> float | dict:
    """The scenario entry of one dishonest kind: its fraction and randomised parameters."""
    if kind == "grey_hole":
        return {"fraction": fraction, "drop_probability": round(float(rng.uniform(0.3, 1.0)), 3)}
    if kind == "on_off":
        return {
            "fraction": fraction,
            "honest_steps": int(rng.integers(20, 61)),
            "attack_steps": int(rng.integers(10, 41)),
        }
    if kind == "selective":
        return {"fraction": fraction, "value_quantile": round(float(rng.uniform(0.3, 0.8)), 3)}
    if kind == "whitewasher":
        return {"fraction": fraction, "rejoin_after": int(rng.integers(10, 41))}
    if kind == "ballot_stuffer":
        return {
            "fraction": fraction,
            "drop_probability": round(float(rng.uniform(0.3, 1.0)), 3),
            "clique": bool(rng.uniform() < 0.5),
        }
    return fraction


def sample_scenario(rng: np.random.Generator, ranges: Ranges, index: int = 0) -> Scenario:
    """One random scenario drawn with ``rng`` (named ``random_<index>``)."""
    nodes = int(rng.integers(ranges.nodes[0], ranges.nodes[1] + 1))
    kind = str(rng.choice(list(ranges.topologies)))
    degree = float(rng.uniform(3.0, 6.0)) if kind != "barabasi_albert" else float(rng.uniform(3.0, 5.0))
    streams = max(2, min(nodes // 4, round(nodes / 3 * rng.uniform(0.25, 0.5))))
    total = float(rng.uniform(*ranges.dishonest))
    n_kinds = int(rng.integers(1, min(3, len(ranges.kinds)) + 1))
    chosen = list(rng.choice(list(ranges.kinds), size=n_kinds, replace=False))
    split = rng.dirichlet(np.ones(n_kinds)) * total
    adversaries: dict = dict.fromkeys(ADVERSARY_KINDS, 0.0)
    for k, f in zip(chosen, split, strict=True):
        adversaries[str(k)] = _kind_params(str(k), round(float(f), 4), rng)
    dynamics: dict = {}
    p = ranges.dynamics_probability
    if rng.uniform() < p:
        dynamics["churn"] = {
            "leave_probability": round(float(rng.uniform(0.0005, 0.005)), 5),
            "rejoin_steps": int(rng.integers(10, 61)),
        }
    if rng.uniform() < p:
        dynamics["turn_dishonest"] = {
            "fraction": round(float(rng.uniform(0.03, 0.1)), 4),
            "at_step": int(rng.integers(20, ranges.episode_steps)),
        }
    if rng.uniform() < p:
        dynamics["load_shift"] = {
            "at_step": int(rng.integers(20, ranges.episode_steps)),
            "load": round(float(rng.uniform(*ranges.load)), 3),
        }
    spec = {
        "name": f"random_{index}",
        "description": "drawn by envs.sampler (domain randomisation)",
        "nodes": nodes,
        "topology": {
            "kind": kind,
            "mean_degree": round(degree, 2),
            "rewire_p": round(float(rng.uniform(0.05, 0.3)), 3),
        },
        "traffic": {"streams": streams, "load": round(float(rng.uniform(*ranges.load)), 3)},
        "adversaries": adversaries,
        "dynamics": dynamics,
        "episode_steps": ranges.episode_steps,
        "seed": int(rng.integers(2**31)),
    }
    return as_scenario(spec)


def sample_scenarios(count: int, seed: int, ranges: Ranges | None = None) -> list[Scenario]:
    """``count`` random scenarios, the same for the same ``seed`` and ``ranges``.

    A draw that fails validation (too few honest nodes left, say) is drawn again.
    """
    ranges = ranges or Ranges()
    rng = np.random.default_rng(seed)
    out: list[Scenario] = []
    while len(out) < count:
        try:
            out.append(sample_scenario(rng, ranges, len(out)))
        except ScenarioError:
            continue
    return out
