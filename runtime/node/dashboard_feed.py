"""The live mesh's feed of the web dashboard (``python -m runtime.mesh ... --dashboard [PORT]``).

:class:`MeshFeed` turns what the launcher already reads — every node's stats file (counters,
per-peer channels and memory, coherence scores) — plus its own reading of the chain into
:mod:`runtime.dashboard.frames` frames. The chain is read by a background thread on its own
connection (every channel's deposit, claim and state on ``StreamChannels``; epochs finalised,
roots recomputed and slashes on ``SettlementAVS`` through the settlement service's own report), so
the launcher's loop never waits for an RPC. What a node says about itself is shown as the node's
claim; money totals are the chain's answers and the payees' stored vouchers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from agents.empathy import COHERENCE_THRESHOLD
from agents.gossip import RATING_THRESHOLD
from runtime.dashboard import DashboardServer
from runtime.dashboard.frames import MAX_ACCUSATIONS, wei

__all__ = ["MeshFeed"]

#: Seconds between two readings of the chain by the feed's thread.
CHAIN_POLL_S = 1.5


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _positions(raw: list[list[float]]) -> list[tuple[float, float]]:
    xs, ys = [p[0] for p in raw], [p[1] for p in raw]
    lo_x, hi_x, lo_y, hi_y = min(xs), max(xs), min(ys), max(ys)
    sx, sy = max(hi_x - lo_x, 1e-9), max(hi_y - lo_y, 1e-9)
    return [((x - lo_x) / sx, (y - lo_y) / sy) for x, y in zip(xs, ys, strict=True)]


class MeshFeed:
    """Publish the live mesh to a :class:`~runtime.dashboard.DashboardServer`.

    :param server: a started dashboard server.
    :param summarize: the launcher's ``summarize(snaps, ids, kinds)`` (traffic totals of the report).
    """

    def __init__(self, server: DashboardServer, summarize: Callable[[dict, list, list], dict]) -> None:
        self.server = server
        self.summarize = summarize
        self.ids: list[str] = []
        self.kinds: list[str] = []
        self.links: list[tuple[str, str]] = []
        self.pos: list[tuple[float, float]] = []
        self.title = "live mesh"
        self.duration = 0.0
        self._by_address: dict[str, str] = {}
        self._chain: dict[str, Any] = {"channels": None, "settlement": None}
        self._chain_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_paid: dict[tuple[str, str], int] = {}
        self._last_t: float | None = None
        self._rates: dict[tuple[str, str], float] = {}

    # ------------------------------------------------------------------ set-up (launcher)

    def plan(self, plan: dict, policy: str, duration: float) -> None:
        """The mesh about to start: ids, kinds, links, positions."""
        self.ids, self.kinds = list(plan["ids"]), list(plan["kinds"])
        self.links = [(a, b) for a, b, _ in plan["links"]]
        self.pos = _positions(plan["positions"])
        self.duration = duration
        self.title = f"live mesh · {len(self.ids)} nodes · policy {policy}"
        self.update({}, 0.0, "starting")

    def attach_chain(self, rpc_url: str, channels_address: str, addresses: list[str], service: Any = None) -> None:
        """Start reading the chain: the channel contract and, with ``service``, the settlement AVS."""
        self._by_address = {a.lower(): nid for a, nid in zip(addresses, self.ids, strict=True)}
        self._rpc_url, self._channels_address, self._service = rpc_url, channels_address, service
        self._thread = threading.Thread(target=self._poll_chain, name="dashboard-chain", daemon=True)
        self._thread.start()

    def _connect(self):
        from runtime.chain.client import SettlementAVSClient, StreamChannelsClient, connect

        w3 = connect(self._rpc_url)
        channels = StreamChannelsClient(w3, self._channels_address)
        service = None
        if self._service is not None and self._service.avs is not None:
            service = dataclasses.replace(
                self._service, w3=w3, avs=SettlementAVSClient(w3, self._service.avs.address)
            )  # its report(), on this thread's own connection
        return channels, service

    def _read_chain(self, channels, service) -> dict[str, Any]:
        states = {cid: channels.channel(cid) for cid in range(1, channels.next_channel_id())}
        out: dict[str, Any] = {"channels": states, "settlement": None}
        if service is not None:
            r = service.report()
            out["settlement"] = {
                "epochs_finalised": int(r["epochs_finalised"]),
                "roots_match": bool(r["roots_match_recomputed"]) if r["epochs_finalised"] else None,
                "slashed": list(r["slashed_operators"]),
                "slashed_wei": wei(r["slashed_wei"]),
            }
        return out

    def _poll_chain(self) -> None:
        try:
            channels, service = self._connect()
        except Exception:  # the chain went away: the page keeps the nodes' view
            return
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # a failed read is retried at the next poll
                reading = self._read_chain(channels, service)
                with self._chain_lock:
                    self._chain = reading
            self._stop.wait(CHAIN_POLL_S)

    # ------------------------------------------------------------------ frames

    def update(self, snaps: dict[str, dict], elapsed: float, status: str = "running") -> None:
        """Publish the nodes' latest stats with the latest chain reading."""
        with self._chain_lock:
            chain = dict(self._chain)
        self.server.publish(self._frame(snaps, elapsed, status, chain))

    def finish(self, snaps: dict[str, dict], report: dict) -> None:
        """The last frame: final stats, a fresh reading of the chain after settlement, the report's extras."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        chain = dict(self._chain)
        with contextlib.suppress(Exception):
            chain = self._read_chain(*self._connect())
        frame = self._frame(snaps, self.duration, "finished", chain)
        attacks = frame["panels"][0]["attacks"]
        extra = report.get("attacks")
        if isinstance(extra, dict):  # other kinds of attack the run reports, whatever their names
            for kind, value in extra.items():
                count = value.get("rejected", value.get("count")) if isinstance(value, dict) else value
                if isinstance(count, int | float) and not isinstance(count, bool):
                    attacks[str(kind)] = int(count)
        self.server.publish(frame)

    def stop(self) -> None:
        """Stop the chain thread (the server is closed by its owner)."""
        self._stop.set()

    def _frame(self, snaps: dict[str, dict], elapsed: float, status: str, chain: dict) -> dict:
        ids, kinds = self.ids, self.kinds
        kind_of = dict(zip(ids, kinds, strict=True))
        summary = self.summarize(snaps, ids, kinds)
        nodes = []
        for i, nid in enumerate(ids):
            snap = snaps.get(nid) or {}
            st = snap.get("stats", {})
            peers = snap.get("peers", {})
            # the trust ring: what its honest neighbours say of it, their rating (own custody evidence
            # blended with trust gossip, agents.gossip.rating) where they report one, else their coherence score
            judges = [self._verdict(snaps.get(p) or {}, nid) for p in self._neighbours(nid) if kind_of[p] == "honest"]
            judges = [s for s in judges if s is not None]
            decisions = st.get("decisions", 0)
            nodes.append(
                {
                    "id": nid,
                    "kind": kinds[i],
                    "x": self.pos[i][0],
                    "y": self.pos[i][1],
                    "trust": (sum(judges) / len(judges)) if judges else None,
                    "forwarded": _int(st.get("forwarded")),
                    "delivered": _int(st.get("delivered")),
                    "dropped": _int(st.get("dropped")),
                    "queue": _int(snap.get("backlog")),
                    "earned": wei(_int(st.get("earned_wei"))),
                    "unpaid": wei(sum(_int(p.get("unpaid_wei")) for p in peers.values())),
                    "decision_us": round(1e6 * st.get("decision_seconds", 0) / decisions, 1) if decisions else None,
                }
            )
        edges = self._edges(snaps, elapsed)
        if status != "running":  # nothing flows before the streams start or after the nodes stop
            for e in edges:
                e["ab"] = e["ba"] = 0.0
        attacks: dict[str, int] = {}
        for snap in snaps.values():
            for source in (snap.get("rejections"), snap.get("attacks")):
                if isinstance(source, dict):
                    for k, v in source.items():
                        if isinstance(v, int | float) and not isinstance(v, bool):
                            attacks[str(k)] = attacks.get(str(k), 0) + int(v)
        panel = {
            "label": "mesh",
            "money": "wei",
            "nodes": nodes,
            "edges": edges,
            "pieces": None,
            "totals": {
                "sent": summary["pieces_sent"],
                "delivered": summary["pieces_delivered"],
                "delivery_rate": summary["delivery_rate"],
                "dishonest_share": summary["dishonest_share"],
            },
            "channels": self._channels(snaps, chain.get("channels")),
            "settlement": chain.get("settlement"),
            "attacks": attacks,
            "accusations": self._accusations(snaps),
            "point": {
                "t": round(elapsed, 2),
                "delivery_rate": summary["delivery_rate"],
                "dishonest_share": summary["dishonest_share"],
            },
        }
        return {
            "feed": "mesh",
            "title": self.title,
            "status": status,
            "clock": {"now": round(elapsed, 2), "end": self.duration, "unit": "s"},
            "panels": [panel],
        }

    @staticmethod
    def _verdict(snap: dict, nid: str) -> bool | None:
        """Whether a neighbour trusts ``nid``: its rating is at least 0.5 where it reports one (own
        custody evidence blended with trust gossip, ``agents.gossip.rating``), else its coherence score
        is above ``COHERENCE_THRESHOLD``; None: it says nothing."""
        rating = snap.get("peers", {}).get(nid, {}).get("rating")
        if isinstance(rating, int | float):
            return rating >= RATING_THRESHOLD
        score = snap.get("scores", {}).get(nid)
        return score > COHERENCE_THRESHOLD if isinstance(score, int | float) else None

    def _accusations(self, snaps: dict[str, dict]) -> list[dict]:
        """Every honest node's rating of a neighbour below ``RATING_THRESHOLD`` (its own custody
        evidence blended with trust gossip), lowest first: the cheats found out and, if slander
        worked, the honest nodes wrongly accused. Cheats' own views are left out: what they say of
        others is a claim, and it reaches honest nodes only as gossip."""
        kind_of = dict(zip(self.ids, self.kinds, strict=True))
        found = []
        for judge, kind in kind_of.items():
            if kind != "honest":
                continue
            peers = (snaps.get(judge) or {}).get("peers", {})
            for subject in self._neighbours(judge):
                rating = (peers.get(subject) or {}).get("rating")
                if isinstance(rating, int | float) and not isinstance(rating, bool) and rating < RATING_THRESHOLD:
                    found.append({"by": judge, "of": subject, "rating": round(float(rating), 3)})
        found.sort(key=lambda a: (a["rating"], a["of"], a["by"]))
        return found[:MAX_ACCUSATIONS]  # the lowest; a page lists no more

    def _neighbours(self, nid: str) -> list[str]:
        return [b for a, b in self.links if a == nid] + [a for a, b in self.links if b == nid]

    def _edges(self, snaps: dict[str, dict], elapsed: float) -> list[dict]:
        def paid(a: str, b: str) -> int:
            return _int(((snaps.get(a) or {}).get("peers", {}).get(b) or {}).get("pay_cumulative"))

        dt = None if self._last_t is None else elapsed - self._last_t
        if dt is not None and dt > 0.2:  # recent flow: wei paid per second along each direction
            for a, b in self.links:
                for key in ((a, b), (b, a)):
                    now = paid(*key)
                    self._rates[key] = max(0, now - self._last_paid.get(key, 0)) / dt
                    self._last_paid[key] = now
            self._last_t = elapsed
        elif dt is None:
            self._last_paid = {k: paid(*k) for a, b in self.links for k in ((a, b), (b, a))}
            self._last_t = elapsed
        peak = max(self._rates.values(), default=0.0) or 1.0
        return [
            {
                "a": a,
                "b": b,
                "traffic": float(paid(a, b) + paid(b, a)),
                "ab": round(self._rates.get((a, b), 0.0) / peak, 3),
                "ba": round(self._rates.get((b, a), 0.0) / peak, 3),
            }
            for a, b in self.links
        ]

    def _channels(self, snaps: dict[str, dict], states: dict | None) -> list[dict] | None:
        if states is None:
            return None
        owed: dict[int, int] = {}
        for snap in snaps.values():  # what each payee holds: its latest stored voucher per channel
            for p in (snap.get("peers") or {}).values():
                cid = p.get("recv_channel")
                if isinstance(cid, int):
                    owed[cid] = max(owed.get(cid, 0), _int(p.get("recv_paid")))
        rows = []
        for cid, s in sorted(states.items()):
            rows.append(
                {
                    "id": cid,
                    "payer": self._by_address.get(s.payer.lower(), s.payer[:10]),
                    "payee": self._by_address.get(s.payee.lower(), s.payee[:10]),
                    "deposit": wei(s.deposit),
                    "claimed": wei(s.claimed),
                    "owed": wei(owed.get(cid, 0)),
                    "refund": wei(s.deposit - s.claimed if s.settled else 0),
                    "state": "settled" if s.settled else "closing" if s.closes_at else "open",
                }
            )
        return rows


def start_server(port: int) -> DashboardServer:
    """A started dashboard server on ``port`` (0: any free port); ``OSError`` if it is taken."""
    return DashboardServer(port=port).start()


def wait_hold(server: DashboardServer, hold_s: float, say: Callable[[str], None]) -> None:
    """Keep serving the last frame for ``hold_s`` seconds (Ctrl-C ends it early)."""
    if hold_s <= 0:
        return
    say(f"dashboard: still serving {server.url} for {hold_s:g} s (Ctrl-C to stop)")
    with contextlib.suppress(KeyboardInterrupt):
        time.sleep(hold_s)
