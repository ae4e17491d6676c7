"""RLlib view of :class:`~envs.parallel.MeshEconomyEnv` (needs the ``[marl]`` extra).

RLlib's own ``ParallelPettingZooEnv`` wraps the environment as it is; :func:`make_rllib_env` is the
env creator RLlib calls on every env runner (``env_config`` keys: ``scenario``, a shipped name or
a YAML path; ``episode_steps``, ``None`` keeps the scenario's; ``flat_obs``), and :func:`register`
names it ``"mesh_economy"`` for ``PPOConfig().environment("mesh_economy", env_config=...)``.

Every env runner's copy draws fresh entropy on its first reset (``MeshEconomyEnv`` seeds the
Gymnasium way), so runners play different meshes; ``config.debugging(seed=s)`` makes a run
reproducible. The policy network RLlib needs for the ``observation`` / ``action_mask`` dict is the
project's slot scorer, shipped as ``training.rllib_module.SlotScorerRLModule``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv
from ray.tune.registry import register_env

from envs.parallel import MeshEconomyEnv
from envs.scenario import as_scenario

ENV_NAME = "mesh_economy"


def make_rllib_env(env_config: Mapping[str, Any] | None = None) -> ParallelPettingZooEnv:
    """RLlib multi-agent env over a fresh :class:`MeshEconomyEnv` (see the module docstring)."""
    config = dict(env_config or {})
    unknown = set(config) - {"scenario", "episode_steps", "flat_obs"}
    if unknown:
        raise ValueError(f"unknown env_config keys {sorted(unknown)}; expected scenario, episode_steps, flat_obs")
    scenario = as_scenario(config.get("scenario", "default"))
    if config.get("episode_steps") is not None:
        scenario = scenario.replace(episode_steps=int(config["episode_steps"]))
    return ParallelPettingZooEnv(MeshEconomyEnv(scenario, flat_obs=bool(config.get("flat_obs", False))))


def register(name: str = ENV_NAME) -> str:
    """Register :func:`make_rllib_env` with Ray Tune under ``name``; returns the name."""
    register_env(name, make_rllib_env)
    return name


__all__ = ["ENV_NAME", "make_rllib_env", "register"]
