"""Property tests over random scenarios, economies and actions: money, pieces and charges are
conserved, and under pay-on-delivery nodes that forward nothing are never paid.

The scenarios draw every dishonest kind (the adaptive ones with random parameters), churn,
turncoats and load shifts too.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from envs.core import BLACKHOLE, FORGER, LIVE, MAX_HOPS, WHITEWASHER, MeshCore
from envs.scenario import PAYMENT_MODES, RECEIPT_MODES, TOPOLOGY_KINDS, Scenario, as_scenario

STEPS = 40


@st.composite
def scenarios(draw, payment: str | None = None, receipts: str | None = None) -> Scenario:
    nodes = draw(st.integers(4, 28))
    base_kinds = ("bandwidth_liar", "blackhole", "overpricer", "forger")
    fractions = [draw(st.sampled_from([0.0, 0.1, 0.2])) for _ in base_kinds]
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
        # The gossip liars (agents.gossip); ballot stuffers may shift blame as a clique.
        "slanderer": {"fraction": draw(st.sampled_from([0.0, 0.1, 0.2]))},
        "ballot_stuffer": {
            "fraction": draw(st.sampled_from([0.0, 0.1, 0.2])),
            "drop_probability": draw(st.floats(0.0, 1.0)),
            "clique": draw(st.booleans()),
        },
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
        "adversaries": {**dict(zip(base_kinds, fractions, strict=True)), **adaptive},
        "dynamics": dynamics,
        "gossip": {"enabled": draw(st.booleans()), "period": draw(st.integers(1, 10))},
        "economy": {
            "queue_limit": draw(st.integers(1, 20)),
            "payment": payment or draw(st.sampled_from(PAYMENT_MODES)),
            "receipts": receipts or draw(st.sampled_from(RECEIPT_MODES)),
        },
        "episode_steps": STEPS,
        "seed": draw(st.integers(0, 2**31)),
    }
    kinds = fractions + [a["fraction"] for a in adaptive.values()]
    turn = dynamics.get("turn_dishonest", {}).get("fraction", 0.0)
    assume(sum(kinds) + turn <= 0.9)
    honest = nodes - sum(round(f * nodes) for f in kinds)
    assume(honest >= 2)
    return as_scenario(spec)


def held_charges(core: MeshCore) -> np.ndarray:
    """Per mesh: charges on the paths of pieces not yet resolved (owed, neither paid nor forfeited)."""
    alive = np.flatnonzero(core.p_status != 0)
    on_path = np.arange(MAX_HOPS)[None, :] < core.p_hops[alive][:, None]
    mesh = core.node_mesh[core.p_src[alive]]
    held = np.where(on_path, core.p_path_charge[alive], 0.0).sum(axis=1)
    return np.bincount(mesh, weights=held, minlength=len(core.meshes))


def check_conservation(core: MeshCore, scale: float) -> None:
    assert abs(core.balance.sum()) <= 1e-9 * max(scale, 1.0)
    held = held_charges(core)
    for b, m in enumerate(core.metrics()):
        assert m["generated"] == m["delivered"] + m["dropped"] + m["expired"] + m["in_flight"], m
        assert 0.0 <= m["delivery_rate"] <= 1.0
        # Every charge is paid, forfeited (unpaid) or still held on a live piece.
        if core.on_delivery[b]:
            owed = m["payments"] + m["unpaid_charges"] + held[b]
            assert abs(m["charges"] - owed) <= 1e-9 * max(m["charges"], 1.0), (m, held[b])
        else:
            assert m["payments"] == m["charges"] and m["unpaid_charges"] == 0.0, m
        assert m["forged_receipts_rejected"] == 0.0 or core.signed[b]
        assert m["forged_receipts_accepted"] == 0.0 or not core.signed[b]


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


def play_random(core: MeshCore, action_seed: int) -> None:
    rng = np.random.default_rng(action_seed)
    for _ in range(STEPS):
        core.step(rng.integers(0, 8, core.agent_rows.size))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(payment="on_delivery", receipts="signed"), action_seed=st.integers(0, 2**31))
def test_on_delivery_with_signed_receipts_never_pays_blackholes_nor_forgers(scenario, action_seed):
    core = MeshCore(scenario, n_meshes=2, seed=scenario.seed)
    core.reset()
    play_random(core, action_seed)
    # Nodes that turn blackhole mid-episode earned honestly before they turned.
    swallowers = ((core.kind == BLACKHOLE) | (core.kind == FORGER) | (core.kind == WHITEWASHER)) & (core.turn_at < 0)
    # They never forward, so they never pay: their balance is exactly what they were paid.
    assert np.all(core.balance[swallowers] == 0.0)
    for m in core.metrics():
        # (earnings are booked by the payee's kind when paid: a turned node's late pay for honest work counts)
        assert m["earned_forger"] == 0.0 and m["earned_whitewasher"] == 0.0
        assert m["earned_blackhole"] == 0.0 or (core.turn_at >= 0).any()
        assert m["forged_receipts_accepted"] == 0.0


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(payment="on_delivery", receipts="unsigned"), action_seed=st.integers(0, 2**31))
def test_on_delivery_never_pays_blackholes_even_with_unsigned_receipts(scenario, action_seed):
    core = MeshCore(scenario, n_meshes=2, seed=scenario.seed)
    core.reset()
    play_random(core, action_seed)
    never_honest = core.turn_at < 0
    assert np.all(core.balance[(core.kind == BLACKHOLE) & never_honest] == 0.0)
    assert np.all(core.balance[core.kind == WHITEWASHER] == 0.0)
    if (core.turn_at < 0).all():
        assert all(m["earned_blackhole"] == 0.0 for m in core.metrics())
