"""``MeshEconomyEnv``: the streaming mesh and its payment economy as a PettingZoo ``ParallelEnv``.

Agents
    The honest nodes, named ``agent_0`` .. ``agent_{H-1}`` (H = nodes minus dishonest nodes).
    Which graph node each agent is changes with the episode seed. Dishonest nodes (bandwidth
    liars, blackholes, overpricers, forgers, grey holes, on-off, selective nodes, whitewashers)
    are scripted and are not agents. An agent that leaves (``dynamics.churn``) or turns blackhole
    (``dynamics.turn_dishonest``) stays in ``agents``: it is inactive (nothing to route, its
    action ignored) until it comes back, so the agent set never changes within an episode.

Action space
    ``Discrete(8)``: the neighbour slot that gets the node's head-of-line piece. An action on a
    masked slot ``a`` (beyond the node's degree) is replaced by ``a % degree``; an agent with no
    piece to route this step (``observation[:, active] == 0``) has its action ignored.

Observation space
    ``Dict(observation=Box(-inf, inf, (8, 27), float32), action_mask=Box(0, 1, (8,), int8))``.
    One row per neighbour slot, the columns of ``agents.features.FEATURES``: what the node's
    memory knows of the neighbour (claimed vs observed bandwidth, quote vs fair price, success
    rate, cooperation, queue delay, latency to the destination, the origin's coherence verdict and
    route score) followed by the piece's features. Rows of masked slots are zero.

Rewards (per step, per agent)
    =====================================  ==========================================
    paid by an upstream node for a hop     + its quote x piece size (*)
    paid to the chosen downstream node     - the downstream quote x piece size (*)
    real forwarding cost                   - own base cost x piece size
    a piece it forwarded is delivered      + welfare_weight x piece value
    source of a delivered piece            + piece value (paid by the subscriber)
    subscriber of a delivered piece        0 (pays the value, gains it as utility)
    =====================================  ==========================================

    (*) With ``economy.payment: per_hop`` at the hand-over; with ``on_delivery`` (the default)
    when the piece's receipt comes back, and never for a piece that is dropped or expires (a
    forger's unsigned claim is paid as if delivered; with ``receipts: signed`` it is rejected).

Episode
    ``episode_steps`` steps, then every agent is truncated. ``infos[agent]`` carries the
    agent's ``profit`` and ``active`` flag and the mesh's running ``metrics`` (``delivery_rate``,
    ``mean_latency``, ``welfare``, ``dishonest_share``, ``dishonest_payments_share``,
    ``honest_profit_gini``, ``empathy_precision``, ``empathy_recall``,
    ``forged_receipts_rejected`` and raw counts, among them ``earned_<kind>`` per node kind).

Rendering
    ``render_mode="rgb_array"`` draws the mesh: node fill by honesty (green honest, orange liar,
    black blackhole, purple overpricer, red forger), node border by trust (mean coherence verdict of its
    honest neighbours), edge width by traffic. ``"ansi"`` returns a one-line summary per step.

Seeding
    ``reset(seed=s)`` fixes the whole episode: graph, roles, traffic and measurement noise.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv

from agents.features import N_FEATURES, SLOTS
from envs.core import HONEST, KIND_NAMES, MeshCore
from envs.scenario import Scenario, as_scenario


class MeshEconomyEnv(ParallelEnv):
    """The mesh economy as a PettingZoo parallel environment (one mesh).

    :param scenario: a shipped scenario name, a YAML path, a dict or a :class:`~envs.scenario.Scenario`.
    :param render_mode: ``None``, ``"rgb_array"`` or ``"ansi"``.
    """

    metadata: ClassVar[dict] = {
        "name": "mesh_economy_v0",
        "render_modes": ["rgb_array", "ansi"],
        "is_parallelizable": True,
    }

    def __init__(self, scenario: str | dict | Scenario = "default", render_mode: str | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.scenario = as_scenario(scenario)
        self.render_mode = render_mode
        self.core = MeshCore(self.scenario, n_meshes=1)
        self.possible_agents = [f"agent_{i}" for i in range(self.scenario.honest_count())]
        self.agents: list[str] = []
        self._episode_started = False

    @functools.cache  # noqa: B019 - spaces are cached per agent by design (PettingZoo convention)
    def observation_space(self, agent: str) -> gymnasium.spaces.Dict:
        return gymnasium.spaces.Dict(
            {
                "observation": gymnasium.spaces.Box(-np.inf, np.inf, (SLOTS, N_FEATURES), np.float32),
                "action_mask": gymnasium.spaces.Box(0, 1, (SLOTS,), np.int8),
            }
        )

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> gymnasium.spaces.Discrete:
        return gymnasium.spaces.Discrete(SLOTS)

    @property
    def np_random(self) -> np.random.Generator:
        return self.core.np_random

    def _observations(self) -> dict[str, dict[str, np.ndarray]]:
        obs = self.core.agent_observation()
        return {
            agent: {"observation": obs.features[i], "action_mask": obs.action_mask[i]}
            for i, agent in enumerate(self.agents)
        }

    def _infos(self) -> dict[str, dict[str, Any]]:
        metrics = self.core.metrics()[0]
        active = self.core.agent_active()
        profit = self.core.balance - self.core.cost
        rows = self.core.agent_rows
        return {
            agent: {"active": bool(active[i]), "profit": float(profit[rows[i]]), "metrics": metrics}
            for i, agent in enumerate(self.agents)
        }

    def reset(self, seed: int | None = None, options: dict | None = None):
        """Start an episode; ``seed`` fixes it entirely."""
        if seed is None and not self._episode_started:
            seed = self.scenario.seed
        self.core.reset(seed=seed)
        self._episode_started = True
        self.agents = list(self.possible_agents)
        return self._observations(), self._infos()

    def step(self, actions: dict[str, Any]):
        """Route every active agent's head-of-line piece to the chosen neighbour slot."""
        if not self.agents:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        chosen = np.zeros(len(self.possible_agents), dtype=np.int64)
        for i, agent in enumerate(self.agents):
            if agent in actions and actions[agent] is not None:
                chosen[i] = int(actions[agent])
        self.core.step(chosen)
        rewards_all = self.core.reward[self.core.agent_rows]
        done = self.core.t >= self.core.episode_steps
        obs = self._observations()
        infos = self._infos()
        rewards = {agent: float(rewards_all[i]) for i, agent in enumerate(self.agents)}
        terminations = dict.fromkeys(self.agents, False)
        truncations = dict.fromkeys(self.agents, done)
        if self.render_mode == "ansi":
            print(self.render())
        if done:
            self.agents = []
        return obs, rewards, terminations, truncations, infos

    def episode_summary(self) -> dict[str, float]:
        """The episode's metrics so far (after the last step: the episode's)."""
        return self.core.metrics()[0]

    def render(self) -> np.ndarray | str | None:
        """``rgb_array``: an image of the mesh; ``ansi``: one line of metrics."""
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode")
            return None
        if self.render_mode == "ansi":
            m = self.core.metrics()[0]
            return (
                f"t={self.core.t:4d} generated={m['generated']:.0f} delivered={m['delivered']:.0f} "
                f"dropped={m['dropped']:.0f} expired={m['expired']:.0f} in_flight={m['in_flight']:.0f} "
                f"delivery_rate={m['delivery_rate']:.3f} dishonest_share={m['dishonest_share']:.3f} "
                f"welfare={m['welfare']:.2f}"
            )
        from envs.render import render_mesh

        return render_mesh(self.core, 0)

    def close(self) -> None:
        """Nothing to release (figures are closed after each render)."""


def kind_names(env: MeshEconomyEnv) -> list[str]:
    """Role of every graph node of the current episode (for inspection and rendering)."""
    return [KIND_NAMES[k] for k in env.core.kind]


__all__ = ["HONEST", "MeshEconomyEnv", "kind_names"]
