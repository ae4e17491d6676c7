"""Routing state only towards subscribed destinations: equal to all-pairs where kept, sized by
the destinations, and a 1,024-node mesh builds and steps."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path

from agents.baselines import get_baseline
from envs.core import BLACKHOLE, BLACKHOLE_ROUTE_DISCOUNT, HONEST, MeshCore, build_mesh
from envs.scenario import MAX_NODES, as_scenario, load_scenario


def all_pairs(mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The all-pairs ``(n, n)`` tables (true, honest-only, advertised) as the core computed them
    before routing state was restricted to subscribed destinations."""
    n = mesh.scenario.nodes
    rows, cols = np.nonzero(mesh.mask)
    to = mesh.nbr[rows, cols]
    lat = mesh.latency[rows, cols].astype(float)
    dist = shortest_path(csr_matrix((lat, (rows, to)), shape=(n, n)), method="D", directed=True)
    honest = mesh.kind == HONEST
    keep = honest[rows] & honest[to]
    dist_h = shortest_path(csr_matrix((lat[keep], (rows[keep], to[keep])), shape=(n, n)), method="D", directed=True)
    adv = dist.copy()
    holes = np.flatnonzero(mesh.kind == BLACKHOLE)
    if holes.size:
        claimed = np.maximum(np.ceil(dist[holes] * BLACKHOLE_ROUTE_DISCOUNT), 1.0)
        adv = np.minimum(dist, (dist[:, holes][:, :, None] + claimed[None, :, :]).min(axis=1))
        np.fill_diagonal(adv, 0.0)
    return dist, dist_h, adv


@pytest.mark.parametrize(
    ("scenario", "changes"),
    [
        ("default", {}),
        ("blackholes", {}),
        ("mixed_heavy", {}),
        ("large", {"nodes": 60, "topology": {"mean_degree": 2.0}}),  # hub tree
        ("default", {"nodes": 40, "topology": {"kind": "watts_strogatz", "rewire_p": 0.3}}),
        ("default", {"nodes": 48, "adversaries": {"blackhole": 0.4}, "traffic": {"streams": 30, "subscribers": 3}}),
    ],
)
def test_restricted_tables_equal_the_all_pairs_rows_of_the_subscribed_destinations(scenario, changes) -> None:
    sc = load_scenario(scenario).replace(**changes)
    for seed in range(4):
        mesh = build_mesh(sc, seed)
        assert np.array_equal(mesh.dests, np.unique(mesh.stream_subs))
        tables = (mesh.dist, mesh.honest_distances(), mesh.dist_advertised)
        for restricted, full in zip(tables, all_pairs(mesh), strict=True):
            assert restricted.shape == (mesh.dests.size, sc.nodes)
            assert np.array_equal(restricted.astype(np.float64), full[:, mesh.dests].T)
        # Blackholes' lies do shorten some advertised routes (the case the equality must cover).
        if (mesh.kind == BLACKHOLE).any():
            assert (mesh.dist_advertised < mesh.dist).any()


def test_core_lookups_match_all_pairs_and_refuse_destinations_without_subscribers() -> None:
    sc = load_scenario("mixed_heavy")
    core = MeshCore(sc, n_meshes=3, seed=5)
    core.reset()
    for b, mesh in enumerate(core.meshes):
        off = int(core.node_offset[b])
        assert np.shares_memory(core.dist_flat, mesh.dist)  # one copy of each table, not two
        assert np.shares_memory(core.dist_adv_flat, mesh.dist_advertised)
        full = all_pairs(mesh)
        u = np.repeat(np.arange(sc.nodes), mesh.dests.size)
        v = np.tile(mesh.dests, sc.nodes)
        for table, kwargs in zip(full, ({}, {"honest_only": True}, {"advertised": True}), strict=True):
            assert np.array_equal(core.dist(u + off, v + off, **kwargs), table[u, v])
    not_subscribed = np.setdiff1d(np.arange(sc.nodes), core.meshes[0].dests)[:1]
    with pytest.raises(ValueError, match="subscribed destinations"):
        core.dist(np.array([0]), not_subscribed)


def test_routing_state_scales_with_subscribed_destinations_not_with_node_pairs() -> None:
    base = load_scenario("default").replace(nodes=1024)
    sizes = {}
    for streams in (8, 64):
        core = MeshCore(base.replace(traffic={"streams": streams, "subscribers": 2}))
        core.reset(episode_seeds=[1])
        mesh = core.meshes[0]
        assert mesh.dests.size <= 2 * streams
        assert core.routing_state_bytes() == 2 * 4 * 1024 * mesh.dests.size
        assert mesh.dist_honest is None  # the oracle's table waits until the oracle asks
        core.oracle_slots()
        assert core.routing_state_bytes() == 3 * 4 * 1024 * mesh.dests.size
        sizes[streams] = (mesh.dests.size, core.routing_state_bytes())
    # Eight times the streams, about eight times the state; both far below all-pairs (3 x 8 x n^2 bytes).
    (d_few, few), (d_many, many) = sizes[8], sizes[64]
    assert many / few == d_many / d_few and d_many >= 6 * d_few
    assert many < 3 * 8 * 1024**2 / 10


def test_a_1024_node_mesh_builds_and_steps_with_money_and_pieces_conserved() -> None:
    sc = load_scenario("default").replace(nodes=1024, traffic={"streams": 256}, episode_steps=8)
    core = MeshCore(sc, seed=2)
    core.reset()
    assert core.n_nodes == 1024 and core.agent_valid.sum() == sc.honest_count()
    policy, oracle, rng = get_baseline("shortest"), get_baseline("oracle"), np.random.default_rng(0)
    for t in range(8):
        obs = core.agent_observation()
        if t % 2:
            core.step(oracle.act(obs.features, obs.action_mask, rng, core.oracle_slots()))
        else:
            core.step(policy.act(obs.features, obs.action_mask, rng))
    m = core.metrics()[0]
    assert m["generated"] > 100 and m["delivered"] > 0
    assert m["generated"] == m["delivered"] + m["dropped"] + m["expired"] + m["in_flight"]
    assert abs(core.balance.sum()) < 1e-9


def test_the_largest_scenario_is_accepted() -> None:
    assert as_scenario({"nodes": MAX_NODES, "traffic": {"streams": MAX_NODES // 4}}).nodes == 16384
