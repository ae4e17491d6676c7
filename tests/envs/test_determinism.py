"""Same seed, same episode; different seed, different episode; traffic independent of the policy."""

from __future__ import annotations

import numpy as np

from agents.baselines import get_baseline
from envs.core import MeshCore
from envs.parallel import MeshEconomyEnv
from envs.scenario import load_scenario

SCENARIO = load_scenario("default").replace(episode_steps=40)


def rollout(seed: int) -> tuple[list[np.ndarray], list[dict], dict]:
    env = MeshEconomyEnv(SCENARIO)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(0)
    observations, rewards = [np.stack([o["observation"] for o in obs.values()])], []
    while env.agents:
        obs, reward, _, _, _ = env.step({a: int(rng.integers(8)) for a in env.agents})
        observations.append(np.stack([o["observation"] for o in obs.values()]))
        rewards.append(reward)
    return observations, rewards, env.episode_summary()


def test_same_seed_same_episode():
    obs_a, rewards_a, summary_a = rollout(11)
    obs_b, rewards_b, summary_b = rollout(11)
    assert len(obs_a) == len(obs_b)
    for a, b in zip(obs_a, obs_b, strict=True):
        np.testing.assert_array_equal(a, b)
    assert rewards_a == rewards_b
    assert summary_a == summary_b


def test_different_seed_different_episode():
    obs_a, _, summary_a = rollout(11)
    obs_b, _, summary_b = rollout(12)
    assert summary_a != summary_b
    assert any(a.shape != b.shape or not np.array_equal(a, b) for a, b in zip(obs_a, obs_b, strict=False))


def play(policy_name: str, seeds: list[int]) -> list[dict]:
    core = MeshCore(SCENARIO, n_meshes=len(seeds))
    core.reset(episode_seeds=seeds)
    policy = get_baseline(policy_name)
    rng = np.random.default_rng(0)
    for _ in range(core.episode_steps):
        obs = core.agent_observation()
        oracle = core.oracle_slots() if policy.needs_oracle else None
        core.step(policy.act(obs.features, obs.action_mask, rng=rng, oracle_actions=oracle))
    return core.metrics()


def test_episode_seed_fixes_the_mesh_regardless_of_the_batch():
    together = MeshCore(SCENARIO, n_meshes=3)
    together.reset(episode_seeds=[3, 4, 5])
    alone = MeshCore(SCENARIO, n_meshes=1)
    alone.reset(episode_seeds=[4])
    a, b = together.meshes[1], alone.meshes[0]
    np.testing.assert_array_equal(a.kind, b.kind)
    np.testing.assert_array_equal(a.nbr, b.nbr)
    np.testing.assert_array_equal(a.stream_src, b.stream_src)
    assert not np.array_equal(together.meshes[0].nbr, a.nbr)


def test_episode_seed_fixes_the_whole_episode_regardless_of_the_batch():
    together = play("seed", [3, 4, 5])
    alone = play("seed", [4])
    assert together[1] == alone[0]


def test_every_policy_sees_the_same_traffic():
    seeds = [7, 8]
    generated = {name: [m["generated"] for m in play(name, seeds)] for name in ("random", "seed", "oracle")}
    assert generated["random"] == generated["seed"] == generated["oracle"]
    assert generated["seed"][0] > 0


CHANGING = load_scenario("adaptive_mix").replace(episode_steps=120)


def test_adaptive_mix_with_churn_is_determined_by_its_seed():
    def run(seed: int) -> tuple[list[dict], np.ndarray, np.ndarray]:
        core = MeshCore(CHANGING, n_meshes=2)
        core.reset(episode_seeds=[seed, seed + 1])
        policy, rng = get_baseline("seed"), np.random.default_rng(0)
        for _ in range(core.episode_steps):
            obs = core.agent_observation()
            core.step(policy.act(obs.features, obs.action_mask, rng=rng, oracle_actions=None))
        return core.metrics(), core.departures.copy(), obs.features

    a, b, c = run(40), run(40), run(41)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    assert a[1].sum() > 0, "churn and whitewashers made nodes leave"
    assert a[0] != c[0]


def test_adaptive_mix_episode_is_the_same_in_any_batch():
    def run(seeds: list[int]) -> list[dict]:
        core = MeshCore(CHANGING, n_meshes=len(seeds))
        core.reset(episode_seeds=seeds)
        policy, rng = get_baseline("shortest"), np.random.default_rng(0)
        for _ in range(core.episode_steps):
            obs = core.agent_observation()
            core.step(policy.act(obs.features, obs.action_mask, rng=rng, oracle_actions=None))
        return core.metrics()

    assert run([3, 4, 5])[1] == run([4])[0]
