"""SB3 ``VecEnv`` of the attacker team: one vector slot per learned node per mesh, honest nodes frozen.

The mirror of ``envs.vector.MeshVecEnv``: the scenario's ``adversaries.learned`` nodes
(``envs.learned``) are the vector's slots, so one attacker policy is shared by every learned node
of every mesh copy, and the honest nodes are driven by a fixed routing policy (``seed``,
``oracle``, an exported policy: anything with ``agents.baselines.RoutingPolicy``'s ``act``), a
best-response setting. Observations are ``agents.attacker.ATTACKER_FEATURES`` rows, actions
``MultiDiscrete(ACTION_NVEC)`` (SB3's ``PPO`` with ``"MlpPolicy"`` takes both as they are);
rewards follow each scenario's ``adversaries.learned.objective``. Padding slots (a mesh with fewer
learned nodes than the mix's largest) have zero observations and rewards.

Episodes end together, as in ``MeshVecEnv``: ``infos[i]["terminal_observation"]``, ``"episode"``
on every real slot and ``"mesh_metrics"`` on the first slot of each mesh.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium
import numpy as np

from agents.attacker import ACTION_NVEC, N_ATTACKER_FEATURES
from agents.baselines import RoutingPolicy
from envs.core import MeshCore
from envs.scenario import Scenario, ScenarioError, as_scenario
from envs.vector import CoreVecEnv


class AttackerVecEnv(CoreVecEnv):
    """Learned attackers as the vector, against a frozen defender.

    :param scenarios: one scenario or a mix (names, paths, dicts, Scenario objects); every one must
        have learned nodes.
    :param defender: the routing policy of the honest nodes.
    :param n_meshes: mesh copies stepped together.
    :param seed: seed of the core's generator (and of the defender's random draws).
    """

    def __init__(
        self,
        scenarios: Sequence[str | dict | Scenario] | str | dict | Scenario,
        defender: RoutingPolicy,
        n_meshes: int = 16,
        seed: int = 0,
    ) -> None:
        if isinstance(scenarios, (str, dict, Scenario)):
            scenarios = [scenarios]
        mix = [as_scenario(s) for s in scenarios]
        without = [s.name for s in mix if s.learned_count() == 0]
        if without:
            raise ScenarioError(
                f"scenario '{without[0]}' has no learned attackers: set adversaries.learned (e.g. {{fraction: 0.15}})"
            )
        self.core = MeshCore(mix, n_meshes=n_meshes, seed=seed)
        self.defender = defender
        self._rng = np.random.default_rng([seed, 2])
        observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (N_ATTACKER_FEATURES,), np.float32)
        action_space = gymnasium.spaces.MultiDiscrete(ACTION_NVEC)
        self.render_mode = None
        super().__init__(n_meshes * self.core.attackers_per_mesh, observation_space, action_space)
        self._actions = np.zeros((self.num_envs, len(ACTION_NVEC)), dtype=np.int64)
        self._returns = np.zeros(self.num_envs)
        self._seed = None
        self._obs = self._reset_core()

    def _reset_core(self) -> np.ndarray:
        if self._seed is not None:  # seed() replays the defender's draws too
            self._rng = np.random.default_rng([self._seed, 2])
        self.core.reset(seed=self._seed)
        self._seed = None
        self._returns[:] = 0.0
        return self.core.attacker_observation()

    def defender_actions(self) -> np.ndarray:
        """The frozen defender's slot per honest agent slot this step."""
        core = self.core
        obs = core.agent_observation()
        oracle = core.oracle_slots() if self.defender.needs_oracle else None
        return self.defender.act(obs.features, obs.action_mask, rng=self._rng, oracle_actions=oracle)

    def reset(self) -> np.ndarray:
        self._obs = self._reset_core()
        return self._obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs, len(ACTION_NVEC))

    def step_wait(self):
        core = self.core
        core.step(self.defender_actions(), self._actions)
        rewards = core.attacker_reward.astype(np.float32)
        self._returns += rewards
        done = core.t >= core.episode_steps
        dones = np.full(self.num_envs, done)
        if done:
            infos = self._episode_infos(core.attacker_observation(), core.attacker_valid, core.attackers_per_mesh)
            self.reset()
        else:
            infos = [{} for _ in range(self.num_envs)]
            self._obs = core.attacker_observation()
        return self._obs, rewards, dones, infos
