"""SB3 ``VecEnv`` view of :class:`~envs.core.MeshCore`: one vector slot per honest node per mesh.

Parameter sharing across agents comes for free: every honest node of every mesh copy is one
slot of the vector, so a single policy learns from all of them. With a mix of scenarios the
number of slots per mesh is the largest honest count of the mix; the slots a smaller mesh does
not use are *padding*.

Masking: :meth:`MeshVecEnv.action_masks` (what sb3-contrib's ``MaskablePPO`` asks for) gives the
real neighbour mask to agents with a piece to route, and only slot 0 to agents without one and
to padding. A single valid action has log-probability 0 and entropy 0, so those steps add
nothing to the policy gradient; their reward is 0 apart from money that reached the node.

All meshes share ``episode_steps``, so every slot is done on the same step; the vector then
resets every mesh (new graphs and roles from the core's generator) and, as SB3 expects, returns
the first observation of the new episode with the last one in ``infos[i]["terminal_observation"]``.
At the end of an episode the first slot of each mesh carries ``infos[i]["mesh_metrics"]`` (that
mesh's episode metrics) and every real slot carries ``infos[i]["episode"] = {"r", "l"}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from agents.features import N_FEATURES, SLOTS
from envs.core import MeshCore
from envs.scenario import Scenario, as_scenario


class MeshVecEnv(VecEnv):
    """Batch of meshes as a stable-baselines3 vectorised environment.

    :param scenarios: one scenario or a list (a mix sampled per mesh per episode); names, paths,
        dicts or :class:`~envs.scenario.Scenario` objects.
    :param n_meshes: mesh copies stepped together.
    :param seed: seed of the core's generator.
    :param welfare_weight: override every scenario's ``reward.welfare_weight`` (None keeps them).
    """

    def __init__(
        self,
        scenarios: Sequence[str | dict | Scenario] | str | dict | Scenario,
        n_meshes: int = 8,
        seed: int = 0,
        welfare_weight: float | None = None,
    ) -> None:
        if isinstance(scenarios, (str, dict, Scenario)):
            scenarios = [scenarios]
        mix = [as_scenario(s) for s in scenarios]
        if welfare_weight is not None:
            mix = [s.replace(reward={"welfare_weight": welfare_weight}) for s in mix]
        self.core = MeshCore(mix, n_meshes=n_meshes, seed=seed)
        observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (SLOTS, N_FEATURES), np.float32)
        action_space = gymnasium.spaces.Discrete(SLOTS)
        self.render_mode = None
        super().__init__(n_meshes * self.core.agents_per_mesh, observation_space, action_space)
        self._actions = np.zeros(self.num_envs, dtype=np.int64)
        self._returns = np.zeros(self.num_envs)
        self._seed: int | None = None
        self.core.reset()
        self._obs = self.core.agent_observation()

    # -------------------------------------------------------------- VecEnv API

    def reset(self) -> np.ndarray:
        self.core.reset(seed=self._seed)
        self._seed = None
        self._returns[:] = 0.0
        self._obs = self.core.agent_observation()
        return self._obs.features

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self):
        core = self.core
        core.step(self._actions)
        rewards = np.where(core.agent_valid, core.reward[core.agent_rows], 0.0).astype(np.float32)
        self._returns += rewards
        done = core.t >= core.episode_steps
        dones = np.full(self.num_envs, done)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if done:
            last = core.agent_observation().features
            metrics = core.metrics()
            per_mesh = core.agents_per_mesh
            for i in range(self.num_envs):
                infos[i]["terminal_observation"] = last[i]
                infos[i]["TimeLimit.truncated"] = True
                if core.agent_valid[i]:
                    infos[i]["episode"] = {"r": float(self._returns[i]), "l": core.t}
            for b, m in enumerate(metrics):
                infos[b * per_mesh]["mesh_metrics"] = m
            self.reset()
        else:
            self._obs = core.agent_observation()
        return self._obs.features, rewards, dones, infos

    def action_masks(self) -> np.ndarray:
        """``(num_envs, SLOTS)`` bool: the neighbour mask, or only slot 0 where nothing to route."""
        active = self.core.agent_active()
        masks = self._obs.action_mask.astype(bool)
        masks[~active] = False
        masks[~active, 0] = True
        return masks

    def oracle_actions(self) -> np.ndarray:
        """The oracle's choice per slot (privileged; for the ``oracle`` baseline)."""
        return self.core.oracle_slots()

    def close(self) -> None:
        """Nothing to release."""

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        self._seed = seed
        return [seed] * self.num_envs

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        idx = self._indices(indices)
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks[i] for i in idx]
        result = getattr(self, method_name)(*method_args, **method_kwargs)
        return [result] * len(idx)

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def has_attr(self, attr_name: str) -> bool:
        return hasattr(self, attr_name)

    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)
