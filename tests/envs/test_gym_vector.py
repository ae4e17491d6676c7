"""envs.gym_vector: a gymnasium vector env of agent slots over the core (what RLlib's vector runner samples)."""

from __future__ import annotations

import numpy as np
import pytest

from envs.core import MeshCore
from envs.gym_vector import MeshGymVectorEnv, make_gym_vector_env
from envs.scenario import load_scenario


def test_vector_env_is_the_core_batch_with_next_step_autoreset():
    scenario = load_scenario("blackholes").replace(episode_steps=5)
    env = MeshGymVectorEnv(scenario, n_meshes=3, seed=4)
    assert env.num_envs == 3 * scenario.honest_count()
    obs, _ = env.reset(seed=9)
    assert env.observation_space.contains(obs)
    reference = MeshCore(scenario, n_meshes=3, seed=0)
    reference.reset(seed=9)
    rng = np.random.default_rng(0)
    for t in range(5):
        np.testing.assert_array_equal(obs["observation"], reference.agent_observation().features)
        idle = ~reference.agent_active()
        assert (obs["action_mask"][idle].sum(axis=1) == 1).all() and (obs["action_mask"][idle, 0] == 1).all()
        actions = rng.integers(0, 8, env.num_envs)
        obs, rewards, terminated, truncated, _ = env.step(actions)
        reference.step(actions)
        np.testing.assert_array_equal(rewards, reference.reward[reference.agent_rows].astype(np.float32))
        assert not terminated.any()
        assert truncated.all() == (t == 4) and truncated.any() == (t == 4)
    # NEXT_STEP autoreset: the step after the truncation resets every mesh, reward 0, actions ignored
    obs, rewards, terminated, truncated, _ = env.step(np.zeros(env.num_envs, dtype=np.int64))
    assert not rewards.any() and not truncated.any() and env.core.t == 0
    assert env.observation_space.contains(obs)


def test_env_creator_checks_num_envs_against_the_honest_count():
    honest = load_scenario("default").honest_count()
    env = make_gym_vector_env({"scenario": "default", "num_envs": 2 * honest})
    assert env.num_envs == 2 * honest and env.core.n_meshes == 2
    with pytest.raises(ValueError, match="multiple"):
        make_gym_vector_env({"scenario": "default", "num_envs": honest + 1})
