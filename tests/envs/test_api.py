"""PettingZoo API and seed tests for every shipped scenario (shortened episodes), plus rendering."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

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
    assert all(set(info["metrics"]) == set(summary) for info in infos.values())


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
        MeshEconomyEnv("default", render_mode="human")
