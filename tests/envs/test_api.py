"""PettingZoo API and seed tests for every shipped scenario (shortened episodes), plus rendering."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test, render_test
from pettingzoo.utils.conversions import parallel_to_aec

from agents.features import N_FEATURES, SLOTS
from envs.parallel import MeshEconomyEnv
from envs.scenario import load_scenario, shipped_scenarios

SHORT_STEPS = 50


def short(name: str):
    return load_scenario(name).replace(episode_steps=SHORT_STEPS)


def test_every_issue_scenario_is_shipped():
    expected = {"default", "honest", "liars", "blackholes", "overpricers", "mixed_heavy", "large"}
    assert expected <= set(shipped_scenarios())
    assert load_scenario("large").nodes >= 128


@pytest.mark.parametrize("name", shipped_scenarios())
def test_parallel_api_and_seed(name):
    scenario = short(name)
    parallel_api_test(MeshEconomyEnv(scenario), num_cycles=SHORT_STEPS + 10)
    parallel_seed_test(lambda: MeshEconomyEnv(scenario), num_cycles=SHORT_STEPS + 10)


def test_episode_truncates_after_episode_steps_and_summary_has_every_metric():
    env = MeshEconomyEnv(short("default").replace(episode_steps=7))
    env.reset(seed=1)
    steps = 0
    while env.agents:
        _, _, terminations, truncations, infos = env.step({a: 0 for a in env.agents})
        steps += 1
    assert steps == 7 and all(truncations.values()) and not any(terminations.values())
    summary = env.episode_summary()
    for key in ("delivery_rate", "mean_latency", "welfare", "dishonest_share", "dishonest_payments_share"):
        assert key in summary
    assert {"honest_profit_gini", "empathy_precision", "empathy_recall"} <= set(summary)
    for info in infos.values():  # flat scalars: TorchRL, BenchMARL and RLlib stack them
        assert set(info) == {"active", "profit"}
        assert isinstance(info["active"], bool) and isinstance(info["profit"], float)


def test_masked_action_is_folded_onto_a_valid_slot():
    scenario = short("default")
    env_a, env_b = MeshEconomyEnv(scenario), MeshEconomyEnv(scenario)
    env_a.reset(seed=5)
    env_b.reset(seed=5)
    degree = env_a.core.degree[env_a.core.agent_rows]
    for _ in range(20):
        env_a.step({a: 7 for a in env_a.agents})  # slot 7 is masked for every node of degree < 8
        env_b.step({a: int(7 % degree[i]) for i, a in enumerate(env_b.agents)})
    assert env_a.episode_summary() == env_b.episode_summary()


def test_render_modes():
    env = MeshEconomyEnv(short("default"), render_mode="rgb_array")
    env.reset(seed=0)
    env.step({a: 0 for a in env.agents})
    image = env.render()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.std() > 0
    env = MeshEconomyEnv(short("default"), render_mode="ansi")
    env.reset(seed=0)
    line = env.render()
    assert isinstance(line, str) and "\n" not in line and "delivery_rate" in line


def test_unknown_render_mode_is_refused():
    with pytest.raises(ValueError, match="render_mode"):
        MeshEconomyEnv("default", render_mode="window")


def test_render_follows_pettingzoo_conventions(capsys):
    scenario = short("default")
    for mode in ("rgb_array", "ansi", "human"):
        with pytest.raises(gymnasium.error.ResetNeeded, match="reset"):
            MeshEconomyEnv(scenario, render_mode=mode).render()
    render_test(lambda render_mode=None: parallel_to_aec(MeshEconomyEnv(scenario, render_mode=render_mode)))
    capsys.readouterr()
    for mode in ("ansi", "human"):
        env = MeshEconomyEnv(scenario, render_mode=mode)
        env.reset(seed=0)
        for _ in range(3):
            env.step({a: 0 for a in env.agents})
        assert capsys.readouterr().out == "", f"step() printed in {mode} mode"
    assert env.render() is None
    line = capsys.readouterr().out
    assert line.startswith("t=   3") and "delivery_rate" in line


def test_fresh_envs_draw_fresh_entropy_and_explicit_seeds_reproduce():
    scenario = short("default")

    def first_obs(seed):
        obs, _ = MeshEconomyEnv(scenario).reset(seed=seed)
        return np.stack([o["observation"] for o in obs.values()])

    def graph(env):
        return env.core.nbr.copy()

    a, b = MeshEconomyEnv(scenario), MeshEconomyEnv(scenario)
    a.reset()
    b.reset()
    assert not np.array_equal(graph(a), graph(b)), "two fresh copies played the same mesh"
    a.reset(seed=3)
    b.reset(seed=3)
    assert np.array_equal(graph(a), graph(b))
    first = graph(a)
    a.reset()
    assert not np.array_equal(graph(a), first), "reset() after reset(seed) replayed the episode"
    assert np.array_equal(first_obs(11), first_obs(11))


def test_idle_agents_get_a_single_valid_action():
    env = MeshEconomyEnv(short("default"))
    obs, infos = env.reset(seed=2)
    degree = env.core.degree[env.core.agent_rows]
    seen_idle = seen_active = 0
    for _ in range(15):
        for i, agent in enumerate(env.agents):
            mask = obs[agent]["action_mask"]
            assert mask.dtype == np.int8 and env.observation_space(agent).contains(obs[agent])
            if infos[agent]["active"]:
                seen_active += 1
                assert mask.sum() == min(degree[i], 8) and mask[: degree[i]].all()
            else:
                seen_idle += 1
                assert mask.tolist() == [1, 0, 0, 0, 0, 0, 0, 0]
        obs, _, _, _, infos = env.step({a: 0 for a in env.agents})
    assert seen_idle > 0 and seen_active > 0


def test_flat_observation_option_is_the_rows_concatenated():
    scenario = short("default")
    flat, nested = MeshEconomyEnv(scenario, flat_obs=True), MeshEconomyEnv(scenario)
    space = flat.observation_space("agent_0")
    assert space["observation"].shape == (SLOTS * N_FEATURES,) and set(space) == {"observation", "action_mask"}
    parallel_api_test(MeshEconomyEnv(scenario, flat_obs=True), num_cycles=20)
    obs_f, _ = flat.reset(seed=4)
    obs_n, _ = nested.reset(seed=4)
    for _ in range(5):
        for agent in flat.agents:
            assert np.array_equal(obs_f[agent]["observation"], obs_n[agent]["observation"].reshape(-1))
            assert np.array_equal(obs_f[agent]["action_mask"], obs_n[agent]["action_mask"])
        obs_f, *_ = flat.step({a: 1 for a in flat.agents})
        obs_n, *_ = nested.step({a: 1 for a in nested.agents})
