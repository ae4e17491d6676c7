"""One scenario, two worlds: the live mesh's plan is the environment's episode of the same seed.

The structural part needs no process: the plan (what every node's config is written from) is
compared with the mesh the environment itself plays (``MeshCore.reset(episode_seeds=[seed])``).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.core import KIND_NAMES, STREAM_RATE_AT_FULL_LOAD, MeshCore
from envs.scenario import load_scenario
from runtime.node.mesh import main, parse_adversaries, plan_mesh
from runtime.node.protocol import StreamSpec
from runtime.node.scenario_plan import MAX_LIVE_NODES, ScenarioPlanError, plan_from_scenario, structure
from tests.runtime.node.fakes import line

STEP_MS = 50.0


def env_structure(scenario, seed: int) -> dict:
    """Graph, roles and streams of the episode the environment plays for ``seed``."""
    core = MeshCore(scenario, n_meshes=1)
    core.reset(episode_seeds=[seed])
    mesh = core.meshes[0]
    ids = [f"n{i}" for i in range(scenario.nodes)]
    links = sorted(
        (ids[min(u, v)], ids[max(u, v)], round(float(mesh.graph.edges[u, v]["latency"]) * STEP_MS, 6))
        for u, v in mesh.graph.edges
    )
    streams: dict[str, list] = {}
    for s, src in enumerate(mesh.stream_src):
        streams.setdefault(ids[int(src)], []).append(sorted(ids[int(x)] for x in mesh.stream_subs[s] if x >= 0))
    return {"kinds": {ids[i]: KIND_NAMES[int(k)] for i, k in enumerate(mesh.kind)}, "links": links, "streams": streams}


@pytest.mark.parametrize("name", ["default", "blackholes", "honest"])
def test_a_short_scenario_built_both_ways_has_the_same_graph_roles_and_streams(name):
    scenario = load_scenario(name).replace(nodes=16, episode_steps=40)
    for seed in (0, 7):
        plan = plan_from_scenario(scenario, seed, STEP_MS)
        assert structure(plan) == env_structure(scenario, seed)


@settings(max_examples=15, deadline=None)
@given(
    name=st.sampled_from(["default", "blackholes", "honest", "grey_holes", "selective", "forgers"]),
    nodes=st.integers(8, 24),
    seed=st.integers(0, 10_000),
)
def test_every_playable_scenario_plans_the_environments_episode(name, nodes, seed):
    scenario = load_scenario(name).replace(nodes=nodes)
    plan = plan_from_scenario(scenario, seed, STEP_MS)
    assert structure(plan) == env_structure(scenario, seed)
    core = MeshCore(scenario, n_meshes=1)
    core.reset(episode_seeds=[seed])
    mesh = core.meshes[0]
    np.testing.assert_allclose(plan["capacity"], mesh.capacity)
    np.testing.assert_allclose(plan["claimed"], mesh.claimed)
    np.testing.assert_allclose(plan["base_cost"], mesh.base_cost)
    # deadlines from the true shortest path, as the environment's; the rate of its offered load
    for src, streams in plan["streams"].items():
        for s in streams:
            assert s["rate"] == pytest.approx(scenario.traffic.load * STREAM_RATE_AT_FULL_LOAD / (STEP_MS / 1000))
            for sub, steps in s["route_steps"].items():
                row = int(np.searchsorted(mesh.dests, int(sub[1:])))
                assert steps == mesh.dist[row, int(src[1:])]
    assert plan["queue_limit"] == scenario.economy.queue_limit
    assert plan["deadline_slack"] == scenario.traffic.deadline_slack
    assert plan["duration_s"] == scenario.episode_steps * STEP_MS / 1000
    assert plan["tail_s"] > 0


def test_the_adversary_parameters_of_the_scenario_reach_the_nodes():
    scenario = load_scenario("grey_holes").replace(
        adversaries={"grey_hole": {"fraction": 0.2, "drop_probability": 0.3}, "selective": {"fraction": 0.1}},
        economy={"overprice_factor": 3.0},
        traffic={"value": 2.0},
    )
    plan = plan_from_scenario(scenario, 1, STEP_MS)
    assert plan["attack_params"]["drop_probability"] == 0.3
    assert plan["attack_params"]["value_threshold"] == pytest.approx(2.0 * (0.5 + 0.7))
    assert plan["overprice_factor"] == 3.0
    assert plan["kinds"].count("grey_hole") == round(0.2 * scenario.nodes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"adversaries": {"whitewasher": 0.1}}, "whitewashers"),
        ({"dynamics": {"churn": {"leave_probability": 0.01}}}, "dynamics"),
        ({"economy": {"receipts": "unsigned"}}, "receipts"),
        ({"nodes": MAX_LIVE_NODES + 1}, "one machine"),
    ],
)
def test_what_the_live_mesh_cannot_play_is_refused_in_one_line(changes, message):
    scenario = load_scenario("default").replace(**changes)
    with pytest.raises(ScenarioPlanError, match=message):
        plan_from_scenario(scenario, 0, STEP_MS)


def test_the_old_flags_still_plan_a_mesh():
    plan = plan_mesh(8, parse_adversaries("blackhole=1,forger=1,overpricer=1"), 3, 6.0, STEP_MS)
    assert len(plan["ids"]) == 8
    assert sorted(k for k in plan["kinds"] if k != "honest") == ["blackhole", "forger", "overpricer"]
    assert all(s["rate"] == pytest.approx(6.0) for ss in plan["streams"].values() for s in ss)
    assert all("emit_for_s" not in s for ss in plan["streams"].values() for s in ss)  # emit for all of --duration


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scenario", "churn"], "dynamics"),
        (["--scenario", "nosuch"], "no such file or shipped scenario"),
        (["--scenario", "default", "--adversaries", "blackhole=2"], "name only wire-level attackers"),
        (["--scenario", "default", "--rate", "3"], "--rate"),
    ],
)
def test_scenario_mistakes_are_one_line_errors_before_anything_starts(argv, message, capsys):
    assert main([*argv, "--policy", "seed", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("runtime.mesh: error:") and message in err and "\n" not in err


def _stream(fab, src: str, dst: str, **kw) -> None:
    core = fab.cores[src]
    core.s.streams = [StreamSpec([dst], rate=50.0, **kw)]
    core._next_emit = [0.0]
    core._rr = [0]
    core.start_streams(fab.now)


def test_a_stream_stops_after_its_episode_and_deadlines_use_the_given_route():
    fab = line(3)
    _stream(fab, "n0", "n2", emit_for_s=0.5, route_steps={"n2": 7.0}, deadline_slack=3.0)
    born: list = []
    core = fab.cores["n0"]
    original = core.custody.hold

    def hold(pid, deadline):
        born.append((fab.now, deadline))
        return original(pid, deadline)

    core.custody.hold = hold
    fab.advance(1.5)
    assert 10 < core.stats["generated"] < 50  # 50/s for 0.5 s, none after
    assert all(t <= fab.now - 0.9 for t, _ in born)
    step = core.s.step_s
    assert all(d - t == pytest.approx((2 * 7.0 + 3.0) * step, abs=0.006) for t, d in born)
    n2 = fab.cores["n2"]
    assert n2.stats["delivered"] > 0
    assert n2.stats["delivered_latency_steps"] / n2.stats["delivered"] > 0


def test_a_node_driven_behind_its_emulated_clock_says_so():
    on_time, late = line(3), line(3)
    for fab, step in ((on_time, 0.002), (late, 0.25)):
        _stream(fab, "n0", "n2")
        fab.advance(1.5, step=step)
    served = sum(c.stats["ingest_served"] for c in on_time.cores.values())
    assert served > 0 and sum(c.stats["clock_lag_events"] for c in on_time.cores.values()) == 0
    assert sum(c.stats["clock_lag_events"] for c in late.cores.values()) > 0
    assert max(c.stats["clock_lag_max_s"] for c in late.cores.values()) > late.cores["n1"].s.step_s


def test_a_piece_is_never_handed_straight_back_while_another_peer_is_open():
    fab = line(3)
    n1 = fab.cores["n1"]
    up, down = n1.peers["n0"], n1.peers["n2"]
    row = np.zeros(8, dtype=bool)
    row[[up.slot, down.slot]] = True
    n1._mask_upstream(row, up.conn)
    assert not row[up.slot] and row[down.slot]
    only = np.zeros(8, dtype=bool)
    only[up.slot] = True  # the upstream is the only way on: the choice stays (the refusal is the peer's)
    n1._mask_upstream(only, up.conn)
    assert only[up.slot]
    _stream(fab, "n0", "n2")
    fab.advance(1.0)
    assert sum(c.stats["duplicate_pieces"] for c in fab.cores.values()) == 0
