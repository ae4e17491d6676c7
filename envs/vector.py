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

Learned attackers (``adversaries.learned``, ``envs.learned``) are driven by a fixed opponent:
``opponents=[...]`` lists attacker policies (a frozen export, ``agents.attacker.load_attacker``) and
scripted kind names. Each mix scenario with learned nodes is then played half as itself, its learned
nodes driven by one policy of the list drawn per mesh per episode, and half with its learned
fraction given to one of the scripted kinds (``Scenario.with_learned_as``; all of it when the list
names no policy); without opponents the learned nodes play the null action (they act honestly).
:meth:`MeshVecEnv.set_attacker_policies` replaces the policies between training phases (adversarial
training, ``training.robust``). ``envs.attacker_vector.AttackerVecEnv`` is the other side: the
attackers as the vector, the honest nodes driven by a fixed routing policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from agents.attacker import ACTION_NVEC, AttackerPolicy
from agents.features import N_FEATURES, SLOTS
from envs.core import MeshCore
from envs.scenario import ADVERSARY_KINDS, Scenario, ScenarioError, as_scenario


class CoreVecEnv(VecEnv):
    """The ``VecEnv`` plumbing shared by the two views of one :class:`~envs.core.MeshCore`."""

    core: MeshCore
    _seed: int | None = None

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

    def _episode_infos(self, observation: np.ndarray, valid: np.ndarray, per_mesh: int) -> list[dict[str, Any]]:
        """The infos of the last step of an episode: terminal observations, episode returns, mesh metrics."""
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in range(self.num_envs):
            infos[i]["terminal_observation"] = observation[i]
            infos[i]["TimeLimit.truncated"] = True
            if valid[i]:
                infos[i]["episode"] = {"r": float(self._returns[i]), "l": self.core.t}
        for b, m in enumerate(self.core.metrics()):
            infos[b * per_mesh]["mesh_metrics"] = m
        return infos


def expand_for_opponents(mix: list[Scenario], kinds: Sequence[str], with_policies: bool = True) -> list[Scenario]:
    """The mix with every scenario that has learned nodes played half by the learned policies and
    half (spread evenly) as each scripted ``kind`` in the learned nodes' place; without policies
    (``with_policies=False``) only as the scripted kinds."""
    if not kinds:
        return mix
    out: list[Scenario] = []
    for sc in mix:
        if sc.learned_count() == 0:
            out.append(sc)
            continue
        out += [sc] * (len(kinds) if with_policies else 0) + [sc.with_learned_as(k) for k in kinds]
    return out


class MeshVecEnv(CoreVecEnv):
    """Batch of meshes as a stable-baselines3 vectorised environment.

    :param scenarios: one scenario or a list (a mix sampled per mesh per episode); names, paths,
        dicts or :class:`~envs.scenario.Scenario` objects.
    :param n_meshes: mesh copies stepped together.
    :param seed: seed of the core's generator.
    :param welfare_weight: override every scenario's ``reward.welfare_weight`` (None keeps them).
    :param opponents: what drives learned attackers: attacker policies and scripted kind names
        (see the module docstring); None: the null action.
    """

    def __init__(
        self,
        scenarios: Sequence[str | dict | Scenario] | str | dict | Scenario,
        n_meshes: int = 8,
        seed: int = 0,
        welfare_weight: float | None = None,
        opponents: Sequence[AttackerPolicy | str] | None = None,
    ) -> None:
        if isinstance(scenarios, (str, dict, Scenario)):
            scenarios = [scenarios]
        mix = [as_scenario(s) for s in scenarios]
        if welfare_weight is not None:
            mix = [s.replace(reward={"welfare_weight": welfare_weight}) for s in mix]
        opponents = list(opponents or [])
        kinds = [o for o in opponents if isinstance(o, str)]
        unknown = [k for k in kinds if k not in ADVERSARY_KINDS]
        if unknown:
            known = ", ".join(ADVERSARY_KINDS)
            raise ScenarioError(f"opponents: unknown scripted kind '{unknown[0]}' (known: {known})")
        self.attacker_policies: list[AttackerPolicy] = [o for o in opponents if not isinstance(o, str)]
        self.core = MeshCore(
            expand_for_opponents(mix, kinds, bool(self.attacker_policies)), n_meshes=n_meshes, seed=seed
        )
        self._opponent_rng = np.random.default_rng([seed, 1])
        self._opponent_of_mesh = np.zeros(n_meshes, dtype=np.int64)
        observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (SLOTS, N_FEATURES), np.float32)
        action_space = gymnasium.spaces.Discrete(SLOTS)
        self.render_mode = None
        super().__init__(n_meshes * self.core.agents_per_mesh, observation_space, action_space)
        self._actions = np.zeros(self.num_envs, dtype=np.int64)
        self._returns = np.zeros(self.num_envs)
        self._seed = None
        self._reset_core()

    def set_attacker_policies(self, policies: Sequence[AttackerPolicy]) -> None:
        """Drive learned attackers by these policies from the next episode on (the scripted part stays)."""
        self.attacker_policies = list(policies)

    def _reset_core(self) -> None:
        if self._seed is not None:  # seed() replays the opponents' draws too
            self._opponent_rng = np.random.default_rng([self._seed, 1])
        self.core.reset(seed=self._seed)
        self._seed = None
        self._returns[:] = 0.0
        if self.attacker_policies:
            self._opponent_of_mesh = self._opponent_rng.integers(len(self.attacker_policies), size=self.core.n_meshes)
        self._obs = self.core.agent_observation()

    def attacker_actions(self) -> np.ndarray | None:
        """The opponents' actions for the learned nodes this step (None: none, or the null action)."""
        core = self.core
        if not core.has_learned or not self.attacker_policies:
            return None
        obs = core.attacker_observation()
        mesh_of_slot = np.repeat(np.arange(core.n_meshes), core.attackers_per_mesh)
        owner = self._opponent_of_mesh[mesh_of_slot]
        actions = np.zeros((obs.shape[0], len(ACTION_NVEC)), dtype=np.int64)
        for j in np.unique(owner[core.attacker_valid]):
            rows = np.flatnonzero((owner == j) & core.attacker_valid)
            actions[rows] = self.attacker_policies[j].act(obs[rows], rng=self._opponent_rng)
        return actions

    # -------------------------------------------------------------- VecEnv API

    def reset(self) -> np.ndarray:
        self._reset_core()
        return self._obs.features

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self):
        core = self.core
        core.step(self._actions, self.attacker_actions())
        rewards = np.where(core.agent_valid, core.reward[core.agent_rows], 0.0).astype(np.float32)
        self._returns += rewards
        done = core.t >= core.episode_steps
        dones = np.full(self.num_envs, done)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if done:
            last = core.agent_observation().features
            infos = self._episode_infos(last, core.agent_valid, core.agents_per_mesh)
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
