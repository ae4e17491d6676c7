"""Wire-level attackers: real node processes that speak the real protocol to attack their neighbours.

A node whose ``behaviour.kind`` is one of :data:`ATTACK_KINDS` runs :class:`AttackerCore`, an
ordinary :class:`~runtime.node.protocol.NodeCore` (it handshakes, forwards, pays and is paid like
any node) that also sends, ``attack_rate`` times a second per neighbour, the frames of one attack:

====================  ===========================================================================
kind                  what it sends
====================  ===========================================================================
``vack_forger``       ``vack`` frames naming nearly the whole deposit of the channel its payer
                      pays it through (to be paid that much on the next charge)
``piece_bomber``      pieces of size 1e12 (to hold the ingest for ever) and of size 0 (free rides)
``route_poisoner``    ``routes`` with every destination at the wire's maximum distance (1e12),
                      so that a naive node re-advertises a frame above the cap
``handshake_flooder`` idle TCP connections to its neighbours' listen ports (done by the I/O layer:
                      :func:`flood_handshakes`), to exhaust their pending handshakes
``info_flooder``      the same ``channel`` frame over and over (each one a chain lookup, a log
                      line, a sqlite write and a ``vack`` at a naive node)
``price_gouger``      alternates a fair quote with one :data:`GOUGE_FACTOR` times its cost, and
                      charges the gouging quote for every piece taken while it is announced
``id_reuser``         pieces that reuse one id three times: a normal one, one a hop short of
                      ``MAX_HOPS`` (whose loss report used to settle both) and one to another
                      destination (whose receipt used to be checked against the wrong record)
``rating_flooder``    ten ``rating`` frames per tick: eight subjects nobody knows, the receiver
                      itself and its honest neighbours slandered (rate 0, count 50), half of them
                      with forged signatures, replayed sequence numbers among them
``proof_splicer``     a relay that forwards every other piece and drops the rest, answering each
                      dropped piece with a receipt for it that carries the destination's genuine
                      batch signature and Merkle proof from a receipt it relayed
                      (``runtime.node.sealing``: a signature covers only its own batch)
====================  ===========================================================================

Every attack frame is counted in ``stats["attack_frames"]`` (the mesh report's ``frames_sent``).
These exist to test the hardening of honest nodes with real processes; they are never a default.
"""

from __future__ import annotations

import asyncio
import contextlib
import math

from agents.features import MAX_HOPS
from runtime.node.gossip import rating_digest
from runtime.node.protocol import KINDS, MAX_ROUTES, Action, NodeCore, Send
from runtime.node.receipts import payload_hash
from runtime.node.wire import (
    MAX_U64,
    RATING_VERSION,
    ChannelInfo,
    Piece,
    Quote,
    Rating,
    RatingItem,
    Receipt,
    Routes,
    VoucherAck,
)

__all__ = ["ATTACK_KINDS", "GOUGE_FACTOR", "AttackerCore", "flood_handshakes"]

ATTACK_KINDS = (
    "vack_forger", "piece_bomber", "route_poisoner", "handshake_flooder", "info_flooder", "price_gouger", "id_reuser",
    "rating_flooder", "proof_splicer",
)  # fmt: skip
#: How many times its cost a price gouger quotes while gouging (the review saw x3,000).
GOUGE_FACTOR = 3000.0
#: The wire's largest distance (``NonNegFloat``'s bound): what a route poisoner advertises.
WIRE_MAX_DISTANCE = 1e12
#: Seconds of a price gouger's cycle, and of it spent gouging.
GOUGE_CYCLE_S, GOUGE_ON_S = 3.0, 1.0
#: Idle connections a handshake flooder keeps open to each neighbour.
FLOOD_SOCKETS = 48
#: The loopback address a handshake flooder connects from: an attacker is another host than the
#: honest neighbours (which all dial from 127.0.0.1 in a loopback mesh).
FLOOD_SOURCE = "127.0.0.66"


class AttackerCore(NodeCore):
    """A node core that also attacks its neighbours (see the module docstring for each kind).

    :param attack_rate: attack frames per second per neighbour (info flooders send ten times as many).
    """

    kinds = ATTACK_KINDS

    def __init__(self, *args, attack_rate: float = 20.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.attack_rate = attack_rate
        self._next_attack = 0.0
        self._t0: float | None = None
        self.stats["attack_frames"] = 0
        self._bomb = 0
        self._splice: tuple[bytes, tuple[bytes, ...]] | None = None  # a genuine (signature, proof)
        self.armed = False  # attacks start with the streams (SIGUSR1), once the mesh is up

    def start_streams(self, now: float) -> None:
        super().start_streams(now)
        self.armed = True
        self._t0 = now

    # ------------------------------------------------------------------ timers

    def poll(self, now: float) -> list[Action]:
        out = super().poll(now)
        if self.armed and now >= self._next_attack:
            self._next_attack = now + 1.0 / self.attack_rate
            frames = self._attack_frames(now)
            self.stats["attack_frames"] += len(frames)
            out.extend(frames)
        return out

    def next_timer(self, now: float) -> float:
        return min(super().next_timer(now), self._next_attack) if self.armed else super().next_timer(now)

    def _attack_frames(self, now: float) -> list[Action]:
        kind = self.s.kind
        out: list[Action] = []
        for p in self.open_peers():
            if kind == "vack_forger" and p.recv_channel is not None:
                forged = min(MAX_U64, max(p.recv_paid + 1, p.recv_deposit - 10**15))
                out.append(Send(p.conn, VoucherAck(p.recv_channel, forged)))
            elif kind == "piece_bomber" and p.pay_confirmed:
                self._bomb += 1
                size = 1e12 if self._bomb % 2 else 0.0
                dst = next((q.spec.node_id for q in self.peers.values() if q is not p), p.spec.node_id)
                out.append(Send(p.conn, Piece(2**62 + self._bomb, self.s.node_id, dst, now, now + 5.0, 1.0, size, 0)))
            elif kind == "route_poisoner":
                dests = {q.spec.node_id for q in self.peers.values()} | {
                    d for q in self.peers.values() for d in q.routes
                }
                dests.discard(p.spec.node_id)
                dist = {d: WIRE_MAX_DISTANCE for d in sorted(dests)[: MAX_ROUTES - 1]}
                dist[self.s.node_id] = 0.0
                out.append(Send(p.conn, Routes(dist)))
            elif kind == "id_reuser" and p.pay_confirmed:
                out.extend(self._reused_ids(p, now))
            elif kind == "info_flooder" and p.pay_channel is not None:
                out.extend(Send(p.conn, ChannelInfo(p.pay_channel)) for _ in range(10))
            elif kind == "rating_flooder":
                out.extend(Send(p.conn, f) for f in self._rating_flood(p))
        if kind == "price_gouger":
            gouging = (now - (self._t0 or now)) % GOUGE_CYCLE_S >= GOUGE_CYCLE_S - GOUGE_ON_S
            quote = self._gouge_wei() if gouging else self.quote_wei
            if quote != self._last_quote_sent:
                self._last_quote_sent = quote
                out.extend(Send(p.conn, Quote(quote)) for p in self.open_peers())
        return out

    # ------------------------------------------------------------------ rating flooder

    def _rating_flood(self, p) -> list[Rating]:
        """Ten rating frames for ``p``, in rotation: a slander of ``p`` and its other neighbours with a
        forged signature, eight subjects nobody knows, a signed slander replaying sequence number 1,
        and a genuinely signed slander."""
        frames = []
        others = [q for q in self.peers if q != p.spec.node_id]
        slander = [RatingItem(p.spec.node_id, 0.0, 50.0)] + [RatingItem(q, 0.0, 50.0) for q in others[:7]]
        for _ in range(10):
            self._bomb += 1
            k = self._bomb % 4
            items = [RatingItem(f"ghost{self._bomb % 997}-{j}", 0.0, 50.0) for j in range(8)] if k == 1 else slander
            seq = 1 if k == 2 else self._bomb
            sig = self.sign_digest(rating_digest(RATING_VERSION, self.s.node_id, seq, items)) if k else bytes(65)
            frames.append(Rating(RATING_VERSION, self.s.node_id, seq, items, sig))
        return frames

    # ------------------------------------------------------------------ id reuser

    def _reused_ids(self, p, now: float) -> list[Action]:
        """Three pieces with one id through ``p``: normal, a hop short of MAX_HOPS, another destination."""
        dests = sorted(d for d in p.routes if d not in (self.s.node_id, p.spec.node_id))
        if not dests:
            return []
        self._bomb += 1
        pid = 2**61 + self._bomb
        first, second = dests[0], dests[-1] if len(dests) > 1 else p.spec.node_id
        make = lambda dst, hops: Piece(  # noqa: E731
            pid, self.s.node_id, dst, now, now + 5.0, 1.0, 1.0, hops, b"reused", self.known_address(dst)
        )
        return [Send(p.conn, make(first, 0)), Send(p.conn, make(first, MAX_HOPS - 1)), Send(p.conn, make(second, 0))]

    def _on_receipt(self, c, p, r, now: float) -> list[Action]:
        if self.s.kind == "id_reuser" and r.piece_id >= 2**61:  # its own crafted pieces: nothing to settle
            return []
        out = super()._on_receipt(c, p, r, now)
        if self.s.kind == "proof_splicer" and any(isinstance(a, Send) and a.msg is r for a in out):
            self._splice = (bytes(r.signature), tuple(r.proof))  # relayed: it verified
        return out

    # ------------------------------------------------------------------ proof splicer

    def _drops(self, piece: Piece, now: float) -> bool:
        if self.s.kind == "proof_splicer":
            return self._splice is not None and piece.piece_id % 2 == 1
        return super()._drops(piece, now)

    def _cover_drop(self, piece: Piece, conn: int, upstream: str, now: float) -> list[Action]:
        if self.s.kind != "proof_splicer" or self._splice is None:
            return super()._cover_drop(piece, conn, upstream, now)
        signature, proof = self._splice
        self.stats["attack_frames"] += 1
        phash = payload_hash(piece.payload)
        return [Send(conn, Receipt(piece.piece_id, piece.src, piece.dst, phash, piece.size, signature, proof))]

    # ------------------------------------------------------------------ price gouger

    def _gouge_wei(self) -> int:
        return self._quote_wei(self.s.base_cost * GOUGE_FACTOR)

    def _next_announcement(self) -> int:
        if self.s.kind == "price_gouger":  # its own schedule (above), not the honest step-up rule
            return self._last_quote_sent
        return super()._next_announcement()

    def _charge(self, size: float) -> int:
        if self.s.kind == "price_gouger" and self._last_quote_sent > self.quote_wei:
            return min(MAX_U64, int(self._gouge_wei() * size))
        return super()._charge(size)


def is_attack_kind(kind: str) -> bool:
    """Whether ``kind`` is a wire-level attacker (else one of ``runtime.node.protocol.KINDS``)."""
    return kind in ATTACK_KINDS and kind not in KINDS


async def flood_handshakes(node, rate: float) -> None:
    """The handshake flooder's I/O half: keep :data:`FLOOD_SOCKETS` idle connections open to each
    neighbour's listen port from :data:`FLOOD_SOURCE` (opening at most ``rate`` x 5 a second),
    never saying hello."""
    socks: dict[str, list[asyncio.StreamWriter]] = {p.node_id: [] for p in node.peers}
    interval = 1.0 / (rate * 5.0)
    while not getattr(node.core, "armed", True):
        await asyncio.sleep(0.1)
    while not node.stopping:
        for p in node.peers:
            alive = [w for w in socks[p.node_id] if not w.is_closing() and not w.transport.is_closing()]
            socks[p.node_id] = alive
            if len(alive) >= FLOOD_SOCKETS or not p.port:
                continue
            with contextlib.suppress(OSError, TimeoutError):
                # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that lands as the
                # connect completes, and this loop would then outlive the node's drain
                async with asyncio.timeout(1.0):
                    reader, writer = await asyncio.open_connection(p.host, p.port, local_addr=(FLOOD_SOURCE, 0))
                alive.append(writer)
                node.core.stats["attack_frames"] += 1
                node._spawn(_drain_reader(reader, writer))
            await asyncio.sleep(interval)
        await asyncio.sleep(interval if not math.isinf(interval) else 1.0)


async def _drain_reader(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read (and discard) what the victim sends, so its close is seen and the socket is reopened."""
    with contextlib.suppress(Exception):
        while await reader.read(65536):
            pass
    with contextlib.suppress(Exception):
        writer.close()
