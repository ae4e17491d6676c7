"""A small frame of the dashboard format, for the server and page tests (the feeds have their own tests)."""

from __future__ import annotations


def make_frame(step: int, delivered: int = 0, label: str = "mesh", status: str = "running", kinds=None) -> dict:
    kinds = kinds or ["honest", "honest", "blackhole", "honest"]
    ids = [f"n{i}" for i in range(len(kinds))]
    nodes = [
        {"id": nid, "kind": k, "x": (i % 2) * 0.9 + 0.05, "y": (i // 2) * 0.9 + 0.05, "trust": 0.5 if i else None,
         "forwarded": step, "delivered": delivered if i == 0 else 0, "dropped": 0, "queue": 0,
         "earned": str(10**15 * step), "unpaid": "0", "decision_us": 12.5}
        for i, (nid, k) in enumerate(zip(ids, kinds, strict=True))
    ]  # fmt: skip
    channels = [
        {"id": 1, "payer": "n0", "payee": "n1", "deposit": str(10**17), "claimed": str(7 * 10**15 + 1),
         "owed": str(7 * 10**15 + 1), "refund": "0", "state": "open"},
        {"id": 2, "payer": "n1", "payee": "n0", "deposit": str(10**17), "claimed": "0",
         "owed": str(3 * 10**15), "refund": "0", "state": "open"},
    ]  # fmt: skip
    return {
        "feed": "mesh",
        "title": "test feed",
        "status": status,
        "clock": {"now": float(step), "end": 100, "unit": "s"},
        "panels": [
            {
                "label": label,
                "money": "wei",
                "nodes": nodes,
                "edges": [
                    {"a": "n0", "b": "n1", "traffic": 5.0, "ab": 1.0, "ba": 0.2},
                    {"a": "n1", "b": "n2", "traffic": 1.0, "ab": 0.0, "ba": 0.0},
                ],
                "pieces": None,
                "totals": {"sent": 2 * delivered, "delivered": delivered, "delivery_rate": 0.5, "dishonest_share": 0.1},
                "channels": channels,
                "settlement": {"epochs_finalised": step, "roots_match": True, "slashed": [], "slashed_wei": "0"},
                "attacks": {"replayed voucher": 2},
                "accusations": [{"by": "n0", "of": "n2", "rating": 0.125}, {"by": "n3", "of": "n1", "rating": 0.4}],
                "point": {"t": float(step), "delivery_rate": 0.5, "dishonest_share": 0.1},
            }
        ],
    }
