"""The live node's logic as a sans-IO state machine: it never touches a socket, a clock or a disk.

:class:`NodeCore` is the whole behaviour of one node. The I/O layer (``runtime.node``) feeds it
events with the current time and carries out the actions it returns:

=========================================  ==============================================================
event (method)                             what the I/O layer does with the returned actions
=========================================  ==============================================================
``connection_made(conn, outbound, peer)``  :class:`Send` frames to a connection, :class:`Close` it,
``frame_received(conn, msg, now)``         :class:`Durable` — write the records to the store *in one
``connection_lost(conn)``                  transaction*, then do its ``then`` sends (a voucher is on
``poll(now)`` (timers: ingest, emission,   disk before it is acknowledged or sent),
routes, timeouts)                          :class:`CheckChannel` — read a channel on chain and report
``channel_checked(...)``                   back with ``channel_checked``
=========================================  ==============================================================

:class:`SendSealed` is a send whose signature the I/O layer adds at the end of its turn, one signature
for all of the turn's (:meth:`NodeCore.seal`, ``runtime.node.sealing``), keeping each frame's place
among its connection's; at the same moment it calls :meth:`NodeCore.flush_payments` (one voucher per
peer per turn). ``next_timer()`` says when ``poll`` is next needed. Tests drive two or more cores against each
other with in-memory fakes (``tests/node``).

**The self-aware loop** (the origin's, with a pluggable scorer): each piece that finished arriving
is *observed* with ``agents.features.build_observation`` from the node's ``NeighbourMemory``,
*scored* by the routing policy (a baseline or an exported learned policy), *forwarded*; the
acknowledgements (hop ack, forward report, and the end-to-end evidence: the destination's signed
receipt, or a loss report or no receipt by the deadline plus a grace) are *recorded* in memory
(transfers, hand-overs, delays, outcomes), which feeds the empathy protocol's coherence
check in the next observation; the node's *quote* follows ``agents.economics.quote_price`` on its
load and its fair-looking neighbours' quotes.

**Receipts** (``runtime.node.receipts``): the destination of a piece signs a receipt over (piece id,
source, destination, payload hash, size) with its node key; it travels back hop by hop, and each
hop believes it only if it matches the hop's own record of the piece and recovers to the
destination's address the hop knows (see that module). Memory learns a success only from such a
receipt, a loss from a loss report or from no receipt by ``deadline + grace``; an unsigned
``Outcome(delivered=True)``, a receipt signed by anyone but the destination, one naming another
piece or destination and one for a piece never forwarded there are protocol violations
(``forged_receipts`` counts the forged delivery claims); a receipt is believed once, so a replayed
one changes nothing (``replayed_receipts``; a piece that looped through a node brings its receipt
back twice, honestly).

**One entry, one outcome** (:mod:`runtime.node.custody`): a node holds one record per piece id,
identified by what the piece is (id, source, destination, payload hash, size) and whom it came
from and went to. A piece whose id the node already holds (queued, in flight, kept for late
evidence) or resolved recently is refused (``duplicate piece``: counted, never charged, the link
kept), so an ack, a receipt, a loss report or a refusal can only name that one record, and settles it
only if it comes from the peer the piece was handed to: one delivery is paid once. Unsettled records
are capped per downstream peer (``max_inflight_per_peer``, free acks included) and, in
``on_delivery``, the upstream charges of an upstream's pieces still in flight count against its
credit (``credit limit`` refusals), so no peer can park pieces here for free. The ids a source emits
mix its seeded draw with a per-life ``id_salt`` (random unless set), so a restarted source never
reuses the ids of an earlier life.

**The ledger** (:mod:`runtime.node.ledger`): charges, unpaid credit and vouchers, per peer in one
:class:`~runtime.node.ledger.Account`, under the rules of :class:`~runtime.node.ledger.Ledger`; the
credit rule (why honest ledgers reconcile) and the ledger's invariants are stated there.

**Payments**: the upstream node pays the downstream node's quote x size per piece. The payee
charges in its hop ``Ack``; the payer checks the charge against the quote it was told. In mode
``on_delivery`` (the default) the payer keeps the charge pending and pays it only when a valid
receipt for that piece comes back through that payee; a charge without a receipt by ``deadline +
grace + late_receipt_window_s`` is never paid, and the payee counts a charge as owed (unpaid
credit) only once it has passed the piece's receipt upstream (the credit rule, :mod:`runtime.node.ledger`).
In mode ``per_hop`` the payer pays at the ack. Paying means
raising the cumulative amount and signing a voucher; the payee verifies it (right channel, strictly
increasing, within the deposit, signed by the channel's payer) and acknowledges it only once stored.
A payer whose unpaid credit reaches ``unpaid_limit_wei`` is cut off. Any protocol violation closes
that connection with a logged reason and lowers the peer's standing in memory; the node keeps
serving everyone else.

**Hardening** (every peer is untrusted; see :class:`NodeSettings` for the knobs):

* money moves only on what this node signed or verified: the amount paid to a peer is the highest
  voucher this node signed (from its own store after a restart), never a peer's ``vack``; a
  ``vack`` above it, or naming an amount this node never signed, is refused (``forged vack``);
* the payee charges only the quote it announced, with announced rises capped per step
  (``quote_step_up``); the payer accepts a charge up to the highest quote announced since the
  hand-over (at most ``max_quote_jump`` times the hand-over quote) and routes only to peers whose
  quote is at most ``price_ceiling`` times the market reference (the lower median of its own cost
  and its neighbours' quotes); outlier quotes are left out of the market it follows;
* per peer, bounded: piece size in ``[min_piece_size, max_piece_size]`` (others refused), deadlines at most
  ``max_piece_horizon_s`` ahead, credit checked (queued pieces included) when a piece arrives,
  a fair share of the queue; pieces are taken in round robin over upstreams, so one peer delays
  another by at most one piece of ``max_piece_size`` per turn; a peer's queue is dropped when it leaves;
* distances above :data:`MAX_ROUTE_STEPS` mean unreachable, at most :data:`MAX_ROUTES` per peer
  and per advertisement, and every frame this node sends is checked against the decoder's limits;
* handshakes: pending inbound ones capped globally and per source address (outbound dials not
  counted; the oldest silent one makes room), a short pre-hello timeout; ``channel`` frames are
  idempotent and chain lookups rate-limited per peer;
* late acks are ignored (a late accepted charge is still paid), throughput is measured locally
  (never from the peer's self-reported ``wait``); ignored frames are counted per reason class
  (``rejections``, keys from the fixed :class:`runtime.node.rejections.Reason` enum; the variable
  part only in the log line) and per configured peer (``rejections_by_peer``) next to the
  violations that close a link (also in ``cutoffs_by_peer``); a piece that comes back from the peer
  it was handed to is an honest routing loop (``routing loop``), refused but never held against it.

**Scripted dishonest kinds** (as in ``envs.core``): ``blackhole`` takes pieces and payment, drops
them and advertises routes at half their length; ``bandwidth_liar`` claims far more bandwidth than
it has; ``overpricer`` quotes ``price_factor`` times the fair price; ``forger`` is a blackhole that
also claims the delivery of what it drops (a receipt signed with its own key, or an unsigned
``Outcome(delivered=True)``). Wire-level attackers (``vack_forger``, ``piece_bomber``, ...) live in
:mod:`runtime.node.attackers`; the ``learned`` kind, played by an exported attacker policy, in
:mod:`runtime.node.learned` (through :meth:`NodeCore._handle`, :meth:`NodeCore._advertised` and
:meth:`NodeCore.price_factor`).
"""

from __future__ import annotations

import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from msgspec.structs import replace as msgspec_replace

from agents.economics import quote_price
from agents.empathy import coherence_score
from agents.features import MAX_HOPS, SLOTS, DecisionContext, build_observation
from agents.gossip import MAX_REPORT_COUNT, rating
from agents.memory import NeighbourMemory
from runtime.node import pricing, routing, sealing
from runtime.node.acceptance import AcceptanceVerifier, custody_digest, sign_acceptance
from runtime.node.custody import LATE_KEPT, Custody, Entry
from runtime.node.gossip import Gossip
from runtime.node.ledger import Account, Ledger
from runtime.node.pricing import MAX_QUOTE_WEI
from runtime.node.receipts import Expected, ReceiptVerifier, make_receipt, payload_hash, receipt_digest
from runtime.node.rejections import RejectionCounter
from runtime.node.routing import MAX_ROUTE_STEPS, MAX_ROUTES, NO_ROUTE, best_routes, bounded_vector, clamp_routes
from runtime.node.store import ChannelRecord, VoucherRecord
from runtime.node.wire import (
    MAX_U64,
    PROTOCOL_VERSION,
    Ack,
    Auth,
    Bye,
    ChannelInfo,
    Forwarded,
    Hello,
    Message,
    Outcome,
    Piece,
    Quote,
    Rating,
    Receipt,
    Routes,
    Voucher,
    VoucherAck,
    auth_digest,
)

__all__ = [
    "KINDS",
    "MAX_QUOTE_WEI",
    "MAX_ROUTES",
    "MAX_ROUTE_STEPS",
    "NO_ROUTE",
    "PAYMENT_MODES",
    "CheckChannel",
    "Close",
    "Durable",
    "NodeCore",
    "NodeSettings",
    "PeerSpec",
    "Send",
    "StreamSpec",
]

KINDS = (
    "honest", "blackhole", "bandwidth_liar", "overpricer", "forger", "grey_hole", "on_off", "selective",
    "slanderer", "ballot_stuffer", "blame_shifter",
)  # fmt: skip
#: Kinds that drop (some of) what they take and advertise short routes to attract it (envs.core.ATTRACTORS).
DROPPING_KINDS = ("blackhole", "forger", "grey_hole", "on_off", "selective", "ballot_stuffer", "blame_shifter")
#: ``on_delivery``: a hop's charge is paid when the destination's receipt comes back; ``per_hop``: at its ack.
PAYMENT_MODES = ("on_delivery", "per_hop")
#: Per-peer history sizes: quotes heard (signed amounts: runtime.node.ledger.SIGNED_KEPT).
QUOTE_HISTORY = 64
#: A blackhole advertises this fraction of its true distance (envs.core.BLACKHOLE_ROUTE_DISCOUNT).
BLACKHOLE_ROUTE_DISCOUNT = 0.5


# ------------------------------------------------------------------------------------------------
# actions
# ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Send:
    """Write ``msg`` to connection ``conn``."""

    conn: int
    msg: Message


@dataclass(slots=True)
class SendSealed:
    """Write ``msg`` to ``conn`` once this node's key has signed ``digest``: the I/O layer gathers the
    sealed sends of one turn, in order, has :meth:`NodeCore.seal` sign them under one Merkle root
    (``runtime.node.sealing``) and sends each where it stands among that connection's frames."""

    conn: int
    msg: Ack | Receipt  # its signature (an ack's ``custody``, a receipt's ``signature``) still empty
    digest: bytes


@dataclass(slots=True)
class Close:
    """Close connection ``conn`` (after flushing what was sent); ``reason`` is logged."""

    conn: int
    reason: str


@dataclass(slots=True)
class Durable:
    """Store ``records`` durably (one transaction), *then* perform the ``then`` sends."""

    records: list[VoucherRecord | ChannelRecord]
    then: list[Send] = field(default_factory=list)


@dataclass(slots=True)
class CheckChannel:
    """Read channel ``channel_id`` on chain and call ``NodeCore.channel_checked`` with it."""

    conn: int
    peer: str
    channel_id: int


Action = Send | SendSealed | Close | Durable | CheckChannel


# ------------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------------


@dataclass
class PeerSpec:
    """A configured neighbour."""

    node_id: str
    host: str = "127.0.0.1"
    port: int = 0
    address: str = ""  # its payout address; empty: accept what its hello says
    latency_ms: float = 10.0  # emulated one-way link latency


@dataclass
class StreamSpec:
    """A stream this node sources: ``rate`` pieces/s, round-robin to ``subscribers``."""

    subscribers: list[str]
    rate: float = 10.0
    value: float = 1.0
    deadline_slack: float = 12.0  # steps beyond deadline_factor times the estimated route latency
    payload_bytes: int = 256
    deadline_factor: float = 2.0
    #: subscriber -> steps of the true shortest path to it (a scenario's mesh knows the graph, as the
    #: environment does); a piece's deadline uses it instead of the routing tables' estimate
    route_steps: dict[str, float] | None = None
    #: stop emitting this many seconds after the streams start (None: until the node stops), so that
    #: what was emitted can still be delivered before the run ends (an episode, then its tail)
    emit_for_s: float | None = None


@dataclass
class NodeSettings:
    """Behaviour of one node (everything but I/O addresses and keys)."""

    node_id: str
    address: str
    kind: str = "honest"
    capacity: float = 1.0  # size units ingested per step; 0 = unlimited
    claimed_bw: float | None = None  # what the hello announces; default: the capacity (1.0 if unlimited)
    base_cost: float = 0.02
    price_factor: float = 1.0
    step_s: float = 0.01
    queue_limit: int = 20
    wei_per_unit: int = 10**12
    unpaid_limit_wei: int = 10**13  # ~400 pieces at the default prices: a few round trips of acks
    handshake_timeout_s: float = 5.0
    idle_timeout_s: float = 15.0
    # A delivery's outcome travels back hop by hop: wait this many steps past a piece's deadline
    # before counting it lost (covers the return path; the environment learns deliveries at once).
    outcome_grace_steps: float = 24.0
    max_pending_handshakes: int = 16  # inbound connections not yet authenticated (outbound dials not counted)
    max_pending_per_source: int = 8  # of which from one source address
    hello_timeout_s: float = 1.0  # an inbound connection that sends no hello within this is closed
    route_interval_s: float = 0.25
    overcharge_tolerance: float = 0.01  # rounding slack on quote x size
    payment: str = "on_delivery"  # or "per_hop" (see PAYMENT_MODES)
    # node id -> address of nodes beyond the neighbours (destinations whose receipts we check)
    directory: dict[str, str] = field(default_factory=dict)
    min_piece_size: float = 0.01  # pieces outside [min, max] are violations (size 0 would travel free)
    max_piece_size: float = 4.0  # bounds the time one piece holds the ingest (others wait at most that)
    max_piece_horizon_s: float = 120.0  # a piece's deadline is kept at most this far ahead
    price_ceiling: float = 10.0  # route only to peers quoting at most this times the market reference
    max_quote_jump: float = 2.0  # a charge may use a quote announced after hand-over, up to this times it
    quote_step_up: float = 1.25  # an announced quote rises at most this factor per announcement
    chain_check_interval_s: float = 1.0  # at most one chain lookup per peer per interval
    # A lost record is kept this long past deadline + grace: a late ack still fixes its charge and a
    # genuine receipt that still verifies against it is paid (the credit rule, see runtime.node.ledger).
    late_receipt_window_s: float = 10.0
    max_inflight_per_peer: int = 256  # pieces handed to one peer and not yet settled (acked for free or not)
    # When a payer's link breaks, unpaid credit booked in this many seconds before is forgiven (the
    # receipts behind it may never have reached the payer): see Ledger.forgive_unacknowledged.
    reconcile_window_s: float = 1.0
    streams: list[StreamSpec] = field(default_factory=list)
    seed: int = 0
    # Mixed into the ids of the pieces this node emits, so a restarted source never reuses the ids of
    # an earlier life (None: drawn from os randomness at start; set it for reproducible ids in tests).
    id_salt: int | None = None
    # adaptive dishonest kinds (as envs.scenario's): a grey hole drops each piece with
    # drop_probability; an on-off node alternates honest_steps forwarding and attack_steps dropping
    # (phase drawn from the seed); a selective node drops pieces worth more than value_threshold
    drop_probability: float = 0.5
    honest_steps: int = 40
    attack_steps: int = 20
    value_threshold: float = math.inf
    # Signed custody (runtime.node.acceptance): a piece that times out here waits this long for its
    # downstream's loss report, whose custody evidence may show the loss was beyond that peer.
    blame_wait_s: float = 1.0
    # False: hop acks carry no custody acceptance (this node then takes every loss it relays; for
    # benchmarks that compare the cost of custody signatures)
    sign_custody: bool = True
    # Batched signatures (runtime.node.sealing): the receipts and custody acceptances of one turn of
    # the I/O loop share one signature over their Merkle root, and the vouchers of one turn to one
    # peer are one voucher; False: a signature per receipt, acceptance and paid piece.
    batch_signatures: bool = True
    # Trust gossip (runtime.node.gossip): a signed rating frame to every peer each period; off: no
    # frames sent, none used (the network view stays at its prior).
    gossip: bool = True
    gossip_period_s: float = 0.25
    # The node's fellow cheats (scripted liars in gossip: slanderer, ballot_stuffer; learned attackers)
    allies: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------------
# state
# ------------------------------------------------------------------------------------------------


def _on_account(name: str) -> property:
    """A field of the peer's :class:`~runtime.node.ledger.Account`, as an attribute of its holder."""
    return property(
        lambda self: getattr(self.account, name),
        lambda self, value: setattr(self.account, name, value),
        doc=f"``account.{name}``",
    )


@dataclass
class _Conn:
    id: int
    outbound: bool
    expected: str | None
    opened: float
    last_rx: float
    peer: str | None = None
    open: bool = False
    closed: bool = False
    nonce: bytes = b""
    hello: Hello | None = None  # the peer's hello, until its auth proves it
    source: str | None = None  # the remote address of an inbound connection
    channel_acked: bool = False  # the payer's channel was answered on this connection


@dataclass(slots=True)
class _Queued:
    """A piece waiting for the ingest, with the charge fixed when it arrived."""

    piece: Piece
    conn: int
    peer: str
    arrived: float
    charge: int


@dataclass
class _PeerGuard:
    """What bounds and checks one peer (kept apart from the routing and payment state)."""

    inbox: deque = field(default_factory=deque)  # _Queued pieces from this peer, oldest first
    reserved_wei: int = 0  # charges of queued pieces (counted as credit when a piece arrives)
    quotes_heard: deque = field(default_factory=lambda: deque(maxlen=QUOTE_HISTORY))  # (time, quote)
    check_pending: int | None = None  # channel id being read on chain
    check_wanted: int | None = None  # channel id to read once the rate limit allows (asked too soon)
    next_check_at: float = 0.0
    account: Account = field(default_factory=Account, repr=False)  # the peer's money (its _Peer's)

    # the payer's side of the peer's account (runtime.node.ledger), where it used to be kept
    signed = _on_account("signed")
    pay_acked = _on_account("pay_acked")
    accepted_wei = _on_account("accepted_wei")


@dataclass
class _Peer:
    spec: PeerSpec
    slot: int
    link_steps: float
    conn: int | None = None
    address: str = ""
    claimed_bw: float = 0.0
    quote_wei: int = 0
    routes: dict[str, float] = field(default_factory=dict)
    violations: int = 0
    guard: _PeerGuard = field(default_factory=_PeerGuard)
    account: Account = field(default_factory=Account)  # the money both ways (runtime.node.ledger)

    def __post_init__(self) -> None:
        self.account.peer = self.spec.node_id
        self.guard.account = self.account

    # the account's fields, read and written where they used to be kept
    pay_channel = _on_account("pay_channel")
    pay_deposit = _on_account("pay_deposit")
    pay_cumulative = _on_account("pay_cumulative")
    pay_confirmed = _on_account("pay_confirmed")
    pay_pending = _on_account("pay_pending")
    recv_channel = _on_account("recv_channel")
    recv_deposit = _on_account("recv_deposit")
    recv_payer = _on_account("recv_payer")
    recv_paid = _on_account("recv_paid")
    owed = _on_account("owed")
    recent_credit = _on_account("recent_credit")


_Inflight = Entry  # the custody record of a piece handed on (runtime.node.custody)


def _bump(counts: dict[str, int], key: str, cap: int = 256) -> None:
    """Count ``key``, keeping at most ``cap`` distinct keys (names come from peers)."""
    if key in counts or len(counts) < cap:
        counts[key] = counts.get(key, 0) + 1


class NodeCore:
    """The sans-IO node: routing, memory, payments, quotes, handshakes and timeouts.

    :param settings: the node's behaviour.
    :param peers: configured neighbours; at most ``SLOTS`` (nearest first) get a slot.
    :param policy: anything with ``act(features, action_mask) -> slots``.
    :param signer: ``runtime.chain.vouchers.VoucherSigner`` of this node's key (None: cannot pay).
    :param verifier: ``runtime.chain.vouchers.VoucherVerifier`` of the channel contract.
    :param received: vouchers this node holds as payee (from the store after a restart).
    :param log: ``log(event, **fields)`` for structured logs.
    :param sign_digest: ``sign_digest(digest) -> 65-byte signature`` with this node's key, to prove
        its identity in the handshake (None: the node cannot authenticate, so no peer accepts it).
    """

    #: the behaviour kinds this class runs (``runtime.node.attackers.AttackerCore`` runs the attackers)
    kinds: tuple[str, ...] = KINDS

    def __init__(
        self,
        settings: NodeSettings,
        peers: list[PeerSpec],
        policy,
        signer=None,
        verifier=None,
        received: dict[int, VoucherRecord] | None = None,
        log: Callable[..., None] | None = None,
        sign_digest: Callable[[bytes], bytes] | None = None,
    ) -> None:
        if settings.kind not in self.kinds:
            raise ValueError(f"unknown node kind '{settings.kind}' (known: {', '.join(self.kinds)})")
        if settings.payment not in PAYMENT_MODES:
            raise ValueError(f"unknown payment mode '{settings.payment}' (known: {', '.join(PAYMENT_MODES)})")
        self.s = settings
        self.policy = policy
        self.signer = signer
        self.verifier = verifier
        self.log = log or (lambda event, **fields: None)
        self.sign_digest = sign_digest
        self.on_delivery = settings.payment == "on_delivery"
        self.receipts = ReceiptVerifier()
        self._forge_conn, self._forge_signed = -1, False  # forger kind: which fake it sends where
        self.rng = np.random.default_rng(settings.seed)
        # a stream of its own, so a dishonest kind's choices never shift the node's other draws
        self._drop_rng = np.random.default_rng([settings.seed, 0xD60])
        self._onoff_phase = int(self._drop_rng.integers(0, max(1, settings.honest_steps + settings.attack_steps)))
        self._grace = settings.outcome_grace_steps * settings.step_s
        #: one record per piece id, from arrival to its one outcome (runtime.node.custody)
        self.custody = Custody(self._grace, settings.late_receipt_window_s)
        self.id_salt = settings.id_salt if settings.id_salt is not None else secrets.randbits(63)
        ordered = sorted(peers, key=lambda p: (p.latency_ms, p.node_id))[:SLOTS]
        self.peers: dict[str, _Peer] = {
            p.node_id: _Peer(p, k, max(p.latency_ms / 1000.0 / settings.step_s, 0.0), address=p.address)
            for k, p in enumerate(ordered)
        }
        self.by_slot: list[_Peer | None] = [None] * SLOTS
        for p in self.peers.values():
            self.by_slot[p.slot] = p
        self.memory = NeighbourMemory(1, SLOTS)
        self.memory.reset(np.zeros((1, SLOTS)), np.zeros((1, SLOTS)))
        self.conns: dict[int, _Conn] = {}
        self.claimed_bw = settings.claimed_bw if settings.claimed_bw is not None else (settings.capacity or 1.0)
        self.quote_wei = self._quote_wei(quote_price(settings.base_cost, 0.0, []) * self.price_factor())
        self.backlog = 0
        # The ingest takes one piece at a time, in round robin over the upstreams with queued pieces.
        self._serving: tuple[float, _Queued] | None = None  # (ready_at, piece being taken in)
        self._turns: deque[str] = deque()  # upstream ids with a non-empty inbox, next first
        self._ready: list[tuple[Piece, int | None, float, int]] = []  # (piece, upstream, arrived, charge)
        self._seq = 0
        self._clock = 0.0  # the latest time an event brought (for what needs a time outside one)
        self.delivered_ids: set[int] = set()
        self.emitting = False
        self._emit_started = 0.0
        self.draining = False
        self._next_emit = [math.inf] * len(settings.streams)
        self._rr = [0] * len(settings.streams)
        self._next_routes = 0.0
        self._next_housekeeping = 0.0
        self._last_quote_sent = self.quote_wei
        self.stats: dict[str, float] = {
            k: 0
            for k in (
                "generated",
                "received",
                "forwarded",
                "delivered",
                "delivered_late",
                "delivered_last_fifth",
                "dropped",
                "refused",
                "outcomes_ok",
                "outcomes_lost",
                "vouchers_sent",
                "vouchers_received",
                "paid_wei",
                "earned_wei",
                "receipts_signed",
                "receipts_verified",
                "receipts_relayed",
                "forged_receipts",
                "late_receipts",
                "replayed_receipts",
                "late_receipts_paid_wei",
                "forgiven_on_disconnect_wei",
                "duplicate_pieces",
                "looped_pieces",
                "unpaid_for_lack_of_receipt_wei",
                "uncredited_for_lack_of_receipt_wei",
                "rejected",
                "ignored",
                "decisions",
                "decision_seconds",
                "delivered_latency_steps",  # sum over on-time deliveries here of (arrival - birth) in steps
                "ingest_served",  # pieces whose emulated ingest (size / capacity steps) completed
                "clock_lag_events",  # ... of them completed more than one step after their emulated time
                "clock_lag_sum_s",  # total seconds the CPU ran behind the emulated clock at those completions
                "clock_lag_max_s",
                "custody_signed",  # custody acceptances signed here (one per piece taken in)
                "custody_verified",  # downstream acceptances verified here (lost pieces only)
                "losses_own",  # losses attributed to the neighbour that held the piece last
                "losses_beyond",  # losses beyond the neighbour (it showed the next hop's acceptance)
                "forged_custody",  # custody evidence refused (forged, or naming the wrong nodes)
                "forged_custody_sent",  # blame_shifter kind: fake acceptances it sent
                "seals_signed",  # signatures over sealed batches of receipts and acceptances
                "sealed_frames",  # receipts and acceptances those signatures cover
                "receipts_verified_sealed",  # receipts verified here whose signature covers a batch
            )
        }
        #: the money rules over the peers' accounts (runtime.node.ledger)
        self.ledger = Ledger(
            self.on_delivery, settings.reconcile_window_s, self.stats, signer, verifier, dict(received or {}), self.log
        )
        #: vouchers this node holds as payee, by channel (the ledger's)
        self.received_vouchers: dict[int, VoucherRecord] = self.ledger.received
        self._rejections = RejectionCounter(set(self.peers), self.log)
        #: reason class -> count (violations and ignored frames; keys from a fixed enum)
        self.rejections: dict[str, int] = self._rejections.counts
        #: peer id ("unauthenticated" before auth) -> reason class -> count; configured peers only
        self.rejections_by_peer: dict[str, dict[str, int]] = self._rejections.by_peer
        # on-time deliveries here per source, pieces emitted here per destination (capped key sets)
        self.delivered_from: dict[str, int] = {}
        self.generated_to: dict[str, int] = {}
        self.forward_latencies: list[float] = []
        self._mem_queue: dict[str, tuple[list[int], list[float]]] = {
            k: ([], []) for k in ("transfers", "handovers", "delays", "outcomes")
        }
        self._outcome_own: list[bool] = []  # per queued outcome: the neighbour held the piece last
        self.acceptances = AcceptanceVerifier()
        #: piece id -> (slot, peer, until): timed-out pieces waiting for their downstream's evidence
        self._awaiting_blame: OrderedDict[int, tuple[int, str, float]] = OrderedDict()
        #: trust gossip: rating frames out and in, aggregated by agents.gossip (runtime.node.gossip)
        self.gossip = Gossip(settings.node_id, settings.gossip_period_s, settings.gossip)
        self._next_gossip = 0.0
        #: peer id -> charges accepted to pay this turn, signed as one voucher by :meth:`flush_payments`
        self._pay_due: dict[str, int] = {}

    @property
    def inflight(self) -> dict[int, _Inflight]:
        """Piece id -> the live record of a piece this node handed on (its custody's)."""
        return self.custody.live

    # ------------------------------------------------------------------ helpers

    def _quote_wei(self, units: float) -> int:
        return pricing.to_wei(units, self.s.wei_per_unit)

    def price_factor(self) -> float:
        """The factor on the quote formula this node quotes (a learned attacker's changes as it plays)."""
        return self.s.price_factor

    @property
    def announced_wei(self) -> int:
        """The quote this node last announced (hello or ``quote``): the only one it charges."""
        return self._last_quote_sent

    def _charge(self, size: float) -> int:
        """What a piece of ``size`` costs at the announced quote (always within the wire's u64)."""
        return min(MAX_U64, int(self.announced_wei * size))

    def market_reference_wei(self) -> int:
        """The market price this node measures others against: the lower median of its own cost
        term and its connected neighbours' quotes (one neighbour alone cannot move it)."""
        own = self._quote_wei(quote_price(self.s.base_cost, 0.0, []))
        return pricing.market_reference(own, (p.quote_wei for p in self.open_peers()))

    def price_ceiling_wei(self) -> int:
        """Quotes above this are outliers: left out of the market, their peers not routed to."""
        return int(self.s.price_ceiling * self.market_reference_wei())

    def _steps(self, seconds: float) -> float:
        return seconds / self.s.step_s

    def open_peers(self) -> list[_Peer]:
        """Peers with an open, handshaken connection."""
        return [p for p in self.peers.values() if p.conn is not None]

    def unpaid_wei(self, peer: str) -> int:
        """What ``peer`` owes us beyond its latest voucher."""
        return self.peers[peer].account.unpaid_wei

    def known_address(self, node_id: str) -> str:
        """The address this node itself knows for ``node_id`` (own, a peer's, the directory's), or ``""``."""
        if node_id == self.s.node_id:
            return self.s.address
        p = self.peers.get(node_id)
        if p is not None and (p.address or p.spec.address):
            return p.address or p.spec.address
        return self.s.directory.get(node_id, "")

    def distance(self, dst: str) -> float:
        """Estimated steps from this node to ``dst`` (routing table), ``inf`` if unknown."""
        return routing.distance(dst, self.s.node_id, self._peer_routes())

    def _peer_routes(self) -> list[tuple[str, float, dict[str, float]]]:
        """The open peers as the routing table sees them."""
        return [(p.spec.node_id, p.link_steps, p.routes) for p in self.open_peers()]

    def _count_rejection(
        self, conn: int, reason: str, event: str = "reject", cutoff: bool = False, blame: bool = True
    ) -> str | None:
        """Count ``reason`` by its class (:class:`runtime.node.rejections.Reason`) and peer, and log
        the whole line, at most 20 lines per class per 10 s (a flood of bad frames with ever new
        numbers leaves the same few keys and never becomes a flood of log lines)."""
        c = self.conns.get(conn)
        peer = c.peer if c else None
        cut = cutoff and c is not None and c.open
        self._rejections.count(reason, peer, event=event, cutoff=cut, blame=blame, conn=conn)
        return peer

    def _ignore(self, conn: int, reason: str, blame: bool = True) -> list[Action]:
        """A frame refused without closing the connection (a harmless repeat, a late ack): counted
        (``blame=False``: by class only, not against the peer)."""
        self.stats["ignored"] += 1
        self._count_rejection(conn, reason, event="ignore", blame=blame)
        return []

    def _violation(self, conn: int, reason: str) -> list[Action]:
        """A peer broke the protocol: log, count, lower its standing, close its connection."""
        peer = self._count_rejection(conn, reason, cutoff=True)
        self.stats["rejected"] += 1
        if peer in self.peers:
            p = self.peers[peer]
            p.violations += 1
            self._learn("handovers", p.slot, 0.0)
            self._learn("outcomes", p.slot, 0.0, own=True)
        return [Send(conn, Bye(reason[:200])), *self._close(conn, reason)]

    def protocol_error(self, conn: int, reason: str) -> list[Action]:
        """The I/O layer could not decode what ``conn`` sent (malformed or oversized frame)."""
        return self._violation(conn, reason)

    def _close(self, conn: int, reason: str) -> list[Action]:
        c = self.conns.get(conn)
        if c is None or c.closed:
            return []
        c.closed = True
        self._detach(c)
        return [Close(conn, reason)]

    def _detach(self, c: _Conn) -> None:
        if c.open and c.peer in self.peers and self.peers[c.peer].conn == c.id:
            p = self.peers[c.peer]
            p.conn = None
            p.pay_confirmed = False
            self.gossip.forget(p.slot)
            self._drop_inbox(p)
            self.ledger.forgive_unacknowledged(p.account, self._clock)
        c.open = False

    def _drop_inbox(self, p: _Peer) -> None:
        """A peer left: its queued pieces go with it (the one being taken in is discarded when done)."""
        g = p.guard
        self.backlog -= len(g.inbox)
        g.inbox.clear()
        g.reserved_wei = 0
        if self._serving is not None and self._serving[1].peer == p.spec.node_id:
            g.reserved_wei = self._serving[1].charge
        g.check_pending = g.check_wanted = None
        if p.spec.node_id in self._turns:
            self._turns.remove(p.spec.node_id)

    def hello(self, nonce: bytes = b"\x00" * 16) -> Hello:
        """This node's hello, carrying the connection's fresh ``nonce``."""
        return Hello(
            version=PROTOCOL_VERSION,
            node_id=self.s.node_id,
            address=self.s.address,
            claimed_bw=float(self.claimed_bw),
            quote_wei=self.announced_wei,
            nonce=nonce,
        )

    # ------------------------------------------------------------------ connections

    def connection_made(
        self, conn: int, outbound: bool, now: float, expected: str | None = None, source: str | None = None
    ) -> list[Action]:
        """A TCP connection is up (``expected``: the peer an outbound connection was dialled for;
        ``source``: the remote address of an inbound one)."""
        out: list[Action] = []
        if not outbound:
            out.extend(self._make_room(source))
        self.conns[conn] = _Conn(conn, outbound, expected, now, now, nonce=secrets.token_bytes(16), source=source)
        if not outbound and not self._room_for(source):
            out.extend(self._violation(conn, "too many pending handshakes"))
            return out
        out.append(Send(conn, self.hello(self.conns[conn].nonce)))
        return out

    def _pending_inbound(self, source: str | None = None) -> list[_Conn]:
        return [
            c
            for c in self.conns.values()
            if not c.outbound and not c.open and not c.closed and (source is None or c.source == source)
        ]

    def _room_for(self, source: str | None) -> bool:
        """Whether one more inbound handshake fits (the new one already counted)."""
        return (
            len(self._pending_inbound()) <= self.s.max_pending_handshakes
            and len(self._pending_inbound(source)) <= self.s.max_pending_per_source
        )

    def _make_room(self, source: str | None) -> list[Action]:
        """Before taking a new inbound connection at a cap: close the oldest one that has not even
        said hello (idle sockets cannot hold the node's handshakes hostage)."""
        out: list[Action] = []
        for scope, cap in ((source, self.s.max_pending_per_source), (None, self.s.max_pending_handshakes)):
            pending = self._pending_inbound(scope)
            if len(pending) < cap:
                continue
            silent = [c for c in pending if c.hello is None]
            if silent:
                oldest = min(silent, key=lambda c: (c.opened, c.id))
                out.extend(self._violation(oldest.id, "handshake evicted: a newer connection needed the room"))
        return out

    def connection_lost(self, conn: int) -> list[Action]:
        """The connection is gone (closed by either side or broken)."""
        c = self.conns.pop(conn, None)
        if c is not None:
            self._detach(c)
        return []

    def frame_received(self, conn: int, msg: Message, now: float) -> list[Action]:
        """One decoded frame from ``conn``."""
        c = self.conns.get(conn)
        if c is None or c.closed:
            return []
        c.last_rx = now
        self._clock = max(self._clock, now)
        if not c.open:
            if c.hello is None:
                if not isinstance(msg, Hello):
                    return self._violation(conn, f"unexpected {type(msg).__name__} before hello")
                return self._on_hello(c, msg, now)
            if not isinstance(msg, Auth):
                return self._violation(conn, f"unexpected {type(msg).__name__} before auth")
            return self._on_auth(c, msg, now)
        p = self.peers[c.peer]
        match msg:
            case Piece():
                return self._on_piece(c, p, msg, now)
            case Ack():
                return self._on_ack(c, p, msg, now)
            case Voucher():
                return self._on_voucher(c, p, msg)
            case VoucherAck():
                return self._on_vack(c, p, msg)
            case Forwarded():
                return self._on_forwarded(p, msg, now)
            case Receipt():
                return self._on_receipt(c, p, msg, now)
            case Outcome():
                return self._on_outcome(c, p, msg, now)
            case Routes():
                p.routes = self._clamp_routes(msg.dist)
                if len(p.routes) < len(msg.dist) - (self.s.node_id in msg.dist):
                    return self._ignore(conn, "unreachable routes: distances above the cap dropped")
                return []
            case Quote():
                self._hear_quote(p, msg.quote_wei, now)
                return []
            case Rating():
                slot_of = {q.spec.node_id: q.slot for q in self.open_peers()}
                reason = self.gossip.receive(p.slot, p.spec.node_id, p.address, msg, slot_of, now)
                return self._ignore(conn, reason) if reason is not None else []
            case ChannelInfo():
                return self._on_channel_info(c, p, msg, now)
            case Bye():
                self.log("bye", peer=p.spec.node_id, reason=msg.reason)
                return self._close(conn, f"peer said bye: {msg.reason}")
            case Hello():
                return self._violation(conn, "duplicate hello")
        return self._violation(conn, f"unknown message {type(msg).__name__}")  # pragma: no cover

    def _on_hello(self, c: _Conn, msg: Hello, now: float) -> list[Action]:
        if msg.version != PROTOCOL_VERSION:
            return self._violation(c.id, f"protocol version {msg.version} (we speak {PROTOCOL_VERSION})")
        if c.expected is not None and msg.node_id != c.expected:
            return self._violation(c.id, f"dialled {c.expected}, answered by {msg.node_id}")
        p = self.peers.get(msg.node_id)
        if p is None:
            return self._violation(c.id, f"unknown peer: {msg.node_id}")
        if p.spec.address and p.spec.address.lower() != msg.address.lower():
            return self._violation(c.id, f"address mismatch: {msg.node_id} is not {msg.address}")
        if p.conn is not None and p.conn != c.id:
            return self._violation(c.id, f"duplicate connection: {msg.node_id} is already connected")
        c.hello = msg
        sig = (
            self.sign_digest(auth_digest(msg.nonce, self.s.node_id, self.s.address)) if self.sign_digest else bytes(65)
        )
        return [Send(c.id, Auth(sig))]

    def _on_auth(self, c: _Conn, auth: Auth, now: float) -> list[Action]:
        from runtime.chain.vouchers import recover_digest_signer

        msg = c.hello
        assert msg is not None
        try:
            signer = recover_digest_signer(auth_digest(c.nonce, msg.node_id, msg.address), auth.signature)
        except ValueError:  # the vouchers module's signature error (malformed or unrecoverable)
            signer = ""
        if signer.lower() != msg.address.lower():
            return self._violation(c.id, f"bad hello signature: {msg.node_id} did not prove {msg.address}")
        p = self.peers[msg.node_id]
        if p.conn is not None and p.conn != c.id:
            return self._violation(c.id, f"duplicate connection: {msg.node_id} is already connected")
        c.open, c.peer = True, msg.node_id
        p.conn = c.id
        p.address = msg.address
        p.claimed_bw = msg.claimed_bw
        self._hear_quote(p, msg.quote_wei, now)
        m, k = self.memory, p.slot
        m.claimed_bw[0, k] = msg.claimed_bw
        if m.bw_count[0, k] == 0:
            m.observed_bw[0, k] = msg.claimed_bw
        m.quote[0, k] = msg.quote_wei / self.s.wei_per_unit
        self.log("peer_up", peer=msg.node_id, outbound=c.outbound, claimed_bw=msg.claimed_bw, quote_wei=msg.quote_wei)
        out: list[Action] = [Send(c.id, self._routes_msg(msg.node_id))]
        if p.pay_channel is not None:
            out.append(Send(c.id, ChannelInfo(p.pay_channel)))
        return out

    # ------------------------------------------------------------------ channels

    def set_pay_channel(self, peer: str, channel_id: int, deposit: int, cumulative: int = 0) -> list[Action]:
        """We pay ``peer`` through ``channel_id`` (opened on chain or restored from the store)."""
        p = self.peers[peer]
        self.ledger.set_pay_channel(p.account, channel_id, deposit, cumulative)
        if p.conn is not None:
            return [Send(p.conn, ChannelInfo(channel_id))]
        return []

    def _hear_quote(self, p: _Peer, quote_wei: int, now: float) -> None:
        p.quote_wei = quote_wei
        p.guard.quotes_heard.append((now, quote_wei))
        self.memory.quote[0, p.slot] = quote_wei / self.s.wei_per_unit

    def _clamp_routes(self, dist: dict[str, float]) -> dict[str, float]:
        """A peer's distance vector, bounded (:func:`runtime.node.routing.clamp_routes`)."""
        return clamp_routes(dist, self.s.node_id)

    def _on_channel_info(self, c: _Conn, p: _Peer, msg: ChannelInfo, now: float) -> list[Action]:
        """Idempotent: a known channel is answered once per connection, without the chain; a new one
        is read on chain at most once per ``chain_check_interval_s``, one lookup at a time."""
        g, cid = p.guard, msg.channel_id
        if p.recv_channel is not None:
            if cid != p.recv_channel:
                return self._violation(c.id, f"second channel: {cid} after {p.recv_channel}")
            if c.channel_acked:
                return self._ignore(c.id, f"duplicate channel info: channel {cid}")
            c.channel_acked = True
            return [Send(c.id, self.ledger.vack(p.account))]
        if g.check_pending is not None:
            if cid != g.check_pending:
                return self._violation(c.id, f"second channel: {cid} while {g.check_pending} is being read")
            return self._ignore(c.id, f"duplicate channel info: channel {cid}")
        if now < g.next_check_at:  # deferred, not dropped: an honest payer asks once per connection
            g.check_wanted = cid
            return self._ignore(c.id, f"chain lookup rate: channel {cid} asked again within the interval")
        return self._check_channel(c.id, p, cid, now)

    def _check_channel(self, conn: int, p: _Peer, cid: int, now: float) -> list[Action]:
        g = p.guard
        g.check_pending, g.check_wanted, g.next_check_at = cid, None, now + self.s.chain_check_interval_s
        return [CheckChannel(conn, p.spec.node_id, cid)]

    def channel_check_failed(self, peer: str, channel_id: int) -> None:
        """The chain could not be read for ``channel_id``: the peer may ask again after the interval."""
        p = self.peers.get(peer)
        if p is not None and p.guard.check_pending == channel_id:
            p.guard.check_pending = None

    def channel_checked(
        self, conn: int, channel_id: int, payer: str, payee: str, deposit: int, usable: bool
    ) -> list[Action]:
        """The chain's view of a channel a peer announced (``usable``: not closing nor settled)."""
        c = self.conns.get(conn)
        if c is None or not c.open:
            return []
        p = self.peers[c.peer]
        if p.guard.check_pending == channel_id:
            p.guard.check_pending = None
        if payer.lower() != p.address.lower():
            return self._violation(conn, f"channel not from peer: channel {channel_id} is paid by {payer}")
        if payee.lower() != self.s.address.lower():
            return self._violation(conn, f"channel for another payee: channel {channel_id} pays {payee}")
        if not usable or deposit <= 0:
            return self._violation(conn, f"channel unusable: channel {channel_id} is closing, settled or empty")
        self.ledger.channel_checked(p.account, channel_id, deposit, payer)
        record = ChannelRecord(channel_id, "payee", p.spec.node_id, payer, payee, deposit)
        c.channel_acked = True
        self.log("channel_in", peer=p.spec.node_id, channel=channel_id, deposit=deposit, paid=p.recv_paid)
        return [Durable([record], [Send(conn, VoucherAck(channel_id, p.recv_paid))])]

    # ------------------------------------------------------------------ pieces in

    def _piece_problem(self, piece: Piece) -> str | None:
        """Why a piece is refused as a violation (None: it is well formed)."""
        if not self.s.min_piece_size <= piece.size <= self.s.max_piece_size:
            return f"piece size: {piece.size:g} outside [{self.s.min_piece_size:g}, {self.s.max_piece_size:g}]"
        return None

    def _peer_share(self) -> int:
        """Queue places one upstream may hold: an even share of the queue (at least 2)."""
        return max(2, -(-self.s.queue_limit // max(1, len(self.open_peers()))))

    def _on_piece(self, c: _Conn, p: _Peer, piece: Piece, now: float) -> list[Action]:
        if p.recv_channel is None:
            return self._violation(c.id, "unpaid piece: no payment channel")
        problem = self._piece_problem(piece)
        if problem is not None:  # refused, never queued nor charged; the link (and its honest traffic) stays
            self.stats["refused"] += 1
            return [*self._ignore(c.id, problem), Send(c.id, Ack(piece.piece_id, False, 0, 0.0, "piece size"))]
        if self.custody.knows(piece.piece_id):
            # One record per piece id: a second copy (an id reused, a loop) is refused, never charged,
            # so no receipt, loss or refusal can ever name two records. The link stays. A piece that
            # comes back from the very peer it was handed to is an honest routing loop: not its fault.
            self.stats["refused"] += 1
            self.stats["duplicate_pieces"] += 1
            if self.custody.live_for(piece.piece_id, p.spec.node_id) is not None:
                self.stats["looped_pieces"] += 1
                refusal = self._ignore(c.id, f"routing loop: piece {piece.piece_id} came back", blame=False)
            else:
                refusal = self._ignore(c.id, f"duplicate piece: id {piece.piece_id} already held or resolved here")
            return [*refusal, Send(c.id, Ack(piece.piece_id, False, 0, 0.0, "duplicate piece"))]
        g = p.guard
        if self.draining or self.backlog >= self.s.queue_limit or len(g.inbox) >= self._peer_share():
            self.stats["refused"] += 1
            return [Send(c.id, Ack(piece.piece_id, False, 0, 0.0, "draining" if self.draining else "queue full"))]
        # The receipt of this piece must be checkable: we need the destination's address, and one
        # we know ourselves overrides (and must agree with) what the piece says.
        known = self.known_address(piece.dst)
        if known and piece.dst_addr and piece.dst_addr.lower() != known.lower():
            self.stats["refused"] += 1
            return [Send(c.id, Ack(piece.piece_id, False, 0, 0.0, "wrong destination address"))]
        if not known and not piece.dst_addr:
            self.stats["refused"] += 1
            return [Send(c.id, Ack(piece.piece_id, False, 0, 0.0, "unknown destination address"))]
        if known and piece.dst_addr != known:
            piece = msgspec_replace(piece, dst_addr=known)
        # Credit is checked on arrival, before anything is queued: a payer whose acknowledged charges
        # alone would pass the limit is cut off; one whose queued pieces would is refused this piece.
        charge = self._charge(piece.size)
        unpaid = p.account.unpaid_wei
        if unpaid + charge > self.s.unpaid_limit_wei:
            return self._violation(c.id, f"unpaid credit: {unpaid} wei reaches the limit {self.s.unpaid_limit_wei}")
        # on_delivery: the charges of its pieces still in flight here are credit at risk too (a
        # colluding downstream that never answers must not let an upstream park pieces for free).
        at_risk = self.custody.exposure_wei(p.spec.node_id) if self.on_delivery else 0
        if unpaid + g.reserved_wei + at_risk + charge > self.s.unpaid_limit_wei:
            self.stats["refused"] += 1
            return [Send(c.id, Ack(piece.piece_id, False, 0, 0.0, "credit limit"))]
        if piece.deadline > now + self.s.max_piece_horizon_s:  # kept bounded; the piece still travels as sent
            piece = msgspec_replace(piece, deadline=now + self.s.max_piece_horizon_s)
        self.stats["received"] += 1
        self.backlog += 1
        self.custody.hold(piece.piece_id, piece.deadline)
        g.reserved_wei += charge
        g.inbox.append(_Queued(piece, c.id, p.spec.node_id, now, charge))
        if p.spec.node_id not in self._turns:
            self._turns.append(p.spec.node_id)
        if self._serving is None:
            self._serve_next(now)
        return []

    def _service_s(self, size: float) -> float:
        cap = self.s.capacity
        return size / cap * self.s.step_s if cap > 0 else 0.0

    def _serve_next(self, start: float) -> None:
        """Start taking in the next queued piece at ``start``: one piece of the next upstream in turn."""
        while self._turns:
            pid = self._turns.popleft()
            inbox = self.peers[pid].guard.inbox
            if not inbox:
                continue
            item = inbox.popleft()
            if inbox:
                self._turns.append(pid)
            self._serving = (start + self._service_s(item.piece.size), item)
            return
        self._serving = None

    def _run_ingest(self, now: float) -> list[Action]:
        out: list[Action] = []
        while self._serving is not None and self._serving[0] <= now:
            done_at, item = self._serving
            self._clock_lag(now - done_at)
            out.extend(self._ingested(now, item))
            self._serve_next(done_at)
        return out

    def _clock_lag(self, lag: float) -> None:
        """Count how far behind its emulated clock this node's CPU served an ingest: a node on a loaded
        machine says so in its stats instead of silently turning lateness into losses."""
        self.stats["ingest_served"] += 1
        self.stats["clock_lag_sum_s"] += lag
        self.stats["clock_lag_max_s"] = max(self.stats["clock_lag_max_s"], lag)
        if lag > self.s.step_s:
            self.stats["clock_lag_events"] += 1

    def _ingested(self, now: float, item: _Queued) -> list[Action]:
        piece, conn, arrived = item.piece, item.conn, item.arrived
        self.backlog -= 1
        p = self.peers.get(item.peer)
        out: list[Action] = []
        if p is None:
            self.custody.drop(piece.piece_id)
            return out
        p.guard.reserved_wei = max(0, p.guard.reserved_wei - item.charge)
        if p.conn != conn:
            self.custody.drop(piece.piece_id)
            return out  # the upstream went away; its piece goes with it
        charge = item.charge
        self.ledger.earn(p.account, charge)  # per_hop; on_delivery: owed once its receipt went upstream
        # Everything but the nominal service time counts as waiting (queue, and this node's own
        # scheduling lag); a courtesy to the upstream, which measures its own timings.
        service = piece.size / self.s.capacity if self.s.capacity > 0 else 0.0
        wait = min(1e9, max(0.0, self._steps(now - arrived) - service))
        out.append(self._acceptance(conn, piece, item.peer, charge, wait, now))
        if self._drops(piece, now):
            self.stats["dropped"] += 1
            self.custody.drop(piece.piece_id)
            out.extend(self._cover_drop(piece, conn, item.peer, now))
            return out
        self._ready.append((piece, conn, arrived, charge))
        return out

    def _acceptance(
        self, conn: int, piece: Piece, upstream: str, charge: int, wait: float, now: float
    ) -> Send | SendSealed:
        """The hop ack of a piece taken in, with this node's signed custody acceptance
        (:mod:`runtime.node.acceptance`; none without a key), sealed with this turn's others."""
        if self.sign_digest is None or not self.s.sign_custody:
            return Send(conn, Ack(piece.piece_id, True, charge, wait))
        phash = payload_hash(piece.payload)
        self.stats["custody_signed"] += 1
        digest = custody_digest(piece.piece_id, phash, upstream, self.s.node_id, now)
        return self._sealed(conn, Ack(piece.piece_id, True, charge, wait, "", now), digest)

    def _sealed(self, conn: int, msg: Ack | Receipt, digest: bytes) -> Send | SendSealed:
        """``msg`` to be signed over ``digest``: now (``batch_signatures`` off), or sealed with this turn's."""
        if self.s.batch_signatures:
            return SendSealed(conn, msg, digest)
        return self.seal([SendSealed(conn, msg, digest)])[0]

    def seal(self, pending: list[SendSealed]) -> list[Send]:
        """Sign ``pending`` (this turn's sealed sends, in order) under as few signatures as
        :func:`runtime.node.sealing.seal` needs; returns their sends, in the same order."""
        if not pending or self.sign_digest is None:
            return []
        signed = sealing.seal([p.digest for p in pending], self.sign_digest)
        self.stats["seals_signed"] += len({sig for sig, _ in signed})
        self.stats["sealed_frames"] += len(signed)
        out: list[Send] = []
        for p, (sig, proof) in zip(pending, signed, strict=True):
            if isinstance(p.msg, Ack):
                msg = msgspec_replace(p.msg, custody=sig, proof=proof)
            else:
                msg = msgspec_replace(p.msg, signature=sig, proof=proof)
            out.append(Send(p.conn, msg))
        return out

    def _cover_drop(self, piece: Piece, conn: int, upstream: str, now: float) -> list[Action]:
        """What a dishonest kind tells the upstream of a piece it dropped: a forger a fake delivery
        claim, a blame shifter a fake acceptance; the other kinds stay silent."""
        if self.s.kind == "forger":
            return [Send(conn, self._forged_claim(piece, conn))]
        if self.s.kind == "blame_shifter":
            return [Send(conn, o) for o in self._shifted_blame(piece, upstream, now)]
        return []

    def _shifted_blame(self, piece: Piece, upstream: str, now: float) -> list[Outcome]:
        """A ``blame_shifter``'s loss report for a piece it dropped: an acceptance it signs itself in the
        name of another neighbour (the best it can do without that neighbour's key)."""
        others = [q for q in self.peers if q != upstream]
        if not others or self.sign_digest is None:
            return []
        fake = others[piece.piece_id % len(others)]
        sig = sign_acceptance(self.sign_digest, piece.piece_id, payload_hash(piece.payload), self.s.node_id, fake, now)
        self.stats["forged_custody_sent"] += 1
        return [Outcome(piece.piece_id, False, fake, now, sig)]

    def _drops(self, piece: Piece, now: float) -> bool:
        """Whether this node's (dishonest) kind drops ``piece`` it has just taken."""
        kind = self.s.kind
        if kind in ("blackhole", "forger", "ballot_stuffer", "blame_shifter"):
            return True
        if kind == "grey_hole":
            return bool(self._drop_rng.random() < self.s.drop_probability)
        if kind == "on_off":
            cycle = max(1, self.s.honest_steps + self.s.attack_steps)
            return (int(now / self.s.step_s) + self._onoff_phase) % cycle >= self.s.honest_steps
        if kind == "selective":
            return piece.value > self.s.value_threshold
        return False

    def _forged_claim(self, piece: Piece, conn: int) -> Receipt | Outcome:
        """A forger's fake proof of delivery for a piece it dropped: a receipt signed with its own key
        (the best it can do without the destination's) or an unsigned delivery claim, alternating from
        one connection to the next (a caught forger is disconnected, so each try gets a fresh one)."""
        self.stats["forged_receipts"] += 1
        if conn != self._forge_conn:
            self._forge_conn, self._forge_signed = conn, not self._forge_signed
        if piece.dst == self.s.node_id or self.sign_digest is None or not self._forge_signed:
            return Outcome(piece.piece_id, True)
        phash = payload_hash(piece.payload)
        return make_receipt(self.sign_digest, piece.piece_id, piece.src, piece.dst, phash, piece.size)

    # ------------------------------------------------------------------ decisions

    def _mask_row(self, charge_hint: float, ceiling_wei: int) -> np.ndarray:
        mask = np.zeros(SLOTS, dtype=bool)
        for p in self.peers.values():
            if p.conn is None or not p.pay_confirmed or p.pay_channel is None:
                continue
            if p.quote_wei > ceiling_wei:  # an outlier quote: never paid
                continue
            if self.custody.in_flight(p.spec.node_id) >= self.s.max_inflight_per_peer:
                continue  # its unsettled pieces (charged or not) are capped
            if p.pay_cumulative + p.pay_pending + int(p.quote_wei * charge_hint * 2) + 1 > p.pay_deposit:
                continue
            mask[p.slot] = True
        return mask

    def _mask_upstream(self, row: np.ndarray, upstream: int | None) -> None:
        """Never hand a piece straight back to the peer it came from while another peer is open: that
        peer holds the piece's record and refuses it as a duplicate (a certain loss), where the
        environment lets a piece revisit a node (a delay). See docs/results/sim2real.md."""
        if upstream is None or row.sum() < 2:
            return
        for p in self.peers.values():
            if p.conn == upstream and row[p.slot]:
                row[p.slot] = False
                return

    def _decide(self, now: float) -> list[Action]:
        """Route every piece that finished arriving (and every piece we emitted), in one batch."""
        ready, self._ready = self._ready, []
        out: list[Action] = []
        todo: list[tuple[Piece, int | None, float, int]] = []
        for piece, upstream, arrived, charge in ready:
            if piece.dst == self.s.node_id:
                out.extend(self._deliver(piece, upstream, arrived, now, charge))
            elif piece.hops >= MAX_HOPS or now > piece.deadline:
                self.stats["dropped"] += 1
                self.custody.drop(piece.piece_id)
                self._forfeit_credit(charge)
                if upstream is not None:
                    out.append(Send(upstream, Forwarded(piece.piece_id, self._steps(now - arrived))))
                    out.append(Send(upstream, Outcome(piece.piece_id, False)))
            else:
                todo.append((piece, upstream, arrived, charge))
        todo = self._handle(todo, now, out)
        if not todo:
            return out
        t0 = time.perf_counter()
        self.flush_memory()
        n = len(todo)
        ceiling = self.price_ceiling_wei()
        mask = np.zeros((n, SLOTS), dtype=bool)
        link = np.zeros((n, SLOTS))
        route = np.zeros((n, SLOTS))
        is_dst = np.zeros((n, SLOTS), dtype=bool)
        for i, (piece, upstream, _, _) in enumerate(todo):
            mask[i] = self._mask_row(piece.size, ceiling)
            self._mask_upstream(mask[i], upstream)
            for p in self.peers.values():
                k = p.slot
                link[i, k] = p.link_steps
                if p.spec.node_id == piece.dst:
                    is_dst[i, k] = True
                else:
                    route[i, k] = p.routes.get(piece.dst, NO_ROUTE)
        route = np.where(mask, route, 0.0)
        ctx = DecisionContext(
            rows=np.zeros(n, dtype=np.int64),
            mask=mask,
            link_latency=np.where(mask, link, 0.0),
            route_latency=route,
            is_destination=is_dst & mask,
            time_left=np.array([self._steps(pc.deadline - now) for pc, _, _, _ in todo]),
            value=np.array([pc.value for pc, _, _, _ in todo]),
            size=np.array([pc.size for pc, _, _, _ in todo]),
            hops=np.array([float(pc.hops) for pc, _, _, _ in todo]),
            own_queue=np.full(n, self.backlog / self.s.queue_limit),
            active=mask.any(axis=1),
        )
        obs = build_observation(self.memory, ctx)
        slots = np.asarray(self.policy.act(obs.features, obs.action_mask)).astype(np.int64).reshape(-1)
        self.stats["decisions"] += n
        self.stats["decision_seconds"] += time.perf_counter() - t0
        cap = self.s.max_inflight_per_peer
        for i, (piece, upstream, arrived, charge) in enumerate(todo):
            k = int(slots[i]) if i < slots.size else -1
            for p in self.peers.values():  # the batch's earlier pieces may have filled a peer's cap
                if mask[i, p.slot] and self.custody.in_flight(p.spec.node_id) >= cap:
                    mask[i, p.slot] = False
            if not mask[i].any():
                self.stats["dropped"] += 1
                self.custody.drop(piece.piece_id)
                self._forfeit_credit(charge)
                self.log("no_route", piece=piece.piece_id, dst=piece.dst)
                if upstream is not None:
                    out.append(Send(upstream, Outcome(piece.piece_id, False)))
                continue
            if not (0 <= k < SLOTS and mask[i, k]):
                k = int(np.flatnonzero(mask[i])[0])
            out.extend(self._forward(piece, upstream, arrived, self.by_slot[k], now, charge))
        return out

    def _handle(self, todo: list[tuple[Piece, int | None, float, int]], now: float, out: list[Action]) -> list:
        """The pieces of ``todo`` (``(piece, upstream, arrived, charge)``, each to route now) this node
        routes; every node routes them all (``runtime.node.learned`` lets its attacker choose)."""
        return todo

    def _forfeit_credit(self, charge: int) -> None:
        """A charge to our upstream whose piece will have no receipt: never owed in on_delivery."""
        self.ledger.forfeit(charge)

    def _forward(
        self, piece: Piece, upstream: int | None, arrived: float, p: _Peer, now: float, up_charge: int = 0
    ) -> list[Action]:
        dst_addr = piece.dst_addr or self.known_address(piece.dst)
        hop = Piece(
            piece.piece_id,
            piece.src,
            piece.dst,
            piece.born,
            piece.deadline,
            piece.value,
            piece.size,
            piece.hops + 1,
            piece.payload,
            dst_addr,
        )
        up = self.conns.get(upstream) if upstream is not None else None
        entry = _Inflight(
            p.spec.node_id, p.slot, upstream, piece.deadline, now, piece.size, p.quote_wei,
            piece.src, piece.dst, dst_addr, payload_hash(piece.payload),
            up.peer if up is not None else None, up_charge,
        )  # fmt: skip
        self.custody.add(piece.piece_id, entry)
        self.stats["forwarded"] += 1
        out: list[Action] = [Send(p.conn, hop)]
        if upstream is not None:
            out.append(Send(upstream, Forwarded(piece.piece_id, self._steps(now - arrived))))
            self.forward_latencies.append(now - arrived)
            if len(self.forward_latencies) > 100_000:
                del self.forward_latencies[:50_000]
        return out

    def _deliver(self, piece: Piece, upstream: int | None, arrived: float, now: float, charge: int = 0) -> list[Action]:
        self.custody.drop(piece.piece_id, "delivered")
        on_time = now <= piece.deadline and piece.piece_id not in self.delivered_ids
        if on_time:
            self.stats["delivered"] += 1
            self.stats["delivered_latency_steps"] += self._steps(now - piece.born)
            if now - piece.born >= 0.8 * (piece.deadline - piece.born):  # how tight the deadlines are
                self.stats["delivered_last_fifth"] += 1
            self.delivered_ids.add(piece.piece_id)
            _bump(self.delivered_from, piece.src)
        else:
            self.stats["delivered_late"] += 1
        out: list[Action] = []
        if upstream is None:
            return out
        out.append(Send(upstream, Forwarded(piece.piece_id, self._steps(now - arrived))))
        if not on_time or self.sign_digest is None:
            self._forfeit_credit(charge)
            out.append(Send(upstream, Outcome(piece.piece_id, False)))
            return out
        phash = payload_hash(piece.payload)
        digest = receipt_digest(piece.piece_id, piece.src, piece.dst, phash, piece.size)
        self.stats["receipts_signed"] += 1
        receipt = Receipt(piece.piece_id, piece.src, piece.dst, phash, piece.size, b"")
        out.append(self._sealed(upstream, receipt, digest))
        c = self.conns.get(upstream)
        if c is not None and c.peer is not None:
            self._credit(c.peer, upstream, charge)
        return out

    def _credit(self, peer: str, conn: int, charge: int) -> None:
        """on_delivery: the upstream now owes the charge of a piece whose receipt we sent it (on ``conn``)."""
        p = self.peers.get(peer)
        self.ledger.credit(p and p.account, charge, p is not None and p.conn == conn, self._clock)

    # ------------------------------------------------------------------ feedback

    def _on_ack(self, c: _Conn, p: _Peer, ack: Ack, now: float) -> list[Action]:
        entry = self.custody.live_for(ack.piece_id, p.spec.node_id)
        if entry is None or entry.acked:
            late = self.custody.late_for(ack.piece_id, p.spec.node_id)
            if late is None or late.acked:
                return self._ignore(c.id, f"unsolicited ack: piece {ack.piece_id}")
            # An honest slow peer: the piece already counts as lost, but a charge it took is still
            # owed (per_hop), or paid if its receipt still comes in the late window (on_delivery).
            late.acked = True
            self._ignore(c.id, f"late ack: piece {ack.piece_id}")
            return self._accept_charge(c, p, late, ack, late=True) if ack.accepted else []
        entry.acked = True
        self._learn("handovers", p.slot, 1.0 if ack.accepted else 0.0)
        out: list[Action] = []
        if not ack.accepted:  # a refusal settles exactly this record, handed to this peer (its own loss)
            self._resolve(ack.piece_id, False, out, p.spec.node_id, now=now, own=True)
            return out
        # Kept unverified: only a lost piece's evidence is ever checked (runtime.node.acceptance).
        entry.held_at, entry.custody, entry.custody_proof = ack.at, ack.custody, ack.proof
        # Measured here, from our own clock: the peer's self-reported `wait` is not evidence.
        service = self._steps(now - entry.sent) - 2.0 * p.link_steps
        throughput = min(2.0, entry.size / max(service, 1e-3))
        self._learn("transfers", p.slot, throughput)
        return self._accept_charge(c, p, entry, ack)

    def max_charge_wei(self, p: _Peer, entry: _Inflight) -> int:
        """The most ``p`` may charge for ``entry``: the payee charges the quote it had announced when
        the piece arrived, which is the one we knew at hand-over or one announced since (its `quote`
        frame precedes the ack on the same stream), at most ``max_quote_jump`` times the hand-over quote."""
        heard = (q for t, q in p.guard.quotes_heard if t >= entry.sent)
        return pricing.max_charge(
            entry.quote_wei, heard, entry.size, self.s.max_quote_jump, self.s.overcharge_tolerance
        )

    def _accept_charge(self, c: _Conn, p: _Peer, entry: _Inflight, ack: Ack, late: bool = False) -> list[Action]:
        max_charge = self.max_charge_wei(p, entry)
        if ack.charge_wei > max_charge:
            return self._violation(c.id, f"overcharge: {ack.charge_wei} wei for a piece quoted at most {max_charge}")
        if not ack.charge_wei:
            return []
        if self.on_delivery:  # paid when (if) the piece's receipt comes back through this peer in time
            entry.charge = ack.charge_wei
        if not self.ledger.accept_charge(p.account, ack.charge_wei, late):
            return []
        return self._pay(p, ack.charge_wei)

    def _pay(self, p: _Peer, charge: int) -> list[Action]:
        """Sign a voucher for what we signed before plus ``charge`` (an accepted charge), store it, send
        it; with ``batch_signatures``, at the end of the turn, one voucher for all of the turn's charges
        to ``p`` (:meth:`flush_payments`)."""
        if self.s.batch_signatures:
            peer = p.spec.node_id
            self._pay_due[peer] = self._pay_due.get(peer, 0) + charge
            return []
        signed = self.ledger.pay(p.account, charge, p.conn is not None)
        if signed is None:
            return []
        record, voucher = signed
        return [Durable([record], [Send(p.conn, voucher)])]

    @property
    def payments_due(self) -> bool:
        """Charges accepted this turn wait for :meth:`flush_payments`."""
        return bool(self._pay_due)

    def flush_payments(self) -> list[Action]:
        """End of a turn of the I/O loop: one voucher per peer for the charges this turn accepted to
        pay it (what a peer is owed waits at most one turn; its credit limit bounds it anyway)."""
        if not self._pay_due:
            return []
        due, self._pay_due = self._pay_due, {}
        out: list[Action] = []
        for peer, charge in due.items():
            p = self.peers.get(peer)
            signed = self.ledger.pay(p.account, charge, p.conn is not None) if p is not None else None
            if signed is not None:
                record, voucher = signed
                out.append(Durable([record], [Send(p.conn, voucher)]))
        return out

    def _on_voucher(self, c: _Conn, p: _Peer, v: Voucher) -> list[Action]:
        reason, record = self.ledger.on_voucher(p.account, v)
        if reason is not None:
            return self._violation(c.id, reason)
        return [Durable([record], [Send(c.id, VoucherAck(v.channel_id, v.cumulative_wei))])]

    def _on_vack(self, c: _Conn, p: _Peer, msg: VoucherAck) -> list[Action]:
        """The payee confirms a voucher; it moves no money (:meth:`Ledger.on_vack`)."""
        reason, again = self.ledger.on_vack(p.account, msg, p.conn is not None)
        if reason is not None:
            return self._ignore(c.id, reason)
        return [Send(p.conn, again)] if again is not None else []

    def _on_forwarded(self, p: _Peer, msg: Forwarded, now: float) -> list[Action]:
        # Only a peer that holds one of our pieces may report on it (no self-promotion by fake reports),
        # and the delay is what our own clock saw from hand-over to this report (not the peer's figure).
        entry = self.custody.live_for(msg.piece_id, p.spec.node_id)
        if entry is not None:
            self._learn("delays", p.slot, max(0.0, self._steps(now - entry.sent) - 2.0 * p.link_steps))
        return []

    def _on_outcome(self, c: _Conn, p: _Peer, msg: Outcome, now: float) -> list[Action]:
        if msg.delivered:  # a delivery is believed on the destination's signature only
            self.stats["forged_receipts"] += 1
            return self._violation(c.id, f"unsigned delivery claim: piece {msg.piece_id} without a receipt")
        peer = p.spec.node_id
        e = self.custody.live_for(msg.piece_id, peer)
        waiting = self._awaiting_blame.get(msg.piece_id)
        if e is None and waiting is not None and waiting[1] == peer:
            e = self.custody.late_for(msg.piece_id, peer)
        if e is None:
            return []
        own = True
        if msg.holder or msg.custody:
            reason = self._evidence_problem(msg, e, peer)
            if reason is not None:
                if reason:
                    self.stats["forged_custody"] += 1
                    return self._violation(c.id, reason)
            else:
                own = False
        out: list[Action] = []
        if self.custody.live_for(msg.piece_id, peer) is not None:
            self._resolve(msg.piece_id, False, out, peer, now=now, own=own)
        else:  # it timed out here first: its loss waited for this report (the blame window)
            self._awaiting_blame.pop(msg.piece_id, None)
            self._learn("outcomes", e.slot, 0.0, own=own)
        return out

    def _evidence_problem(self, msg: Outcome, e: _Inflight, reporter: str) -> str | None:
        """Why the custody evidence of ``reporter``'s loss report does not show it passed the piece on
        (None: it does; ``""``: it cannot be checked here, the holder's address is unknown)."""
        holder = msg.holder
        if not holder or holder in (reporter, self.s.node_id) or not msg.custody:
            return f"custody mismatch: piece {msg.piece_id}: evidence names holder '{holder}'"
        address = self.known_address(holder)
        if not address or not e.phash:
            return ""
        self.stats["custody_verified"] += 1
        return self.acceptances.check(
            msg.piece_id, e.phash, reporter, holder, msg.held_at, msg.custody, address, msg.proof
        )

    def _evidence(self, pid: int, e: _Inflight) -> Outcome:
        """The loss report of ``pid`` for the upstream, with the downstream's acceptance when it verifies."""
        if not e.custody:
            return Outcome(pid, False)
        address = self.known_address(e.peer)
        reason = None
        if address and e.phash:
            self.stats["custody_verified"] += 1
            reason = self.acceptances.check(
                pid, e.phash, self.s.node_id, e.peer, e.held_at, e.custody, address, e.custody_proof
            )
        if not address or reason is not None:
            self.stats["forged_custody"] += 1
            p = self.peers.get(e.peer)
            if p is not None and p.conn is not None:
                self._ignore(p.conn, reason or f"forged custody: piece {pid}: no address for {e.peer}")
            return Outcome(pid, False)
        return Outcome(pid, False, e.peer, e.held_at, e.custody, e.custody_proof)

    def _on_receipt(self, c: _Conn, p: _Peer, r: Receipt, now: float) -> list[Action]:
        peer = p.spec.node_id
        entry = self.custody.live_for(r.piece_id, peer)
        late = entry is None
        if late:
            entry = self.custody.late_for(r.piece_id, peer)
        if entry is None:
            seen = self.custody.resolved.get(r.piece_id)
            if seen is not None and seen[0] == peer:
                # Believed once only, and never held against the peer: nothing moves on a replay, nor
                # on a receipt that came after this record's late window closed.
                self.stats["replayed_receipts" if seen[1] == "receipt" else "late_receipts"] += 1
                return []
            return self._violation(c.id, f"receipt for unknown piece: {r.piece_id} was not forwarded to {peer}")
        if not entry.acked:
            if late:  # lost and never acked: nothing was charged, nothing to pay
                self.stats["late_receipts"] += 1
                return []
            return self._violation(c.id, f"receipt before ack: piece {r.piece_id}")
        if not entry.dst_addr:  # nobody could tell us whose key proves this delivery
            if not late:
                self._resolve(r.piece_id, False, [], peer, now=now)
            return []
        expected = Expected(r.piece_id, entry.src, entry.dst, entry.dst_addr, entry.phash, entry.size)
        reason = self.receipts.check(r, expected)
        if reason is not None:
            if reason.startswith("forged"):
                self.stats["forged_receipts"] += 1
            return self._violation(c.id, reason)
        self.stats["receipts_verified"] += 1
        if r.proof:
            self.stats["receipts_verified_sealed"] += 1
        out: list[Action] = []
        if late:
            self._settle_late(r, entry, out, now)
        else:
            self._resolve(r.piece_id, True, out, peer, receipt=r, now=now)
        return out

    def _settle_late(self, r: Receipt, e: _Inflight, out: list[Action], now: float) -> None:
        """A genuine receipt for a record already counted lost, within its late window: the charge
        is paid (the piece was delivered), once; the receipt goes upstream with credit only before
        :meth:`Custody.relay_cutoff`, so that the upstream still holds its own record when it comes."""
        self.custody.take_late(r.piece_id)
        self.custody.remember(r.piece_id, e.peer, "receipt")
        self.stats["late_receipts"] += 1
        if e.charge:
            p = self.peers.get(e.peer)
            if p is not None:
                self.ledger.settle_late(p.account, e.charge)
                out.extend(self._pay(p, e.charge))
        if e.upstream is None or e.up_peer is None or now > self.custody.relay_cutoff(e):
            return
        up = self.conns.get(e.upstream)
        if up is None or up.peer != e.up_peer or up.closed:
            return
        out.append(Send(e.upstream, r))
        self.stats["receipts_relayed"] += 1
        if e.up_charge:
            up_p = self.peers.get(e.up_peer)
            linked = up_p is not None and up_p.conn == e.upstream
            self.ledger.recredit(up_p and up_p.account, e.up_charge, linked, self._clock)

    def _resolve(
        self,
        pid: int,
        delivered: bool,
        out: list[Action],
        peer: str | None = None,
        receipt: Receipt | None = None,
        now: float = 0.0,
        own: bool | None = None,
    ) -> None:
        """Settle piece ``pid``'s one live record (only if it was handed to ``peer``, when given):
        learn, pay, tell upstream.

        ``own`` (losses): the downstream held the piece last (True) or showed the next hop's signed
        acceptance (False); None (a timeout): wait ``blame_wait_s`` for its loss report, then True.

        ``delivered`` only with a verified ``receipt``: the downstream is paid its charge
        (on_delivery) and the receipt is relayed upstream, which then owes us our charge. A loss
        forfeits both charges (until a late receipt, see :meth:`_settle_late`) and relays a loss report.
        """
        e = self.custody.live.get(pid)
        if e is None or (peer is not None and e.peer != peer):
            return
        self.custody.settle(pid)
        self.custody.remember(pid, e.peer, "receipt" if delivered else "lost")
        if not delivered:
            self.custody.keep_late(pid, e)
        if delivered:
            self._learn("outcomes", e.slot, 1.0)
        elif own is None:
            self._awaiting_blame[pid] = (e.slot, e.peer, now + self.s.blame_wait_s)
            self._awaiting_blame.move_to_end(pid)
        else:
            self._learn("outcomes", e.slot, 0.0, own=own)
        if e.charge:
            p = self.peers.get(e.peer)
            if p is not None and self.ledger.settle(p.account, e.charge, delivered):
                out.extend(self._pay(p, e.charge))
        self.stats["outcomes_ok" if delivered else "outcomes_lost"] += 1
        told = False
        if e.upstream is not None and e.upstream in self.conns:
            told = True
            if delivered and receipt is not None:
                out.append(Send(e.upstream, receipt))
                self.stats["receipts_relayed"] += 1
            else:
                out.append(Send(e.upstream, self._evidence(pid, e)))
        if e.up_peer is not None and e.up_charge:
            if delivered and told:
                self._credit(e.up_peer, e.upstream, e.up_charge)
            else:
                self._forfeit_credit(e.up_charge)

    # ------------------------------------------------------------------ memory updates

    def _learn(self, what: str, slot: int, sample: float, own: bool = True) -> None:
        """Queue one observation for memory; :meth:`flush_memory` folds the queue in one numpy call.

        Samples of one flush are folded as ``NeighbourMemory`` folds simultaneous samples (their
        mean, with the EMA rate compounded by their count), exactly as the environment does.
        """
        slots, samples = self._mem_queue[what]
        slots.append(slot)
        samples.append(sample)
        if what == "outcomes":
            self._outcome_own.append(own)
            if sample < 0.5:
                self.stats["losses_own" if own else "losses_beyond"] += 1

    def flush_memory(self) -> None:
        """Apply every queued observation to the memory (before each decision and each poll's end)."""
        m = self.memory
        for what, (slots, samples) in self._mem_queue.items():
            if not slots:
                continue
            rows = np.zeros(len(slots), dtype=np.int64)
            cols = np.asarray(slots, dtype=np.int64)
            values = np.asarray(samples, dtype=np.float64)
            if what == "transfers":
                m.record_transfers(rows, cols, values)
            elif what == "handovers":
                m.record_handovers(rows, cols, values)
            elif what == "delays":
                m.record_delays(rows, cols, values)
            else:
                m.record_outcomes(rows, cols, values, own=np.asarray(self._outcome_own, dtype=bool))
                self._outcome_own.clear()
            slots.clear()
            samples.clear()

    # ------------------------------------------------------------------ timers

    def start_streams(self, now: float) -> None:
        """Begin emitting this node's streams (the mesh starts them once channels are up)."""
        self.emitting = True
        self._emit_started = now
        for i, st in enumerate(self.s.streams):
            self._next_emit[i] = now + self.rng.exponential(1.0 / st.rate) if st.rate > 0 else math.inf

    def stop(self) -> None:
        """Stop emitting and refuse new pieces (graceful drain)."""
        self.draining = True
        self.emitting = False

    def _emit(self, now: float) -> None:
        for i, st in enumerate(self.s.streams):
            while self._next_emit[i] <= now and st.subscribers:
                t = self._next_emit[i]
                if st.emit_for_s is not None and t > self._emit_started + st.emit_for_s:
                    self._next_emit[i] = math.inf  # the stream's episode is over
                    break
                self._next_emit[i] = t + self.rng.exponential(1.0 / st.rate)
                dst = st.subscribers[self._rr[i] % len(st.subscribers)]
                self._rr[i] += 1
                dst_addr = self.known_address(dst)
                if not dst_addr:  # its receipt could not be checked by anyone
                    self.stats["generated"] += 1
                    self.stats["dropped"] += 1
                    self.log("no_address", dst=dst)
                    continue
                known = st.route_steps.get(dst) if st.route_steps else None
                est = self.distance(dst) if known is None else known
                est = NO_ROUTE if not math.isfinite(est) else est
                deadline = now + (st.deadline_factor * est + st.deadline_slack) * self.s.step_s
                # the seeded draw, mixed with this life's salt: a restarted source never reuses ids
                pid = (int(self.rng.integers(1, 2**63)) ^ self.id_salt) & (2**63 - 1) or 1
                piece = Piece(
                    piece_id=pid,
                    src=self.s.node_id,
                    dst=dst,
                    born=now,
                    deadline=deadline,
                    value=float(st.value * self.rng.uniform(0.5, 1.5)),
                    size=float(self.rng.uniform(0.5, 1.5)),
                    hops=0,
                    payload=bytes(st.payload_bytes),
                    dst_addr=dst_addr,
                )
                self.stats["generated"] += 1
                _bump(self.generated_to, dst)
                self.custody.hold(pid, deadline)
                self._ready.append((piece, None, now, 0))

    def _routes_msg(self, to: str | None = None) -> Routes:
        """Distance vector for peer ``to``, with split horizon (:func:`runtime.node.routing.best_routes`)."""
        return Routes(self._bounded_vector(self._advertised(best_routes(self.s.node_id, self._peer_routes(), to))))

    def _advertised(self, dist: dict[str, float]) -> dict[str, float]:
        """The distances this node announces for its true ones: the same, or a dropping kind's lie."""
        if self.s.kind in DROPPING_KINDS:
            return {
                d: (0.0 if d == self.s.node_id else max(1.0, math.ceil(v * BLACKHOLE_ROUTE_DISCOUNT)))
                for d, v in dist.items()
            }
        return dist

    _bounded_vector = staticmethod(bounded_vector)

    def _update_quote(self) -> list[Action]:
        quotes = np.array([p.quote_wei / self.s.wei_per_unit for p in self.open_peers()])
        if self.s.kind == "overpricer":
            # as in envs.core: an overpricer marks up its own cost term and ignores the market
            # (following each other's marked-up quotes would compound without bound)
            quotes = np.zeros(0)
        # Outliers are left out of the market: quotes above the ceiling, then those far from the median.
        market = pricing.fair_market(quotes, self.price_ceiling_wei() / self.s.wei_per_unit)
        load = min(self.backlog / self.s.queue_limit, 1.0) * 100.0
        self.quote_wei = self._quote_wei(quote_price(self.s.base_cost, load, market) * self.price_factor())
        announce = self._next_announcement()
        if abs(announce - self._last_quote_sent) <= 0.02 * self._last_quote_sent:
            return []
        self._last_quote_sent = announce
        return [Send(p.conn, Quote(announce)) for p in self.open_peers()]

    def _next_announcement(self) -> int:
        """The quote to announce: the target, risen at most ``quote_step_up`` per announcement (so a
        charge at the announced quote stays within what a payer accepts for a piece in flight)."""
        return pricing.next_announcement(self.quote_wei, self._last_quote_sent, self.s.quote_step_up)

    def poll(self, now: float) -> list[Action]:
        """Run everything due at ``now``: ingest completions, emission, routing, timeouts."""
        self._clock = max(self._clock, now)
        out: list[Action] = self._run_ingest(now)
        if self.emitting:
            self._emit(now)
        if self._ready:
            out.extend(self._decide(now))
        if now >= self._next_routes:
            self._next_routes = now + self.s.route_interval_s
            out.extend(Send(p.conn, self._routes_msg(p.spec.node_id)) for p in self.open_peers())
            out.extend(self._update_quote())
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + 0.05
            out.extend(self._housekeeping(now))
        if self.gossip.enabled and now >= self._next_gossip:
            self._next_gossip = now + self.s.gossip_period_s
            out.extend(self._gossip_round(now))
        self.flush_memory()
        return out

    def _gossip_round(self, now: float) -> list[Action]:
        """One gossip period: aggregate what the peers said, then tell them what this node saw."""
        self.flush_memory()
        self.gossip.aggregate(self.memory, now)
        peers = self.open_peers()
        if not peers or self.sign_digest is None:
            return []
        subjects = [(p.slot, p.spec.node_id) for p in sorted(peers, key=lambda q: q.slot)]
        frame = self.gossip.frame(self.memory, subjects, self.sign_digest, self._says)
        return [Send(p.conn, frame) for p in peers]

    def _says(self, subject: str, rate: float, count: float) -> tuple[float, float]:
        """What this node reports of ``subject`` in gossip: the truth, or its kind's lie (envs.gossip)."""
        if self.s.kind == "slanderer" and subject not in self.s.allies:
            return 0.0, MAX_REPORT_COUNT
        if self.s.kind == "ballot_stuffer" and subject in self.s.allies:
            return 1.0, MAX_REPORT_COUNT
        return rate, count

    def _housekeeping(self, now: float) -> list[Action]:
        out: list[Action] = []
        for pid in self.custody.due(now):
            self._resolve(pid, False, out, now=now)
        waiting = self._awaiting_blame
        while waiting:  # no evidence within the blame window: the downstream held the piece last
            pid, (slot, _, until) = next(iter(waiting.items()))
            if until >= now and len(waiting) <= LATE_KEPT:
                break
            waiting.popitem(last=False)
            self._learn("outcomes", slot, 0.0, own=True)
        self.custody.prune(now)
        for p in self.open_peers():
            g = p.guard
            if g.check_wanted is not None and g.check_pending is None and now >= g.next_check_at:
                out.extend(self._check_channel(p.conn, p, g.check_wanted, now))
        for c in list(self.conns.values()):
            if c.closed:
                continue
            if not c.open and c.hello is None and not c.outbound and now - c.opened > self.s.hello_timeout_s:
                out.extend(self._violation(c.id, f"hello timeout: no hello within {self.s.hello_timeout_s:g} s"))
            elif not c.open and now - c.opened > self.s.handshake_timeout_s:
                out.extend(self._violation(c.id, "handshake timeout"))
            elif c.open and now - c.last_rx > self.s.idle_timeout_s:
                out.extend(self._violation(c.id, f"read timeout: nothing for {self.s.idle_timeout_s:g} s"))
        if len(self.delivered_ids) > 200_000:
            self.delivered_ids.clear()
        return out

    def next_timer(self, now: float) -> float:
        """The earliest time ``poll`` has something to do."""
        t = min(self._next_routes, self._next_housekeeping)
        if self.gossip.enabled:
            t = min(t, self._next_gossip)
        if self._serving is not None:
            t = min(t, self._serving[0])
        if self._ready:
            t = now
        if self.emitting and self._next_emit:
            t = min(t, *self._next_emit)
        return t

    # ------------------------------------------------------------------ introspection

    def peer_scores(self) -> dict[str, float]:
        """The empathy protocol's coherence score of each peer (what the node thinks of it)."""
        self.flush_memory()
        m = self.memory
        quotes = m.quote[0]
        live = quotes[quotes > 0]
        fair = float(np.median(live)) if live.size else 1.0
        scores = coherence_score(m.observed_bw[0], m.claimed_bw[0], quotes, fair, m.success[0], m.cooperation[0])
        return {p.spec.node_id: float(scores[p.slot]) for p in self.peers.values()}

    def snapshot(self) -> dict:
        """Counters and per-peer state for the stats file and metrics."""
        self.flush_memory()
        ratings = rating(self.memory, np.zeros(1, dtype=np.int64))[0]
        return {
            "node_id": self.s.node_id,
            "kind": self.s.kind,
            "payment": self.s.payment,
            "stats": {**self.stats, **self.gossip.stats},
            "gossip": self.gossip.enabled,
            "rejections": dict(self.rejections),
            "rejections_by_peer": {k: dict(v) for k, v in self.rejections_by_peer.items()},
            "cutoffs_by_peer": {k: dict(v) for k, v in self._rejections.cutoffs_by_peer.items()},
            "delivered_from": dict(self.delivered_from),
            "generated_to": dict(self.generated_to),
            "quote_wei": self.quote_wei,
            "announced_wei": self.announced_wei,
            "backlog": self.backlog,
            "inflight": len(self.custody.live),
            "peers": {
                p.spec.node_id: {
                    "connected": p.conn is not None,
                    "pay_channel": p.pay_channel,
                    "pay_cumulative": p.pay_cumulative,
                    "pay_confirmed": p.pay_confirmed,
                    "pay_pending": p.pay_pending,
                    "pay_acked": p.guard.pay_acked,
                    "accepted_wei": p.guard.accepted_wei,
                    "queued": len(p.guard.inbox),
                    "recv_channel": p.recv_channel,
                    "recv_paid": p.recv_paid,
                    "unpaid_wei": p.account.unpaid_wei,
                    "violations": p.violations,
                    "claimed_bw": round(float(self.memory.claimed_bw[0, p.slot]), 4),
                    "observed_bw": round(float(self.memory.observed_bw[0, p.slot]), 4),
                    "success": round(float(self.memory.success[0, p.slot]), 4),
                    "success_count": int(self.memory.success_count[0, p.slot]),
                    "cooperation": round(float(self.memory.cooperation[0, p.slot]), 4),
                    "delay": round(float(self.memory.delay[0, p.slot]), 4),
                    "custody": round(float(self.memory.custody[0, p.slot]), 4),
                    "custody_count": int(self.memory.custody_count[0, p.slot]),
                    "own_losses": int(self.memory.own_losses[0, p.slot]),
                    "beyond_losses": int(self.memory.beyond_losses[0, p.slot]),
                    "net_rate": round(float(self.memory.net_rate[0, p.slot]), 4),
                    "net_reporters": int(self.memory.net_reporters[0, p.slot]),
                    "credibility": round(float(self.memory.credibility[0, p.slot]), 4),
                    "rating": round(float(ratings[p.slot]), 4),
                    "quote_wei": p.quote_wei,
                }
                for p in self.peers.values()
            },
            "scores": self.peer_scores(),
        }
