"""Property tests over random scenarios and random actions: money and pieces are conserved.

The scenarios draw every dishonest kind, churn, turncoats and load shifts too.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from envs.core import LIVE, MeshCore
from envs.scenario import TOPOLOGY_KINDS, Scenario, as_scenario

STEPS = 40


@st.composite
def scenarios(draw) -> Scenario:
    nodes = draw(st.integers(4, 28))
    fractions = [draw(st.sampled_from([0.0, 0.1, 0.2, 0.3])) for _ in range(3)]
    # The adaptive kinds, each in its mapping form with random parameters (or absent).
    adaptive = {
        "grey_hole": {"fraction": draw(st.sampled_from([0.0, 0.1])), "drop_probability": draw(st.floats(0.05, 1.0))},
        "on_off": {
            "fraction": draw(st.sampled_from([0.0, 0.1])),
            "honest_steps": draw(st.integers(1, 20)),
            "attack_steps": draw(st.integers(1, 20)),
        },
        "selective": {"fraction": draw(st.sampled_from([0.0, 0.1])), "value_quantile": draw(st.floats(0.0, 0.95))},
        "whitewasher": {"fraction": draw(st.sampled_from([0.0, 0.1])), "rejoin_after": draw(st.integers(1, 10))},
    }
    dynamics = {}
    if draw(st.booleans()):
        dynamics["churn"] = {"leave_probability": draw(st.floats(0.0, 0.1)), "rejoin_steps": draw(st.integers(1, 15))}
    if draw(st.booleans()):
        dynamics["turn_dishonest"] = {
            "fraction": draw(st.sampled_from([0.0, 0.1])),
            "at_step": draw(st.integers(0, 30)),
        }
    if draw(st.booleans()):
        dynamics["load_shift"] = {"at_step": draw(st.integers(0, 30)), "load": draw(st.floats(0.1, 3.0))}
    spec = {
        "nodes": nodes,
        "topology": {
            "kind": draw(st.sampled_from(TOPOLOGY_KINDS)),
            "mean_degree": draw(st.floats(2.0, 6.0)),
        },
        "traffic": {
            "streams": draw(st.integers(1, 4)),
            "subscribers": draw(st.integers(1, 3)),
            "load": draw(st.floats(0.1, 3.0)),
            "deadline_slack": draw(st.integers(0, 12)),
        },
        "adversaries": {**dict(zip(("bandwidth_liar", "blackhole", "overpricer"), fractions, strict=True)), **adaptive},
        "dynamics": dynamics,
        "economy": {"queue_limit": draw(st.integers(1, 20))},
        "episode_steps": STEPS,
        "seed": draw(st.integers(0, 2**31)),
    }
    kinds = fractions + [a["fraction"] for a in adaptive.values()]
    turn = dynamics.get("turn_dishonest", {}).get("fraction", 0.0)
    assume(sum(kinds) + turn <= 0.9)
    honest = nodes - sum(round(f * nodes) for f in kinds)
    assume(honest >= 2)
    return as_scenario(spec)


def check_conservation(core: MeshCore, scale: float) -> None:
    assert abs(core.balance.sum()) <= 1e-9 * max(scale, 1.0)
    for m in core.metrics():
        assert m["generated"] == m["delivered"] + m["dropped"] + m["expired"] + m["in_flight"], m
        assert 0.0 <= m["delivery_rate"] <= 1.0


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(), action_seed=st.integers(0, 2**31))
def test_money_and_pieces_are_conserved_under_random_actions(scenario, action_seed):
    core = MeshCore(scenario, n_meshes=2, seed=scenario.seed)
    core.reset()
    rng = np.random.default_rng(action_seed)
    for _ in range(STEPS):
        # Any slot, masked ones included: the core must fold them onto valid slots.
        core.step(rng.integers(0, 8, core.agent_rows.size))
        check_conservation(core, np.abs(core.balance).sum())
    assert sum(m["generated"] for m in core.metrics()) > 0 or scenario.traffic.load < 0.5


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(), action_seed=st.integers(0, 2**31))
def test_nodes_that_are_away_hold_nothing_and_have_no_links(scenario, action_seed):
    core = MeshCore(scenario, n_meshes=1, seed=scenario.seed)
    core.reset()
    rng = np.random.default_rng(action_seed)
    for _ in range(STEPS):
        core.step(rng.integers(0, 8, core.agent_rows.size))
        away = ~core.present
        live = core.p_status == LIVE
        assert not away[core.p_node[live]].any()
        assert not (core.mask & (away[core.nbr] | away[:, None])).any()
        assert (core.mask <= core.link_mask).all()
        assert (core.pending[away] < 0).all()
