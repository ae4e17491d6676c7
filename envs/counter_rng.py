"""Counter-based random numbers: a pure function of (key, counters), vectorised with numpy.

Each mesh of a batch draws its traffic and measurement noise from its own episode key, indexed
by step, stream and draw, so a mesh's episode is the same whichever batch it is stepped in and
whatever the policies do (common random numbers). The mixer is SplitMix64 (Steele, Lea and
Flood 2014), the finaliser of Java's ``SplittableRandom``; chaining it over the counters gives
well-spread 64-bit values.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_FOLD = np.uint64(0x100000001B3)  # FNV-1a 64-bit prime: odd, spreads small counters apart


def mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of ``x + golden`` (uint64 in, uint64 out; wraps by design)."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def hash_keys(key: np.ndarray, *counters: np.ndarray | int) -> np.ndarray:
    """One well-mixed uint64 per element of ``key`` and the (broadcast) counters.

    The counters are folded into one word by a multiply-add chain (cheap), then mixed twice
    with the key: two SplitMix64 rounds per draw, however many counters there are.
    """
    with np.errstate(over="ignore"):
        word = np.uint64(0)
        for c in counters:
            word = word * _FOLD + (np.asarray(c).astype(np.uint64) + np.uint64(1))
        return mix(mix(np.asarray(key, dtype=np.uint64)) ^ word)


def uniform(key: np.ndarray, *counters: np.ndarray | int) -> np.ndarray:
    """Uniform floats in [0, 1) from the top 53 bits of the hash."""
    return (hash_keys(key, *counters) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def normal(key: np.ndarray, *counters: np.ndarray | int) -> np.ndarray:
    """Standard normal floats (Box-Muller on two hashed uniforms)."""
    u1 = uniform(key, *counters, 1)
    u2 = uniform(key, *counters, 2)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def poisson(rate: np.ndarray, u: np.ndarray, max_k: int = 40) -> np.ndarray:
    """Poisson(rate) by inversion of a uniform ``u`` (exact for rates well below ``max_k``)."""
    rate = np.asarray(rate, dtype=np.float64)
    p = np.exp(-rate)
    cdf = p.copy()
    k = np.zeros(rate.shape, dtype=np.int64)
    for i in range(1, max_k):
        more = u >= cdf
        if not more.any():
            break
        k += more
        p = p * rate / i
        cdf = cdf + p
    return k
