"""Routing state of a mesh: shortest-path latencies towards the destinations that have subscribers.

A piece only ever travels to a subscriber, so the core never needs a distance towards any other
node. Each table here is destination-major, ``(D, n)`` ``float32``: row ``i`` holds, for every
node ``u``, the latency of the best path ``u -> dests[i]``. With ``D`` subscribed destinations
(at most ``streams x subscribers`` and at most the honest nodes) a mesh of ``n`` nodes keeps at
most three such tables (true, advertised and, for the oracle, honest-only latency): ``12 n D``
bytes of routing state instead of the ``24 n^2`` of all-pairs ``float64`` tables.

Latencies are integer step counts (at most ``3 (n - 1)``), so ``float32`` holds them exactly and
every table equals the corresponding rows of the all-pairs table bit for bit once cast back to
``float64``; unreachable entries are ``inf``. Tables are computed ``CHUNK`` destinations at a
time, so the transient ``float64`` output of ``scipy``'s Dijkstra stays ``8 x CHUNK x (n + CHUNK)``
bytes whatever ``D``.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path

#: Destinations per Dijkstra call (bounds the transient float64 output).
CHUNK = 256
#: Table dtype: exact for integer latencies below 2**24.
TABLE_DTYPE = np.float32


def link_graph(nbr: np.ndarray, mask: np.ndarray, latency: np.ndarray, keep: np.ndarray | None = None) -> csr_matrix:
    """Directed ``(n, n)`` latency matrix of the links ``u -> nbr[u, k]`` where ``mask`` (and ``keep``) hold.

    :param keep: optional ``(n,)`` bool: only links between two kept nodes.
    """
    n = nbr.shape[0]
    rows, cols = np.nonzero(mask)
    to = nbr[rows, cols]
    if keep is not None:
        ok = keep[rows] & keep[to]
        rows, cols, to = rows[ok], cols[ok], to[ok]
    return csr_matrix((latency[rows, cols].astype(np.float64), (rows, to)), shape=(n, n))


def distances_to(graph: csr_matrix, dests: np.ndarray) -> np.ndarray:
    """``(D, n)`` table: ``out[i, u]`` = shortest latency ``u -> dests[i]`` (``inf`` if none).

    Dijkstra from each destination over the reversed links, so directed graphs are exact too.
    """
    n = graph.shape[0]
    reverse = graph.T.tocsr()
    out = np.empty((dests.size, n), dtype=TABLE_DTYPE)
    for start in range(0, dests.size, CHUNK):
        chunk = dests[start : start + CHUNK]
        out[start : start + chunk.size] = shortest_path(reverse, method="D", directed=True, indices=chunk)
    return out


def advertised_to(
    graph: csr_matrix, dist: np.ndarray, dests: np.ndarray, liars: np.ndarray, discount: float
) -> np.ndarray:
    """``(D, n)`` table of what distance-vector routing believes when ``liars`` advertise
    ``max(ceil(discount x true latency), 1)`` to every destination.

    ``out[i, u] = min(dist[i, u], min_h dist(u -> h) + max(ceil(discount x dist[i, h]), 1))`` and
    ``0`` at the destination itself. The inner minimum is one Dijkstra per destination from a
    virtual node linked to each liar ``h`` by its claimed latency, over the reversed links: no
    ``(n, liars)`` or ``(n, liars, D)`` intermediate.

    :param dist: :func:`distances_to` of ``graph`` towards ``dests``.
    """
    n = graph.shape[0]
    out = dist.copy()
    if liars.size == 0 or dests.size == 0:
        return out
    reverse = graph.T.tocoo()
    for start in range(0, dests.size, CHUNK):
        stop = min(start + CHUNK, dests.size)
        c = stop - start
        claimed = np.maximum(np.ceil(dist[start:stop][:, liars].astype(np.float64) * discount), 1.0)  # (c, h)
        finite = np.isfinite(claimed)
        virt, hole = np.nonzero(finite)
        rows = np.concatenate([reverse.row, n + virt])
        cols = np.concatenate([reverse.col, liars[hole]])
        weights = np.concatenate([reverse.data, claimed[finite]])
        augmented = csr_matrix((weights, (rows, cols)), shape=(n + c, n + c))
        via = shortest_path(augmented, method="D", directed=True, indices=np.arange(n, n + c))[:, :n]
        out[start:stop] = np.minimum(out[start:stop], via)
        out[np.arange(start, stop), dests[start:stop]] = 0.0
    return out
