"""Vectorised core of the mesh economy: every node of a batch of meshes stepped with numpy.

The PettingZoo ``ParallelEnv`` (``envs.parallel``) and the SB3 ``VecEnv`` adapter
(``envs.vector``) are thin views of :class:`MeshCore`. Model, per step ``t``:

1. **Decide.** Every node with a piece at the head of its queue and a forwarding token picks a
   neighbour slot: honest nodes (the agents) by the given actions, dishonest nodes by script
   (greedy shortest path). An action on a masked slot ``a`` is replaced by ``a % degree``.
2. **Hand over.** A neighbour whose queue is full refuses (the piece is dropped, the sender
   records non-cooperation). Otherwise the sender owes the neighbour's quote x size (the hop's
   charge), spends its own real cost x size, and the piece travels for the link's latency.
   With ``economy.payment: per_hop`` the charge is paid at once; with ``on_delivery`` (the
   default) it is held on the piece and paid only when the destination's receipt comes back.
3. **Arrive.** At its destination a piece is delivered (the subscriber pays its value to the
   source; under ``on_delivery`` every hop's charge on its path is paid now) if not past its
   deadline. A blackhole drops what it receives; the upstream nodes only learn of it at the
   piece's deadline (a receipt never comes). So do the adaptive attackers when they drop: a
   grey hole each piece with its ``drop_probability``, an on-off node everything in its attack
   phase, a selective node the pieces above its value threshold, a whitewasher everything (see
   "Adversaries and dynamics" below). A forger drops it too but answers at once with a
   delivery claim: with ``economy.receipts: signed`` the claim fails the destination-signature
   check, is counted (``forged_receipts_rejected``) and is a loss for everyone on the path; with
   ``unsigned`` it is believed: a success in memory and, under ``on_delivery``, every charge
   on the path is paid as if delivered (the piece still counts as dropped). A piece past its
   deadline expires; one past ``MAX_HOPS`` hops is dropped. Charges of a piece that is dropped
   or expires are never paid under ``on_delivery`` (``unpaid_charges``).
4. **Learn.** Each resolved piece tells every node on its path whether the neighbour it chose
   delivered (``agents.memory``): a success only on a receipt the nodes believe (a real one, or
   an unsigned forgery). Quotes follow the origin's formula (``agents.economics``) on the
   node's queue load; overpricers multiply theirs.
5. **Emit.** Each stream's source emits ``Poisson(load / 2)`` pieces, round-robin to its subscribers.

Adversaries and dynamics (``adversaries`` and ``dynamics`` of ``envs.scenario``): every kind
that drops pieces advertises short routes and undercuts the fair price. Grey holes, on-off and
selective nodes forward what they keep by script (greedy shortest path); blackholes and
whitewashers never forward. A whitewasher leaves once most of its honest neighbours that have an
outcome through it rate its success below 0.5; ``rejoin_after`` steps later it is back under a
fresh identity, and every neighbour's memory of that slot starts over (``NeighbourMemory.forget``).
With ``churn`` each present honest node leaves with ``leave_probability`` per step: every piece it
holds or that is on its way to it is lost (counted as dropped; upstream nodes learn it at the
deadline); it comes back after ``rejoin_steps`` with its memory. A node that is away has no
links: its neighbours' slots for it are masked (``mask`` is the present part of the static
``link_mask``), it decides nothing and its streams emit nothing; a departed agent stays in
``env.agents`` as an inactive agent with nothing to route. ``turn_dishonest`` makes some honest
nodes (never sources or subscribers) blackholes from ``at_step`` on (they keep their true routes;
the oracle's honest-path table avoids them from then on); ``load_shift`` changes every stream's rate
from ``at_step`` on. Routing tables are static: routes through a node that is away stay advertised.

Randomness: the graph and roles of a mesh come from its episode seed; traffic and measurement
noise are counter-based draws keyed by that seed, the step, the stream or node (``envs.counter_rng``),
so a mesh's traffic is identical whatever the policies do and whichever batch it runs in (common
random numbers for fair comparisons). Money only moves between nodes: the sum of all
balances is constant. Pieces are conserved: generated = delivered + dropped + expired + in flight.

Memory: routing state is kept only towards the ``D`` destinations that have subscribers
(``envs.routing``), ``D <= min(streams x subscribers, honest nodes)``: ``float32`` tables of
``D x n`` entries, the true and the advertised latency (``8 n D`` bytes) and, built the first time
the oracle asks, the honest-only one (``4 n D`` more) — never all-pairs (``24 n^2`` bytes in
``float64``). With the piece pool (``n (queue_limit + 8) + 64`` pieces of 329 bytes) and about
1.2 KB of per-node arrays (node state, neighbour memory; 1,209 bytes today), one mesh of ``n``
nodes holds at most::

    12 n D + 329 (n (queue_limit + 8) + 64) + 1209 n   bytes of numpy arrays

(110 MiB at 4,096 nodes with 1,024 streams of 2 subscribers, ``D`` = 1,472; 1.24 GiB at 16,384
nodes with 4,096 streams, ``D`` = 5,889), plus the mesh's ``networkx`` graph, and during
``reset`` a transient ``8 CHUNK (n + CHUNK)`` bytes of Dijkstra output (``envs.routing.CHUNK``).
``python -m eval.bench env`` measures these figures at 4,096 nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from agents.economics import fair_price, masked_median, quote_prices
from agents.empathy import COHERENCE_THRESHOLD, PRICE_TOLERANCE, coherence_score
from agents.features import MAX_HOPS, N_FEATURES, SLOTS, DecisionContext, Observation, build_observation
from envs import counter_rng as crng
from envs.compiled_features import fill_observation
from envs.gossip import TrustGossip
from envs.kernels import CompiledMemory
from envs.learned import LEARNED_CODE, LearnedAttackers
from envs.routing import TABLE_DTYPE, advertised_to, distances_to, link_graph
from envs.scenario import ADVERSARY_KEYS, Scenario
from envs.topology import build_topology

HONEST, LIAR, BLACKHOLE, OVERPRICER, FORGER = 0, 1, 2, 3, 4
GREY_HOLE, ON_OFF, SELECTIVE, WHITEWASHER = 5, 6, 7, 8
SLANDERER, BALLOT_STUFFER = 9, 10
LEARNED = LEARNED_CODE  # 11: driven by an attacker policy (envs.learned)
#: Kind names by code: honest, then the scenario's dishonest kinds in their schema order, then learned.
KIND_NAMES = ("honest", *ADVERSARY_KEYS)
KIND_CODES = {name: code for code, name in enumerate(KIND_NAMES)}
#: Kinds that take pieces and forward nothing (forgers are blackholes that also forge receipts).
SWALLOWERS = (BLACKHOLE, FORGER, WHITEWASHER)
#: Kinds that drop pieces and so attract traffic: short advertised routes, undercut quotes, high claims.
ATTRACTORS = (BLACKHOLE, FORGER, GREY_HOLE, ON_OFF, SELECTIVE, WHITEWASHER, BALLOT_STUFFER)
#: Kinds whose detection ``detection_steps`` measures (``envs.gossip``): every kind that loses pieces.
DROPPERS = (*ATTRACTORS, LEARNED)
FREE, LIVE, LOST = 0, 1, 2
# Purposes of counter-based draws (see envs.counter_rng).
EMIT, VALUE, SIZE, NOISE, UID, DROP, PHASE, CHURN = 1, 2, 3, 4, 5, 6, 7, 8
#: Pieces/step a stream emits at load 1.0: half of what a full-speed node forwards.
STREAM_RATE_AT_FULL_LOAD = 0.5
#: Fraction of its true route latency a blackhole advertises to every destination.
BLACKHOLE_ROUTE_DISCOUNT = 0.5
#: Blackholes quote this fraction of the fair formula, to attract traffic while passing the price check.
BLACKHOLE_UNDERCUT = 0.85

METRIC_NAMES = (
    "delivery_rate",
    "mean_latency",
    "welfare",
    "dishonest_share",
    "dishonest_payments_share",
    "honest_profit_gini",
    "empathy_precision",
    "empathy_recall",
    "forged_receipts_rejected",
    "detection_steps",
    "detected_share",
    "false_accusations",
)


@dataclass
class Mesh:
    """Static description of one mesh episode (local node indices)."""

    scenario: Scenario
    seed: int
    graph: nx.Graph
    positions: np.ndarray
    kind: np.ndarray  # (n,)
    capacity: np.ndarray
    claimed: np.ndarray
    base_cost: np.ndarray
    nbr: np.ndarray  # (n, K) local index, padded with self
    mask: np.ndarray  # (n, K)
    latency: np.ndarray  # (n, K)
    dests: np.ndarray  # (D,) sorted local ids of the subscribed destinations
    dist: np.ndarray  # (D, n) shortest-path latency from every node to dests[i]
    dist_advertised: np.ndarray  # (D, n) what routing tables believe (blackholes lie)
    stream_src: np.ndarray  # (S,)
    stream_subs: np.ndarray  # (S, max_subs), padded with -1
    agents: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # honest nodes in order
    turned: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # turn blackhole mid-episode
    #: (D, n) through honest nodes only (inf where none): the oracle's, built by honest_distances().
    dist_honest: np.ndarray | None = None

    def honest_distances(self, after_turn: bool = False) -> np.ndarray:
        """The honest-only table, computed when first asked for (only the oracle needs it).

        :param after_turn: through the nodes that are still honest once ``turned`` have turned (the
            oracle's update at the turn; computed afresh, not cached).
        """
        if after_turn:
            keep = self.kind == HONEST
            keep[self.turned] = False
            return distances_to(link_graph(self.nbr, self.mask, self.latency, keep=keep), self.dests)
        if self.dist_honest is None:
            links = link_graph(self.nbr, self.mask, self.latency, keep=self.kind == HONEST)
            self.dist_honest = distances_to(links, self.dests)
        return self.dist_honest


def build_mesh(scenario: Scenario, seed: int) -> Mesh:
    """Draw a mesh (graph, roles, capacities, streams) from ``seed``."""
    rng = np.random.default_rng(seed)
    n = scenario.nodes
    graph, pos = build_topology(scenario.topology, n, rng, SLOTS)
    counts = scenario.adversary_counts()
    roles = np.array(
        [HONEST] * scenario.honest_count() + [KIND_CODES[k] for k, c in counts.items() for _ in range(c)],
        dtype=np.int8,
    )
    kind = rng.permutation(roles)
    capacity = rng.uniform(0.7, 1.0, n)
    liars = kind == LIAR
    capacity[liars] = rng.uniform(0.1, 0.25, liars.sum())
    claimed = capacity.copy()
    claimed[liars] = rng.uniform(0.9, 1.0, liars.sum())
    holes = np.isin(kind, ATTRACTORS)
    claimed[holes] = np.maximum(claimed[holes], rng.uniform(0.9, 1.0, holes.sum()))
    base_cost = scenario.economy.base_cost * rng.uniform(0.9, 1.1, n)

    nbr = np.repeat(np.arange(n)[:, None], SLOTS, axis=1)
    mask = np.zeros((n, SLOTS), dtype=bool)
    latency = np.ones((n, SLOTS), dtype=np.int64)
    for u in range(n):
        peers = sorted(graph.neighbors(u), key=lambda v: (graph.edges[u, v]["latency"], v))[:SLOTS]
        for k, v in enumerate(peers):
            nbr[u, k], mask[u, k], latency[u, k] = v, True, graph.edges[u, v]["latency"]
    honest_node = kind == HONEST
    honest_ids = np.flatnonzero(honest_node)
    tr = scenario.traffic
    n_subs = min(tr.subscribers, len(honest_ids) - 1)
    stream_src = np.empty(tr.streams, dtype=np.int64)
    stream_subs = np.empty((tr.streams, n_subs), dtype=np.int64)
    # Distinct sources while there are enough honest nodes: two streams on one source would
    # saturate it whatever the routing.
    sources = rng.permutation(honest_ids)
    for s in range(tr.streams):
        src = sources[s % len(sources)]
        stream_src[s] = src
        stream_subs[s] = rng.choice(honest_ids[honest_ids != src], size=n_subs, replace=False)
    turned = np.zeros(0, dtype=np.int64)
    if scenario.turned_count():
        spare = np.setdiff1d(honest_ids, np.concatenate([stream_src, stream_subs.ravel()]))
        turned = np.sort(rng.permutation(spare)[: scenario.turned_count()])
    # Routing state towards subscribed destinations only (envs.routing): no draw from rng here.
    dests = np.unique(stream_subs)
    links = link_graph(nbr, mask, latency)
    dist = distances_to(links, dests)
    # Every attractor (blackholes and the other dropping kinds) advertises routes
    # BLACKHOLE_ROUTE_DISCOUNT times its true latency to every destination (the classic blackhole
    # attack on distance-vector routing); the lie propagates into every routing table.
    attractors = np.flatnonzero(np.isin(kind, ATTRACTORS))
    dist_advertised = advertised_to(links, dist, dests, attractors, BLACKHOLE_ROUTE_DISCOUNT)
    return Mesh(
        scenario,
        seed,
        graph,
        pos,
        kind,
        capacity,
        claimed,
        base_cost,
        nbr,
        mask,
        latency,
        dests,
        dist,
        dist_advertised,
        stream_src,
        stream_subs,
        honest_ids,
        turned,
    )


class MeshCore(LearnedAttackers, TrustGossip):
    """A batch of ``n_meshes`` meshes stepped together; all arrays are flat over the batch.

    :param scenarios: one scenario, or a mix: each mesh draws its scenario for each episode
        uniformly from the list. All scenarios of a mix must share ``episode_steps``.
    :param n_meshes: meshes stepped together (the batch).
    :param seed: seed of the core's generator; each mesh episode draws its own seed from it.
    """

    def __init__(self, scenarios: Scenario | list[Scenario], n_meshes: int = 1, seed: int | None = None) -> None:
        self.mix = [scenarios] if isinstance(scenarios, Scenario) else list(scenarios)
        if not self.mix:
            raise ValueError("at least one scenario is needed")
        steps = {s.episode_steps for s in self.mix}
        if len(steps) != 1:
            raise ValueError(f"scenarios of a mix must share episode_steps, got {sorted(steps)}")
        self.episode_steps = steps.pop()
        self.n_meshes = n_meshes
        #: agent slots per mesh: the largest honest count in the mix (smaller meshes pad).
        self.agents_per_mesh = max(s.honest_count() for s in self.mix)
        #: attacker slots per mesh: the largest learned count in the mix (``envs.learned``).
        self.attackers_per_mesh = max(s.learned_count() for s in self.mix)
        self.np_random = np.random.default_rng(self.mix[0].seed if seed is None else seed)
        self.meshes: list[Mesh] = []
        self.t = 0

    # ------------------------------------------------------------------ reset

    def reset(self, seed: int | None = None, episode_seeds: list[int] | None = None) -> None:
        """Start a new episode in every mesh.

        :param seed: reseed the core's generator first (PettingZoo semantics).
        :param episode_seeds: use exactly these per-mesh episode seeds (evaluation); with a mix,
            mesh ``b`` plays scenario ``mix[episode_seeds[b] % len(mix)]``.
        """
        if seed is not None:
            self.np_random = np.random.default_rng(seed)
        if episode_seeds is None:
            picks = self.np_random.integers(len(self.mix), size=self.n_meshes)
            episode_seeds = [int(x) for x in self.np_random.integers(2**63 - 1, size=self.n_meshes)]
            scenarios = [self.mix[i] for i in picks]
        else:
            if len(episode_seeds) != self.n_meshes:
                raise ValueError(f"expected {self.n_meshes} episode seeds, got {len(episode_seeds)}")
            scenarios = [self.mix[int(s) % len(self.mix)] for s in episode_seeds]
        self.meshes = [build_mesh(sc, es) for sc, es in zip(scenarios, episode_seeds, strict=True)]
        self._assemble()
        self.t = 0
        self._prepare_decisions()

    def _assemble(self) -> None:
        meshes = self.meshes
        sizes = np.array([m.scenario.nodes for m in meshes])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.node_offset = offsets
        n_tot = int(sizes.sum())
        self.n_nodes = n_tot
        self.node_mesh = np.repeat(np.arange(len(meshes)), sizes)
        self.kind = np.concatenate([m.kind for m in meshes])
        self.capacity = np.concatenate([m.capacity for m in meshes])
        self.claimed = np.concatenate([m.claimed for m in meshes])
        self.base_cost = np.concatenate([m.base_cost for m in meshes])
        # What a sender measures when it hands a piece over: the receiver's link rate. Honest nodes'
        # links run at their capacity; a bandwidth liar provisions a fast inbound link that backs
        # its claim, while its forwarding capacity stays a fraction of it, so the origin's
        # bandwidth check passes and only queue delays and lost pieces give it away.
        self.link_rate = np.where(self.kind == LIAR, self.claimed, self.capacity)
        self.nbr = np.concatenate([m.nbr + off for m, off in zip(meshes, offsets, strict=True)])
        #: The mesh's links; ``mask`` is the part of it whose both ends are present.
        self.link_mask = np.concatenate([m.mask for m in meshes])
        self.mask = self.link_mask.copy()
        self.degree = self.mask.sum(axis=1)
        self.latency = np.concatenate([m.latency for m in meshes])
        self.queue_limit = np.concatenate([np.full(m.scenario.nodes, m.scenario.economy.queue_limit) for m in meshes])
        overprice = np.concatenate([np.full(m.scenario.nodes, m.scenario.economy.overprice_factor) for m in meshes])
        self.price_factor = np.select(
            [self.kind == OVERPRICER, np.isin(self.kind, ATTRACTORS)], [overprice, BLACKHOLE_UNDERCUT], 1.0
        )
        # Economy mode of each mesh: when hops are paid, and whether receipts are signed.
        self.on_delivery = np.array([m.scenario.economy.payment == "on_delivery" for m in meshes])
        self.signed = np.array([m.scenario.economy.receipts == "signed" for m in meshes])
        self.welfare_weight = np.array([m.scenario.reward.welfare_weight for m in meshes])
        # Routing tables, flattened destination-major (envs.routing):
        # D(u -> v) = table[dest_base[v] + local_index[u]]; dest_base is -1 off the subscribed destinations.
        table_offsets = np.concatenate([[0], np.cumsum([m.dist.size for m in meshes])[:-1]])
        self.table_offsets = table_offsets
        self.dist_flat = _share_tables(meshes, "dist", table_offsets)
        self.dist_adv_flat = _share_tables(meshes, "dist_advertised", table_offsets)
        self._dist_h_flat: np.ndarray | None = None  # built on the oracle's first lookup
        local = np.arange(n_tot) - offsets[self.node_mesh]
        self.local_index = local
        self.dest_base = np.full(n_tot, -1, dtype=np.int64)
        for m, off, t_off in zip(meshes, offsets, table_offsets, strict=True):
            self.dest_base[m.dests + off] = t_off + np.arange(m.dests.size) * m.scenario.nodes
        # Streams.
        self.stream_src = np.concatenate([m.stream_src + off for m, off in zip(meshes, offsets, strict=True)])
        max_subs = max(m.stream_subs.shape[1] for m in meshes)
        subs = np.full((len(self.stream_src), max_subs), -1, dtype=np.int64)
        row = 0
        for m, off in zip(meshes, offsets, strict=True):
            s, k = m.stream_subs.shape
            subs[row : row + s, :k] = m.stream_subs + off
            row += s
        self.stream_subs = subs
        self.stream_nsubs = (subs >= 0).sum(axis=1)
        self.stream_rate = np.concatenate(
            [np.full(len(m.stream_src), m.scenario.traffic.load * STREAM_RATE_AT_FULL_LOAD) for m in meshes]
        )
        self.stream_slack = np.concatenate(
            [np.full(len(m.stream_src), m.scenario.traffic.deadline_slack) for m in meshes]
        )
        self.stream_value = np.concatenate([np.full(len(m.stream_src), m.scenario.traffic.value) for m in meshes])
        self.stream_mesh = self.node_mesh[self.stream_src]
        self.stream_rr = np.zeros(len(self.stream_src), dtype=np.int64)
        # Agents: padded (n_meshes, agents_per_mesh) table of global node ids, -1 = no agent.
        A = self.agents_per_mesh
        self.agent_node = np.full((len(meshes), A), -1, dtype=np.int64)
        for b, (m, off) in enumerate(zip(meshes, offsets, strict=True)):
            self.agent_node[b, : len(m.agents)] = m.agents + off
        flat = self.agent_node.ravel()
        self.agent_valid = flat >= 0
        self.agent_rows = np.where(self.agent_valid, flat, 0)
        # Per-episode random streams.
        # Per-mesh keys of counter-based streams: a mesh's draws never depend on its batch.
        self.mesh_key = np.array([m.seed for m in meshes], dtype=np.uint64)
        self.stream_local = np.concatenate([np.arange(len(m.stream_src)) for m in meshes])
        # Dynamic node state.
        self.tokens = np.ones(n_tot)
        self.balance = np.zeros(n_tot)
        self.cost = np.zeros(n_tot)
        self.reward = np.zeros(n_tot)
        self.queue_len = np.zeros(n_tot, dtype=np.int64)
        self.quote = self.base_cost * 1.2 * self.price_factor
        self.memory = CompiledMemory(n_tot, SLOTS)
        self.memory.reset(
            np.where(self.mask, self.claimed[self.nbr], 0.0), np.where(self.mask, self.quote[self.nbr], 0.0)
        )
        self.traffic = np.zeros((n_tot, SLOTS))
        # Piece pool.
        pool = int(sum(m.scenario.nodes * (m.scenario.economy.queue_limit + SLOTS) + 64 for m in meshes))
        self.p_status = np.zeros(pool, dtype=np.int8)
        self.p_node = np.zeros(pool, dtype=np.int64)
        self.p_src = np.zeros(pool, dtype=np.int64)
        self.p_dst = np.zeros(pool, dtype=np.int64)
        self.p_born = np.zeros(pool, dtype=np.int64)
        self.p_deadline = np.zeros(pool, dtype=np.int64)
        self.p_arrive = np.zeros(pool, dtype=np.int64)
        self.p_value = np.zeros(pool)
        self.p_size = np.zeros(pool)
        self.p_hops = np.zeros(pool, dtype=np.int64)
        self.p_path_node = np.zeros((pool, MAX_HOPS), dtype=np.int64)
        self.p_path_slot = np.zeros((pool, MAX_HOPS), dtype=np.int64)
        self.p_uid = np.zeros(pool, dtype=np.uint64)  # batch-independent identity of a piece (its draws' key)
        self.p_path_charge = np.zeros((pool, MAX_HOPS))  # what each hop's sender owes its receiver
        # Per-mesh counters.
        B = len(meshes)
        self.c = {
            name: np.zeros(B)
            for name in (
                "generated",
                "delivered",
                "dropped",
                "expired",
                "latency_sum",
                "value_delivered",
                "hops",
                "hops_dishonest",
                "payments",
                "payments_dishonest",
                "charges",
                "unpaid_charges",
                "forged_receipts_rejected",
                "forged_receipts_accepted",
                *(f"earned_{k}" for k in KIND_NAMES),
            )
        }
        self.pending = np.full(n_tot, -1, dtype=np.int64)
        self._assemble_adversaries()
        self._assemble_learned()
        self._assemble_gossip(HONEST, DROPPERS, SLANDERER, BALLOT_STUFFER)

    def _assemble_adversaries(self) -> None:
        """Per-node parameters of the adaptive attackers and per-mesh dynamics (see the module doc)."""
        meshes, n = self.meshes, self.n_nodes

        def per_node(fn) -> np.ndarray:
            return np.concatenate([np.full(m.scenario.nodes, fn(m.scenario), dtype=np.float64) for m in meshes])

        kind = self.kind
        self.drop_probability = np.select(
            [np.isin(kind, SWALLOWERS), kind == GREY_HOLE, kind == BALLOT_STUFFER],
            [
                1.0,
                per_node(lambda s: s.adversary("grey_hole").drop_probability),
                per_node(lambda s: s.adversary("ballot_stuffer").drop_probability),
            ],
            0.0,
        )
        self.onoff_honest = per_node(lambda s: s.adversary("on_off").honest_steps).astype(np.int64)
        period = self.onoff_honest + per_node(lambda s: s.adversary("on_off").attack_steps).astype(np.int64)
        self.onoff_period = period
        self.onoff_phase = (crng.uniform(self.mesh_key[self.node_mesh], 0, PHASE, self.local_index) * period).astype(
            np.int64
        )
        # Piece values are uniform in [0.5, 1.5] x value: the q-quantile is (0.5 + q) x value.
        cap = per_node(lambda s: (0.5 + s.adversary("selective").value_quantile) * s.traffic.value)
        self.value_cap = np.where(kind == SELECTIVE, cap, np.inf)
        self.rejoin_after = per_node(lambda s: s.adversary("whitewasher").rejoin_after).astype(np.int64)
        churn = [m.scenario.dynamics.churn for m in meshes]
        self.leave_probability = np.concatenate(
            [np.full(m.scenario.nodes, c.leave_probability if c else 0.0) for m, c in zip(meshes, churn, strict=True)]
        )
        self.churn_rejoin = np.concatenate(
            [np.full(m.scenario.nodes, c.rejoin_steps if c else 1) for m, c in zip(meshes, churn, strict=True)]
        )
        self.turn_at = np.full(n, -1, dtype=np.int64)
        for m, off in zip(meshes, self.node_offset, strict=True):
            if m.turned.size:
                self.turn_at[m.turned + off] = m.scenario.dynamics.turn_dishonest.at_step
        shifts = [m.scenario.dynamics.load_shift for m in meshes]
        self.shift_at = np.concatenate(
            [np.full(len(m.stream_src), sh.at_step if sh else -1) for m, sh in zip(meshes, shifts, strict=True)]
        )
        self.shift_rate = np.concatenate(
            [
                np.full(len(m.stream_src), (sh.load if sh else m.scenario.traffic.load) * STREAM_RATE_AT_FULL_LOAD)
                for m, sh in zip(meshes, shifts, strict=True)
            ]
        )
        self.present = np.ones(n, dtype=bool)
        self.away_until = np.zeros(n, dtype=np.int64)
        self.departures = np.zeros(n, dtype=np.int64)  # times each node left (churn or whitewashing)
        self.has_dynamics = bool(
            (self.leave_probability > 0).any() or (self.turn_at >= 0).any() or (kind == WHITEWASHER).any()
        )

    # ------------------------------------------------------------------ helpers

    def dist(self, u: np.ndarray, v: np.ndarray, honest_only: bool = False, advertised: bool = False) -> np.ndarray:
        """Shortest-path latency (float64) from nodes ``u`` to subscribed destinations ``v`` (same mesh, global ids).

        ``honest_only``: through honest nodes only (the oracle's knowledge); ``advertised``: what
        the routing tables believe, poisoned by blackholes' lies. Only destinations with
        subscribers have routing state; any other ``v`` raises ``ValueError``.
        """
        base = self.dest_base[v]
        if base.size and base.min() < 0:
            raise ValueError("dist: routing state is kept only towards subscribed destinations")
        table = self._honest_table() if honest_only else self.dist_adv_flat if advertised else self.dist_flat
        d = table[base + self.local_index[u]].astype(np.float64)
        if advertised and self.has_learned:
            d *= self.route_discount[u]  # what learned nodes announce to their neighbours
        return d

    def _honest_table(self) -> np.ndarray:
        if self._dist_h_flat is None:
            for m in self.meshes:
                m.honest_distances()
            self._dist_h_flat = _share_tables(self.meshes, "dist_honest", self.table_offsets)
        return self._dist_h_flat

    def routing_state_bytes(self) -> int:
        """Bytes held by the routing tables: ``8 x sum over meshes of n x D``, ``12 x`` once the
        oracle's honest-only table is built (see the module docstring)."""
        tables = (self.dist_flat, self.dist_adv_flat, self._dist_h_flat)
        return int(sum(t.nbytes for t in tables if t is not None))

    def _count(self, name: str, mesh: np.ndarray, weights: np.ndarray | None = None) -> None:
        self.c[name] += np.bincount(mesh, weights=weights, minlength=len(self.meshes))

    def _resolve(self, pids: np.ndarray, delivered: bool, refused: bool = False) -> None:
        """Tell every node on the pieces' paths how they ended (``delivered``: what they believe), and free them.

        A piece resolved as not delivered leaves its charges unpaid under ``on_delivery``, and its loss
        lands on the node that held it last (custody, ``envs.gossip``); ``refused``: the last hop of
        each piece was refused by its receiver.
        """
        if pids.size == 0:
            return
        hops = self.p_hops[pids]
        on_path = np.arange(MAX_HOPS)[None, :] < hops[:, None]
        rows = self.p_path_node[pids][on_path]
        cols = self.p_path_slot[pids][on_path]
        own = None if delivered else self._custody_own(pids, rows, cols, refused)
        self.memory.record_outcomes(rows, cols, np.full(rows.size, delivered), own)
        if not delivered:
            self._learned_losses(pids)
            held = on_path & self.on_delivery[self.node_mesh[self.p_src[pids]]][:, None]
            self._count("unpaid_charges", self.node_mesh[self.p_path_node[pids][held]], self.p_path_charge[pids][held])
        self.p_status[pids] = FREE

    def _lose(self, pids: np.ndarray) -> None:
        """Pieces lost where they are (dropped): counted now, resolved at their deadline, when the
        upstream nodes learn that no receipt came."""
        self.p_status[pids] = LOST
        self._count("dropped", self.node_mesh[self.p_node[pids]])

    def _pay(self, payer: np.ndarray, payee: np.ndarray, amount: np.ndarray) -> None:
        """Move ``amount`` from each payer to its payee (same mesh); rewards and counters follow."""
        if payer.size == 0:
            return
        n = self.n_nodes
        received = np.bincount(payee, weights=amount, minlength=n) - np.bincount(payer, weights=amount, minlength=n)
        self.balance += received
        self.reward += received
        if self.has_learned:
            self.money_in_now += np.bincount(payee, weights=amount, minlength=n)
        mesh = self.node_mesh[payee]
        dishonest = self.kind[payee] != HONEST
        self._count("payments", mesh, amount)
        self._count("payments_dishonest", mesh[dishonest], amount[dishonest])
        by_kind = np.bincount(
            mesh * len(KIND_NAMES) + self.kind[payee], weights=amount, minlength=len(self.meshes) * len(KIND_NAMES)
        ).reshape(len(self.meshes), len(KIND_NAMES))
        for k, name in enumerate(KIND_NAMES):
            self.c[f"earned_{name}"] += by_kind[:, k]

    def _pay_paths(self, pids: np.ndarray) -> None:
        """Pay every charge held on the paths of ``pids`` (a receipt the payers believe came back)."""
        hops = self.p_hops[pids]
        on_path = np.arange(MAX_HOPS)[None, :] < hops[:, None]
        payer = self.p_path_node[pids][on_path]
        payee = self.nbr[payer, self.p_path_slot[pids][on_path]]
        self._pay(payer, payee, self.p_path_charge[pids][on_path])

    # ------------------------------------------------------------------ decisions

    def _prepare_decisions(self) -> None:
        """Find each node's head-of-line piece and the nodes that decide this step."""
        t = self.t
        live = np.flatnonzero(self.p_status == LIVE)
        self.queue_len = np.bincount(self.p_node[live], minlength=self.n_nodes)
        ready = live[self.p_arrive[live] <= t]
        self.pending[:] = -1
        if ready.size:
            # Ties broken by age, then by the piece's identity, never by its pool slot (which depends
            # on the other meshes of the batch).
            order = np.lexsort((self.p_uid[ready], self.p_born[ready], self.p_arrive[ready], self.p_node[ready]))
            ready = ready[order]
            nodes = self.p_node[ready]
            first = np.ones(ready.size, dtype=bool)
            first[1:] = nodes[1:] != nodes[:-1]
            heads = ready[first]
            self.pending[nodes[first]] = heads
        can = (self.pending >= 0) & (self.tokens >= 1.0) & ~np.isin(self.kind, SWALLOWERS) & (self.degree > 0)
        self.pending[~can] = -1
        self.deciders = np.flatnonzero(can)

    def decision_inputs(self, rows: np.ndarray) -> DecisionContext:
        """The non-memory inputs of ``agents.features`` for nodes ``rows``."""
        pid = self.pending[rows]
        active = pid >= 0
        p = np.where(active, pid, 0)
        # Rows without a piece have no destination: their dst is their own node, route latency 0.
        dst = np.where(active, self.p_dst[p], rows)
        nbr = self.nbr[rows]
        route = np.zeros((rows.size, SLOTS))
        route[active] = self.dist(nbr[active], np.repeat(dst[active, None], SLOTS, axis=1), advertised=True)
        return DecisionContext(
            rows=rows,
            mask=self.mask[rows],
            link_latency=self.latency[rows],
            route_latency=route,
            is_destination=(nbr == dst[:, None]) & active[:, None],
            time_left=np.where(active, self.p_deadline[p] - self.t, 0).astype(np.float64),
            value=np.where(active, self.p_value[p], 0.0),
            size=np.where(active, self.p_size[p], 0.0),
            hops=np.where(active, self.p_hops[p], 0).astype(np.float64),
            own_queue=self.queue_len[rows] / self.queue_limit[rows],
            active=active,
        )

    def agent_observation(self) -> Observation:
        """Observation rows for every agent slot, shape ``(n_meshes * agents_per_mesh, K, F)``.

        Padded agent slots (a mesh with fewer honest nodes than the mix's largest) and agents
        without a decision this step have all-zero features (``active`` = 0) and zero
        coherence and seed scores; ``action_mask`` is always the node's neighbour mask. Features
        are computed for the active rows only.
        """
        n = self.agent_rows.size
        active = np.flatnonzero(self.agent_active())
        ctx = self.decision_inputs(self.agent_rows[active])
        features = np.zeros((n, SLOTS, N_FEATURES), dtype=np.float32)
        coherence = np.zeros((n, SLOTS))
        coherent = np.zeros((n, SLOTS), dtype=bool)
        seed = np.zeros((n, SLOTS))
        if not fill_observation(self.memory, ctx, active, features, coherence, coherent, seed):
            part = build_observation(self.memory, ctx)
            features[active] = part.features
            coherence[active] = part.coherence
            coherent[active] = part.coherent
            seed[active] = part.seed_score
        mask = (self.mask[self.agent_rows] & self.agent_valid[:, None]).astype(np.int8)
        return Observation(features, mask, coherence, coherent, seed)

    def agent_active(self) -> np.ndarray:
        """Boolean per agent slot: the agent has a piece to route this step."""
        return self.agent_valid & (self.pending[self.agent_rows] >= 0)

    def greedy_cost(self, rows: np.ndarray, honest_only: bool = False, congestion: bool = False) -> np.ndarray:
        """Link latency + distance to the destination of each row's pending piece, per slot (inf if
        masked); link latency alone for rows without a piece."""
        pid = self.pending[rows]
        busy = pid >= 0
        nbr = self.nbr[rows]
        cost = self.latency[rows].astype(np.float64)
        dst = np.repeat(self.p_dst[pid[busy], None], SLOTS, axis=1)
        cost[busy] += self.dist(nbr[busy], dst, honest_only)
        if congestion:
            cost = cost + self.queue_len[nbr] / self.capacity[nbr]
        return np.where(self.mask[rows], cost, np.inf)

    def greedy_slots(self, rows: np.ndarray, honest_only: bool = False, congestion: bool = False) -> np.ndarray:
        """Slot of the lowest :meth:`greedy_cost`; through honest nodes only, rows without an honest
        path fall back to the full graph."""
        cost = self.greedy_cost(rows, honest_only, congestion)
        if honest_only:
            no_path = ~np.isfinite(cost).any(axis=1)
            if no_path.any():
                cost[no_path] = self.greedy_cost(rows[no_path])
        return np.argmin(cost, axis=1)

    def oracle_slots(self) -> np.ndarray:
        """The oracle's choice for every agent slot: shortest honest path, congestion-aware."""
        return self.greedy_slots(self.agent_rows, honest_only=True, congestion=True)

    # ------------------------------------------------------------------ step

    def step(self, agent_actions: np.ndarray, attacker_actions: np.ndarray | None = None) -> None:
        """Advance every mesh by one step.

        :param agent_actions: slot index per agent slot, shape ``(n_meshes * agents_per_mesh,)``;
            entries of agents without a decision are ignored.
        :param attacker_actions: ``(n_meshes * attackers_per_mesh, 4)`` actions of the learned
            nodes (``agents.attacker``; None: every learned node plays ``NULL_ACTION``, an honest node).
        """
        t = self.t
        self.reward[:] = 0.0
        slot_of = np.zeros(self.n_nodes, dtype=np.int64)
        acts = np.asarray(agent_actions, dtype=np.int64).ravel()
        slot_of[self.agent_rows[self.agent_valid]] = acts[self.agent_valid]
        dec = self.deciders
        scripted = dec[(self.kind[dec] != HONEST) & (self.kind[dec] != LEARNED)]
        if scripted.size:
            slot_of[scripted] = self.greedy_slots(scripted)
        if self.has_learned:
            self._learned_step_start()
            learned_acts = self._learned_actions(attacker_actions)
            self._learned_announce(learned_acts)
            dec = self._learned_handle(dec, learned_acts, slot_of)
        if dec.size:
            self._hand_over(dec, slot_of[dec])
        self.t = t + 1
        if self.has_dynamics:
            self._dynamics()
        self._arrive()
        self._emit()
        # Fractional credit carries over, so a node serves `capacity` pieces/step on average.
        self.tokens = np.minimum(self.tokens + self.capacity, 1.0 + self.capacity)
        self._trust_round()
        self._prepare_decisions()
        self._update_quotes()
        if self.has_learned:
            self._learned_step_end()

    def _hand_over(self, dec: np.ndarray, slot: np.ndarray) -> None:
        t = self.t
        slot = np.where(slot < 0, 0, slot)
        valid = (slot < SLOTS) & self.mask[dec, np.minimum(slot, SLOTS - 1)]
        if not valid.all():
            # The (a % degree)-th present slot: a % degree itself while no neighbour is away.
            bad = np.flatnonzero(~valid)
            present_first = np.argsort(~self.mask[dec[bad]], axis=1, kind="stable")
            slot[bad] = present_first[np.arange(bad.size), slot[bad] % np.maximum(self.degree[dec[bad]], 1)]
        pid = self.pending[dec]
        to = self.nbr[dec, slot]
        mesh = self.node_mesh[dec]
        # The hop acknowledgement reports how long the piece waited here to the previous hop.
        h = self.p_hops[pid]
        had_prev = h > 0
        if had_prev.any():
            pp = pid[had_prev]
            hp = h[had_prev] - 1
            self.memory.record_delays(self.p_path_node[pp, hp], self.p_path_slot[pp, hp], t - self.p_arrive[pp])
        # Admission: a full queue refuses; ties broken by sender order.
        rank = rank_within_groups(to)
        accepted = self.queue_len[to] + rank < self.queue_limit[to]
        self.memory.record_handovers(dec, slot, accepted)
        self.tokens[dec] -= 1.0
        # Everyone on the path, this hop included, learns the outcome.
        self.p_path_node[pid, h] = dec
        self.p_path_slot[pid, h] = slot
        self.p_path_charge[pid, h] = 0.0  # a refused hop owes nothing
        self.p_hops[pid] = h + 1
        refused = pid[~accepted]
        if refused.size:
            self._count("dropped", self.node_mesh[self.p_node[refused]])
            self._resolve(refused, delivered=False, refused=True)
        a_dec, a_to, a_pid, a_slot, a_mesh = dec[accepted], to[accepted], pid[accepted], slot[accepted], mesh[accepted]
        size = self.p_size[a_pid]
        pay = self.quote[a_to] * size
        n = self.n_nodes
        self.p_path_charge[a_pid, h[accepted]] = pay
        self._count("charges", a_mesh, pay)
        now = ~self.on_delivery[a_mesh]
        self._pay(a_dec[now], a_to[now], pay[now])
        spent = self.base_cost[a_dec] * size
        self.cost += np.bincount(a_dec, weights=spent, minlength=n)
        self.reward -= np.bincount(a_dec, weights=spent, minlength=n)
        # Measurement noise keyed by (mesh, step, sender): independent of batch and of other hops.
        noise = np.exp(0.1 * crng.normal(self.mesh_key[a_mesh], t, NOISE, self.local_index[a_dec]))
        self.memory.record_transfers(a_dec, a_slot, self.link_rate[a_to] * noise)
        self.traffic.reshape(-1)[a_dec * SLOTS + a_slot] += 1.0
        dishonest = self.kind[a_to] != HONEST
        if self.has_learned:
            self.received_now += np.bincount(a_to, minlength=n)
        self._count("hops", a_mesh)
        self._count("hops_dishonest", a_mesh[dishonest])
        self.p_node[a_pid] = a_to
        self.p_arrive[a_pid] = t + self.latency[a_dec, a_slot]

    def _arrive(self) -> None:
        t = self.t
        live = np.flatnonzero(self.p_status == LIVE)
        node = self.p_node[live]
        arrived = self.p_arrive[live] <= t
        at_dst = arrived & (node == self.p_dst[live]) & (t <= self.p_deadline[live])
        done = live[at_dst]
        if done.size:
            self._deliver(done)
        rest = ~at_dst
        drops = rest & arrived & self._drops(live, node)
        black = drops & (self.kind[node] != FORGER)
        if black.any():
            self._lose(live[black])
        forged = drops & ~black
        if forged.any():
            self._forge(live[forged])
        ttl = rest & ~drops & arrived & (self.p_hops[live] >= MAX_HOPS) & (node != self.p_dst[live])
        if ttl.any():
            gone = live[ttl]
            self._count("dropped", self.node_mesh[self.p_node[gone]])
            self._resolve(gone, delivered=False)
        late = rest & ~drops & ~ttl & (self.p_deadline[live] < t)
        if late.any():
            gone = live[late]
            self._count("expired", self.node_mesh[self.p_node[gone]])
            self._resolve(gone, delivered=False)
        lost = np.flatnonzero(self.p_status == LOST)
        timed_out = lost[self.p_deadline[lost] < t]
        self._resolve(timed_out, delivered=False)

    def _forge(self, pids: np.ndarray) -> None:
        """Forgers drop ``pids`` and claim their delivery at once; the payers check the claim."""
        mesh = self.node_mesh[self.p_node[pids]]
        self._count("dropped", mesh)
        signed = self.signed[mesh]
        rejected, believed = pids[signed], pids[~signed]
        self._count("forged_receipts_rejected", mesh[signed])
        self._resolve(rejected, delivered=False)
        self._count("forged_receipts_accepted", mesh[~signed])
        self._pay_paths(believed[self.on_delivery[mesh[~signed]]])
        self._resolve(believed, delivered=True)

    def _deliver(self, pids: np.ndarray) -> None:
        t = self.t
        value = self.p_value[pids]
        src, dst = self.p_src[pids], self.p_dst[pids]
        mesh = self.node_mesh[dst]
        n = self.n_nodes
        moved = np.bincount(src, weights=value, minlength=n) - np.bincount(dst, weights=value, minlength=n)
        self.balance += moved
        # The subscriber's utility equals what it pays, so receiving is reward-neutral for it.
        self.reward += moved + np.bincount(dst, weights=value, minlength=n)
        # Each forwarder's share of the welfare is paid once per piece: a bonus per visit would pay
        # a node for routing a piece into a loop that brings it back (the live node refuses those).
        paths = self.p_path_node[pids]
        first = first_visits(paths, self.p_hops[pids])
        bonus = np.broadcast_to((value * self.welfare_weight[mesh])[:, None], first.shape)
        self.reward += np.bincount(paths[first], weights=bonus[first], minlength=n)
        self._count("delivered", mesh)
        self._count("latency_sum", mesh, (t - self.p_born[pids]).astype(np.float64))
        self._count("value_delivered", mesh, value)
        self._pay_paths(pids[self.on_delivery[mesh]])
        self._resolve(pids, delivered=True)

    def _emit(self) -> None:
        t = self.t
        key = self.mesh_key[self.stream_mesh]
        rate = np.where((self.shift_at >= 0) & (t >= self.shift_at), self.shift_rate, self.stream_rate)
        rate = np.where(self.present[self.stream_src], rate, 0.0)  # a source that is away emits nothing
        k = crng.poisson(rate, crng.uniform(key, t, EMIT, self.stream_local))
        total = int(k.sum())
        if total == 0:
            return
        stream = np.repeat(np.arange(k.size), k)
        offset = np.arange(total) - np.repeat(np.cumsum(k) - k, k)
        sub = (self.stream_rr[stream] + offset) % self.stream_nsubs[stream]
        self.stream_rr += k
        src = self.stream_src[stream]
        dst = self.stream_subs[stream, sub]
        draw_key = (key[stream], t, self.stream_local[stream], offset)
        value = self.stream_value[stream] * (0.5 + crng.uniform(*draw_key, VALUE))
        size = 0.5 + crng.uniform(*draw_key, SIZE)
        mesh = self.stream_mesh[stream]
        self._count("generated", mesh)
        # A full source queue (or pool) drops the new piece at once.
        queued = np.bincount(self.p_node[self.p_status == LIVE], minlength=self.n_nodes)
        rank = rank_within_groups(src)
        fits = queued[src] + rank < self.queue_limit[src]
        free = np.flatnonzero(self.p_status == FREE)
        fits &= np.cumsum(fits) <= free.size
        if (~fits).any():
            self._count("dropped", mesh[~fits])
        idx = np.flatnonzero(fits)
        slots = free[: idx.size]
        self.p_status[slots] = LIVE
        self.p_node[slots] = src[idx]
        self.p_src[slots] = src[idx]
        self.p_dst[slots] = dst[idx]
        self.p_born[slots] = t
        self.p_arrive[slots] = t
        shortest = self.dist(src[idx], dst[idx])
        self.p_deadline[slots] = t + (2 * shortest).astype(np.int64) + self.stream_slack[stream[idx]]
        self.p_value[slots] = value[idx]
        self.p_size[slots] = size[idx]
        self.p_hops[slots] = 0
        self.p_uid[slots] = crng.hash_keys(key[stream[idx]], t, self.stream_local[stream[idx]], offset[idx], UID)

    # ------------------------------------------------------------------ adversaries and dynamics

    def _drops(self, pids: np.ndarray, node: np.ndarray) -> np.ndarray:
        """Whether the dishonest ``node`` holding each piece drops it on arrival (False for honest ones)."""
        kind = self.kind[node]
        drops = np.isin(kind, SWALLOWERS)
        grey = np.flatnonzero((kind == GREY_HOLE) | (kind == BALLOT_STUFFER))
        if grey.size:
            u = crng.uniform(self.p_uid[pids[grey]], self.local_index[node[grey]], DROP)
            drops[grey] = u < self.drop_probability[node[grey]]
        on_off = np.flatnonzero(kind == ON_OFF)
        if on_off.size:
            v = node[on_off]
            drops[on_off] = (self.t + self.onoff_phase[v]) % self.onoff_period[v] >= self.onoff_honest[v]
        selective = kind == SELECTIVE
        drops |= selective & (self.p_value[pids] > self.value_cap[node])
        return drops

    def on_off_attacking(self) -> np.ndarray:
        """Per node: an on-off node in its attack phase at the current step."""
        phase = (self.t + self.onoff_phase) % self.onoff_period
        return (self.kind == ON_OFF) & (phase >= self.onoff_honest)

    def _dynamics(self) -> None:
        """Turn nodes, let whitewashers and churning nodes leave and come back (start of step ``t``)."""
        t = self.t
        turn = self.turn_at == t
        if turn.any():
            self.kind[turn] = BLACKHOLE
            self.price_factor[turn] = BLACKHOLE_UNDERCUT
            self.drop_probability[turn] = 1.0
            # The oracle knows the cheats: its honest-path table now avoids the turned nodes.
            for b in np.unique(self.node_mesh[turn]):
                self.meshes[b].dist_honest = self.meshes[b].honest_distances(after_turn=True)
            self._dist_h_flat = None  # gathered again from the meshes' tables on the next lookup
        back = ~self.present & (self.away_until <= t)
        if back.any():
            self.present[back] = True
            # A whitewasher comes back as a fresh identity: its neighbours' memory of it starts over.
            fresh = back & (self.kind == WHITEWASHER)
            if fresh.any():
                rows, cols = np.nonzero(self.link_mask & fresh[self.nbr])
                self.memory.forget(rows, cols, self.claimed[self.nbr[rows, cols]], self.quote[self.nbr[rows, cols]])
        leave = np.zeros(self.n_nodes, dtype=bool)
        churners = np.flatnonzero(self.present & (self.leave_probability > 0) & (self.kind == HONEST))
        if churners.size:
            u = crng.uniform(self.mesh_key[self.node_mesh[churners]], t, CHURN, self.local_index[churners])
            gone = churners[u < self.leave_probability[churners]]
            leave[gone] = True
            self.away_until[gone] = t + self.churn_rejoin[gone]
        washers = self.present & (self.kind == WHITEWASHER)
        if washers.any():
            # Ratings by present honest neighbours that have rated it (an outcome through it); it
            # leaves when most of them rate its success below 0.5.
            judge = self.link_mask & washers[self.nbr] & (self.present & (self.kind == HONEST))[:, None]
            judge &= self.memory.success_count > 0
            target = self.nbr[judge]
            low = np.bincount(target, weights=(self.memory.success[judge] < 0.5), minlength=self.n_nodes)
            voters = np.bincount(target, minlength=self.n_nodes)
            found_out = washers & (2 * low > voters) & (voters > 0)
            leave |= found_out
            self.away_until[found_out] = t + self.rejoin_after[found_out]
        if leave.any():
            self.present[leave] = False
            self.departures[leave] += 1
            # Everything it holds or that is travelling to it is lost; upstream learns at the deadline.
            live = np.flatnonzero(self.p_status == LIVE)
            lost = live[leave[self.p_node[live]]]
            if lost.size:
                self._lose(lost)
        if back.any() or leave.any():
            self.mask = self.link_mask & self.present[self.nbr] & self.present[:, None]
            self.degree = self.mask.sum(axis=1)

    def _update_quotes(self) -> None:
        load = np.minimum(self.queue_len / self.queue_limit, 1.0) * 100.0
        nq = np.where(self.mask, self.quote[self.nbr], 0.0)
        # The market term follows only neighbours whose quote passes the empathy price check
        # (within 20 % of the median), so one overpricer cannot drag a whole region's prices up.
        median = np.nan_to_num(masked_median(nq, self.mask), nan=1.0)
        fair_looking = self.mask & (np.abs(nq - median[:, None]) < PRICE_TOLERANCE * median[:, None])
        market = np.where(fair_looking, nq, 0.0)
        quotes = quote_prices(self.base_cost, load, market.sum(axis=1), fair_looking.sum(axis=1))
        # Overpricers mark up their own cost term and ignore the market: following each other's
        # marked-up quotes would compound without bound.
        cost_term = quote_prices(self.base_cost, load, np.zeros(self.n_nodes), np.zeros(self.n_nodes))
        self.quote = np.where(self.kind == OVERPRICER, cost_term, quotes) * self.price_factor
        self.memory.quote[:] = np.where(self.mask, self.quote[self.nbr], 0.0)

    # ------------------------------------------------------------------ metrics

    def in_flight(self) -> np.ndarray:
        """Pieces per mesh still travelling (live, not yet known to be lost)."""
        live = np.flatnonzero(self.p_status == LIVE)
        return np.bincount(self.node_mesh[self.p_node[live]], minlength=len(self.meshes)).astype(float)

    def coherence_verdicts(self) -> np.ndarray:
        """``(n_nodes, SLOTS)`` bool: each node's empathy verdict on each neighbour slot, from memory."""
        mem = self.memory
        fair = fair_price(mem.quote, self.mask)
        fair = np.where(np.isnan(fair), 1.0, fair)[:, None]
        score = coherence_score(mem.observed_bw, mem.claimed_bw, mem.quote, fair, mem.success, mem.cooperation)
        return score > COHERENCE_THRESHOLD

    def metrics(self) -> list[dict[str, float]]:
        """The episode-so-far metrics of every mesh (see ``METRIC_NAMES``) plus raw counts."""
        c = self.c
        out = []
        interacted = self.memory.interacted() & self.mask
        coherent = self.coherence_verdicts() if interacted.any() else None
        dishonest_nbr = self.kind[self.nbr] != HONEST
        profit = self.balance - self.cost
        in_flight = self.in_flight()
        for b in range(len(self.meshes)):
            resolved = c["delivered"][b] + c["dropped"][b] + c["expired"][b]
            nodes = self.node_mesh == b
            honest = nodes & (self.kind == HONEST)
            judge = interacted & honest[:, None]
            if coherent is not None and judge.any():
                flagged = judge & ~coherent
                truth = judge & dishonest_nbr
                tp = (flagged & truth).sum()
                precision = tp / flagged.sum() if flagged.any() else 1.0
                recall = tp / truth.sum() if truth.any() else 1.0
            else:
                precision = recall = 1.0
            out.append(
                {
                    "delivery_rate": c["delivered"][b] / resolved if resolved else 0.0,
                    "mean_latency": c["latency_sum"][b] / c["delivered"][b] if c["delivered"][b] else 0.0,
                    "welfare": c["value_delivered"][b] - self.cost[nodes].sum(),
                    "dishonest_share": c["hops_dishonest"][b] / c["hops"][b] if c["hops"][b] else 0.0,
                    "dishonest_payments_share": (
                        c["payments_dishonest"][b] / c["payments"][b] if c["payments"][b] else 0.0
                    ),
                    "honest_profit_gini": gini(profit[honest]),
                    "empathy_precision": float(precision),
                    "empathy_recall": float(recall),
                    "forged_receipts_rejected": c["forged_receipts_rejected"][b],
                    **self.trust_metrics(b),
                    "generated": c["generated"][b],
                    "delivered": c["delivered"][b],
                    "dropped": c["dropped"][b],
                    "expired": c["expired"][b],
                    "in_flight": in_flight[b],
                    "forged_receipts_accepted": c["forged_receipts_accepted"][b],
                    "honest_welfare": c["value_delivered"][b] - self.cost[honest].sum(),
                    "charges": c["charges"][b],
                    "payments": c["payments"][b],
                    "unpaid_charges": c["unpaid_charges"][b],
                    **{f"earned_{k}": c[f"earned_{k}"][b] for k in KIND_NAMES},
                }
            )
        return [{k: float(v) for k, v in m.items()} for m in out]


def _share_tables(meshes: list[Mesh], name: str, offsets: np.ndarray) -> np.ndarray:
    """One flat array of every mesh's ``name`` table; each mesh's table becomes a view of it (no copy kept)."""
    if len(meshes) == 1:
        return getattr(meshes[0], name).reshape(-1)  # a view: no transient copy of a large mesh's table
    flat = np.empty(sum(getattr(m, name).size for m in meshes), dtype=TABLE_DTYPE)
    for m, off in zip(meshes, offsets, strict=True):
        table = getattr(m, name)
        part = flat[off : off + table.size]
        part[:] = table.ravel()
        setattr(m, name, part.reshape(table.shape))
    return flat


def first_visits(paths: np.ndarray, hops: np.ndarray) -> np.ndarray:
    """Mask of the hops of each path (a row of ``paths``, its first ``hops`` entries) where the
    forwarding node appears for the first time on that path; later visits of a node are False."""
    length = paths.shape[1]
    on_path = np.arange(length)[None, :] < hops[:, None]
    earlier = np.tri(length, length, -1, dtype=bool)  # earlier[j, i]: hop i comes before hop j
    seen_before = ((paths[:, :, None] == paths[:, None, :]) & earlier[None]).any(axis=2)
    return on_path & ~seen_before


def rank_within_groups(keys: np.ndarray) -> np.ndarray:
    """For each element, how many earlier elements share its key (0 for the first of a key)."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    run = np.arange(keys.size) - np.repeat(starts, np.diff(np.r_[starts, keys.size]))
    rank = np.empty_like(run)
    rank[order] = run
    return rank


def gini(values: np.ndarray) -> float:
    """Gini coefficient, mean absolute difference over twice the mean absolute value.

    Equals the usual Gini for non-negative values and stays defined (in [0, 1] for
    non-negative, possibly above 1 with losses) when some profits are negative.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return 0.0
    scale = np.abs(x).mean()
    if scale == 0:
        return 0.0
    xs = np.sort(x)
    n = x.size
    # sum_{i<j} |x_i - x_j| in O(n log n)
    idx = np.arange(1, n + 1)
    total_diff = 2.0 * np.sum((2 * idx - n - 1) * xs) / 2.0
    return float(total_diff / (n * n * scale))
