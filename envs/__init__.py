"""The mesh economy: scenario schema, topologies, vectorised core, PettingZoo env, SB3 adapter."""

from envs.core import MeshCore
from envs.parallel import MeshEconomyEnv
from envs.scenario import Scenario, ScenarioError, as_scenario, load_scenario, shipped_scenarios

__all__ = [
    "MeshCore",
    "MeshEconomyEnv",
    "Scenario",
    "ScenarioError",
    "as_scenario",
    "load_scenario",
    "shipped_scenarios",
]
