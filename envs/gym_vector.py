"""Gymnasium ``VectorEnv`` view of :class:`~envs.core.MeshCore`: one sub-environment per agent slot.

The same view as ``envs.vector.MeshVecEnv`` (SB3), for libraries that batch through gymnasium's
vector API, RLlib's single-agent env runner above all (``training.rllib``): a batch of meshes is
stepped through the core at once, every honest node of every mesh is one sub-environment, and
observations come out as one batched ``Dict(observation=(num_envs, 8, 27) float32,
action_mask=(num_envs, 8) int8)`` — no dict per agent per step as through PettingZoo. Agents with
nothing to route get only slot 0 in their mask (a single valid action), as in ``envs.parallel``.

All meshes share ``episode_steps``, so every slot truncates on the same step; autoreset follows
gymnasium's ``NEXT_STEP`` mode (what RLlib expects): the step after a truncation resets every mesh
and returns the first observation with reward 0. With one scenario every slot is a real agent;
a mix pads smaller meshes (their slots see all-zero observations and reward 0).
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from agents.features import N_FEATURES, SLOTS
from envs.core import MeshCore
from envs.scenario import Scenario, as_scenario


class MeshGymVectorEnv(VectorEnv):
    """``n_meshes`` meshes of ``scenarios`` as a gymnasium vector env of their agent slots.

    :param scenarios: a scenario (name, path, dict or object) or a mix of them.
    :param n_meshes: meshes stepped together; ``num_envs = n_meshes x honest nodes per mesh``.
    :param seed: seed of the core's generator (None: fresh entropy on the first reset, as gymnasium).
    """

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, scenarios: Any, n_meshes: int = 1, seed: int | None = None) -> None:
        mix = scenarios if isinstance(scenarios, list) else [scenarios]
        mix = [as_scenario(s) if not isinstance(s, Scenario) else s for s in mix]
        if n_meshes < 1:
            raise ValueError(f"n_meshes must be >= 1, got {n_meshes}")
        self.core = MeshCore(mix, n_meshes=n_meshes, seed=0 if seed is None else seed)
        self._fresh_entropy = seed is None
        self.num_envs = n_meshes * self.core.agents_per_mesh
        self.single_observation_space = gymnasium.spaces.Dict(
            {
                "observation": gymnasium.spaces.Box(-np.inf, np.inf, (SLOTS, N_FEATURES), np.float32),
                "action_mask": gymnasium.spaces.Box(0, 1, (SLOTS,), np.int8),
            }
        )
        self.single_action_space = gymnasium.spaces.Discrete(SLOTS)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._needs_reset = True

    def _observe(self) -> dict[str, np.ndarray]:
        core = self.core
        batch = core.agent_observation()
        mask = batch.action_mask
        idle = ~core.agent_active()
        mask[idle] = 0
        mask[idle, 0] = 1
        return {"observation": batch.features, "action_mask": mask}

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        """Start an episode in every mesh (``seed``: reseed the core first; a list uses its first entry)."""
        if isinstance(seed, (list, tuple)):
            seed = seed[0] if seed else None
        if seed is None and self._fresh_entropy:
            self.core.np_random = np.random.default_rng()
            self._fresh_entropy = False
        self.core.reset(seed=seed)
        self._needs_reset = False
        return self._observe(), {}

    def step(self, actions: np.ndarray):
        """Route every active agent's piece to ``actions[slot]``; after a truncation, reset instead."""
        n = self.num_envs
        if self._needs_reset:
            obs, infos = self.reset()
            return obs, np.zeros(n, dtype=np.float32), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), infos
        core = self.core
        core.step(np.asarray(actions, dtype=np.int64).reshape(n))
        rewards = np.where(core.agent_valid, core.reward[core.agent_rows], 0.0).astype(np.float32)
        done = core.t >= core.episode_steps
        self._needs_reset = done
        truncated = np.full(n, done)
        return self._observe(), rewards, np.zeros(n, dtype=bool), truncated, {}


def make_gym_vector_env(env_config: dict[str, Any] | None = None) -> MeshGymVectorEnv:
    """Env creator for RLlib's ``VECTOR_ENTRY_POINT`` mode: ``num_envs`` (set by RLlib) agent slots.

    ``env_config`` keys: ``scenario`` (name or path), ``episode_steps`` (None keeps the scenario's),
    ``seed`` (base seed; each env runner adds its ``worker_index``) and ``num_envs``, which must be a
    multiple of the scenario's honest count (``training.rllib`` sets it so).
    """
    config = dict(env_config or {})
    scenario = as_scenario(config.get("scenario", "default"))
    if config.get("episode_steps") is not None:
        scenario = scenario.replace(episode_steps=int(config["episode_steps"]))
    per_mesh = scenario.honest_count()
    num_envs = int(config.get("num_envs", per_mesh))
    if num_envs % per_mesh:
        raise ValueError(f"num_envs ({num_envs}) must be a multiple of the scenario's {per_mesh} honest nodes")
    seed = config.get("seed")
    if seed is not None:
        seed = int(seed) + int(getattr(env_config, "worker_index", 0))
    return MeshGymVectorEnv(scenario, n_meshes=num_envs // per_mesh, seed=seed)
