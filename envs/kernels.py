"""Compiled kernels for the environment's hot paths (numba ``@njit(cache=True)``), numpy kept as the reference.

Each kernel computes exactly what its numpy counterpart computes (integer arithmetic, or floating
point in the same order), so a seed gives the same episode bit for bit with or without numba
(``tests/envs/test_kernels.py``). Kernels compile on first use and are cached next to this file
(``__pycache__``); where that folder is read-only numba falls back to its user-wide cache, and
where no cache can be written at all the kernels compile without caching. Without numba installed,
or with ``OPENSTREAMING_NUMBA=0`` in the environment, every caller takes its numpy path.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from agents.memory import NeighbourMemory

try:  # numba is a dependency, but the numpy path keeps working without it
    import numba
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

#: True when the compiled kernels are in use (numba importable and not switched off).
ENABLED = numba is not None and os.environ.get("OPENSTREAMING_NUMBA", "1") != "0"


def jit(fn: Callable[..., Any]) -> Callable[..., Any] | None:
    """``numba.njit(cache=True)`` of ``fn``; without caching where no cache can be written; None when disabled."""
    if not ENABLED:
        return None
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError as err:  # "cannot cache function ...: no locator available"
        warnings.warn(f"numba cache unavailable ({err}); compiling {fn.__name__} without a cache", stacklevel=2)
        return numba.njit(nogil=True)(fn)


def _fold_ema_py(values, flat, samples, powers, sums, counts):  # pragma: no cover - compiled
    """EMA fold of ``agents.memory._fold``: samples summed per cell in input order (as ``np.bincount``),
    then ``x += (1 - powers[k]) * (sum / k - x)`` once per touched cell, ``powers[k]`` being numpy's
    ``(1 - alpha) ** k`` (a table longer than ``flat``, so the arithmetic is numpy's to the bit);
    ``sums``/``counts`` are zeroed scratch arrays of ``values.size`` entries, left zeroed."""
    for i in range(flat.size):
        f = flat[i]
        sums[f] += samples[i]
        counts[f] += 1
    for i in range(flat.size):
        f = flat[i]
        k = counts[f]
        if k > 0:
            rate = 1.0 - powers[k]
            values[f] += rate * (sums[f] / np.float64(k) - values[f])
            counts[f] = 0
            sums[f] = 0.0


fold_ema = jit(_fold_ema_py) if ENABLED else None


class CompiledMemory(NeighbourMemory):
    """``agents.memory.NeighbourMemory`` whose EMA folds run in :func:`fold_ema` (same values to the bit).

    ``agents`` stays free of numba (the live node imports it); the environment uses this class.
    """

    def __init__(self, n_nodes: int, slots: int, rates=None) -> None:
        super().__init__(n_nodes, slots, rates)
        self._sums = np.zeros(n_nodes * slots)
        self._counts = np.zeros(n_nodes * slots, dtype=np.int64)
        self._powers: dict[float, np.ndarray] = {}

    def _power_table(self, alpha: float, size: int) -> np.ndarray:
        table = self._powers.get(alpha)
        if table is None or table.size <= size:
            n = max(64, 2 * (size + 1))
            # numpy's own (1 - alpha) ** k, as agents.memory._fold computes it
            table = (1.0 - alpha) ** np.arange(n, dtype=np.int64)
            self._powers[alpha] = table
        return table

    def _fold(self, values: np.ndarray, rows: np.ndarray, cols: np.ndarray, samples: np.ndarray, alpha: float) -> None:
        if not ENABLED or fold_ema is None or not values.flags.c_contiguous:
            super()._fold(values, rows, cols, samples, alpha)
            return
        if rows.size == 0:
            return
        flat = rows.astype(np.int64) * values.shape[1] + cols
        samples = np.asarray(samples, dtype=np.float64)
        fold_ema(values.reshape(-1), flat, samples, self._power_table(alpha, rows.size), self._sums, self._counts)
