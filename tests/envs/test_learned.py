"""Learned attackers (``adversaries.learned``, ``envs.learned``): the PettingZoo attacker team, determinism,
conservation under any attacker actions, what each action component does on tiny meshes, the two
reward objectives and the scenario keys' one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.spaces import Box, Dict, Discrete, MultiDiscrete
from pettingzoo.test import parallel_api_test

from agents.attacker import (
    ACTION_NVEC,
    CLAIM_FACTORS,
    DROP,
    HOLD,
    N_ATTACKER_FEATURES,
    NULL_ACTION,
    QUOTE_FACTORS,
    ROUTE_DISCOUNTS,
    NullAttacker,
)
from agents.features import FEATURE_INDEX, LATENCY_SCALE
from envs.core import FREE, LIVE, MeshCore
from envs.parallel import MeshEconomyEnv
from envs.scenario import ScenarioError, as_scenario, load_scenario
from tests.envs.test_properties import check_conservation

SHORT_STEPS = 30
#: 10 nodes, 2 of them learned, nothing else dishonest; queues long enough that no hand-over is
#: refused (so every piece handed to an attacker is taken).
TINY = as_scenario(
    {
        "name": "tiny_learned",
        "nodes": 10,
        "topology": {"mean_degree": 4},
        "traffic": {"streams": 3, "subscribers": 2, "load": 1.0, "deadline_slack": 20},
        "adversaries": {"bandwidth_liar": 0, "blackhole": 0, "overpricer": 0, "learned": {"fraction": 0.2}},
        "economy": {"queue_limit": 60},
        "episode_steps": 60,
        "seed": 1,
    }
)


def short_learned(**changes):
    return load_scenario("learned").replace(episode_steps=SHORT_STEPS, **changes)


def mixed():
    """Learned nodes among scripted cheats (and churn)."""
    return short_learned(
        name="learned_mixed",
        adversaries={"blackhole": 0.1, "grey_hole": {"fraction": 0.1, "drop_probability": 0.5}, "overpricer": 0.05},
        dynamics={"churn": {"leave_probability": 0.02, "rejoin_steps": 5}},
    )


def action_rows(core: MeshCore, action=NULL_ACTION, **component) -> np.ndarray:
    """One action row per attacker slot: ``action`` with the named components replaced."""
    row = list(action)
    for i, name in enumerate(("handling", "quote", "claim", "route_discount")):
        if name in component:
            row[i] = component[name]
    return np.tile(np.asarray(row, dtype=np.int64), (core.attacker_rows.size, 1))


def honest_actions(core: MeshCore, rng: np.random.Generator) -> np.ndarray:
    """A random present slot per agent (never folded: below the node's degree)."""
    return rng.integers(0, np.maximum(core.degree[core.agent_rows], 1))


# ------------------------------------------------------------------ PettingZoo API


def test_both_teams_are_agents_with_their_spaces():
    env = MeshEconomyEnv(short_learned())
    sc = env.scenario
    assert sc.learned_count() == 4
    assert env.possible_agents == [f"agent_{i}" for i in range(sc.honest_count())] + [f"attacker_{i}" for i in range(4)]
    obs, infos = env.reset(seed=0)
    assert isinstance(env.observation_space("agent_0"), Dict) and env.action_space("agent_0") == Discrete(8)
    space = env.observation_space("attacker_0")
    assert isinstance(space, Box) and space.shape == (N_ATTACKER_FEATURES,) and space.dtype == np.float32
    assert env.action_space("attacker_0") == MultiDiscrete(ACTION_NVEC)
    for agent in env.possible_agents:
        assert env.observation_space(agent).contains(obs[agent]), agent
        assert set(infos[agent]) == {"active", "profit"}
    for i, agent in enumerate(env.agents):
        env.action_space(agent).seed(i)
    obs, rewards, _, _, infos = env.step({a: env.action_space(a).sample() for a in env.agents})
    assert set(rewards) == set(obs) == set(infos) == set(env.possible_agents)
    assert all(isinstance(r, float) for r in rewards.values())
    assert all(env.observation_space(a).contains(obs[a]) for a in env.possible_agents)


@pytest.mark.parametrize("scenario", [short_learned(), mixed()], ids=["learned", "learned_mixed"])
def test_parallel_api(scenario):
    parallel_api_test(MeshEconomyEnv(scenario), num_cycles=SHORT_STEPS + 10)


def test_parallel_api_with_an_attacker_policy_the_learned_nodes_are_not_agents():
    # Regression: step() zipped the learned nodes' rewards onto an empty attacker_agents (strict zip).
    env = MeshEconomyEnv(mixed(), attacker_policy=NullAttacker())
    assert not any(a.startswith("attacker_") for a in env.possible_agents)
    assert env.core.attackers_per_mesh == env.scenario.learned_count() > 0
    parallel_api_test(env, num_cycles=SHORT_STEPS + 10)


def test_attacker_policy_and_null_agents_play_the_same_episode():
    """attacker_policy=NullAttacker() and attacker agents that play NULL_ACTION are the same episode."""
    driven = MeshEconomyEnv(short_learned(), attacker_policy=NullAttacker())
    agents = MeshEconomyEnv(short_learned())
    driven.reset(seed=4)
    agents.reset(seed=4)
    rng = np.random.default_rng(0)
    while driven.agents:
        honest = {a: int(rng.integers(8)) for a in driven.agents}
        _, r_driven, _, _, _ = driven.step(honest)
        _, r_agents, _, _, _ = agents.step({**honest, **dict.fromkeys(agents.attacker_agents, NULL_ACTION)})
        assert r_driven == {a: r_agents[a] for a in r_driven}
    assert not agents.agents
    assert driven.episode_summary() == agents.episode_summary()


# ------------------------------------------------------------------ determinism and conservation


def rollout(seed: int) -> tuple[list[dict], list[dict], dict]:
    env = MeshEconomyEnv(mixed())
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(7)
    observations, rewards = [obs], []
    while env.agents:
        actions = {
            a: rng.integers(0, ACTION_NVEC) if a.startswith("attacker_") else int(rng.integers(8)) for a in env.agents
        }
        obs, reward, _, _, _ = env.step(actions)
        observations.append(obs)
        rewards.append(reward)
    return observations, rewards, env.episode_summary()


def test_same_seed_same_actions_same_episode_for_both_teams():
    obs_a, rewards_a, summary_a = rollout(3)
    obs_b, rewards_b, summary_b = rollout(3)
    assert len(obs_a) == len(obs_b) == SHORT_STEPS + 1
    for a, b in zip(obs_a, obs_b, strict=True):
        assert a.keys() == b.keys()
        for agent in a:
            if agent.startswith("attacker_"):
                np.testing.assert_array_equal(a[agent], b[agent])
            else:
                np.testing.assert_array_equal(a[agent]["observation"], b[agent]["observation"])
                np.testing.assert_array_equal(a[agent]["action_mask"], b[agent]["action_mask"])
    assert rewards_a == rewards_b
    assert any(r != 0.0 for step in rewards_a for a, r in step.items() if a.startswith("attacker_"))
    assert summary_a == summary_b
    _, _, other = rollout(4)
    assert other != summary_a


def test_pieces_and_money_are_conserved_under_random_attacker_actions():
    mix = [
        load_scenario("learned"),
        load_scenario("learned").replace(
            name="learned_per_hop_mixed",
            adversaries={"blackhole": 0.1, "forger": 0.05, "learned": {"fraction": 0.25, "objective": "profit"}},
            economy={"payment": "per_hop", "receipts": "unsigned"},
            dynamics={"churn": {"leave_probability": 0.01, "rejoin_steps": 10}},
        ),
    ]
    core = MeshCore(mix, n_meshes=4, seed=5)
    core.reset(episode_seeds=[10, 11, 12, 13])  # both scenarios, twice each
    assert {m.scenario.name for m in core.meshes} == {"learned", "learned_per_hop_mixed"}
    assert core.attackers_per_mesh == 6 and (~core.attacker_valid).sum() == 2 * (6 - 4)
    rng = np.random.default_rng(0)
    for _ in range(core.episode_steps):
        core.step(
            rng.integers(0, 8, core.agent_rows.size),
            rng.integers(0, ACTION_NVEC, (core.attacker_rows.size, len(ACTION_NVEC))),
        )
        check_conservation(core, np.abs(core.balance).sum())
        assert np.all(core.attacker_reward[~core.attacker_valid] == 0.0)
    metrics = core.metrics()
    assert all(m["dropped"] > 0 and m["delivered"] > 0 for m in metrics)


# ------------------------------------------------------------------ what each action does


def test_null_action_is_exactly_no_attacker_actions():
    cores = [MeshCore(TINY, n_meshes=2, seed=2) for _ in range(2)]
    for core in cores:
        core.reset()
    rng = np.random.default_rng(0)
    for _ in range(TINY.episode_steps):
        acts = honest_actions(cores[0], rng)
        cores[0].step(acts, None)
        cores[1].step(acts, action_rows(cores[1]))
        np.testing.assert_array_equal(cores[0].reward, cores[1].reward)
        np.testing.assert_array_equal(cores[0].attacker_reward, cores[1].attacker_reward)
        np.testing.assert_array_equal(cores[0].attacker_observation(), cores[1].attacker_observation())
        np.testing.assert_array_equal(cores[0].agent_observation().features, cores[1].agent_observation().features)
    assert cores[0].metrics() == cores[1].metrics()
    assert cores[0].metrics()[0]["earned_learned"] > 0  # null attackers forward and are paid


def test_an_attacker_that_always_drops_forwards_nothing_earns_nothing_and_is_credited_what_it_lost():
    """Its damage reward, step by step, is the value of the pieces that ended while it held them
    (dropped at their deadline, or expired or out of hops in its queue)."""
    for seed in range(3):
        core = MeshCore(TINY, n_meshes=1, seed=seed)
        core.reset()
        rows = core.attacker_rows
        slot_of = {int(n): i for i, n in enumerate(rows)}
        drop = action_rows(core, handling=DROP)
        rng = np.random.default_rng(seed)
        total = np.zeros(rows.size)
        for _ in range(TINY.episode_steps):
            acts = honest_actions(core, rng)
            # Pieces the attackers hold, and those an honest decider hands to one this step.
            watched = {}
            for p in np.flatnonzero(core.p_status != FREE):
                if int(core.p_node[p]) in slot_of:
                    watched[int(core.p_uid[p])] = (slot_of[int(core.p_node[p])], core.p_value[p])
            for i, row in enumerate(core.agent_rows):
                pid, to = core.pending[row], int(core.nbr[row, acts[i]])
                if pid >= 0 and to in slot_of:
                    watched[int(core.p_uid[pid])] = (slot_of[to], core.p_value[pid])
            core.step(acts, drop)
            assert core.queue_len.max() < TINY.economy.queue_limit  # nothing refused
            present = set(core.p_uid[core.p_status != FREE].tolist())
            expected = np.zeros(rows.size)
            for uid, (i, value) in watched.items():
                if uid not in present:  # an attacker is never a destination: it ended undelivered
                    expected[i] += value
            np.testing.assert_allclose(core.attacker_reward, expected, rtol=1e-12, atol=1e-12)
            total += core.attacker_reward
        m = core.metrics()[0]
        assert total.sum() > 0, seed
        assert core.traffic[rows].sum() == 0  # never handed a piece on
        assert np.all(core.balance[rows] == 0.0) and np.all(core.cost[rows] == 0.0)
        assert m["earned_learned"] == 0.0  # under on_delivery nothing it took was paid
        assert m["honest_welfare"] == m["welfare"]  # the attackers spent nothing
        assert m["dropped"] > 0


def test_a_dropping_attacker_is_paid_under_per_hop():
    core = MeshCore(TINY.replace(economy={"payment": "per_hop"}), seed=0)
    core.reset()
    rng = np.random.default_rng(0)
    for _ in range(TINY.episode_steps):
        core.step(honest_actions(core, rng), action_rows(core, handling=DROP))
    assert core.metrics()[0]["earned_learned"] > 0
    assert core.traffic[core.attacker_rows].sum() == 0


def test_hold_keeps_the_piece_and_the_token():
    core, null = MeshCore(TINY, seed=0), MeshCore(TINY, seed=0)
    core.reset()
    null.reset()
    rows = core.attacker_rows
    hold = action_rows(core, handling=HOLD)
    rng = np.random.default_rng(0)
    held, queued, queued_null = 0, 0, 0
    for _ in range(TINY.episode_steps):
        active = core.attacker_active()
        pid = core.pending[rows].copy()
        uid = core.p_uid[np.maximum(pid, 0)].copy()
        deadline = core.p_deadline[np.maximum(pid, 0)].copy()
        tokens = core.tokens[rows].copy()
        acts = honest_actions(core, rng)
        core.step(acts, hold)
        null.step(acts, action_rows(null))
        for i in np.flatnonzero(active & (deadline >= core.t)):  # not yet expired
            node = rows[i]
            piece = np.flatnonzero((core.p_uid == uid[i]) & (core.p_status == LIVE))
            assert piece.size == 1 and core.p_node[piece[0]] == node  # still there
            cap = core.capacity[node]
            assert core.tokens[node] == min(tokens[i] + cap, 1.0 + cap)  # no token spent
            held += 1
        queued += core.queue_len[rows].sum()
        queued_null += null.queue_len[rows].sum()
    assert held > 10
    assert core.traffic[rows].sum() == 0 < null.traffic[rows].sum()
    assert queued > 3 * queued_null  # what arrives piles up until its deadline


def lockstep(steps: int = TINY.episode_steps, seed: int = 0, **component):
    """Two cores on the same episode, honest nodes playing the same actions; attackers of ``a``
    play the null action, those of ``b`` it with ``component`` changed (an announcement only:
    pieces move alike in both)."""
    a, b = MeshCore(TINY, seed=seed), MeshCore(TINY, seed=seed)
    a.reset()
    b.reset()
    null, action_of_b = action_rows(a), action_rows(b, **component)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        acts = honest_actions(a, rng)
        a.step(acts, null)
        b.step(acts, action_of_b)
        assert np.array_equal(a.agent_active(), b.agent_active())
        yield a, b, a.agent_observation(), b.agent_observation()


def attacker_slots(core: MeshCore):
    """(agent index, slot) of every active honest agent's neighbour slot that holds an attacker."""
    learned = np.zeros(core.n_nodes, dtype=bool)
    learned[core.attacker_rows[core.attacker_valid]] = True
    for i in np.flatnonzero(core.agent_active()):
        row = core.agent_rows[i]
        for k in np.flatnonzero(core.mask[row]):
            yield i, k, bool(learned[core.nbr[row, k]])


def test_quote_factor_3_raises_the_neighbours_price_ratio():
    col = FEATURE_INDEX["price_ratio"]
    seen = 0
    for a, b, obs_a, obs_b in lockstep(quote=QUOTE_FACTORS.index(3.0)):
        rows = a.attacker_rows
        if a.t == 1:  # from the same state: 3 x the fair formula (later the markets drift apart)
            np.testing.assert_allclose(b.quote[rows], 3.0 * a.quote[rows], rtol=1e-12)
        assert np.all(b.price_factor[rows] == 3.0)
        for i, k, is_attacker in attacker_slots(a):
            if is_attacker:
                pa, pb = obs_a.features[i, k, col], obs_b.features[i, k, col]
                assert pb > pa or pa == 5.0, (pa, pb)  # clipped at 5
                seen += 1
    assert seen > 50


def test_claim_factor_sets_the_neighbours_claimed_bw():
    core = MeshCore(TINY, seed=0)
    core.reset()
    into = core.link_mask & np.isin(core.nbr, core.attacker_rows)
    others = core.link_mask & ~into
    before = core.memory.claimed_bw[others].copy()
    rows, cols = np.nonzero(into)
    assert rows.size > 0
    for factor in (1.5, 0.5, 1.25):
        core.step(np.zeros(core.agent_rows.size, dtype=np.int64), action_rows(core, claim=CLAIM_FACTORS.index(factor)))
        capacity = core.capacity[core.nbr[rows, cols]]
        np.testing.assert_allclose(core.memory.claimed_bw[rows, cols], factor * capacity, rtol=1e-12)
        np.testing.assert_array_equal(core.memory.claimed_bw[others], before)


def test_route_discount_lowers_the_neighbours_est_latency_for_that_slot():
    col = FEATURE_INDEX["est_latency"]
    seen = 0
    for a, _, obs_a, obs_b in lockstep(route_discount=ROUTE_DISCOUNTS.index(0.25)):
        for i, k, is_attacker in attacker_slots(a):
            ea, eb = obs_a.features[i, k, col], obs_b.features[i, k, col]
            if not is_attacker:
                assert ea == eb
                continue
            link = a.latency[a.agent_rows[i], k] / LATENCY_SCALE
            # est_latency = link + route; the route part is what the attacker discounts.
            assert eb == pytest.approx(link + 0.25 * (ea - link), abs=1e-6)
            assert eb < ea
            seen += 1
    assert seen > 50


# ------------------------------------------------------------------ objectives


def test_profit_reward_is_the_change_of_balance_minus_cost():
    sc = TINY.replace(adversaries={"learned": {"fraction": 0.3, "objective": "profit"}})
    core = MeshCore(sc, n_meshes=2, seed=0)
    core.reset()
    rows = core.attacker_rows
    rng = np.random.default_rng(1)
    total = np.zeros(rows.size)
    for _ in range(sc.episode_steps):
        before = core.balance[rows] - core.cost[rows]
        core.step(honest_actions(core, rng), rng.integers(0, ACTION_NVEC, (rows.size, len(ACTION_NVEC))))
        np.testing.assert_allclose(core.attacker_reward, core.balance[rows] - core.cost[rows] - before, atol=1e-12)
        total += core.attacker_reward
    np.testing.assert_allclose(total, core.balance[rows] - core.cost[rows], atol=1e-9)
    assert np.abs(total).sum() > 0


def test_damage_rewards_are_never_negative():
    core = MeshCore(TINY, n_meshes=2, seed=3)
    core.reset()
    rng = np.random.default_rng(2)
    total = 0.0
    for _ in range(TINY.episode_steps):
        core.step(honest_actions(core, rng), rng.integers(0, ACTION_NVEC, (core.attacker_rows.size, len(ACTION_NVEC))))
        assert np.all(core.attacker_reward >= 0.0)
        total += core.attacker_reward.sum()
    assert total > 0


# ------------------------------------------------------------------ scenario keys


def test_learned_count_and_with_learned_as():
    sc = load_scenario("learned")
    assert sc.learned_count() == round(0.15 * 24) == 4
    assert sc.honest_count() == 20
    bh = sc.with_learned_as("blackhole")
    assert bh.name == "learned@blackhole" and bh.learned_count() == 0
    assert bh.adversary_counts()["blackhole"] == 4 and bh.honest_count() == 20
    grey_holes = sc.replace(adversaries={"grey_hole": {"fraction": 0.1, "drop_probability": 0.3}})
    grey = grey_holes.with_learned_as("grey_hole")
    assert grey.adversary("grey_hole").fraction == pytest.approx(0.25)
    assert grey.adversary("grey_hole").drop_probability == 0.3  # its parameters kept


BAD_LEARNED = [
    (
        "bad objective",
        {"adversaries": {"learned": {"fraction": 0.1, "objective": "chaos"}}},
        ["adversaries.learned.objective", "unknown attacker objective", "damage, profit"],
    ),
    ("fraction above 1", {"adversaries": {"learned": 1.5}}, ["adversaries.learned", "[0, 1]"]),
    ("fraction below 0", {"adversaries": {"learned": {"fraction": -0.1}}}, ["adversaries.learned.fraction", "[0, 1]"]),
    ("unknown key", {"adversaries": {"learned": {"fraction": 0.1, "goal": "x"}}}, ["learned.goal", "unknown key"]),
    (
        "total above 0.9",
        {"adversaries": {"bandwidth_liar": 0.3, "blackhole": 0.3, "overpricer": 0.2, "learned": 0.2}},
        ["adversaries", "at most 0.9", "1"],
    ),
]


@pytest.mark.parametrize(("case", "spec", "words"), BAD_LEARNED, ids=[c for c, _, _ in BAD_LEARNED])
def test_bad_learned_key_is_one_line(case, spec, words):
    with pytest.raises(ScenarioError) as info:
        as_scenario(spec)
    message = str(info.value)
    assert message and "\n" not in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_total_fraction_with_learned_may_reach_0_9():
    sc = as_scenario(
        {"nodes": 40, "adversaries": {"bandwidth_liar": 0.3, "blackhole": 0.3, "overpricer": 0.2, "learned": 0.1}}
    )
    assert sc.learned_count() == 4 and sc.honest_count() == 4


def test_with_learned_as_an_unknown_kind_is_one_line():
    with pytest.raises(ScenarioError) as info:
        load_scenario("learned").with_learned_as("learned")  # not a scripted kind
    message = str(info.value)
    assert "\n" not in message and "unknown scripted kind 'learned'" in message and "blackhole" in message
    with pytest.raises(ScenarioError, match="unknown scripted kind 'vampire'"):
        load_scenario("learned").with_learned_as("vampire")
