"""Empathy protocol: is a neighbour's story about itself coherent with what we observe?

The origin's coherence test, kept exactly (tests pin these numbers):

=============================================  =====
check                                          score
=============================================  =====
observed bandwidth >= 0.8 x claimed bandwidth  +0.3
abs(quoted - fair price) < 0.2 x fair price    +0.3
success rate >= 0.95                           +0.2
cooperation history >= 0.8                     +0.2
=============================================  =====

A neighbour is *coherent* when its score is strictly above 0.7. Both functions accept
scalars or numpy arrays (broadcast element-wise), so the environment scores every
neighbour of every node in one call and the live node scores one at a time.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

BANDWIDTH_TOLERANCE = 0.8
PRICE_TOLERANCE = 0.2
SUCCESS_THRESHOLD = 0.95
COOPERATION_THRESHOLD = 0.8
COHERENCE_THRESHOLD = 0.7


def coherence_score(
    observed_bandwidth: ArrayLike,
    claimed_bandwidth: ArrayLike,
    quoted_price: ArrayLike,
    fair_price: ArrayLike,
    success_rate: ArrayLike,
    cooperation_history: ArrayLike,
) -> float | np.ndarray:
    """The origin's coherence score in [0, 1]: a float for scalars, an array for arrays."""
    observed = np.asarray(observed_bandwidth, dtype=np.float64)
    claimed = np.asarray(claimed_bandwidth, dtype=np.float64)
    quoted = np.asarray(quoted_price, dtype=np.float64)
    fair = np.asarray(fair_price, dtype=np.float64)
    # Sum in tenths, then divide once: 0.3 + 0.2 + 0.2 is exactly 0.7, not 0.7000000000000001.
    tenths = (
        3 * (observed >= BANDWIDTH_TOLERANCE * claimed).astype(np.int64)
        + 3 * (np.abs(quoted - fair) < PRICE_TOLERANCE * fair)
        + 2 * (np.asarray(success_rate) >= SUCCESS_THRESHOLD)
        + 2 * (np.asarray(cooperation_history) >= COOPERATION_THRESHOLD)
    )
    score = tenths / 10.0
    return float(score) if score.ndim == 0 else score


def is_coherent(
    observed_bandwidth: ArrayLike,
    claimed_bandwidth: ArrayLike,
    quoted_price: ArrayLike,
    fair_price: ArrayLike,
    success_rate: ArrayLike,
    cooperation_history: ArrayLike,
) -> bool | np.ndarray:
    """``coherence_score(...) > 0.7``: a bool for scalars, a boolean array for arrays."""
    score = coherence_score(
        observed_bandwidth, claimed_bandwidth, quoted_price, fair_price, success_rate, cooperation_history
    )
    verdict = np.asarray(score) > COHERENCE_THRESHOLD
    return bool(verdict) if verdict.ndim == 0 else verdict
