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


def _gossip_round_py(  # pragma: no cover - compiled
    tri,
    by_cell,
    due_node,
    mask,
    nbr,
    memory,
    liars,
    codes,
    limits,
):
    """One gossip round of ``envs.gossip.TrustGossip`` in one pass, bit for bit its numpy path
    (``agents.gossip.direct_reports``, the lies, ``agents.gossip.aggregate`` with the view of
    :func:`_network_view_py` and ``_test_reporters``, the credibility fold of :func:`_fold_ema_py`).

    ``tri``: the triangles' ``(w, i, k, u, j)`` stacked (5, T); ``by_cell``: their stable order by
    ``w * slots + k``; ``due_node``: receivers this round; ``mask``/``nbr``: flat link mask and
    neighbour table; ``memory``: flat ``(custody, custody_count, credibility, net_rate, net_weight,
    net_reporters)``, the last four written; ``liars``: ``(slanderer, stuffer, honest, learned)`` per
    node; ``codes``: ``(gossip_choice per node..., praise code, slander code)`` as an int array of
    ``n + 2``; ``limits``: ``(MAX_REPORT_COUNT, FULL_VOICE_COUNT, MIN_WEIGHT, MIN_REPORTERS,
    MIN_OWN_EVIDENCE, credibility fold rate)``.
    """
    custody, count_own, credibility, net_rate, net_weight, net_reporters = memory
    slanderer, stuffer, honest, learned = liars
    max_count, full_voice, min_weight, min_reporters, min_own, fold_rate = limits
    n = due_node.size
    slots = mask.size // n
    praise_code, slander_code = codes[n], codes[n + 1]
    for r in range(n):
        if due_node[r]:
            for s in range(r * slots, (r + 1) * slots):
                net_rate[s], net_weight[s], net_reporters[s] = 1.0, 0.0, 0.0
    n_tri = tri.shape[1]
    position = np.full(n_tri, -1, dtype=np.int64)
    live = 0
    for t in range(n_tri):
        w, i, k, u, j = tri[0, t], tri[1, t], tri[2, t], tri[3, t], tri[4, t]
        if due_node[w] and mask[w * slots + i] and mask[w * slots + k] and mask[u * slots + j]:
            position[t] = live
            live += 1
    cell = np.empty(live, dtype=np.int64)
    reporter_cell = np.empty(live, dtype=np.int64)
    subject_cell = np.empty(live, dtype=np.int64)
    rate = np.empty(live)
    count = np.empty(live)
    vote = np.empty(live)
    trust = np.empty(live)
    evidence = np.empty(live)
    for t in range(n_tri):
        e = position[t]
        if e < 0:
            continue
        w, i, k, u, j = tri[0, t], tri[1, t], tri[2, t], tri[3, t], tri[4, t]
        uj = u * slots + j
        x = nbr[uj]
        r, c = custody[uj], min(count_own[uj], max_count)
        slander = slanderer[u] and honest[x]
        praise = stuffer[u] and not honest[x]
        if learned[u]:
            praise = praise or (codes[u] >= praise_code and learned[x])
            slander = slander or (codes[u] == slander_code and honest[x])
        if slander:
            r, c = 0.0, max_count
        if praise:
            r, c = 1.0, max_count
        r = 0.0 if np.isnan(r) else min(max(r, 0.0), 1.0)
        c = 0.0 if np.isnan(c) else min(max(c, 0.0), max_count)
        cell[e] = w * slots + k
        reporter_cell[e] = w * slots + i
        subject_cell[e] = w * slots + k
        rate[e], count[e] = r, c
        trust[e] = custody[w * slots + i] * credibility[w * slots + i]
        confidence = min(c, full_voice) / full_voice
        vote[e] = confidence * r + (1.0 - confidence)
        evidence[e] = trust[e] * confidence
    if live == 0:
        return
    order = np.empty(live, dtype=np.int64)
    o = 0
    for t in by_cell:
        if position[t] >= 0:
            order[o] = position[t]
            o += 1
    cells, median, total, heard = network_view_kernel(cell, vote, trust, evidence, min_weight, order)
    for g in range(cells.size):
        f = cells[g]
        counted = heard[g] >= min_reporters
        net_rate[f] = median[g] if counted else 1.0
        net_weight[f] = total[g] if counted else 0.0
        net_reporters[f] = heard[g]
    # The reporters' coherence test: mean deviation per (receiver, reporter) in report order.
    sums = np.zeros(mask.size)
    tests = np.zeros(mask.size, dtype=np.int64)
    for e in range(live):
        if count[e] > 0 and count_own[subject_cell[e]] >= min_own:
            sums[reporter_cell[e]] += abs(rate[e] - custody[subject_cell[e]])
            tests[reporter_cell[e]] += 1
    for f in range(mask.size):
        if tests[f] > 0:
            sample = max(0.0, 1.0 - 2.0 * (sums[f] / tests[f]))
            credibility[f] += fold_rate * (sample / np.float64(1) - credibility[f])


gossip_round_kernel = jit(_gossip_round_py) if ENABLED else None


def fold_rate(alpha: float) -> float:
    """The EMA step of one sample per cell, as numpy's ``1 - (1 - alpha) ** 1`` in ``agents.memory._fold``."""
    return float(1.0 - (1.0 - alpha) ** np.ones(1, dtype=np.int64)[0])
