"""The training environment: ``envs.vector.MeshVecEnv`` behind a reward guard for robust PPO.

:class:`RewardGuard` replaces non-finite observations and rewards and clips rewards to
``[-clip, clip]``, so that one extreme step can never wreck the reward normaliser; the number of
clipped rewards is reported for tensorboard (``charts/reward_clipped``). It is a no-op on
well-behaved steps. (It was first written for two environment bugs — a cross-mesh distance lookup
by idle agents and runaway overpricer quotes — both since fixed in ``envs.core`` with regression
tests in ``tests/envs/test_core_regressions.py``.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from envs.vector import MeshVecEnv


class RewardGuard(VecEnvWrapper):
    """Finite observations, finite rewards clipped to ``[-clip, clip]``; forwards ``action_masks``.

    :param venv: the wrapped vector env.
    :param clip: absolute bound of a step reward.
    """

    def __init__(self, venv: VecEnv, clip: float = 10.0) -> None:
        super().__init__(venv)
        self.clip = clip
        #: rewards clipped or replaced since the last :meth:`pop_clipped` call
        self.clipped = 0
        self._returns = np.zeros(venv.num_envs)

    def reset(self) -> np.ndarray:
        return np.nan_to_num(self.venv.reset(), nan=0.0, posinf=0.0, neginf=0.0)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        bad = ~np.isfinite(rewards) | (np.abs(rewards) > self.clip)
        if bad.any():
            self.clipped += int(bad.sum())
            rewards = np.clip(np.nan_to_num(rewards, nan=0.0), -self.clip, self.clip).astype(np.float32)
        if not np.isfinite(obs).all():
            obs = np.nan_to_num(obs, nan=0.0, posinf=0.0, neginf=0.0)
        self._returns += rewards
        if dones.any():  # episode returns of the guarded rewards (the raw ones can be inf)
            for i in np.flatnonzero(dones):
                if "episode" in infos[i]:
                    infos[i]["episode"]["r"] = float(self._returns[i])
            self._returns[dones] = 0.0
        return obs, rewards, dones, infos

    def action_masks(self) -> np.ndarray:
        """The wrapped env's masks (what ``MaskablePPO`` asks for)."""
        return self.venv.action_masks()

    def pop_clipped(self) -> int:
        """Clipped-reward count since the last call, then reset it."""
        n, self.clipped = self.clipped, 0
        return n


def make_env(
    scenarios: Sequence[str] | str,
    n_meshes: int,
    seed: int,
    welfare_weight: float | None = None,
    reward_clip: float = 10.0,
) -> RewardGuard:
    """``MeshVecEnv`` over the mix, guarded (see the module docstring).

    :param scenarios: scenario names or paths (a mix sampled per mesh per episode).
    :param n_meshes: mesh copies stepped together.
    :param seed: seed of the core's generator.
    :param welfare_weight: override of every scenario's ``reward.welfare_weight`` (None keeps them).
    :param reward_clip: absolute bound of a step reward.
    """
    env = MeshVecEnv(list(scenarios) if not isinstance(scenarios, str) else scenarios, n_meshes, seed, welfare_weight)
    return RewardGuard(env, reward_clip)
