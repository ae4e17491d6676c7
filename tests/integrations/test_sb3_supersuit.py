"""SuperSuit's vector conversion + sb3-contrib's ``MaskablePPO`` through the shipped ``envs.sb3`` adapter."""

from __future__ import annotations

import numpy as np

from agents.features import N_FEATURES
from tests.integrations.conftest import require


def test_maskable_ppo_trains_on_supersuit_vector_of_the_env(short_scenario):
    require("supersuit", "sb3_contrib")
    from sb3_contrib import MaskablePPO

    from envs.sb3 import make_sb3_vec_env
    from training.policy import SlotScorerPolicy

    venv = make_sb3_vec_env(short_scenario, copies=2, seed=0)
    honest = short_scenario.honest_count()
    assert venv.num_envs == 2 * honest and venv.observation_space.shape == (8, N_FEATURES)
    model = MaskablePPO(
        SlotScorerPolicy, venv, n_steps=16, batch_size=128, n_epochs=1, seed=0, policy_kwargs={"hidden": 16}
    )
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(2 * venv.num_envs * 16)
    assert model.num_timesteps >= 2 * venv.num_envs * 16
    assert any(not np.allclose(b, p.detach()) for b, p in zip(before, model.policy.parameters(), strict=True))
    obs = venv.reset()
    for _ in range(5):
        masks = venv.action_masks()
        actions, _ = model.predict(obs, action_masks=masks)
        assert masks[np.arange(venv.num_envs), actions].all(), "MaskablePPO picked a masked slot"
        obs, _, _, _ = venv.step(actions)


def test_flat_sb3_vector_works_with_mlp_policy_and_seeds_reproduce(short_scenario):
    require("supersuit", "sb3_contrib")
    from sb3_contrib import MaskablePPO

    from envs.sb3 import make_sb3_vec_env

    a = make_sb3_vec_env(short_scenario, copies=1, seed=5, flat_obs=True)
    b = make_sb3_vec_env(short_scenario, copies=1, seed=5, flat_obs=True)
    assert np.array_equal(a.reset(), b.reset())
    model = MaskablePPO("MlpPolicy", a, n_steps=8, batch_size=64, n_epochs=1, seed=0)
    model.learn(a.num_envs * 8)
    assert model.num_timesteps >= a.num_envs * 8
