"""The learned attacker on the live node: a node of kind ``learned`` played by an exported attacker policy.

:class:`LearnedCore` is an ordinary :class:`~runtime.node.protocol.NodeCore` (it handshakes, is paid,
pays and routes like any node) whose dishonest choices come from an ``agents.attacker`` policy (a
:class:`~agents.attacker.NumpyAttacker` loaded with ``load_attacker``, numpy only), as the
environment plays it (``envs.learned``):

* **Handling.** Each piece it has taken in (and each it emits) is one decision row: ``forward`` hands
  it to the node's routing policy (the mesh gives learned nodes ``shortest``: the environment's greedy
  shortest path), ``drop`` loses it silently (its upstream learns at the deadline, as for a
  blackhole; under ``on_delivery`` it is never paid for), ``hold`` keeps it one step (counted in its
  queue) and decides again.
* **Announcements** of the latest decision: its quote is ``QUOTE_FACTORS[q]`` x the honest formula
  on its load and market (announced at the next quote update, still risen at most ``quote_step_up``
  per announcement, so the charges stay ones its payers accept); the routes it advertises are its
  true distances x ``ROUTE_DISCOUNTS[r]``; its claimed bandwidth is ``CLAIM_FACTORS[c]`` x its
  capacity. The wire carries a claim in the ``hello`` only, so a new claim reaches the neighbours of
  its next connections (the first claim is decided before any connection).
* **Idle steps.** When it has had nothing to decide on since the last routes/quote update
  (``route_interval_s``), it decides once on an inactive row, so its announcements follow its policy
  even without traffic (the environment's attackers act every step).

The observation is ``agents.attacker.attacker_features`` of what this node knows itself (see
:meth:`LearnedCore.attacker_observation`); times are in steps of its ``step_s``. Its running rates are
advanced once per whole step elapsed (``RATE_ALPHA`` per step, what arrived in the interval counted
on its last step). Its draws come from a generator of its own seeded from the node's seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

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
    AttackerPolicy,
    attacker_features,
)
from agents.economics import masked_median, quote_price
from runtime.node.protocol import NO_ROUTE, Action, NodeCore
from runtime.node.wire import Piece

__all__ = ["LEARNED_KIND", "LearnedCore"]

LEARNED_KIND = "learned"
_LAST = np.asarray(ACTION_NVEC) - 1
#: The attacker's own stream (next to the node's seed), so its draws never shift the node's others.
_RNG_TAG = 0xA77AC


class LearnedCore(NodeCore):
    """A node core whose handling and announcements come from an attacker policy each decision.

    :param attacker: an ``agents.attacker.AttackerPolicy`` (``act(features, rng) -> (n, len(ACTION_NVEC))``).
    :param allies: ids of its fellow attackers (for its ``allies`` feature; empty: it knows none).
    """

    kinds = (LEARNED_KIND,)

    def __init__(self, *args, attacker: AttackerPolicy, allies: Iterable[str] = (), **kwargs) -> None:
        self.quote_factor = self.claim_factor = self.route_discount = 1.0  # NodeCore's init quotes already
        super().__init__(*args, **kwargs)
        self.attacker = attacker
        self.allies = frozenset(allies) - {self.s.node_id}
        self.attacker_rng = np.random.default_rng([self.s.seed, _RNG_TAG])
        self.capacity = self.s.capacity or 1.0
        self.chosen_rate = self.earnings_rate = self.drop_rate = 0.0
        self._held: list[tuple[float, tuple[Piece, int | None, float, int]]] = []  # (decide again at, item)
        self._rates_at: float | None = None
        self._received_since = 0
        self._money_since_wei = 0
        self._value_sum, self._value_n = 0.0, 0
        self._decided = False  # since the last routes/quote update
        for k in ("attacker_decisions", "attacker_forwarded", "attacker_dropped", "attacker_held"):
            self.stats[k] = 0
        # its first claim and quote go into its first hellos
        self._play(self.attacker_observation([], None))
        self.quote_wei = self._quote_wei(quote_price(self.s.base_cost, 0.0, []) * self.quote_factor)
        self._last_quote_sent = self.quote_wei

    # ------------------------------------------------------------------ observation

    def attacker_observation(self, pieces: list[Piece], now: float | None) -> np.ndarray:
        """``(max(1, len(pieces)), N_ATTACKER_FEATURES)`` float32: one row per piece to decide on, or
        one inactive row (``agents.attacker.ATTACKER_FEATURES``), from this node's own knowledge:

        its queue (``backlog``, held pieces included), each piece's value (/ the mean value of the
        pieces it was handed), steps to its deadline, hops and distance to its destination (its
        routing table; ``NO_ROUTE`` when unknown), its connected neighbours (before any link is up:
        its configured ones) and which of them are ``allies``, its running rates, its announced quote
        / the median of its connected neighbours' quotes (1 when it knows none), its claim factor,
        route discount and capacity.
        """
        present = self.open_peers() or list(self.peers.values())
        connected = {p.spec.node_id for p in self.open_peers()}
        degree = len(present)
        allies = sum(p.spec.node_id in self.allies for p in present) / degree if degree else 0.0
        quotes = np.array([[p.quote_wei for p in self.open_peers()]], dtype=np.float64)
        median = float(masked_median(quotes, quotes > 0)[0]) if quotes.size else math.nan
        quote_ratio = self.announced_wei / median if median > 0 else 1.0
        n = max(1, len(pieces))
        active = np.zeros(n, dtype=bool)
        value, time_left, hops, dest_distance, dest_nbr = (np.zeros(n) for _ in range(5))
        scale = self._value_sum / self._value_n if self._value_n else 1.0
        for i, pc in enumerate(pieces):
            active[i] = True
            value[i] = pc.value / scale if scale > 0 else 0.0
            time_left[i] = self._steps(pc.deadline - now) if now is not None else 0.0
            hops[i] = pc.hops
            d = self.distance(pc.dst)
            dest_distance[i] = d if math.isfinite(d) else NO_ROUTE
            dest_nbr[i] = pc.dst in connected
        return attacker_features(
            active=active,
            own_queue=self.backlog / self.s.queue_limit,
            value=value,
            time_left=time_left,
            hops=hops,
            dest_distance=dest_distance,
            dest_is_neighbour=dest_nbr,
            degree=degree,
            allies=allies,
            chosen_rate=self.chosen_rate,
            earnings_rate=self.earnings_rate,
            drop_rate=self.drop_rate,
            quote_ratio=quote_ratio,
            claim_factor=self.claim_factor,
            route_discount=self.route_discount,
            capacity=self.capacity,
        )

    def _advance_rates(self, now: float) -> None:
        """Fold the steps elapsed since the last update into the running rates (``RATE_ALPHA``/step)."""
        if self._rates_at is None:
            self._rates_at = now
            return
        steps = math.floor((now - self._rates_at) / self.s.step_s)
        if steps < 1:
            return
        keep = (1.0 - RATE_ALPHA) ** min(steps, 10_000)
        money = self._money_since_wei / self.s.wei_per_unit / self.s.base_cost
        self.chosen_rate = keep * self.chosen_rate + RATE_ALPHA * self._received_since
        self.earnings_rate = keep * self.earnings_rate + RATE_ALPHA * money
        self._received_since = self._money_since_wei = 0
        self._rates_at += steps * self.s.step_s

    # ------------------------------------------------------------------ acting

    def _play(self, features: np.ndarray) -> np.ndarray:
        """The policy's ``(n, len(ACTION_NVEC))`` actions on ``features`` (clipped to ``ACTION_NVEC``); the
        last row's announcements take effect (its gossip choice waits for rating frames on the wire)."""
        acts = np.asarray(self.attacker.act(features, self.attacker_rng), dtype=np.int64)
        if acts.shape != (len(features), len(ACTION_NVEC)):  # a policy must answer every row
            acts = np.tile(np.asarray(NULL_ACTION, dtype=np.int64), (len(features), 1))
        acts = np.clip(acts, 0, _LAST)
        q, c, r = (int(x) for x in acts[-1, 1:4])
        self.gossip_choice = int(acts[-1, 4])  # what it says in its next rating frame (runtime.node.gossip)
        self.quote_factor = QUOTE_FACTORS[q]
        self.claim_factor = CLAIM_FACTORS[c]
        self.route_discount = ROUTE_DISCOUNTS[r]
        self.claimed_bw = self.capacity * self.claim_factor
        self._decided = True
        return acts

    def _handle(self, todo: list, now: float, out: list[Action]) -> list:
        if not todo:
            return todo
        self._advance_rates(now)
        acts = self._play(self.attacker_observation([item[0] for item in todo], now))
        self.stats["attacker_decisions"] += len(todo)
        keep = []
        for item, handling in zip(todo, acts[:, 0], strict=True):
            if handling == HOLD:
                self.stats["attacker_held"] += 1
                self.backlog += 1  # it still holds the piece: its queue, quote and refusals count it
                self._held.append((now + self.s.step_s, item))
                continue
            self.drop_rate += RATE_ALPHA * (float(handling == DROP) - self.drop_rate)
            if handling == FORWARD:
                self.stats["attacker_forwarded"] += 1
                keep.append(item)
            else:  # dropped: no report upstream, which learns at the deadline; never paid on delivery
                self.stats["attacker_dropped"] += 1
                self.stats["dropped"] += 1
                self.custody.drop(item[0].piece_id)
                self._forfeit_credit(item[3])
        return keep

    def price_factor(self) -> float:
        return self.quote_factor

    def _says(self, subject: str, rate: float, count: float) -> tuple[float, float]:
        """Its gossip action (``agents.attacker.GOSSIP``): the truth, praise of its allies, or slander
        of the others, as ``envs.gossip`` plays it."""
        from agents.attacker import GOSSIP_PRAISE, GOSSIP_SLANDER
        from agents.gossip import MAX_REPORT_COUNT

        choice = getattr(self, "gossip_choice", 0)
        if subject in self.allies and choice >= GOSSIP_PRAISE:
            return 1.0, MAX_REPORT_COUNT
        if subject not in self.allies and choice == GOSSIP_SLANDER:
            return 0.0, MAX_REPORT_COUNT
        return rate, count

    def _advertised(self, dist: dict[str, float]) -> dict[str, float]:
        f = self.route_discount
        return {d: (0.0 if d == self.s.node_id else v * f) for d, v in dist.items()}

    # ------------------------------------------------------------------ what it is handed

    def _on_piece(self, c, p, piece: Piece, now: float) -> list[Action]:
        before = self.stats["received"]
        out = super()._on_piece(c, p, piece, now)
        if self.stats["received"] > before:
            self._received_since += 1
            self._value_sum += piece.value
            self._value_n += 1
        return out

    def _on_voucher(self, c, p, v) -> list[Action]:
        before = p.recv_paid
        out = super()._on_voucher(c, p, v)
        self._money_since_wei += max(0, p.recv_paid - before)
        return out

    # ------------------------------------------------------------------ timers

    def poll(self, now: float) -> list[Action]:
        if self._held and self._held[0][0] <= now:
            due = [item for at, item in self._held if at <= now]
            self._held = [(at, item) for at, item in self._held if at > now]
            self.backlog -= len(due)
            self._ready.extend(due)
        tick = now >= self._next_routes
        if tick and not self._decided and not self._ready:  # this update's routes and quote follow a decision
            self._advance_rates(now)
            self._play(self.attacker_observation([], now))
        out = super().poll(now)
        if tick:
            self._decided = False
        return out

    def next_timer(self, now: float) -> float:
        t = super().next_timer(now)
        return min(t, self._held[0][0]) if self._held else t

    def snapshot(self) -> dict:
        snap = super().snapshot()
        snap["attacker"] = {
            "policy": getattr(self.attacker, "name", type(self.attacker).__name__),
            "quote_factor": self.quote_factor,
            "claim_factor": self.claim_factor,
            "route_discount": self.route_discount,
            "claimed_bw": round(float(self.claimed_bw), 4),
            "chosen_rate": round(self.chosen_rate, 4),
            "earnings_rate": round(self.earnings_rate, 4),
            "drop_rate": round(self.drop_rate, 4),
            "held": len(self._held),
            "allies": sorted(self.allies),
        }
        return snap
