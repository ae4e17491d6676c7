"""Each adaptive attacker and each dynamic, pinned on a tiny mesh with scripted routing."""

from __future__ import annotations

import numpy as np
import pytest

from agents.baselines import get_baseline
from envs.core import BLACKHOLE, GREY_HOLE, HONEST, LIVE, LOST, ON_OFF, SELECTIVE, WHITEWASHER, MeshCore
from envs.routing import distances_to, link_graph
from envs.scenario import as_scenario

NO_CHEATS = {"bandwidth_liar": 0.0, "blackhole": 0.0, "overpricer": 0.0}


def tiny(adversaries: dict | None = None, dynamics: dict | None = None, **extra) -> dict:
    """A 12-node mesh with enough traffic to exercise every dishonest node."""
    spec = {
        "nodes": 12,
        "topology": {"kind": "random_geometric", "mean_degree": 5},
        "traffic": {"streams": 3, "subscribers": 2, "load": 0.8},
        "adversaries": {**NO_CHEATS, **(adversaries or {})},
        "dynamics": dynamics or {},
        "episode_steps": 120,
        "seed": 3,
    }
    spec.update(extra)
    return spec


def play(spec: dict | object, seeds: list[int], policy: str = "shortest", hook=None) -> MeshCore:
    """Play ``policy`` on ``seeds`` (one mesh each); ``hook(core)`` runs before every step."""
    scenario = as_scenario(spec)
    core = MeshCore(scenario, n_meshes=len(seeds))
    core.reset(episode_seeds=seeds)
    pol = get_baseline(policy)
    rng = np.random.default_rng(0)
    for _ in range(core.episode_steps):
        if hook is not None:
            hook(core)
        obs = core.agent_observation()
        core.step(pol.act(obs.features, obs.action_mask, rng=rng, oracle_actions=None))
    return core


class Arrivals:
    """Records the pieces that reach a node of ``kind`` (not their destination) and what it did with them."""

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.kept: list[tuple[int, int, float]] = []  # (step, node, value): still live after arrival
        self.dropped: list[tuple[int, int, float]] = []  # dropped by the node (lost, never acknowledged)

    def wrap(self, core: MeshCore) -> None:
        original = core._arrive

        def arrive() -> None:
            live = np.flatnonzero(core.p_status == LIVE)
            node = core.p_node[live]
            here = (core.kind[node] == self.kind) & (core.p_arrive[live] == core.t) & (node != core.p_dst[live])
            watched, nodes, values = live[here], node[here], core.p_value[live[here]].copy()
            original()
            for pid, v, value in zip(watched, nodes, values, strict=True):
                if core.p_status[pid] == LIVE:
                    self.kept.append((core.t, int(v), float(value)))
                elif core.p_status[pid] == LOST:
                    self.dropped.append((core.t, int(v), float(value)))

        core._arrive = arrive


def watched_play(spec: dict, kind: int, seeds: list[int]) -> tuple[MeshCore, Arrivals]:
    watch = Arrivals(kind)
    wrapped = []

    def hook(core: MeshCore) -> None:
        if not wrapped:
            watch.wrap(core)
            wrapped.append(True)

    return play(spec, seeds, hook=hook), watch


def test_float_and_mapping_forms_are_the_same_kind():
    a = as_scenario(tiny({"grey_hole": 0.25}))
    b = as_scenario(tiny({"grey_hole": {"fraction": 0.25}}))
    assert a.adversary("grey_hole") == b.adversary("grey_hole")
    assert a.adversary_counts() == b.adversary_counts()
    assert a.adversary_counts()["grey_hole"] == 3
    assert as_scenario(a.to_dict()) == a and as_scenario(b.to_dict()) == b


def test_grey_hole_with_drop_probability_one_is_a_blackhole():
    grey = play(tiny({"grey_hole": {"fraction": 0.25, "drop_probability": 1.0}}), [5, 6])
    black = play(tiny({"blackhole": 0.25}), [5, 6])
    assert (grey.kind == GREY_HOLE).sum() == (black.kind == BLACKHOLE).sum() == 6
    # Same nodes, same roles' positions, same routes lied about: the same episode to the piece.
    for g, b in zip(grey.metrics(), black.metrics(), strict=True):
        assert g["delivered"] == b["delivered"] and g["dropped"] == b["dropped"], (g, b)
        assert g["generated"] == b["generated"]
    assert sum(m["dropped"] for m in grey.metrics()) > 0


def test_grey_hole_drops_about_its_probability_and_forwards_the_rest():
    core, watch = watched_play(tiny({"grey_hole": {"fraction": 0.25, "drop_probability": 0.5}}), GREY_HOLE, [5, 6, 7])
    n = len(watch.kept) + len(watch.dropped)
    assert n >= 30, n
    share = len(watch.dropped) / n
    assert 0.3 < share < 0.7, share
    # What it keeps it forwards: grey holes decide (hand pieces on) like honest nodes.
    hops_from_grey = core.memory.coop_count[core.kind == GREY_HOLE].sum()
    assert hops_from_grey > 0


def test_on_off_forwards_in_its_honest_phase_and_drops_in_its_attack_phase():
    spec = tiny({"on_off": {"fraction": 0.25, "honest_steps": 15, "attack_steps": 10}})
    core, watch = watched_play(spec, ON_OFF, [5, 6, 7])
    assert len(watch.kept) > 10 and len(watch.dropped) > 10
    on_off = core.kind == ON_OFF
    assert set(core.onoff_period[on_off].tolist()) == {25}
    assert len(set(core.onoff_phase[on_off].tolist())) > 1, "each node starts at its own point of the cycle"

    def attacking(t: int, node: int) -> bool:
        return (t + core.onoff_phase[node]) % 25 >= 15

    assert all(attacking(t, v) for t, v, _ in watch.dropped)
    assert not any(attacking(t, v) for t, v, _ in watch.kept)
    # What it keeps in its honest phase it forwards, like an honest node.
    assert core.memory.coop_count[on_off].sum() > 0


def test_selective_drops_only_pieces_above_its_value_quantile():
    spec = tiny({"selective": {"fraction": 0.25, "value_quantile": 0.5}}, traffic={"streams": 3, "load": 0.8})
    _, watch = watched_play(spec, SELECTIVE, [5, 6, 7])
    cap = (0.5 + 0.5) * 1.0  # the median of values uniform in [0.5, 1.5]
    assert len(watch.dropped) > 5 and len(watch.kept) > 5
    assert all(v > cap for _, _, v in watch.dropped)
    assert all(v <= cap for _, _, v in watch.kept)


def test_whitewasher_leaves_when_found_out_and_comes_back_fresh():
    spec = tiny({"whitewasher": {"fraction": 0.25, "rejoin_after": 10}}, episode_steps=200)
    seen: dict = {"left": [], "fresh": []}

    def hook(core: MeshCore) -> None:
        washers = np.flatnonzero(core.kind == WHITEWASHER)
        away = washers[~core.present[washers]]
        for w in away:
            if (w, core.away_until[w]) not in seen["left"]:
                seen["left"].append((w, core.away_until[w]))
                # Found out: most honest neighbours rate it below 0.5 right before it left.
                rows, cols = np.nonzero(core.link_mask & (core.nbr == w) & (core.kind == HONEST)[:, None])
                rated = core.memory.success_count[rows, cols] > 0
                assert (core.memory.success[rows, cols][rated] < 0.5).mean() > 0.5
                # While away no neighbour can hand it anything.
                assert not core.mask[rows, cols].any()
        for w, until in seen["left"]:
            if core.t == until:  # it came back at the start of this step: a fresh identity
                rows, cols = np.nonzero(core.link_mask & (core.nbr == w))
                assert (core.memory.success_count[rows, cols] <= 1).all()
                seen["fresh"].append(w)

    core = play(spec, [5, 6], hook=hook)
    assert core.departures[core.kind == WHITEWASHER].sum() >= 2
    assert seen["fresh"], "a whitewasher came back within the episode"


def test_memory_forget_resets_the_slot_only():
    core = play(tiny({"blackhole": 0.25}), [5])
    mem = core.memory
    rows, cols = np.nonzero(mem.success_count > 0)
    r, c = rows[0], cols[0]
    other = mem.success_count.copy()
    mem.forget(np.array([r]), np.array([c]), np.array([0.7]), np.array([0.03]))
    assert mem.success_count[r, c] == 0 and mem.success[r, c] == 1.0 and mem.observed_bw[r, c] == 0.7
    assert mem.quote[r, c] == 0.03 and not mem.ever_lost[r, c]
    other[r, c] = 0
    np.testing.assert_array_equal(mem.success_count, other)


def test_churn_loses_queues_and_brings_nodes_back():
    spec = tiny(dynamics={"churn": {"leave_probability": 0.02, "rejoin_steps": 8}}, episode_steps=150)
    away_seen = []

    def hook(core: MeshCore) -> None:
        away = np.flatnonzero(~core.present)
        if away.size:
            away_seen.append(core.t)
            live = np.flatnonzero(core.p_status == LIVE)
            assert not np.isin(core.p_node[live], away).any(), "a node that is away holds nothing"
            assert not core.mask[:, :][np.isin(core.nbr, away)].any(), "nobody can hand it a piece"
            assert core.degree[away].max() == 0
            assert (core.kind[away] == HONEST).all()

    core = play(spec, [5, 6], hook=hook)
    assert away_seen and core.departures.sum() >= 2
    assert core.present.sum() > 0
    for m in core.metrics():
        assert m["generated"] == m["delivered"] + m["dropped"] + m["expired"] + m["in_flight"]


def test_turn_dishonest_turns_spare_honest_nodes_into_blackholes_at_the_step():
    spec = tiny(dynamics={"turn_dishonest": {"fraction": 0.2, "at_step": 30}}, episode_steps=60)
    kinds: dict[int, np.ndarray] = {}
    core = play(spec, [5], hook=lambda c: kinds.setdefault(c.t, c.kind.copy()))
    turned = np.flatnonzero(core.kind == BLACKHOLE)
    assert turned.size == 2
    assert (kinds[29][turned] == HONEST).all() and (kinds[30][turned] == BLACKHOLE).all()
    streams = set(core.stream_src.tolist()) | set(core.stream_subs.ravel().tolist())
    assert not streams & set(turned.tolist())
    assert set(turned.tolist()) <= set(core.agent_rows.tolist()), "turned nodes started as agents"
    # The oracle knows the cheats: from the turn on, no honest path it uses runs through them.
    mesh = core.meshes[0]
    before = distances_to(link_graph(mesh.nbr, mesh.mask, mesh.latency, keep=mesh.kind == HONEST), mesh.dests)
    after = core._honest_table().reshape(mesh.dests.size, core.n_nodes)
    assert (after >= before).all() and (after > before).any()
    assert np.isinf(after[:, turned]).all(), "a turned node is no stop on an honest path"


def test_load_shift_changes_the_offered_load_at_the_step():
    base = tiny(traffic={"streams": 3, "load": 0.2}, episode_steps=200)
    shifted = tiny(traffic={"streams": 3, "load": 0.2}, dynamics={"load_shift": {"at_step": 100, "load": 2.0}})
    shifted["episode_steps"] = 200
    counts = {}
    for name, spec in (("base", base), ("shifted", shifted)):
        marks = {}

        def hook(core: MeshCore, marks=marks) -> None:
            if core.t in (99, 199):
                marks[core.t] = core.c["generated"].sum()

        play(spec, [5, 6], hook=hook)
        counts[name] = (marks[99], marks[199] - marks[99])
    assert counts["base"][0] == counts["shifted"][0], "same traffic before the shift"
    assert counts["shifted"][1] > 4 * counts["base"][1]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"adversaries": {"grey_hole": {"fraction": 0.2, "drop_probability": 0.0}}}, ["grey_hole.drop_probability"]),
        ({"adversaries": {"grey_hole": {"fraction": 0.2, "drop_probability": 1.5}}}, ["(0, 1]"]),
        ({"adversaries": {"on_off": {"fraction": 0.2, "honest_steps": 0}}}, ["on_off.honest_steps", ">= 1"]),
        ({"adversaries": {"on_off": {"fraction": 0.2, "attack_steps": -3}}}, ["on_off.attack_steps"]),
        ({"adversaries": {"selective": {"fraction": 0.2, "value_quantile": 1.0}}}, ["value_quantile", "[0, 1)"]),
        ({"adversaries": {"whitewasher": {"fraction": 0.2, "rejoin_after": 0}}}, ["whitewasher.rejoin_after"]),
        ({"adversaries": {"whitewasher": {"fraction": 1.2}}}, ["whitewasher.fraction", "[0, 1]"]),
        ({"adversaries": {"on_off": -0.1}}, ["'adversaries.on_off'", "[0, 1]"]),
        ({"adversaries": {"grey_hole": {"fraction": 0.2, "drop_rate": 0.5}}}, ["grey_hole.drop_rate", "unknown key"]),
        (
            {"adversaries": {"blackhole": 0.3, "grey_hole": 0.3, "on_off": {"fraction": 0.2}, "selective": 0.2}},
            ["adversaries", "0.9"],
        ),
        (
            {"adversaries": {"blackhole": 0.5}, "dynamics": {"turn_dishonest": {"fraction": 0.45, "at_step": 5}}},
            ["adversaries", "0.9"],
        ),
        ({"dynamics": {"churn": {"leave_probability": 0.7}}}, ["dynamics.churn.leave_probability", "[0, 0.5]"]),
        ({"dynamics": {"churn": {"rejoin_steps": 0}}}, ["dynamics.churn.rejoin_steps"]),
        ({"dynamics": {"turn_dishonest": {"at_step": -1}}}, ["dynamics.turn_dishonest.at_step"]),
        ({"dynamics": {"load_shift": {"load": 0.0}}}, ["dynamics.load_shift.load", "(0, 4]"]),
        ({"dynamics": {"load_shift": {"at_step": -5}}}, ["dynamics.load_shift.at_step"]),
        ({"dynamics": {"storms": {}}}, ["dynamics.storms", "unknown key"]),
    ],
)
def test_bad_adversary_and_dynamics_parameters_are_one_line_errors(spec, words):
    from envs.scenario import ScenarioError

    with pytest.raises(ScenarioError) as info:
        as_scenario(spec)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


def test_kind_codes_name_the_scenario_kinds_in_schema_order() -> None:
    from envs.core import BALLOT_STUFFER, BLACKHOLE, FORGER, KIND_NAMES, LIAR, OVERPRICER, SLANDERER
    from envs.scenario import ADVERSARY_KINDS

    codes = (LIAR, BLACKHOLE, OVERPRICER, FORGER, GREY_HOLE, ON_OFF, SELECTIVE, WHITEWASHER, SLANDERER, BALLOT_STUFFER)
    assert KIND_NAMES[HONEST] == "honest"
    assert tuple(KIND_NAMES[c] for c in codes) == ADVERSARY_KINDS
