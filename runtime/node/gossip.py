"""Trust gossip on the wire: rating frames out, rating frames in, and the environment's rule over them.

Every ``gossip_period_s`` (``behaviour.gossip_period_s``, default 0.25 s) a node sends each open
peer a :class:`runtime.node.wire.Rating`: per connected neighbour (at most 8), its custody rate and
the samples behind it (``agents.gossip.direct_reports``), numbered and signed with its node key::

    digest = keccak256("OpenStreaming rating v1\\x00" ‖ version (u8) ‖ reporter ‖ 0x00 ‖ seq (u64 BE)
                       ‖ for each item: subject ‖ 0x00 ‖ rate (f64 BE) ‖ count (f64 BE))

A received frame is decoded strictly (msgspec, like every frame) and then, in this order, bounded
(:meth:`Gossip.receive`):

1. its ``reporter`` must be the peer that sent it and its version this node's (``rating mismatch``);
2. at most ``MAX_FRAMES_PER_PERIOD`` frames per peer per period (more: ``rating flood``, ignored);
3. subjects this node does not have as a neighbour, the node itself and the reporter are dropped
   unread: a frame about nobody this node knows costs it nothing more (no signature check);
4. ``seq`` must grow (``rating mismatch``: a replay), the signature must recover to the peer's
   address proven in the handshake (``forged rating``).

What is kept per reporter is its latest frame only, on at most ``SLOTS`` subjects: the state a
reporter can make a node hold is bounded whatever it sends. Each period the node aggregates the
latest frames (heard within two periods) with ``agents.gossip.aggregate`` — the environment's own
code — into the memory's network view; a frame tests its reporter's credibility once (a frame heard
in an earlier period still votes, its credibility test is not repeated). Refused frames are ignored,
counted by class and peer, the link kept.

Liars (scripted kinds, as in ``envs.gossip``): a ``slanderer`` reports every neighbour that is not
among its ``allies`` at rate 0 with the largest count; a ``ballot_stuffer`` reports its allies at rate
1; a ``learned`` attacker says what its fifth action component (``agents.attacker.GOSSIP``) chooses.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from agents.gossip import MAX_REPORT_COUNT, Reports, aggregate, direct_reports
from agents.memory import NeighbourMemory
from runtime.chain.vouchers import VoucherSignatureError, keccak256, recover_digest_public_key
from runtime.node.receipts import KnownSigners
from runtime.node.wire import MAX_RATING_SUBJECTS, RATING_VERSION, Rating, RatingItem

__all__ = ["MAX_FRAMES_PER_PERIOD", "RATING_DOMAIN", "Gossip", "rating_digest"]

RATING_DOMAIN = b"OpenStreaming rating v1\x00"
#: Rating frames accepted from one peer per gossip period (periods of two nodes are not in phase).
MAX_FRAMES_PER_PERIOD = 2
_U64 = struct.Struct(">Q")
_F64X2 = struct.Struct(">dd")


def rating_digest(version: int, reporter: str, seq: int, items: Iterable[RatingItem]) -> bytes:
    """The 32-byte digest a reporter signs for a rating frame (see the module docstring)."""
    body = bytearray(RATING_DOMAIN)
    body += bytes((version & 0xFF,)) + reporter.encode() + b"\x00" + _U64.pack(seq)
    for it in items:
        body += it.subject.encode() + b"\x00" + _F64X2.pack(it.rate, it.count)
    return keccak256(bytes(body))


@dataclass
class _Heard:
    """A reporter's latest frame, filtered to this node's neighbours."""

    at: float
    subjects: np.ndarray  # slots of this node
    rate: np.ndarray
    count: np.ndarray
    fresh: bool = True  # not yet aggregated (its credibility test still to run)


class Gossip:
    """The gossip state of one node (``n_nodes=1`` memory): what it heard, what it says.

    :param node_id: this node's id; :param period_s: the gossip period; :param enabled: False: the
        node neither sends nor uses ratings (``--no-gossip``; received frames are ignored unread).
    """

    def __init__(self, node_id: str, period_s: float, enabled: bool = True) -> None:
        self.node_id = node_id
        self.period_s = period_s
        self.enabled = enabled
        self.seq = 0
        self.heard: dict[int, _Heard] = {}  # reporter slot -> its latest frame
        self._last_seq: dict[int, int] = {}
        self._window: dict[int, list[float]] = {}  # reporter slot -> [window start, frames in it]
        self._signers = KnownSigners(max_keys=64)
        self.stats = {"ratings_sent": 0, "ratings_accepted": 0, "ratings_rejected": 0, "ratings_unread": 0}

    # ------------------------------------------------------------------ out

    def frame(
        self,
        memory: NeighbourMemory,
        subjects: list[tuple[int, str]],
        sign: Callable[[bytes], bytes],
        lie: Callable[[str, float, float], tuple[float, float]] | None = None,
    ) -> Rating:
        """This node's rating frame on ``subjects`` (``(slot, node id)`` of its connected neighbours);
        ``lie(subject, rate, count)``: what a dishonest kind says instead."""
        rate, count = direct_reports(memory)
        items = []
        for slot, nid in subjects[:MAX_RATING_SUBJECTS]:
            r, c = float(rate[0, slot]), float(min(count[0, slot], MAX_REPORT_COUNT))
            if lie is not None:
                r, c = lie(nid, r, c)
            items.append(RatingItem(nid, min(1.0, max(0.0, r)), min(MAX_REPORT_COUNT, max(0.0, c))))
        self.seq += 1
        sig = sign(rating_digest(RATING_VERSION, self.node_id, self.seq, items))
        self.stats["ratings_sent"] += 1
        return Rating(RATING_VERSION, self.node_id, self.seq, items, sig)

    # ------------------------------------------------------------------ in

    def receive(
        self, slot: int, peer: str, address: str, msg: Rating, slot_of: dict[str, int], now: float
    ) -> str | None:
        """Take a rating frame from peer ``peer`` (``slot``, proven ``address``); None: accepted (or
        about nobody known: unread), else the one-line reason it was refused (ignored, counted)."""
        if not self.enabled:
            self.stats["ratings_unread"] += 1
            return None
        if msg.version != RATING_VERSION or msg.reporter != peer:
            return self._refuse(f"rating mismatch: version {msg.version} from {msg.reporter} on {peer}'s link")
        w = self._window.setdefault(slot, [now, 0])
        if now - w[0] >= self.period_s:
            w[0], w[1] = now, 0
        if w[1] >= MAX_FRAMES_PER_PERIOD:
            return self._refuse(f"rating flood: more than {MAX_FRAMES_PER_PERIOD} frames from {peer} in a period")
        w[1] += 1
        keep = [
            (slot_of[it.subject], it)
            for it in msg.items
            if it.subject in slot_of and it.subject not in (self.node_id, peer)
        ]
        if not keep:  # about nobody this node has as a neighbour: costs nothing more
            self.stats["ratings_unread"] += 1
            return None
        if msg.seq <= self._last_seq.get(slot, 0):
            return self._refuse(f"rating mismatch: seq {msg.seq} replayed by {peer}")
        if not self._signed_by(msg, address):
            return self._refuse(f"forged rating: frame {msg.seq} not signed by {peer}'s key")
        self._last_seq[slot] = msg.seq
        self.heard[slot] = _Heard(
            now,
            np.array([k for k, _ in keep], dtype=np.int64),
            np.array([it.rate for _, it in keep]),
            np.array([it.count for _, it in keep]),
        )
        self.stats["ratings_accepted"] += 1
        return None

    def _refuse(self, reason: str) -> str:
        self.stats["ratings_rejected"] += 1
        return reason

    def _signed_by(self, msg: Rating, address: str) -> bool:
        digest = rating_digest(msg.version, msg.reporter, msg.seq, msg.items)
        try:
            key = recover_digest_public_key(digest, bytes(msg.signature))
        except VoucherSignatureError:
            return False
        return bool(address) and self._signers.signed_by(key, address)

    def forget(self, slot: int) -> None:
        """The peer in ``slot`` left: what it said goes with it."""
        self.heard.pop(slot, None)

    # ------------------------------------------------------------------ the rule

    def aggregate(self, memory: NeighbourMemory, now: float) -> None:
        """Replace the memory's network view with the latest frames (heard within two periods),
        through ``agents.gossip.aggregate``; each frame tests its reporter's credibility once."""
        if not self.enabled:
            return
        horizon = now - 2.0 * self.period_s
        for slot in [k for k, h in self.heard.items() if h.at < horizon]:
            del self.heard[slot]
        parts = list(self.heard.items())
        stale = [slot for slot, h in parts if not h.fresh]
        kept = memory.credibility[0, stale].copy()
        if parts:
            subject = np.concatenate([h.subjects for _, h in parts])
            reporter = np.concatenate([np.full(h.subjects.size, slot, dtype=np.int64) for slot, h in parts])
            rate = np.concatenate([h.rate for _, h in parts])
            count = np.concatenate([h.count for _, h in parts])
        else:
            subject = reporter = np.zeros(0, dtype=np.int64)
            rate = count = np.zeros(0)
        reports = Reports(np.zeros(subject.size, dtype=np.int64), subject, reporter, rate, count)
        aggregate(memory, reports, np.zeros(1, dtype=np.int64))
        memory.credibility[0, stale] = kept
        for _, h in parts:
            h.fresh = False
