"""Counting what a node refuses, with counters that no peer can grow.

Every refused frame and every protocol violation has a one-line reason, whose variable part (a
piece id, a size, a version, a node id: all peer-chosen) goes only into the log line. The counters
are keyed by a fixed set of reason classes, :class:`Reason`, so a flood of frames with ever new
numbers leaves the same few keys: :func:`classify` maps a reason line to its class (``other`` for
anything unforeseen). Per-peer counts are kept for configured peers only (anything else is
``unauthenticated``), and the log is rate-limited per class (``log_lines`` lines per
``log_window_s``, then one ``reject_suppressed`` line with the count).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

__all__ = ["Reason", "RejectionCounter", "classify"]


class Reason(StrEnum):
    """The classes of refusals a node counts (the keys of ``rejections``)."""

    # handshake
    UNEXPECTED_FRAME = "unexpected frame"
    PROTOCOL_VERSION = "protocol version"
    WRONG_PEER = "wrong peer answered"
    UNKNOWN_PEER = "unknown peer"
    ADDRESS_MISMATCH = "address mismatch"
    DUPLICATE_CONNECTION = "duplicate connection"
    BAD_HELLO_SIGNATURE = "bad hello signature"
    DUPLICATE_HELLO = "duplicate hello"
    TOO_MANY_HANDSHAKES = "too many pending handshakes"
    HANDSHAKE_EVICTED = "handshake evicted"
    HELLO_TIMEOUT = "hello timeout"
    HANDSHAKE_TIMEOUT = "handshake timeout"
    READ_TIMEOUT = "read timeout"
    # framing
    FRAME_TOO_LARGE = "frame too large"
    MALFORMED_FRAME = "malformed frame"
    UNKNOWN_MESSAGE = "unknown message"
    PEER_NOT_READING = "peer not reading"
    UNSENDABLE = "unsendable"
    # channels and vouchers
    SECOND_CHANNEL = "second channel"
    DUPLICATE_CHANNEL_INFO = "duplicate channel info"
    CHAIN_LOOKUP_RATE = "chain lookup rate"
    CHANNEL_NOT_FROM_PEER = "channel not from peer"
    CHANNEL_FOR_ANOTHER_PAYEE = "channel for another payee"
    CHANNEL_UNUSABLE = "channel unusable"
    VOUCHER_BEFORE_CHANNEL = "voucher before channel"
    VOUCHER_FOR_ANOTHER_CHANNEL = "voucher for another channel"
    REPLAYED_VOUCHER = "replayed voucher"
    VOUCHER_ABOVE_DEPOSIT = "voucher above deposit"
    BAD_SIGNATURE = "bad signature"
    VACK_FOR_ANOTHER_CHANNEL = "vack for another channel"
    FORGED_VACK = "forged vack"
    STALE_VACK = "stale vack"
    # pieces, acks, receipts
    UNPAID_PIECE = "unpaid piece"
    PIECE_SIZE = "piece size"
    DUPLICATE_PIECE = "duplicate piece"
    ROUTING_LOOP = "routing loop"
    UNPAID_CREDIT = "unpaid credit"
    UNSOLICITED_ACK = "unsolicited ack"
    LATE_ACK = "late ack"
    OVERCHARGE = "overcharge"
    UNSIGNED_DELIVERY_CLAIM = "unsigned delivery claim"
    RECEIPT_FOR_UNKNOWN_PIECE = "receipt for unknown piece"
    RECEIPT_BEFORE_ACK = "receipt before ack"
    RECEIPT_MISMATCH = "receipt mismatch"
    FORGED_RECEIPT = "forged receipt"
    UNREACHABLE_ROUTES = "unreachable routes"
    # custody evidence and trust gossip
    FORGED_CUSTODY = "forged custody"
    CUSTODY_MISMATCH = "custody mismatch"
    FORGED_RATING = "forged rating"
    RATING_MISMATCH = "rating mismatch"
    RATING_FLOOD = "rating flood"
    OTHER = "other"


_BY_VALUE = {r.value: r for r in Reason}
#: reason lines whose class is not the text before their first ':' (their start says it)
_PREFIXES = (
    ("unexpected ", Reason.UNEXPECTED_FRAME),
    ("protocol version", Reason.PROTOCOL_VERSION),
    ("dialled ", Reason.WRONG_PEER),
    ("frame of ", Reason.FRAME_TOO_LARGE),
    ("unknown message", Reason.UNKNOWN_MESSAGE),
    ("peer not reading", Reason.PEER_NOT_READING),
    ("unsendable", Reason.UNSENDABLE),
)


def classify(reason: str) -> Reason:
    """The class of a reason line: the text before its first ``:`` when that is a class, else by its
    start, else :attr:`Reason.OTHER` (never a new key)."""
    head = reason.split(":", 1)[0].strip()
    known = _BY_VALUE.get(head)
    if known is not None:
        return known
    for prefix, cls in _PREFIXES:
        if reason.startswith(prefix):
            return cls
    return Reason.OTHER


class RejectionCounter:
    """Counts refusals per class and per peer, and rate-limits their log lines per class.

    :param peers: the configured peer ids (the only per-peer keys besides ``unauthenticated``).
    :param log: ``log(event, **fields)``.
    :param clock: seconds, for the log window (``time.monotonic`` by default).
    """

    UNAUTHENTICATED = "unauthenticated"

    def __init__(
        self,
        peers: set[str],
        log: Callable[..., None],
        clock: Callable[[], float] = time.monotonic,
        log_lines: int = 20,
        log_window_s: float = 10.0,
    ) -> None:
        self.peers = set(peers)
        self.log = log
        self.clock = clock
        self.log_lines = log_lines
        self.log_window_s = log_window_s
        #: class -> count (keys: :class:`Reason` values only)
        self.counts: dict[str, int] = {}
        #: peer id (configured) or "unauthenticated" -> class -> count
        self.by_peer: dict[str, dict[str, int]] = {}
        #: peer id (configured) -> class -> violations that closed its link (cut-offs)
        self.cutoffs_by_peer: dict[str, dict[str, int]] = {}
        self._window: dict[Reason, list[float]] = {}  # class -> [window start, logged, suppressed]

    def count(
        self, reason: str, peer: str | None, event: str = "reject", cutoff: bool = False, blame: bool = True, **fields
    ) -> Reason:
        """Count ``reason`` against ``peer`` and log it (rate-limited); returns its class.
        ``cutoff``: the refusal closed an authenticated peer's link (counted apart as well);
        ``blame=False``: an honest peer's frame refused for a benign cause (a routing loop), counted
        by class only, never against the peer."""
        cls = classify(reason)
        self.counts[cls.value] = self.counts.get(cls.value, 0) + 1
        if blame:
            who = peer if peer in self.peers else self.UNAUTHENTICATED
            per = self.by_peer.setdefault(who, {})
            per[cls.value] = per.get(cls.value, 0) + 1
        if cutoff and peer in self.peers:
            cut = self.cutoffs_by_peer.setdefault(peer, {})
            cut[cls.value] = cut.get(cls.value, 0) + 1
        now = self.clock()
        w = self._window.setdefault(cls, [now, 0, 0])
        if now - w[0] > self.log_window_s:
            if w[2]:
                self.log("reject_suppressed", reason=cls.value, count=int(w[2]))
            w[:] = [now, 0, 0]
        if w[1] < self.log_lines:
            w[1] += 1
            self.log(event, peer=peer, reason=reason[:300], **fields)
        else:
            w[2] += 1
        return cls
