"""training.ppo: the compact decision buffer equals the padded computation; DecisionPPO learns, saves, loads."""

from __future__ import annotations

import numpy as np
import torch as th
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st
from sb3_contrib.common.maskable.buffers import MaskableRolloutBuffer
from stable_baselines3.common.vec_env import VecNormalize

from agents.features import N_FEATURES, SLOTS
from training.policy import ACTIVE, SlotScorerPolicy
from training.ppo import DecisionPPO, DecisionRolloutBuffer, decision_rows, real_slots
from training.vec import make_env

OBS = spaces.Box(-np.inf, np.inf, (SLOTS, N_FEATURES), np.float32)
ACT = spaces.Discrete(SLOTS)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    steps=st.integers(1, 12),
    envs=st.integers(1, 9),
    gamma=st.floats(0.5, 1.0),
    lam=st.floats(0.0, 1.0),
)
def test_compact_returns_and_advantages_equal_the_padded_buffer_on_decision_rows(seed, steps, envs, gamma, lam):
    rng = np.random.default_rng(seed)
    decision = rng.random((steps, envs)) < 0.4
    real = rng.random((steps, envs)) < 0.8
    decision &= real
    obs = np.zeros((steps, envs, SLOTS, N_FEATURES), dtype=np.float32)
    obs[decision] = rng.normal(size=(int(decision.sum()), SLOTS, N_FEATURES))
    obs[decision, :, ACTIVE] = 1.0
    rewards = rng.normal(size=(steps, envs)).astype(np.float32)
    starts = (rng.random((steps, envs)) < 0.1).astype(np.float32)
    values = rng.normal(size=(steps, envs)).astype(np.float32)
    last_values = rng.normal(size=envs).astype(np.float32)
    dones = rng.random(envs) < 0.2
    actions = rng.integers(0, SLOTS, (steps, envs))
    masks = np.ones((steps, envs, SLOTS), dtype=bool)
    logp = rng.normal(size=(steps, envs)).astype(np.float32)

    padded = MaskableRolloutBuffer(steps, OBS, ACT, "cpu", gae_lambda=lam, gamma=gamma, n_envs=envs)
    compact = DecisionRolloutBuffer(steps, OBS, ACT, "cpu", gae_lambda=lam, gamma=gamma, n_envs=envs)
    for t in range(steps):
        padded.add(
            obs[t],
            actions[t][:, None],
            rewards[t],
            starts[t],
            th.as_tensor(values[t]),
            th.as_tensor(logp[t]),
            action_masks=masks[t],
        )
        d = decision[t]
        assert (decision_rows(obs[t]) == d).all()
        compact.add(obs[t][d], masks[t][d], actions[t][d], logp[t][d], d, real[t], rewards[t], starts[t], values[t])
    padded.compute_returns_and_advantage(th.as_tensor(last_values), dones)
    compact.compute_returns_and_advantage(last_values, dones)
    np.testing.assert_allclose(compact.advantages, padded.advantages[decision], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(compact.returns, padded.returns[decision], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(compact.observations, obs[decision])
    np.testing.assert_array_equal(compact.actions, actions[decision])
    idle = real & ~decision
    assert compact.idle_count == idle.sum()
    if idle.any():
        assert np.isclose(compact.idle_return, padded.returns[idle].mean(), rtol=1e-5, atol=1e-5)
    # Every decision row lands in exactly one minibatch; the idle weights add up to the idle count.
    batches = list(compact.get(5))
    assert sum(b.actions.numel() for b in batches) == decision.sum()
    assert np.isclose(sum(b.idle_weight for b in batches), compact.idle_count if decision.any() else 0)


def test_idle_rows_value_term_gives_the_padded_gradient():
    """n identical idle rows' squared errors and the one weighted mean term have the same gradient."""
    v0 = th.tensor(0.3, requires_grad=True)
    targets = th.tensor([1.0, -2.0, 0.5, 4.0])
    (g_padded,) = th.autograd.grad(((v0 - targets) ** 2).sum(), v0)
    (g_compact,) = th.autograd.grad(targets.numel() * (v0 - targets.mean()) ** 2, v0)
    assert th.isclose(g_padded, g_compact)


def test_decision_ppo_learns_from_decisions_saves_and_loads(tmp_path):
    env = VecNormalize(make_env(["blackholes", "honest"], 2, 0), norm_obs=False)
    real = real_slots(env)
    assert real.shape == (env.num_envs,) and real.any()
    model = DecisionPPO(
        SlotScorerPolicy,
        env,
        n_steps=16,
        batch_size=128,
        n_epochs=2,
        policy_kwargs={"hidden": 16, "depth": 1},
        seed=0,
        device="cpu",
    )
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(env.num_envs * 16 * 2)
    assert model.num_timesteps == env.num_envs * 16 * 2
    buffer = model.rollout_buffer
    assert 0 < buffer.decisions < buffer.real.sum()  # idle rows exist and are not stored as rows
    assert model.decisions_learned >= buffer.decisions
    changed = [not th.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True)]
    assert any(changed)
    model.save(tmp_path / "m.zip")
    loaded = DecisionPPO.load(tmp_path / "m.zip", env=env, device="cpu")
    assert loaded.decisions_learned == model.decisions_learned
    obs = th.as_tensor(buffer.observations[:8])
    with th.no_grad():
        assert th.allclose(loaded.policy.slot_scores(obs), model.policy.slot_scores(obs))
    loaded.learn(env.num_envs * 16, reset_num_timesteps=False)
