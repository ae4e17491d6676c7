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

from agents.gossip import MIN_WEIGHT, network_view
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


def _network_view_py(cell, vote, trust, evidence, min_weight, order):  # pragma: no cover - compiled
    """``agents.gossip.network_view`` to the bit: entries ordered as ``np.lexsort((vote, cell))`` (cell,
    then vote, then input order), one running sum of ``trust`` over that order as ``np.cumsum``, group
    sums in that order (trust) or in input order (evidence) as ``np.bincount``. ``order`` is the
    stable sort of ``cell`` (input order within a cell); it is sorted further in place."""
    n = cell.size
    n_cells = 0
    for j in range(n):
        if j == 0 or cell[order[j]] != cell[order[j - 1]]:
            n_cells += 1
    cells = np.empty(n_cells, dtype=np.int64)
    median = np.empty(n_cells)
    total = np.zeros(n_cells)
    heard = np.zeros(n_cells)
    start = np.empty(n_cells + 1, dtype=np.int64)
    g = -1
    for j in range(n):
        e = order[j]
        if j == 0 or cell[e] != cell[order[j - 1]]:
            g += 1
            cells[g] = cell[e]
            start[g] = j
        total[g] += evidence[e]
        if evidence[e] >= min_weight:
            heard[g] += 1.0
    start[n_cells] = n
    # Within each cell, a stable insertion sort by vote: the lexsort order.
    for g in range(n_cells):
        for a in range(start[g] + 1, start[g + 1]):
            e = order[a]
            b = a - 1
            while b >= start[g] and vote[order[b]] > vote[e]:
                order[b + 1] = order[b]
                b -= 1
            order[b + 1] = e
    cum = np.empty(n)
    running = 0.0
    for j in range(n):
        running += trust[order[j]]
        cum[j] = running
    for g in range(n_cells):
        s0, s1 = start[g], start[g + 1]
        weight = 0.0
        for j in range(s0, s1):
            weight += trust[order[j]]
        base = cum[s0] - trust[order[s0]]
        half = 0.5 * weight
        below = 0
        for j in range(s0, s1):
            if cum[j] - base <= half:
                below += 1
        if weight > 0:
            median[g] = vote[order[min(s0 + below, n - 1)]]
        else:
            median[g] = 1.0
    return cells, median, total, heard


network_view_kernel = jit(_network_view_py) if ENABLED else None


def compiled_network_view(
    cell: np.ndarray,
    vote: np.ndarray,
    trust: np.ndarray,
    evidence: np.ndarray,
    order: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``agents.gossip.network_view`` in one compiled pass (the numpy function when kernels are off).

    :param order: ``np.argsort(cell, kind="stable")`` when the caller knows it already (the core's
        triangles are fixed per episode); computed here otherwise.
    """
    if not ENABLED or network_view_kernel is None:
        return network_view(cell, vote, trust, evidence)
    cell = np.ascontiguousarray(cell, dtype=np.int64)
    order = np.argsort(cell, kind="stable") if order is None else np.array(order, dtype=np.int64)
    f64 = np.float64
    return network_view_kernel(
        cell,
        np.ascontiguousarray(vote, dtype=f64),
        np.ascontiguousarray(trust, dtype=f64),
        np.ascontiguousarray(evidence, dtype=f64),
        MIN_WEIGHT,
        order,
    )
