"""Learned attackers in the core: nodes of kind ``learned`` driven by an attacker policy each step.

A scenario's ``adversaries.learned`` nodes are the attacker team: ``envs.parallel`` names them
``attacker_0..``, ``envs.attacker_vector.AttackerVecEnv`` trains them, ``envs.vector.MeshVecEnv``
drives them by a fixed policy while the honest side trains. What they see and can do is
``agents.attacker`` (the single source for env and live node); here is how the core plays it:

* **Handling.** A learned node holding a piece (with a forwarding token) forwards it along its
  greedy shortest path, drops it (the piece is lost there; upstream nodes learn it at its deadline,
  as for a blackhole), or holds it one more step (no token spent; the deadline runs on).
* **Announcements.** Its quote becomes ``QUOTE_FACTORS[q]`` x the fair formula on its load at the
  end of the step; its claimed bandwidth ``CLAIM_FACTORS[c]`` x its capacity (what its neighbours'
  memories read as ``claimed_bw``); the route latencies its direct neighbours read from it are
  multiplied by ``ROUTE_DISCOUNTS[r]``. Its ``gossip`` choice is what it reports at the next gossip
  round (``envs.gossip``). The announcement reaches direct neighbours only: routing
  tables further away are built once per episode from true routes (scripted attractors' lies, by
  contrast, propagate through every table).
* **Rewards** (``adversaries.learned.objective``). ``damage``: the value of every piece that ends
  undelivered (dropped, expired, refused, past its hop budget) after passing through the attacker,
  split equally among the learned nodes on its path, paid at the step the loss is known (a drop at
  the deadline). ``profit``: the change of its balance minus its costs (payments received, paid,
  and its real forwarding cost).

Learned nodes are never sources nor subscribers and not honest agents; the metrics count them as
dishonest (``earned_learned``, ``dishonest_share``).
"""

from __future__ import annotations

import numpy as np

from agents.attacker import (
    ACTION_NVEC,
    CLAIM_FACTORS,
    DROP,
    FORWARD,
    HOLD,
    NULL_ACTION,
    QUOTE_FACTORS,
    RATE_ALPHA,
    ROUTE_DISCOUNTS,
    attacker_features,
)
from agents.economics import masked_median
from agents.features import MAX_HOPS
from envs.scenario import ADVERSARY_KEYS, LEARNED

#: Kind code of learned nodes (``envs.core.KIND_NAMES`` is honest followed by ``ADVERSARY_KEYS``).
LEARNED_CODE = 1 + ADVERSARY_KEYS.index(LEARNED)
_QUOTES = np.asarray(QUOTE_FACTORS)
_CLAIMS = np.asarray(CLAIM_FACTORS)
_DISCOUNTS = np.asarray(ROUTE_DISCOUNTS)


class LearnedAttackers:
    """Mixin of :class:`envs.core.MeshCore`: the attacker team's tables, actions, observation and rewards.

    Attributes set by :meth:`_assemble_learned` (after the core's arrays): ``attacker_node``
    ``(n_meshes, attackers_per_mesh)`` global node ids padded with -1, ``attacker_valid`` and
    ``attacker_rows`` (flat, like the honest agents'), ``has_learned``.
    """

    def _assemble_learned(self) -> None:
        meshes, n = self.meshes, self.n_nodes
        self.learned = self.kind == LEARNED_CODE
        self.has_learned = bool(self.learned.any())
        width = self.attackers_per_mesh
        self.attacker_node = np.full((len(meshes), width), -1, dtype=np.int64)
        for b, (m, off) in enumerate(zip(meshes, self.node_offset, strict=True)):
            ids = np.flatnonzero(m.kind == LEARNED_CODE)
            self.attacker_node[b, : ids.size] = ids + off
        flat = self.attacker_node.ravel()
        self.attacker_valid = flat >= 0
        self.attacker_rows = np.where(self.attacker_valid, flat, 0)
        self.attacker_damage_objective = np.array(
            [m.scenario.adversary(LEARNED).objective == "damage" for m in meshes], dtype=bool
        )
        self.route_discount = np.ones(n)
        self.claim_factor = np.ones(n)
        self.chosen_rate = np.zeros(n)
        self.earnings_rate = np.zeros(n)
        self.drop_rate = np.zeros(n)
        self.damage = np.zeros(n)
        self.received_now = np.zeros(n)
        self.money_in_now = np.zeros(n)
        self.attacker_reward = np.zeros(flat.size)
        self.value_scale = np.concatenate([np.full(m.scenario.nodes, m.scenario.traffic.value) for m in meshes])
        # Memory slots of honest (and other) nodes that point at a learned node: where claims land.
        self._into_learned = np.nonzero(self.link_mask & self.learned[self.nbr])
        self._profit_before = np.zeros(flat.size)

    def attacker_active(self) -> np.ndarray:
        """Boolean per attacker slot: the learned node holds a piece to handle this step."""
        return self.attacker_valid & (self.pending[self.attacker_rows] >= 0)

    def attacker_observation(self) -> np.ndarray:
        """``(n_meshes * attackers_per_mesh, N_ATTACKER_FEATURES)`` float32 (``agents.attacker``);
        padding rows are zero."""
        rows = self.attacker_rows
        pid = self.pending[rows]
        active = (pid >= 0) & self.attacker_valid
        p = np.where(active, pid, 0)
        dst = np.where(active, self.p_dst[p], 0)
        dest_distance = np.zeros(rows.size)
        if active.any():
            dest_distance[active] = self.dist(rows[active], dst[active])
        nbr, mask = self.nbr[rows], self.mask[rows]
        degree = mask.sum(axis=1)
        allies = np.where(degree > 0, (mask & self.learned[nbr]).sum(axis=1) / np.maximum(degree, 1), 0.0)
        median = masked_median(np.where(mask, self.quote[nbr], 0.0), mask)
        quote_ratio = self.quote[rows] / np.where(np.isfinite(median) & (median > 0), median, self.quote[rows])
        features = attacker_features(
            active=active,
            own_queue=self.queue_len[rows] / self.queue_limit[rows],
            value=self.p_value[p] / self.value_scale[rows],
            time_left=self.p_deadline[p] - self.t,
            hops=self.p_hops[p],
            dest_distance=dest_distance,
            dest_is_neighbour=((nbr == dst[:, None]) & mask).any(axis=1),
            degree=degree,
            allies=allies,
            chosen_rate=self.chosen_rate[rows],
            earnings_rate=self.earnings_rate[rows],
            drop_rate=self.drop_rate[rows],
            quote_ratio=quote_ratio,
            claim_factor=self.claim_factor[rows],
            route_discount=self.route_discount[rows],
            capacity=self.capacity[rows],
        )
        features[~self.attacker_valid] = 0.0
        return features

    def _learned_actions(self, attacker_actions: np.ndarray | None) -> np.ndarray:
        """``(n_nodes, len(ACTION_NVEC))`` action per node (the null action off the attacker slots), checked."""
        per_node = np.tile(np.asarray(NULL_ACTION, dtype=np.int64), (self.n_nodes, 1))
        if attacker_actions is None:
            return per_node
        acts = np.asarray(attacker_actions, dtype=np.int64).reshape(self.attacker_rows.size, len(ACTION_NVEC))
        valid = self.attacker_valid
        acts = np.clip(acts, 0, np.asarray(ACTION_NVEC) - 1)
        per_node[self.attacker_rows[valid]] = acts[valid]
        return per_node

    def _learned_announce(self, acts: np.ndarray) -> None:
        """Quotes (price factor), claims and route discounts of every learned node from its action."""
        nodes = self.learned
        self.price_factor[nodes] = _QUOTES[acts[nodes, 1]]
        self.claim_factor[nodes] = _CLAIMS[acts[nodes, 2]]
        self.route_discount[nodes] = _DISCOUNTS[acts[nodes, 3]]
        self.gossip_choice[nodes] = acts[nodes, 4]
        self.claimed[nodes] = self.capacity[nodes] * self.claim_factor[nodes]
        rows, cols = self._into_learned
        self.memory.claimed_bw[rows, cols] = self.claimed[self.nbr[rows, cols]]

    def _learned_handle(self, dec: np.ndarray, acts: np.ndarray, slot_of: np.ndarray) -> np.ndarray:
        """Apply the handling choice of the learned deciders; returns the deciders that hand over."""
        mine = self.learned[dec]
        if not mine.any():
            return dec
        ld = dec[mine]
        handling = acts[ld, 0]
        fwd = ld[handling == FORWARD]
        if fwd.size:
            slot_of[fwd] = self.greedy_slots(fwd)
        dropped = ld[handling == DROP]
        if dropped.size:
            self._lose(self.pending[dropped])
            self.tokens[dropped] -= 1.0
        decided = ld[handling != HOLD]
        self.drop_rate[decided] += RATE_ALPHA * ((acts[decided, 0] == DROP) - self.drop_rate[decided])
        return np.concatenate([dec[~mine], fwd])

    def _learned_losses(self, pids: np.ndarray) -> None:
        """Credit the value of undelivered ``pids`` to the learned nodes on their paths (``damage``)."""
        if not self.has_learned or pids.size == 0:
            return
        hops = self.p_hops[pids]
        on_path = np.arange(MAX_HOPS)[None, :] < hops[:, None]
        path = self.p_path_node[pids]
        senders = on_path & self.learned[path]
        holder = self.p_node[pids]
        holds = self.learned[holder] & ~(senders & (path == holder[:, None])).any(axis=1)
        count = senders.sum(axis=1) + holds
        hit = count > 0
        if not hit.any():
            return
        share = np.where(hit, self.p_value[pids] / np.maximum(count, 1), 0.0)
        n = self.n_nodes
        self.damage += np.bincount(path[senders], weights=np.repeat(share, senders.sum(axis=1)), minlength=n)
        self.damage += np.bincount(holder[holds], weights=share[holds], minlength=n)

    def _learned_step_start(self) -> None:
        self.damage[:] = 0.0
        self.received_now[:] = 0.0
        self.money_in_now[:] = 0.0
        rows = self.attacker_rows
        self._profit_before = self.balance[rows] - self.cost[rows]

    def _learned_step_end(self) -> None:
        """Running rates and the attacker rewards of the step just played."""
        rows, valid = self.attacker_rows, self.attacker_valid
        profit = self.balance[rows] - self.cost[rows] - self._profit_before
        nodes = self.learned
        self.chosen_rate[nodes] += RATE_ALPHA * (self.received_now[nodes] - self.chosen_rate[nodes])
        rate = self.money_in_now[nodes] / self.base_cost[nodes]
        self.earnings_rate[nodes] += RATE_ALPHA * (rate - self.earnings_rate[nodes])
        damage_objective = self.attacker_damage_objective[self.node_mesh[rows]]
        reward = np.where(damage_objective, self.damage[rows], profit)
        self.attacker_reward = np.where(valid, reward, 0.0)
