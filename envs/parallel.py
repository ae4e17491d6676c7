"""``MeshEconomyEnv``: the streaming mesh and its payment economy as a PettingZoo ``ParallelEnv``.

Agents
    The honest nodes, named ``agent_0`` .. ``agent_{H-1}`` (H = nodes minus dishonest nodes), and,
    when the scenario has ``adversaries.learned`` nodes, the attacker team ``attacker_0`` ..
    ``attacker_{L-1}`` (see "Attacker agents" below; ``attacker_policy=`` drives them instead).
    Which graph node each agent is changes with the episode seed. Dishonest nodes (bandwidth
    liars, blackholes, overpricers, forgers, grey holes, on-off, selective nodes, whitewashers)
    are scripted and are not agents. An agent that leaves (``dynamics.churn``) or turns blackhole
    (``dynamics.turn_dishonest``) stays in ``agents``: it is inactive (nothing to route, its
    action ignored) until it comes back, so the agent set never changes within an episode.

Action space
    ``Discrete(8)``: the neighbour slot that gets the node's head-of-line piece. An action on a
    masked slot ``a`` (beyond the node's degree) is replaced by ``a % degree``; an agent with no
    piece to route this step (``info["active"]`` is False) has its action ignored.

Observation space
    ``Dict(observation=Box(-inf, inf, (8, 27), float32), action_mask=Box(0, 1, (8,), int8))``;
    with ``flat_obs=True`` the ``observation`` is the same rows flattened, ``Box(-inf, inf, (216,))``
    (for libraries whose default networks need 1-D boxes; row ``k`` is ``[27 k : 27 (k + 1)]``).
    One row per neighbour slot, the columns of ``agents.features.FEATURES``: what the node's
    memory knows of the neighbour (claimed vs observed bandwidth, quote vs fair price, success
    rate, cooperation, queue delay, latency to the destination, the origin's coherence verdict and
    route score) followed by the piece's features. Rows of masked slots are zero.

Action mask
    An agent with a piece to route gets its neighbour mask (slots below its degree). An agent with
    nothing to route (three steps in four, typically) gets **a single valid action, slot 0**, as
    ``envs.vector.MeshVecEnv`` gives it: its log-probability and entropy are 0, so a masked
    learner's policy gradient ignores those steps (their reward is only money that reached the node).

Rewards (per step, per agent)
    =====================================  ==========================================
    paid by an upstream node for a hop     + its quote x piece size (*)
    paid to the chosen downstream node     - the downstream quote x piece size (*)
    real forwarding cost                   - own base cost x piece size
    a piece it forwarded is delivered      + welfare_weight x piece value, once per piece
                                           (a node that held the piece twice, in a loop,
                                           gets it once)
    source of a delivered piece            + piece value (paid by the subscriber)
    subscriber of a delivered piece        0 (pays the value, gains it as utility)
    =====================================  ==========================================

    (*) With ``economy.payment: per_hop`` at the hand-over; with ``on_delivery`` (the default)
    when the piece's receipt comes back, and never for a piece that is dropped or expires (a
    forger's unsigned claim is paid as if delivered; with ``receipts: signed`` it is rejected).

Episode
    ``episode_steps`` steps, then every agent is truncated. ``infos[agent]`` is flat and scalar:
    ``active`` (the agent had a piece to route, bool) and ``profit`` (its profit so far, float),
    so TorchRL, BenchMARL and RLlib can stack it. The mesh's metrics (``delivery_rate``,
    ``mean_latency``, ``welfare``, ``dishonest_share``, ``dishonest_payments_share``,
    ``honest_profit_gini``, ``empathy_precision``, ``empathy_recall``, ``forged_receipts_rejected``
    and raw counts, among them ``earned_<kind>`` per node kind) come from
    :meth:`MeshEconomyEnv.episode_summary`.

Attacker agents (``envs.learned``, ``agents.attacker``)
    Observation ``Box(-inf, inf, (16,), float32)``: the ``agents.attacker.ATTACKER_FEATURES`` of
    the node (its piece, queue, neighbours, how often it is chosen, its earnings and drops, what it
    announces). Action ``MultiDiscrete([3, 6, 4, 4])``: handling of its head-of-line piece (forward,
    drop, hold), quote factor, claimed-bandwidth factor, route discount. Reward: the honest value
    lost through it (``objective: damage``) or its profit (``objective: profit``). ``infos`` carry
    ``active`` and ``profit`` as for honest agents. A missing attacker action is the null action
    (an honest node's behaviour). With ``attacker_policy`` (anything with
    ``agents.attacker.AttackerPolicy``'s ``act``) the learned nodes are driven by it and are not agents.

Rendering
    ``render_mode="rgb_array"`` draws the mesh: node fill by honesty (green honest, orange liar,
    black blackhole, purple overpricer, red forger, greys for the adaptive kinds, pink learned
    attacker), node border by trust (mean coherence verdict of its honest neighbours), edge width by
    traffic. ``"ansi"`` returns a one-line summary of the mesh; ``"human"`` is window-less:
    :meth:`~MeshEconomyEnv.render` prints that line and returns None.
    Nothing is drawn or printed by ``step()``; ``render()`` before ``reset()`` raises
    ``gymnasium.error.ResetNeeded``.

Seeding (the Gymnasium way)
    ``reset(seed=s)`` fixes the whole episode: graph, roles, traffic and measurement noise, exactly
    reproducibly. The first ``reset()`` without a seed draws fresh entropy from the OS, so copies of
    the environment (SuperSuit's, RLlib's env runners, BenchMARL's workers) play different meshes;
    later ``reset()`` calls continue the environment's generator. Evaluation passes explicit seeds.

Speed
    Each step builds one observation batch for all agents (``MeshCore.agent_observation``) and
    hands out views of its rows; no per-step metrics are computed.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv

from agents.attacker import ACTION_NVEC, N_ATTACKER_FEATURES, NULL_ACTION, AttackerPolicy
from agents.features import N_FEATURES, SLOTS
from envs.core import HONEST, KIND_NAMES, MeshCore
from envs.scenario import Scenario, as_scenario


class MeshEconomyEnv(ParallelEnv):
    """The mesh economy as a PettingZoo parallel environment (one mesh).

    :param scenario: a shipped scenario name, a YAML path, a dict or a :class:`~envs.scenario.Scenario`.
    :param render_mode: ``None``, ``"rgb_array"``, ``"ansi"`` or ``"human"`` (prints the ansi line).
    :param flat_obs: give ``observation`` as a 1-D box of ``SLOTS * N_FEATURES`` (rows concatenated).
    :param attacker_policy: drive the scenario's learned nodes by this policy (they are then not agents).
    """

    metadata: ClassVar[dict] = {
        "name": "mesh_economy_v0",
        "render_modes": ["rgb_array", "ansi", "human"],
        "is_parallelizable": True,
    }

    def __init__(
        self,
        scenario: str | dict | Scenario = "default",
        render_mode: str | None = None,
        flat_obs: bool = False,
        attacker_policy: AttackerPolicy | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.scenario = as_scenario(scenario)
        self.render_mode = render_mode
        self.flat_obs = bool(flat_obs)
        self.core = MeshCore(self.scenario, n_meshes=1)
        self.honest_agents = [f"agent_{i}" for i in range(self.scenario.honest_count())]
        self.attacker_policy = attacker_policy
        learned = 0 if attacker_policy is not None else self.scenario.learned_count()
        self.attacker_agents = [f"attacker_{i}" for i in range(learned)]
        self.possible_agents = self.honest_agents + self.attacker_agents
        self.agents: list[str] = []
        self._seeded = False
        self._started = False
        self._obs_shape = (SLOTS * N_FEATURES,) if self.flat_obs else (SLOTS, N_FEATURES)

    @functools.cache  # noqa: B019 - spaces are cached per agent by design (PettingZoo convention)
    def observation_space(self, agent: str) -> gymnasium.spaces.Space:
        if agent.startswith("attacker_"):
            return gymnasium.spaces.Box(-np.inf, np.inf, (N_ATTACKER_FEATURES,), np.float32)
        return gymnasium.spaces.Dict(
            {
                "observation": gymnasium.spaces.Box(-np.inf, np.inf, self._obs_shape, np.float32),
                "action_mask": gymnasium.spaces.Box(0, 1, (SLOTS,), np.int8),
            }
        )

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> gymnasium.spaces.Space:
        if agent.startswith("attacker_"):
            return gymnasium.spaces.MultiDiscrete(ACTION_NVEC)
        return gymnasium.spaces.Discrete(SLOTS)

    @property
    def np_random(self) -> np.random.Generator:
        return self.core.np_random

    def _observe(self) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, Any]]]:
        """Observations and infos of every live agent: one batch, one view of it per agent."""
        core = self.core
        batch = core.agent_observation()
        active = core.agent_active()
        features = batch.features.reshape(len(self.honest_agents), *self._obs_shape)
        mask = batch.action_mask
        idle = ~active
        mask[idle] = 0
        mask[idle, 0] = 1
        live = self.agents[: len(self.honest_agents)]
        obs: dict[str, Any] = {
            agent: {"observation": f, "action_mask": m} for agent, f, m in zip(live, features, mask, strict=False)
        }
        profit = (core.balance[core.agent_rows] - core.cost[core.agent_rows]).tolist()
        infos = {agent: {"active": a, "profit": p} for agent, a, p in zip(live, active.tolist(), profit, strict=False)}
        if self.attacker_agents and self.agents:
            rows = core.attacker_rows
            a_obs = core.attacker_observation()
            a_profit = (core.balance[rows] - core.cost[rows]).tolist()
            for i, agent in enumerate(self.attacker_agents):
                obs[agent] = a_obs[i]
            a_active = core.attacker_active().tolist()
            for agent, a, p in zip(self.attacker_agents, a_active, a_profit, strict=True):
                infos[agent] = {"active": a, "profit": p}
        return obs, infos

    def reset(self, seed: int | None = None, options: dict | None = None):
        """Start an episode. ``seed`` fixes it entirely; without one, the first reset draws fresh
        entropy (copies of the env differ) and later resets continue the env's generator."""
        if seed is None and not self._seeded:
            self.core.np_random = np.random.default_rng()  # fresh OS entropy, as gymnasium.Env.reset
        self._seeded = True
        self.core.reset(seed=seed)
        self._attacker_rng = np.random.default_rng(self.core.meshes[0].seed)
        self._started = True
        self.agents = list(self.possible_agents)
        return self._observe()

    def step(self, actions: dict[str, Any]):
        """Route every active agent's head-of-line piece to the chosen neighbour slot."""
        if not self.agents:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        chosen = [actions.get(agent) for agent in self.honest_agents]
        chosen = np.array([0 if a is None else a for a in chosen], dtype=np.int64).reshape(-1)
        core = self.core
        attack = None
        if self.attacker_agents:
            attack = np.array(
                [NULL_ACTION if actions.get(a) is None else actions[a] for a in self.attacker_agents], dtype=np.int64
            ).reshape(len(self.attacker_agents), len(ACTION_NVEC))
        elif self.attacker_policy is not None and core.has_learned:
            attack = self.attacker_policy.act(core.attacker_observation(), rng=self._attacker_rng)
        core.step(chosen, attack)
        rewards = dict(zip(self.honest_agents, core.reward[core.agent_rows].tolist(), strict=True))
        if self.attacker_agents:  # with attacker_policy the learned nodes have rewards but are not agents
            rewards.update(zip(self.attacker_agents, core.attacker_reward.tolist(), strict=True))
        done = core.t >= core.episode_steps
        obs, infos = self._observe()
        terminations = dict.fromkeys(self.agents, False)
        truncations = dict.fromkeys(self.agents, done)
        if done:
            self.agents = []
        return obs, rewards, terminations, truncations, infos

    def episode_summary(self) -> dict[str, float]:
        """The episode's metrics so far (after the last step: the episode's)."""
        if not self._started:
            raise gymnasium.error.ResetNeeded("episode_summary() before reset(): call reset() first")
        return self.core.metrics()[0]

    def _summary_line(self) -> str:
        m = self.core.metrics()[0]
        return (
            f"t={self.core.t:4d} generated={m['generated']:.0f} delivered={m['delivered']:.0f} "
            f"dropped={m['dropped']:.0f} expired={m['expired']:.0f} in_flight={m['in_flight']:.0f} "
            f"delivery_rate={m['delivery_rate']:.3f} dishonest_share={m['dishonest_share']:.3f} "
            f"welfare={m['welfare']:.2f}"
        )

    def render(self) -> np.ndarray | str | None:
        """``rgb_array``: an image of the mesh; ``ansi``: one line of metrics; ``human``: print that line."""
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode")
            return None
        if not self._started:
            raise gymnasium.error.ResetNeeded("render() before reset(): call reset() first")
        if self.render_mode == "ansi":
            return self._summary_line()
        if self.render_mode == "human":
            print(self._summary_line(), flush=True)
            return None
        from envs.render import render_mesh

        return render_mesh(self.core, 0)

    def close(self) -> None:
        """Nothing to release (figures are closed after each render)."""


def kind_names(env: MeshEconomyEnv) -> list[str]:
    """Role of every graph node of the current episode (for inspection and rendering)."""
    return [KIND_NAMES[k] for k in env.core.kind]


__all__ = ["HONEST", "MeshEconomyEnv", "kind_names"]
