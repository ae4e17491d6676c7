"""Regressions found while training: cross-mesh lookups of idle agents, runaway overpricer quotes,
the welfare bonus paid again for every visit of a loop."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.baselines import get_baseline
from agents.features import MAX_HOPS
from envs.core import LIVE, OVERPRICER, MeshCore, first_visits
from envs.scenario import load_scenario


def test_idle_agents_in_a_mixed_batch_never_look_up_another_meshs_distances() -> None:
    mix = [load_scenario(n).replace(episode_steps=60) for n in ("honest", "large", "mixed_heavy")]
    core = MeshCore(mix, n_meshes=6, seed=3)
    core.reset()
    policy, rng = get_baseline("oracle"), np.random.default_rng(0)
    for _ in range(60):
        obs = core.agent_observation()
        slots = core.oracle_slots()  # evaluated for idle agents too
        assert slots.min() >= 0 and slots.max() < obs.action_mask.shape[1]
        core.step(policy.act(obs.features, obs.action_mask, rng, slots))
    assert sum(m["generated"] for m in core.metrics()) > 0


def test_neighbouring_overpricers_do_not_drive_quotes_up_without_bound() -> None:
    scenario = load_scenario("overpricers").replace(
        adversaries={"overpricer": 0.6, "blackhole": 0.0, "bandwidth_liar": 0.0}, episode_steps=120
    )
    core = MeshCore(scenario, n_meshes=4, seed=0)
    core.reset()
    policy, rng = get_baseline("random"), np.random.default_rng(1)
    econ = scenario.economy
    # cost term at full load with the +-10 % base-cost spread, marked up: the most any quote can be
    bound = econ.overprice_factor * econ.base_cost * 1.1 * 2.0 * 1.2
    for _ in range(120):
        obs = core.agent_observation()
        core.step(policy.act(obs.features, obs.action_mask, rng))
        assert np.isfinite(core.reward).all()
        assert core.quote[core.kind == OVERPRICER].max() <= bound + 1e-12
        assert core.quote.max() <= bound + 1e-12


def test_hub_topologies_keep_the_peer_cap_and_a_symmetric_connected_peer_graph() -> None:
    from envs.core import build_mesh

    # Barabasi-Albert with m = 1 is a tree whose hubs have many leaves: capping a hub must move
    # links, not cut leaves off (which once left some destinations unreachable).
    scenario = load_scenario("large").replace(nodes=60, topology={"mean_degree": 2.0})
    for seed in range(12):
        mesh = build_mesh(scenario, seed)
        assert max(d for _, d in mesh.graph.degree) <= 8
        assert np.isfinite(mesh.dist).all()
        peers = {(u, int(v)) for u in range(scenario.nodes) for v in mesh.nbr[u][mesh.mask[u]]}
        assert all((v, u) in peers for u, v in peers)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.lists(st.integers(0, 5), min_size=MAX_HOPS, max_size=MAX_HOPS), min_size=1, max_size=6),
    data=st.data(),
)
def test_first_visits_marks_each_node_of_a_path_once_at_its_first_hop(rows: list, data: st.DataObject) -> None:
    paths = np.array(rows, dtype=np.int64)
    hops = np.array(data.draw(st.lists(st.integers(0, MAX_HOPS), min_size=len(rows), max_size=len(rows))))
    first = first_visits(paths, hops)
    for path, h, mask in zip(paths, hops, first, strict=True):
        assert not mask[h:].any()
        expected = [i for i in range(h) if path[i] not in path[:i]]
        assert np.flatnonzero(mask).tolist() == expected


def test_a_node_that_holds_a_piece_twice_in_a_loop_gets_the_welfare_bonus_once() -> None:
    # Regression: the bonus was paid per visit, so a policy earned more by routing pieces into loops
    # (10 % of the policy then shipped's delivered pieces on honest revisited a node; the live node refuses them).
    core = MeshCore(load_scenario("honest"), n_meshes=1, seed=0)
    core.reset()
    policy, rng = get_baseline("seed"), np.random.default_rng(0)
    while not (core.p_status == LIVE).any():
        obs = core.agent_observation()
        core.step(policy.act(obs.features, obs.action_mask, rng))
    pid = int(np.flatnonzero(core.p_status == LIVE)[0])
    a, b = (int(x) for x in np.setdiff1d(np.arange(core.n_nodes), [core.p_src[pid], core.p_dst[pid]])[:2])
    core.p_path_node[pid, :3] = [a, b, a]
    core.p_path_slot[pid, :3] = 0
    core.p_path_charge[pid] = 0.0  # no hop payments: the reward below is the bonus alone
    core.p_hops[pid] = 3
    core.reward[:] = 0.0
    core._deliver(np.array([pid]))
    bonus = core.p_value[pid] * core.welfare_weight[0]
    assert bonus > 0
    assert core.reward[a] == bonus and core.reward[b] == bonus
