"""The node's routing table: distance vectors heard from peers, bounded, and the one it advertises.

Each peer advertises, in ``routes`` frames, its distance in steps to every destination it knows.
This module keeps those vectors bounded (:func:`clamp_routes`: distances above
:data:`MAX_ROUTE_STEPS` mean unreachable, at most :data:`MAX_ROUTES` nearest entries), computes this
node's own distances through its open peers (:func:`distance`, :func:`best_routes`, with split
horizon: a route through a peer is not advertised back to it) and bounds what it advertises
(:func:`bounded_vector`: reachable, nearest first, within half a frame). It has no state of its own:
the vectors live on the peers, the functions take them as ``(node id, link steps, routes)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from agents.features import LATENCY_SCALE
from runtime.node.wire import DEFAULT_MAX_FRAME

__all__ = ["MAX_ROUTES", "MAX_ROUTE_STEPS", "NO_ROUTE", "best_routes", "bounded_vector", "clamp_routes", "distance"]

#: Steps assumed to a destination no routing table knows.
NO_ROUTE = 3.0 * LATENCY_SCALE
#: A distance above this many steps means unreachable (never stored, never advertised).
MAX_ROUTE_STEPS = 1000.0
#: Destinations kept per peer and advertised per ``routes`` frame (nearest first).
MAX_ROUTES = 1024

#: an open peer as the routing table sees it: (node id, link steps, its advertised distances)
PeerRoutes = tuple[str, float, dict[str, float]]


def clamp_routes(dist: dict[str, float], own_id: str) -> dict[str, float]:
    """A peer's distance vector, bounded: large distances mean unreachable, nearest entries kept,
    this node itself left out."""
    ok = [(v, d) for d, v in dist.items() if d != own_id and v <= MAX_ROUTE_STEPS]
    if len(ok) > MAX_ROUTES:
        ok = sorted(ok)[:MAX_ROUTES]
    return {d: v for v, d in ok}


def distance(dst: str, own_id: str, peers: Iterable[PeerRoutes]) -> float:
    """Estimated steps from this node to ``dst`` through its open ``peers``, ``inf`` if unknown."""
    if dst == own_id:
        return 0.0
    best = math.inf
    for pid, link, routes in peers:
        if pid == dst:
            best = min(best, link)
        elif dst in routes:
            best = min(best, link + routes[dst])
    return best


def best_routes(own_id: str, peers: Iterable[PeerRoutes], to: str | None = None) -> dict[str, float]:
    """This node's distance to every destination it can reach, for peer ``to`` with split horizon
    (a route whose next hop is ``to`` is not advertised back to it: no two-node loops)."""
    best: dict[str, tuple[float, str | None]] = {own_id: (0.0, None)}
    for pid, link, routes in peers:
        if link < best.get(pid, (math.inf, None))[0]:
            best[pid] = (link, pid)
        for d, v in routes.items():
            if link + v < best.get(d, (math.inf, None))[0]:
                best[d] = (link + v, pid)
    return {d: v for d, (v, via) in best.items() if via != to or d == to}


def bounded_vector(dist: dict[str, float]) -> dict[str, float]:
    """What may be advertised: reachable (at most MAX_ROUTE_STEPS), the nearest MAX_ROUTES,
    within a frame well below the decoder's limit (so no neighbour ever has to reject it)."""
    ok = sorted((float(v), d) for d, v in dist.items() if math.isfinite(v) and 0.0 <= v <= MAX_ROUTE_STEPS)
    out: dict[str, float] = {}
    budget = DEFAULT_MAX_FRAME // 2
    for v, d in ok[:MAX_ROUTES]:
        budget -= len(d) + 12
        if budget < 0:
            break
        out[d] = v
    return out
