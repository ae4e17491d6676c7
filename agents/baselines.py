"""Baseline routing policies, usable by name: ``seed``, ``shortest``, ``random``, ``oracle``.

Every policy maps a batch of decisions to neighbour slots from the observation alone
(``agents.features``), except the oracle, which is handed the environment's privileged choice:

* ``seed`` — the origin: among neighbours the empathy protocol finds coherent, the one with
  the highest route score ``0.3 lat + 0.3 bw + 0.2 econ + 0.2 empathy``; if none is coherent,
  the highest score overall.
* ``shortest`` — the lowest estimated latency to the destination, ignoring everything else.
* ``random`` — a uniformly random valid neighbour.
* ``oracle`` — knows who is dishonest and every queue: the shortest path through honest nodes,
  congestion-aware. An upper reference, not a deployable policy.

A learned policy exported by ``training.export`` loads with ``agents.inference.load_policy``
and has the same ``act`` signature.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from agents.features import FEATURE_INDEX


class RoutingPolicy(Protocol):
    """Anything that picks a neighbour slot per decision."""

    name: str
    needs_oracle: bool

    def act(
        self,
        features: np.ndarray,
        action_mask: np.ndarray,
        rng: np.random.Generator | None = None,
        oracle_actions: np.ndarray | None = None,
    ) -> np.ndarray:
        """Slot per decision row: ``features (n, K, F)``, ``action_mask (n, K)`` -> ``(n,)`` ints."""
        ...


def masked_argmax(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Argmax over valid slots (ties to the lowest index); all-masked rows give slot 0."""
    return np.argmax(np.where(mask.astype(bool), scores, -np.inf), axis=-1)


class SeedPolicy:
    """The origin's heuristic: coherence filter, then the fixed-weight route score."""

    name = "seed"
    needs_oracle = False

    def act(self, features, action_mask, rng=None, oracle_actions=None):
        mask = action_mask.astype(bool)
        coherent = (features[..., FEATURE_INDEX["coherent"]] > 0.5) & mask
        pool = np.where(coherent.any(axis=-1, keepdims=True), coherent, mask)
        return masked_argmax(features[..., FEATURE_INDEX["seed_score"]], pool)


class ShortestPolicy:
    """Latency only."""

    name = "shortest"
    needs_oracle = False

    def act(self, features, action_mask, rng=None, oracle_actions=None):
        return masked_argmax(-features[..., FEATURE_INDEX["est_latency"]], action_mask)


class RandomPolicy:
    """A uniformly random valid neighbour."""

    name = "random"
    needs_oracle = False

    def act(self, features, action_mask, rng=None, oracle_actions=None):
        rng = rng if rng is not None else np.random.default_rng()
        return masked_argmax(rng.random(action_mask.shape), action_mask)


class OraclePolicy:
    """Privileged reference: takes the environment's oracle choice."""

    name = "oracle"
    needs_oracle = True

    def act(self, features, action_mask, rng=None, oracle_actions=None):
        if oracle_actions is None:
            raise ValueError("the oracle policy needs the environment's oracle_actions")
        return np.asarray(oracle_actions)


BASELINES: dict[str, type] = {
    "seed": SeedPolicy,
    "shortest": ShortestPolicy,
    "random": RandomPolicy,
    "oracle": OraclePolicy,
}


def get_baseline(name: str) -> RoutingPolicy:
    """A baseline policy by name; ``KeyError`` lists the known names."""
    try:
        return BASELINES[name]()
    except KeyError:
        raise KeyError(f"unknown baseline '{name}' (known: {', '.join(BASELINES)})") from None
