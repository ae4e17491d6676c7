"""PPO whose update sees only decisions: :class:`DecisionPPO` (a ``MaskablePPO``) and its buffer.

In a mesh most agent-steps carry no decision: an agent without a piece to route has one valid
action (slot 0), log-probability 0 and entropy 0, and a mix of mesh sizes pads the smaller meshes'
slots (``envs.vector``). ``MaskablePPO`` still sends every such row through the policy's forward
pass while collecting and through the forward and backward passes of every epoch. Here:

* **Decision rows** (the observation's ``active`` column is set: the agent routes a piece) are
  the only rows stored with their observation, mask, action and log-probability, the only rows
  the policy is run on while collecting, and the only rows of the PPO minibatches.
* **Idle rows** (a real agent slot without a piece) all have the same observation, all zeros
  (``envs.core.MeshCore.agent_observation``), so the critic gives them one value ``V0``, computed
  once per rollout and once per minibatch. Their squared value error summed over ``n`` idle rows is
  ``n (V0 - mean R)^2`` plus a constant: the minibatch's value loss carries that one term, weighted
  by the minibatch's share of the idle rows, so the critic gets exactly the gradient the padded
  buffer would give it, without a row per idle step.
* **Padding rows** (slots a smaller mesh does not use) are stored nowhere and learned from nowhere.

Returns and advantages are the padded computation's (SB3's GAE over every ``(step, slot)`` with
the rewards of every real step, ``V0`` at idle steps), gathered at the decision rows
(``tests/training/test_ppo.py`` checks them against ``MaskableRolloutBuffer``). Agent-steps are
counted as before (``num_timesteps`` advances by every slot); :attr:`DecisionPPO.decisions_learned`
counts the decision rows the updates learned from (``train/decisions`` in tensorboard).
Callbacks, checkpoints (``save``/``load``), ``VecNormalize`` and the logger are SB3's. The batch
size counts decision rows. Value clipping (``clip_range_vf``) applies to the decision rows only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import explained_variance
from stable_baselines3.common.vec_env import VecEnv

from training.policy import ACTIVE


@dataclass
class DecisionBatch:
    """One minibatch of decision rows (tensors) plus the idle term of the value loss."""

    observations: th.Tensor
    actions: th.Tensor
    action_masks: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    #: weight of the idle rows' term ``(V0 - idle_return)^2`` in this minibatch (its share of them)
    idle_weight: float
    idle_return: float


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    episode_starts: np.ndarray,
    last_values: np.ndarray,
    dones: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> tuple[np.ndarray, np.ndarray]:
    """SB3's GAE over ``(steps, envs)`` arrays: ``(advantages, returns)`` (``RolloutBuffer``'s arithmetic)."""
    advantages = np.zeros_like(rewards, dtype=np.float32)
    last = np.zeros(rewards.shape[1], dtype=np.float32)
    steps = rewards.shape[0]
    for step in reversed(range(steps)):
        if step == steps - 1:
            next_non_terminal = 1.0 - dones.astype(np.float32)
            next_values = last_values
        else:
            next_non_terminal = 1.0 - episode_starts[step + 1]
            next_values = values[step + 1]
        delta = rewards[step] + gamma * next_values * next_non_terminal - values[step]
        last = delta + gamma * gae_lambda * next_non_terminal * last
        advantages[step] = last
    return advantages, advantages + values


def _concat(parts: list[np.ndarray], shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, *shape), dtype=dtype)


class DecisionRolloutBuffer:
    """Rollout storage of :class:`DecisionPPO`: decision rows compact, every slot's scalars in full.

    Constructed like SB3's rollout buffers (``rollout_buffer_class``), so ``MaskablePPO._setup_model``
    builds it. Per step it holds the decision rows' observations, masks, actions, log-probabilities
    and values, and for every slot the reward, episode start, value and whether the slot is real
    and decides.
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "cpu",
        gae_lambda: float = 1.0,
        gamma: float = 0.99,
        n_envs: int = 1,
    ) -> None:
        self.buffer_size, self.n_envs = buffer_size, n_envs
        self.obs_shape = tuple(observation_space.shape)
        self.n_actions = int(action_space.n)
        self.device, self.gae_lambda, self.gamma = device, gae_lambda, gamma
        self.reset()

    def reset(self) -> None:
        """Empty the buffer (start of a rollout)."""
        shape = (self.buffer_size, self.n_envs)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.values = np.zeros(shape, dtype=np.float32)
        self.episode_starts = np.zeros(shape, dtype=np.float32)
        self.real = np.zeros(shape, dtype=bool)
        self.decision = np.zeros(shape, dtype=bool)
        self._obs: list[np.ndarray] = []
        self._masks: list[np.ndarray] = []
        self._actions: list[np.ndarray] = []
        self._log_probs: list[np.ndarray] = []
        self.pos = 0
        self.full = False

    def add(
        self,
        decision_obs: np.ndarray,
        decision_masks: np.ndarray,
        decision_actions: np.ndarray,
        decision_log_probs: np.ndarray,
        decision: np.ndarray,
        real: np.ndarray,
        rewards: np.ndarray,
        episode_starts: np.ndarray,
        values: np.ndarray,
    ) -> None:
        """Store one step: the decision rows (in slot order) and every slot's scalars."""
        p = self.pos
        self.rewards[p], self.episode_starts[p], self.values[p] = rewards, episode_starts, values
        self.decision[p], self.real[p] = decision, real
        self._obs.append(decision_obs)
        self._masks.append(decision_masks)
        self._actions.append(decision_actions)
        self._log_probs.append(decision_log_probs)
        self.pos += 1
        self.full = self.pos == self.buffer_size

    def compute_returns_and_advantage(self, last_values: np.ndarray, dones: np.ndarray) -> None:
        """GAE over every slot (:func:`gae`), then gathered at the decision rows; the idle rows'
        returns reduce to their count and mean."""
        steps = self.pos
        adv, ret = gae(
            self.rewards[:steps],
            self.values[:steps],
            self.episode_starts[:steps],
            np.asarray(last_values, dtype=np.float32),
            np.asarray(dones),
            self.gamma,
            self.gae_lambda,
        )
        self.advantages_full, self.returns_full = adv, ret
        dec = self.decision[:steps]
        # Row-major gathering = the order the per-step decision rows were appended in.
        self.advantages = adv[dec]
        self.returns = ret[dec]
        self.decision_values = self.values[:steps][dec]
        idle = self.real[:steps] & ~dec
        self.idle_count = int(idle.sum())
        self.idle_return = float(ret[idle].mean()) if self.idle_count else 0.0
        self.observations = _concat(self._obs, self.obs_shape, np.float32)
        self.action_masks = _concat(self._masks, (self.n_actions,), bool)
        self.actions = _concat(self._actions, (), np.int64)
        self.log_probs = _concat(self._log_probs, (), np.float32)

    @property
    def decisions(self) -> int:
        """Decision rows stored."""
        return int(self.advantages.size)

    def get(self, batch_size: int) -> Iterator[DecisionBatch]:
        """Minibatches of decision rows in a random order (numpy's global generator, as SB3)."""
        n = self.decisions
        if n == 0:
            return
        order = np.random.permutation(n)
        t = lambda x: th.as_tensor(x, device=self.device)  # noqa: E731
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield DecisionBatch(
                observations=t(self.observations[idx]),
                actions=t(self.actions[idx]),
                action_masks=t(self.action_masks[idx]),
                old_values=t(self.decision_values[idx]),
                old_log_prob=t(self.log_probs[idx]),
                advantages=t(self.advantages[idx]),
                returns=t(self.returns[idx]),
                idle_weight=self.idle_count * idx.size / n,
                idle_return=self.idle_return,
            )


def real_slots(env: VecEnv) -> np.ndarray:
    """Per slot: a real agent (True) or padding (False); every slot is real for envs without padding."""
    base = env.unwrapped if hasattr(env, "unwrapped") else env
    core = getattr(base, "core", None)
    valid = getattr(core, "agent_valid", None)
    if valid is None or np.shape(valid) != (env.num_envs,):
        return np.ones(env.num_envs, dtype=bool)
    return np.asarray(valid, dtype=bool).copy()


def decision_rows(obs: np.ndarray) -> np.ndarray:
    """Per row of ``(rows, slots, features)`` observations: True where the ``active`` column is set."""
    return obs[:, :, ACTIVE].any(axis=1)


class DecisionPPO(MaskablePPO):
    """``MaskablePPO`` that collects and learns from decision rows only (see the module docstring).

    Takes ``MaskablePPO``'s arguments; the policy must read the ``active`` feature as
    ``training.policy.SlotScorerPolicy`` does (all-zero rows are idle).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("rollout_buffer_class", DecisionRolloutBuffer)
        #: decision rows the updates have learned from since construction (or load)
        self.decisions_learned = 0
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        # A checkpoint of a plain MaskablePPO names its own buffer class: this algorithm needs its own.
        self.rollout_buffer_class = DecisionRolloutBuffer
        super()._setup_model()

    def _idle_value(self) -> th.Tensor:
        """The critic's value of the all-zero (idle) observation, shape ``(1,)``."""
        zeros = th.zeros((1, *self.observation_space.shape), device=self.device)
        return self.policy.predict_values(zeros).flatten()

    def _values_of(self, obs: np.ndarray, idle_value: float) -> np.ndarray:
        """Critic values of ``obs`` rows: evaluated on decision rows, ``idle_value`` elsewhere."""
        values = np.full(obs.shape[0], idle_value, dtype=np.float32)
        dec = np.flatnonzero(decision_rows(obs))
        if dec.size:
            with th.no_grad():
                v = self.policy.predict_values(th.as_tensor(obs[dec], device=self.device))
            values[dec] = v.flatten().cpu().numpy()
        return values

    def collect_rollouts(  # type: ignore[override]
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: DecisionRolloutBuffer,
        n_rollout_steps: int,
        use_masking: bool = True,
    ) -> bool:
        """Fill ``rollout_buffer`` with ``n_rollout_steps`` steps, running the policy on decision rows only."""
        assert isinstance(rollout_buffer, DecisionRolloutBuffer), "DecisionPPO needs a DecisionRolloutBuffer"
        assert self._last_obs is not None, "No previous observation was provided"
        if not is_masking_supported(env):
            raise ValueError("DecisionPPO needs an environment with action_masks()")
        self.policy.set_training_mode(False)
        rollout_buffer.reset()
        with th.no_grad():
            idle_value = float(self._idle_value()[0])
        callback.on_rollout_start()
        n_steps = 0
        n = env.num_envs
        while n_steps < n_rollout_steps:
            obs = np.asarray(self._last_obs, dtype=np.float32)
            action_masks = get_action_masks(env)
            real = real_slots(env)
            decision = decision_rows(obs)
            dec = np.flatnonzero(decision)
            actions = np.zeros(n, dtype=np.int64)
            values = np.full(n, idle_value, dtype=np.float32)
            log_probs = np.zeros(dec.size, dtype=np.float32)
            if dec.size:
                with th.no_grad():
                    a, v, lp = self.policy(th.as_tensor(obs[dec], device=self.device), action_masks=action_masks[dec])
                actions[dec] = a.cpu().numpy()
                values[dec] = v.flatten().cpu().numpy()
                log_probs = lp.cpu().numpy().astype(np.float32)
            new_obs, rewards, dones, infos = env.step(actions)
            self.num_timesteps += n
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            n_steps += 1
            rewards = np.asarray(rewards, dtype=np.float32).copy()
            # Timeouts bootstrap with the value of the terminal observation (SB3 issue #633), in one pass.
            truncated = [
                i
                for i in np.flatnonzero(dones)
                if infos[i].get("terminal_observation") is not None and infos[i].get("TimeLimit.truncated", False)
            ]
            if truncated:
                terminal = np.stack([infos[i]["terminal_observation"] for i in truncated]).astype(np.float32)
                rewards[truncated] += self.gamma * self._values_of(terminal, idle_value)
            rollout_buffer.add(
                obs[dec],
                action_masks[dec],
                actions[dec],
                log_probs,
                decision,
                real,
                rewards,
                np.asarray(self._last_episode_starts, dtype=np.float32),
                values,
            )
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones
        last_values = self._values_of(np.asarray(new_obs, dtype=np.float32), idle_value)
        rollout_buffer.compute_returns_and_advantage(last_values=last_values, dones=dones)
        callback.on_rollout_end()
        return True

    def train(self) -> None:
        """PPO epochs over the decision rows; the critic's idle value learns from the idle rows' mean return."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        clip_range_vf = None
        if self.clip_range_vf is not None:
            clip_range_vf = self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]
        buffer: DecisionRolloutBuffer = self.rollout_buffer  # type: ignore[assignment]
        entropy_losses, pg_losses, value_losses, clip_fractions, approx_kl_divs = [], [], [], [], []
        loss = th.zeros(())
        continue_training = True
        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            for batch in buffer.get(self.batch_size):
                values, log_prob, entropy = self.policy.evaluate_actions(
                    batch.observations, batch.actions, action_masks=batch.action_masks
                )
                values = values.flatten()
                advantages = batch.advantages
                if self.normalize_advantage and advantages.numel() > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
                ratio = th.exp(log_prob - batch.old_log_prob)
                policy_loss_1 = advantages * ratio
                policy_loss_2 = advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)
                policy_loss = -th.min(policy_loss_1, policy_loss_2).mean()
                pg_losses.append(policy_loss.item())
                clip_fractions.append(th.mean((th.abs(ratio - 1) > clip_range).float()).item())
                if clip_range_vf is not None:
                    values = batch.old_values + th.clamp(values - batch.old_values, -clip_range_vf, clip_range_vf)
                # The padded buffer's value loss: mean over decision and idle rows of the squared error;
                # the idle rows share one value, so their part is one weighted term.
                squared = ((batch.returns - values) ** 2).sum()
                if batch.idle_weight > 0:
                    v0 = self._idle_value()[0]
                    squared = squared + batch.idle_weight * (v0 - batch.idle_return) ** 2
                value_loss = squared / (values.numel() + batch.idle_weight)
                value_losses.append(value_loss.item())
                entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
                entropy_losses.append(entropy_loss.item())
                loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
                with th.no_grad():
                    log_ratio = log_prob - batch.old_log_prob
                    approx_kl_div = th.mean((th.exp(log_ratio) - 1) - log_ratio).cpu().numpy()
                    approx_kl_divs.append(approx_kl_div)
                if self.target_kl is not None and approx_kl_div > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: {approx_kl_div:.2f}")
                    break
                self.policy.optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()
            self._n_updates += 1
            if not continue_training:
                break
        self.decisions_learned += buffer.decisions
        mean = lambda xs: float(np.mean(xs)) if len(xs) else float("nan")  # noqa: E731
        self.logger.record("train/entropy_loss", mean(entropy_losses))
        self.logger.record("train/policy_gradient_loss", mean(pg_losses))
        self.logger.record("train/value_loss", mean(value_losses))
        self.logger.record("train/approx_kl", mean(approx_kl_divs))
        self.logger.record("train/clip_fraction", mean(clip_fractions))
        self.logger.record("train/loss", loss.item())
        if buffer.decisions:
            self.logger.record("train/explained_variance", explained_variance(buffer.decision_values, buffer.returns))
        self.logger.record("train/decisions", self.decisions_learned)
        self.logger.record("train/decision_fraction", buffer.decisions / max(buffer.real[: buffer.pos].sum(), 1))
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)
