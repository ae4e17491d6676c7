"""Custody of pieces: one record per piece id a node holds, from its arrival to its one outcome.

A node holds at most **one** record per piece id. A piece whose id it already holds (queued, in
flight, kept for late evidence) or resolved recently is refused at arrival (``duplicate piece``:
counted, the link kept, nothing charged), so a receipt, a loss report or a refusal can only ever
name one record, and settles exactly that record: never another piece's, never twice.

The life of a record:

``held``
    the piece arrived (or was emitted here) and waits for the ingest or the routing decision;
``live``
    it was handed to a downstream peer (:class:`Entry`): an ack, a receipt or a loss report from
    *that* peer settles it; with no receipt by ``deadline + grace`` it counts as lost;
``late``
    lost (by a loss report, a refusal or the timeout) but kept until ``deadline + grace + late
    window``: a late ack still fixes its charge and a genuine receipt that still verifies against it
    is paid, once (the credit rule of :mod:`runtime.node.protocol`);
``resolved``
    only its id, the peer that held it and how it ended, for a bounded number of ids (so a replayed
    receipt changes nothing and is not held against an honest peer).

Every map is bounded: ``held`` and ``live`` by the node's queue, credit and per-peer caps (and each
entry by its clamped deadline), ``late`` by time and :data:`LATE_KEPT`, ``resolved`` by
:data:`RESOLVED_MEMORY`.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["LATE_KEPT", "RESOLVED_MEMORY", "Custody", "Entry"]

#: Piece ids whose resolution is remembered (to tell a replayed or late receipt from a piece never seen).
RESOLVED_MEMORY = 65536
#: Lost records kept for late evidence (oldest out beyond this, whatever their window).
LATE_KEPT = 65536


@dataclass(slots=True)
class Entry:
    """This node's record of one piece it handed to ``peer``: what the piece is and whom it came from."""

    peer: str
    slot: int
    upstream: int | None  # conn the piece came from (None: we are its source)
    deadline: float
    sent: float
    size: float
    quote_wei: int  # the downstream's quote when the piece was handed over
    src: str = ""
    dst: str = ""
    dst_addr: str = ""  # whose key must sign the receipt
    phash: bytes = b""
    up_peer: str | None = None  # the upstream peer's id, and what we charged it (owed on its receipt)
    up_charge: int = 0
    charge: int = 0  # what the downstream charged us (paid on the receipt in on_delivery)
    acked: bool = False
    held_at: float = 0.0  # the downstream's custody acceptance (runtime.node.acceptance), from its ack
    custody: bytes = b""
    custody_proof: tuple[bytes, ...] = ()  # its Merkle proof (runtime.node.sealing)


class Custody:
    """The records of the pieces one node holds (see the module docstring).

    :param grace: seconds past a piece's deadline before a live record counts as lost.
    :param late_window: seconds past ``deadline + grace`` a lost record is kept for late evidence.
    """

    def __init__(self, grace: float, late_window: float) -> None:
        self.grace = grace
        self.late_window = late_window
        #: ids queued here (arrived or emitted, not yet handed on or resolved) -> when to forget them
        self.held: dict[int, float] = {}
        #: id -> record of a piece handed to a downstream peer and not yet settled
        self.live: dict[int, Entry] = {}
        #: id -> record lost but kept until its late window closes (oldest first)
        self.late: OrderedDict[int, Entry] = OrderedDict()
        #: id -> (peer that held it, "receipt" | "lost" | "dropped" | "delivered"), oldest first
        self.resolved: OrderedDict[int, tuple[str, str]] = OrderedDict()
        #: live records per downstream peer, and the upstream charges they carry per upstream peer
        self.per_peer: dict[str, int] = {}
        self.exposure: dict[str, int] = {}
        self._deadlines: list[tuple[float, int]] = []

    # ------------------------------------------------------------------ queries

    def knows(self, pid: int) -> bool:
        """Whether ``pid`` is held, live, kept late or resolved recently (then a new copy is refused)."""
        return pid in self.held or pid in self.live or pid in self.late or pid in self.resolved

    def live_for(self, pid: int, peer: str) -> Entry | None:
        """The live record of ``pid`` if it was handed to ``peer`` (else None: not that peer's to settle)."""
        e = self.live.get(pid)
        return e if e is not None and e.peer == peer else None

    def late_for(self, pid: int, peer: str) -> Entry | None:
        """The kept lost record of ``pid`` if it was handed to ``peer``."""
        e = self.late.get(pid)
        return e if e is not None and e.peer == peer else None

    def in_flight(self, peer: str) -> int:
        """Live records handed to ``peer``."""
        return self.per_peer.get(peer, 0)

    def exposure_wei(self, upstream: str) -> int:
        """Charges to ``upstream`` of its pieces still in flight here (credit at risk, not yet owed)."""
        return self.exposure.get(upstream, 0)

    def relay_cutoff(self, e: Entry) -> float:
        """Until when a receipt for ``e`` is relayed upstream with credit: half-way through the late
        window, so that it reaches the upstream before the upstream's own window closes."""
        return e.deadline + self.grace + self.late_window / 2.0

    # ------------------------------------------------------------------ transitions

    def hold(self, pid: int, deadline: float) -> None:
        """A piece arrived (or was emitted): hold its id until it is handed on or resolved."""
        self.held[pid] = deadline + self.grace + self.late_window

    def drop(self, pid: int, outcome: str = "dropped") -> None:
        """A held piece ends here (dropped, delivered, its upstream gone)."""
        self.held.pop(pid, None)
        self.remember(pid, "", outcome)

    def add(self, pid: int, e: Entry) -> None:
        """A held piece was handed to ``e.peer``: it becomes live."""
        if pid in self.live:  # never in normal flow (ids are refused while known): settle the old one
            self.settle(pid)
        self.held.pop(pid, None)
        self.live[pid] = e
        self.per_peer[e.peer] = self.per_peer.get(e.peer, 0) + 1
        if e.up_peer is not None and e.up_charge:
            self.exposure[e.up_peer] = self.exposure.get(e.up_peer, 0) + e.up_charge
        heapq.heappush(self._deadlines, (e.deadline + self.grace, pid))

    def settle(self, pid: int) -> Entry | None:
        """Take ``pid``'s live record out (its outcome is known)."""
        e = self.live.pop(pid, None)
        if e is None:
            return None
        n = self.per_peer.get(e.peer, 0) - 1
        if n > 0:
            self.per_peer[e.peer] = n
        else:
            self.per_peer.pop(e.peer, None)
        if e.up_peer is not None and e.up_charge:
            left = self.exposure.get(e.up_peer, 0) - e.up_charge
            if left > 0:
                self.exposure[e.up_peer] = left
            else:
                self.exposure.pop(e.up_peer, None)
        return e

    def keep_late(self, pid: int, e: Entry) -> None:
        """A lost record stays for late evidence until its window closes (bounded count)."""
        self.late[pid] = e
        self.late.move_to_end(pid)
        while len(self.late) > LATE_KEPT:
            self.late.popitem(last=False)

    def take_late(self, pid: int) -> Entry | None:
        """Take ``pid``'s kept lost record out (a late receipt settled it)."""
        return self.late.pop(pid, None)

    def remember(self, pid: int, peer: str, outcome: str) -> None:
        """Remember how ``pid`` ended and with whom (bounded, oldest out)."""
        self.resolved[pid] = (peer, outcome)
        self.resolved.move_to_end(pid)
        while len(self.resolved) > RESOLVED_MEMORY:
            self.resolved.popitem(last=False)

    def due(self, now: float) -> list[int]:
        """Live ids past ``deadline + grace`` at ``now`` (to count as lost)."""
        out = []
        dl = self._deadlines
        while dl and dl[0][0] < now:
            _, pid = heapq.heappop(dl)
            e = self.live.get(pid)
            if e is not None and e.deadline + self.grace < now:
                out.append(pid)
        return out

    def prune(self, now: float) -> None:
        """Forget kept lost records and held ids whose window closed."""
        while self.late:
            pid, e = next(iter(self.late.items()))
            if e.deadline + self.grace + self.late_window >= now:
                break
            self.late.popitem(last=False)
        # late records are added in timeout order, not strictly by deadline: sweep the rest rarely
        if len(self.late) > 1024:
            for pid in [p for p, e in self.late.items() if e.deadline + self.grace + self.late_window < now]:
                del self.late[pid]
        for pid in [p for p, until in self.held.items() if until < now]:
            self.drop(pid)
