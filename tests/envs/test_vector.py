"""The SB3 VecEnv view: one slot per honest node per mesh copy, episode ends with metrics."""

from __future__ import annotations

import numpy as np

from agents.features import N_FEATURES, SLOTS
from envs.core import METRIC_NAMES
from envs.scenario import load_scenario
from envs.vector import MeshVecEnv


def test_vector_env_shapes_masks_and_episode_end():
    scenario = load_scenario("default").replace(episode_steps=5)
    venv = MeshVecEnv(scenario, n_meshes=3, seed=0)
    assert venv.num_envs == 3 * scenario.honest_count()
    obs = venv.reset()
    assert obs.shape == (venv.num_envs, SLOTS, N_FEATURES) and obs.dtype == np.float32
    infos = []
    for step in range(5):
        masks = venv.action_masks()
        assert masks.shape == (venv.num_envs, SLOTS) and masks.any(axis=1).all()
        actions = np.argmax(masks, axis=1)
        obs, rewards, dones, infos = venv.step(actions)
        assert rewards.shape == (venv.num_envs,) and np.isfinite(rewards).all()
        assert dones.all() == (step == 4)
    per_mesh = venv.num_envs // 3
    for b in range(3):
        assert set(METRIC_NAMES) <= set(infos[b * per_mesh]["mesh_metrics"])
    assert all("terminal_observation" in info and "episode" in info for info in infos)
