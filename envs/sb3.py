"""SuperSuit + stable-baselines3 view of :class:`~envs.parallel.MeshEconomyEnv`, for ``MaskablePPO``.

SuperSuit turns the parallel env into an SB3 ``VecEnv`` as it is (one vector slot per agent per
copy, observations a dict of ``observation`` and ``action_mask``). :class:`ActionMaskVecEnv` is
the one step SB3 needs on top: it hands the policy the ``observation`` array and answers
sb3-contrib's ``action_masks()`` from the ``action_mask`` key::

    from sb3_contrib import MaskablePPO
    from envs.sb3 import make_sb3_vec_env
    from training.policy import SlotScorerPolicy

    venv = make_sb3_vec_env("default", copies=2, seed=0)
    MaskablePPO(SlotScorerPolicy, venv, n_steps=64, batch_size=256).learn(2_000)

With ``flat_obs=True`` the observation is 1-D and SB3's ``"MlpPolicy"`` works too. (The project's
own training uses ``envs.vector.MeshVecEnv``, which batches meshes inside one core and is faster.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import supersuit
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from envs.parallel import MeshEconomyEnv
from envs.scenario import Scenario


class ActionMaskVecEnv(VecEnvWrapper):
    """Unpack SuperSuit's dict observations: ``observation`` to the policy, ``action_mask`` to ``action_masks()``.

    :param venv: an SB3 ``VecEnv`` whose observations are ``{"observation", "action_mask"}`` dicts.
    """

    def __init__(self, venv: VecEnv) -> None:
        space = venv.observation_space
        if not hasattr(space, "spaces") or {"observation", "action_mask"} - set(space.spaces):
            raise ValueError(f"expected Dict(observation, action_mask) observations, got {space}")
        super().__init__(venv, observation_space=space["observation"])
        self._masks = np.ones((venv.num_envs, venv.action_space.n), dtype=bool)
        self._pending_seed: int | None = None

    def _unpack(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        self._masks = np.asarray(obs["action_mask"]).astype(bool)
        return np.asarray(obs["observation"])

    def seed(self, seed: int | None = None) -> list[int | None]:
        """Seed the next reset: copy ``i`` of SuperSuit's vector gets ``seed + i``.

        SuperSuit 3.11's SB3 wrapper cannot pass a seed on (its ``reset(seed)`` calls a ``seed()``
        its inner vector lacks), so the next reset seeds that inner vector directly.
        """
        self._pending_seed = seed
        return [seed] * self.num_envs

    def reset(self) -> np.ndarray:
        seed, self._pending_seed = self._pending_seed, None
        if seed is None:
            return self._unpack(self.venv.reset())
        obs, self.venv.reset_infos = self.venv.venv.reset(seed=seed)
        return self._unpack(obs)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        for info in infos:
            terminal = info.get("terminal_observation")
            if isinstance(terminal, dict):
                info["terminal_observation"] = terminal["observation"]
        return self._unpack(obs), rewards, dones, infos

    def action_masks(self) -> np.ndarray:
        """``(num_envs, SLOTS)`` bool masks of the current observations (what ``MaskablePPO`` asks for)."""
        return self._masks

    def has_attr(self, attr_name: str) -> bool:
        if attr_name == "action_masks":
            return True
        try:
            self.venv.getattr_recursive(attr_name)
        except AttributeError:
            return False
        return True

    def env_method(self, method_name: str, *method_args: Any, indices=None, **method_kwargs: Any) -> list[Any]:
        if method_name == "action_masks":
            idx = range(self.num_envs) if indices is None else np.atleast_1d(indices)
            return [self._masks[i] for i in idx]
        return self.venv.env_method(method_name, *method_args, indices=indices, **method_kwargs)


def make_sb3_vec_env(
    scenario: str | dict | Scenario = "default", copies: int = 1, seed: int | None = None, flat_obs: bool = False
) -> ActionMaskVecEnv:
    """``copies`` environments through SuperSuit's vector conversion, ready for ``MaskablePPO``.

    :param scenario: scenario name, YAML path, dict or :class:`~envs.scenario.Scenario`.
    :param copies: environment copies concatenated (each agent of each copy is one vector slot).
    :param seed: seed of the first reset (``None``: every copy draws fresh entropy).
    :param flat_obs: 1-D observations, for SB3's ``"MlpPolicy"``.
    """
    vec = supersuit.pettingzoo_env_to_vec_env_v1(MeshEconomyEnv(scenario, flat_obs=flat_obs))
    venv = ActionMaskVecEnv(supersuit.concat_vec_envs_v1(vec, copies, num_cpus=0, base_class="stable_baselines3"))
    venv.seed(seed)
    return venv


__all__ = ["ActionMaskVecEnv", "make_sb3_vec_env"]
