"""Propagation engine: score routes to a destination and pick the next hop.

The origin scores each route with fixed weights::

    total = 0.3 * latency_score + 0.3 * bandwidth_score + 0.2 * economic_score + 0.2 * empathy_score

Those weights are :data:`SEED_WEIGHTS`. The learned policy replaces this weighted sum with a
small network over the same (and more) per-neighbour features; see ``agents.features``.

Component scores, each in [0, 1], as the seed heuristic computes them from a node's memory:

* latency: ``min_k est_latency_k / est_latency`` (the neighbour with the shortest estimated
  latency to the destination scores 1);
* bandwidth: the neighbour's *claimed* bandwidth over the largest claim among the node's
  neighbours (the origin trusts announcements and leaves lies to the coherence test);
* economic: ``min(1, fair_price / quoted_price)``;
* empathy: the neighbour's coherence score (``agents.empathy``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

SEED_WEIGHTS: tuple[float, float, float, float] = (0.3, 0.3, 0.2, 0.2)


def route_score(
    latency_score: ArrayLike,
    bandwidth_score: ArrayLike,
    economic_score: ArrayLike,
    empathy_score: ArrayLike,
    weights: tuple[float, float, float, float] = SEED_WEIGHTS,
) -> float | np.ndarray:
    """Weighted sum of the four component scores (a float for scalars, else an array)."""
    w_lat, w_bw, w_eco, w_emp = weights
    total = (
        w_lat * np.asarray(latency_score, dtype=np.float64)
        + w_bw * np.asarray(bandwidth_score, dtype=np.float64)
        + w_eco * np.asarray(economic_score, dtype=np.float64)
        + w_emp * np.asarray(empathy_score, dtype=np.float64)
    )
    return float(total) if total.ndim == 0 else total


def component_scores(
    est_latency: np.ndarray,
    claimed_bandwidth: np.ndarray,
    quoted_price: np.ndarray,
    fair_price: np.ndarray,
    coherence: np.ndarray,
    mask: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The seed's four component scores for every neighbour slot, shape ``(..., K)``.

    Masked slots get 0 in every component.
    """
    big = np.float64(1e9)
    lat = np.where(mask, est_latency, big)
    best_lat = lat.min(axis=-1, keepdims=True)
    latency_score = np.where(mask, best_lat / np.maximum(lat, 1e-9), 0.0)
    bw = np.where(mask, claimed_bandwidth, 0.0)
    bandwidth_score = bw / np.maximum(bw.max(axis=-1, keepdims=True), 1e-9)
    fair = np.broadcast_to(np.asarray(fair_price, dtype=np.float64)[..., None], quoted_price.shape)
    economic_score = np.where(mask, np.minimum(1.0, fair / np.maximum(quoted_price, 1e-12)), 0.0)
    empathy_score = np.where(mask, coherence, 0.0)
    return latency_score, bandwidth_score, economic_score, empathy_score
