"""The frame a feed publishes to the dashboard: one JSON object per update.

A frame holds the whole current picture (the meshes are small), so a page that connects late or
reconnects after a dropped stream needs only the latest frame and the series history::

    {"feed": "mesh" | "watch", "title": str, "status": "starting" | "running" | "settling" | "finished",
     "clock": {"now": float, "end": float | null, "unit": "s" | "step"},
     "panels": [PANEL, ...]}                      # one per mesh; side by side on the page

    PANEL = {
      "label": str,                               # e.g. the policy
      "money": "wei" | "units",                   # wei (live mesh) or the environment's money units
      "nodes": [{"id": str, "kind": str, "x": float, "y": float,     # position in [0, 1]^2
                 "trust": float | null,           # share of its honest neighbours that find it coherent
                 "forwarded": int, "delivered": int, "dropped": int, "queue": int,
                 "earned": MONEY, "unpaid": MONEY | null, "decision_us": float | null}],
      "edges": [{"a": str, "b": str, "traffic": float,             # pieces (watch) or wei paid (mesh)
                 "ab": float, "ba": float}],      # recent flow each way, 0..1 of the panel's busiest
      "pieces": [{"a": str, "b": str, "f": float}] | null,        # pieces on links, f = progress 0..1
      "totals": {"sent": int, "delivered": int, "delivery_rate": float, "dishonest_share": float},
      "channels": [{"id": int, "payer": str, "payee": str, "deposit": WEI, "claimed": WEI,
                    "owed": WEI, "refund": WEI, "state": "open" | "closing" | "settled"}] | null,
      "settlement": {"epochs_finalised": int, "roots_match": bool | null, "slashed": [str],
                     "slashed_wei": WEI} | null,
      "attacks": {str: int} | null,               # rejections and attacks by kind, whatever appears
      "accusations": [{"by": str, "of": str, "rating": float}] | null,   # honest nodes rating a
                                                  # neighbour below 0.5, lowest first (optional)
      "point": {"t": float, "delivery_rate": float, "dishonest_share": float},
    }

``WEI`` is a decimal string (wei overflow a JavaScript number; the page sums them as ``BigInt``);
``MONEY`` is a ``WEI`` string when ``money`` is ``"wei"``, else a float. The page computes the
channel totals itself from the rows, so a test that compares them with a run's report checks the
whole path.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["FEEDS", "FrameError", "check_frame", "series_point", "wei"]

FEEDS = ("mesh", "watch")
STATUSES = ("starting", "running", "settling", "finished")
#: Panels a frame may hold, nodes a panel may hold: the page is for small meshes.
MAX_PANELS = 4
MAX_NODES = 512
#: Accusations a panel may list.
MAX_ACCUSATIONS = 64


class FrameError(ValueError):
    """A frame that does not follow the format above."""


def wei(value: int | float | str) -> str:
    """An amount of wei as the decimal string the page expects."""
    return str(int(value))


def _finite(value: Any, name: str) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise FrameError(f"{name} must be a finite number, got {value!r}")


def check_frame(frame: dict) -> dict:
    """Check the parts of ``frame`` the page relies on; return it unchanged or raise :class:`FrameError`."""
    if not isinstance(frame, dict):
        raise FrameError("a frame is a JSON object")
    if frame.get("feed") not in FEEDS:
        raise FrameError(f"feed must be one of {FEEDS}, got {frame.get('feed')!r}")
    if frame.get("status") not in STATUSES:
        raise FrameError(f"status must be one of {STATUSES}, got {frame.get('status')!r}")
    panels = frame.get("panels")
    if not isinstance(panels, list) or not 1 <= len(panels) <= MAX_PANELS:
        raise FrameError(f"panels must be a list of 1 to {MAX_PANELS} panels")
    labels = [p.get("label") for p in panels]
    if len(set(labels)) != len(labels) or not all(isinstance(x, str) and x for x in labels):
        raise FrameError(f"panel labels must be distinct non-empty strings, got {labels}")
    for p in panels:
        nodes = p.get("nodes")
        if not isinstance(nodes, list) or len(nodes) > MAX_NODES:
            raise FrameError(f"panel {p['label']}: nodes must be a list of at most {MAX_NODES}")
        ids = {n.get("id") for n in nodes}
        if len(ids) != len(nodes):
            raise FrameError(f"panel {p['label']}: node ids must be distinct")
        for e in p.get("edges", []):
            if e.get("a") not in ids or e.get("b") not in ids:
                raise FrameError(f"panel {p['label']}: edge {e.get('a')}-{e.get('b')} names an unknown node")
        accusations = p.get("accusations")
        if accusations is not None:
            if not isinstance(accusations, list) or len(accusations) > MAX_ACCUSATIONS:
                raise FrameError(f"panel {p['label']}: accusations must be a list of at most {MAX_ACCUSATIONS}")
            for a in accusations:
                if not isinstance(a, dict) or a.get("by") not in ids or a.get("of") not in ids:
                    raise FrameError(f"panel {p['label']}: an accusation names an unknown node: {a!r}")
                _finite(a.get("rating"), f"panel {p['label']}: accusation rating")
        point = p.get("point")
        if not isinstance(point, dict):
            raise FrameError(f"panel {p['label']}: point is missing")
        for key in ("t", "delivery_rate", "dishonest_share"):
            _finite(point.get(key), f"panel {p['label']}: point.{key}")
    return frame


def series_point(frame: dict) -> dict:
    """The time-series sample of a frame: ``{label: point}`` over its panels."""
    return {p["label"]: p["point"] for p in frame["panels"]}
