"""Mesh topologies: networkx generators, a peer cap, connectivity repair and link latencies.

Every choice draws from the ``numpy.random.Generator`` passed in, so a seed fixes the graph.
Nodes keep at most ``max_peers`` neighbours (a real node has a peer limit, and the observation
has that many slots): edges of over-full nodes are pruned, longest first, without disconnecting
the graph. A disconnected result is repaired by linking each smaller component to the largest
through the closest pair of nodes that still have a free peer slot.
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np

from envs.scenario import Topology

#: Largest link latency in steps.
MAX_LINK_LATENCY = 3


def _positions(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.random((n, 2))


def _generate(
    kind: str, n: int, mean_degree: float, rewire_p: float, rng: np.random.Generator, pos: np.ndarray
) -> nx.Graph:
    graph_seed = int(rng.integers(2**31))
    if kind == "random_geometric":
        # Expected degree of an RGG in the unit square is about n*pi*r^2 (less at the borders).
        radius = math.sqrt(mean_degree / (math.pi * (n - 1))) * 1.15
        return nx.random_geometric_graph(n, radius, pos={i: tuple(p) for i, p in enumerate(pos)})
    if kind == "barabasi_albert":
        m = max(1, min(n - 1, round(mean_degree / 2)))
        return nx.barabasi_albert_graph(n, m, seed=graph_seed)
    k = max(2, min(n - 1, 2 * round(mean_degree / 2)))
    return nx.watts_strogatz_graph(n, k, rewire_p, seed=graph_seed)


def _length(pos: np.ndarray, u: int, v: int) -> float:
    return float(np.hypot(*(pos[u] - pos[v])))


def _cap_degree(g: nx.Graph, pos: np.ndarray, max_peers: int) -> None:
    """Bring every node to at most ``max_peers`` neighbours without disconnecting the graph.

    Links of an over-full node go longest first. A link whose removal would cut the far end off
    (a hub's leaf, say) is moved instead: the far end is re-attached to the nearest node on the
    hub's side that still has a free slot.
    """
    for node in sorted(g.nodes, key=lambda x: (-g.degree(x), x)):
        if g.degree(node) <= max_peers:
            continue
        for other in sorted(g.neighbors(node), key=lambda v: (-_length(pos, node, v), v)):
            if g.degree(node) <= max_peers:
                break
            g.remove_edge(node, other)
            if nx.has_path(g, node, other):
                continue
            side = nx.node_connected_component(g, node)
            free = [w for w in side if w != node and g.degree(w) < max_peers]
            if not free:
                g.add_edge(node, other)
                continue
            w = min(free, key=lambda x: (_length(pos, other, x), x))
            g.add_edge(other, w)


def _repair(g: nx.Graph, pos: np.ndarray, max_peers: int) -> bool:
    components = sorted(nx.connected_components(g), key=lambda c: (-len(c), min(c)))
    main = set(components[0])
    for comp in components[1:]:
        pairs = [
            (_length(pos, u, v), u, v)
            for u in sorted(comp)
            for v in sorted(main)
            if g.degree(u) < max_peers and g.degree(v) < max_peers
        ]
        if not pairs:
            return False
        _, u, v = min(pairs)
        g.add_edge(u, v)
        main |= comp
    return True


def build_topology(topology: Topology, n: int, rng: np.random.Generator, max_peers: int) -> tuple[nx.Graph, np.ndarray]:
    """A connected graph with ``n`` nodes, degree <= ``max_peers``, and node positions.

    Each edge carries ``latency``: integer steps in ``[1, MAX_LINK_LATENCY]`` by length tercile
    (positions are drawn for every kind; for non-geometric kinds they only set latencies).
    Raises ``RuntimeError`` only if 20 regenerations could not be repaired.
    """
    for _ in range(20):
        pos = _positions(n, rng)
        g = _generate(topology.kind, n, topology.mean_degree, topology.rewire_p, rng, pos)
        g = nx.Graph(g)  # plain graph, no generator attributes
        _cap_degree(g, pos, max_peers)
        if not nx.is_connected(g) and not _repair(g, pos, max_peers):
            continue
        if max(d for _, d in g.degree) > max_peers:
            continue  # the cap could not hold without disconnecting: draw again
        lengths = np.array([_length(pos, u, v) for u, v in g.edges])
        # Latency by length quantile: the shortest third of links take 1 step, the longest third 3.
        cuts = np.quantile(lengths, np.arange(1, MAX_LINK_LATENCY) / MAX_LINK_LATENCY)
        latencies = 1 + np.searchsorted(cuts, lengths, side="right")
        for (u, v), latency in zip(g.edges, latencies, strict=True):
            g.edges[u, v]["latency"] = int(min(latency, MAX_LINK_LATENCY))
        return g, pos
    raise RuntimeError(f"could not build a connected {topology.kind} graph with {n} nodes")
