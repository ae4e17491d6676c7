"""The mesh economy as a BenchMARL task (needs the ``[marl]`` extra).

Importing this module registers the task ``openstreaming/mesh_economy`` in BenchMARL's task
registry, so any BenchMARL algorithm runs on it::

    import envs.benchmarl  # registers openstreaming/mesh_economy
    from benchmarl.algorithms import MappoConfig
    from benchmarl.experiment import Experiment, ExperimentConfig
    from benchmarl.models import MlpConfig
    from envs.benchmarl import MeshEconomyTask

    task = MeshEconomyTask.MESH_ECONOMY.get_task({"scenario": "default", "episode_steps": 100})
    mlp = MlpConfig.get_from_yaml()
    Experiment(task, MappoConfig.get_from_yaml(), mlp, critic_model_config=mlp, seed=0,
               config=ExperimentConfig.get_from_yaml()).run()

Task config: ``scenario`` (a shipped name or a YAML path; default ``"default"``) and
``episode_steps`` (``None`` keeps the scenario's). Observations are flat (``flat_obs=True``):
BenchMARL's default MLPs need 1-D boxes. Actions are discrete with the environment's action mask
(inactive agents have a single valid action). Every honest node is in one group, ``"agents"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import benchmarl.environments as bm_envs
from benchmarl.environments.common import Task, TaskClass
from tensordict import TensorDictBase
from torchrl.data import Composite
from torchrl.envs import EnvBase

from envs.scenario import as_scenario
from envs.torchrl import GROUP, make_torchrl_env

ENV_NAME = "openstreaming"


def _scenario(config: dict[str, Any]):
    scenario = as_scenario(config.get("scenario", "default"))
    steps = config.get("episode_steps")
    return scenario if steps is None else scenario.replace(episode_steps=int(steps))


def _only(spec: Composite, key: str) -> Composite | None:
    spec = spec.clone()
    group = spec[GROUP]
    for k in list(group.keys()):
        if k != key:
            del group[k]
    return None if group.is_empty() else spec


class MeshEconomyClass(TaskClass):
    """BenchMARL's task class for :class:`~envs.parallel.MeshEconomyEnv` (see the module docstring)."""

    def get_env_fun(
        self, num_envs: int, continuous_actions: bool, seed: int | None, device: Any
    ) -> Callable[[], EnvBase]:
        scenario = _scenario(self.config)
        return lambda: make_torchrl_env(scenario, seed=seed, flat_obs=True, device=device)

    def supports_continuous_actions(self) -> bool:
        return False

    def supports_discrete_actions(self) -> bool:
        return True

    def max_steps(self, env: EnvBase) -> int:
        return _scenario(self.config).episode_steps

    def has_render(self, env: EnvBase) -> bool:
        return False

    def group_map(self, env: EnvBase) -> dict[str, list[str]]:
        return env.group_map

    def observation_spec(self, env: EnvBase) -> Composite:
        return _only(env.observation_spec, "observation")

    def action_mask_spec(self, env: EnvBase) -> Composite | None:
        return _only(env.observation_spec, "action_mask")

    def info_spec(self, env: EnvBase) -> Composite | None:
        return _only(env.observation_spec, "info")

    def state_spec(self, env: EnvBase) -> Composite | None:
        return None

    def action_spec(self, env: EnvBase) -> Composite:
        return env.full_action_spec

    @staticmethod
    def log_info(batch: TensorDictBase) -> dict[str, float]:
        """Share of agent-steps with a piece to route, logged beside BenchMARL's own metrics."""
        active = batch.get(("next", GROUP, "info", "active"), None)
        return {} if active is None else {"agents/active_share": float(active.float().mean())}

    @staticmethod
    def env_name() -> str:
        return ENV_NAME


class MeshEconomyTask(Task):
    """BenchMARL task enum: ``MESH_ECONOMY`` (config keys ``scenario``, ``episode_steps``)."""

    MESH_ECONOMY = None

    @staticmethod
    def associated_class():
        return MeshEconomyClass

    def get_task(self, config: dict[str, Any] | None = None) -> TaskClass:
        """The task with ``config`` (default: the ``default`` scenario, its own episode length)."""
        return self.associated_class()(name=self.name, config=dict(config or {"scenario": "default"}))


bm_envs.task_config_registry[f"{ENV_NAME}/mesh_economy"] = MeshEconomyTask.MESH_ECONOMY

__all__ = ["ENV_NAME", "MeshEconomyClass", "MeshEconomyTask"]
