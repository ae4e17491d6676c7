"""The forger attack on real node processes (loopback TCP, offline chain): fake delivery claims fail.

A diamond ``n0 - n1 - n3`` / ``n0 - n2 - n3`` with a stream ``n0 -> n3``; ``n1`` is a ``forger``:
it takes pieces, drops them, advertises half-length routes to attract more, and answers each with
a fake proof of delivery (a receipt signed with its own key, or an unsigned delivery claim).
"""

from __future__ import annotations

from runtime.node.store import Store
from tests.runtime.node.procs import Cluster, start_diamond


def _held(cluster: Cluster, node: str) -> int:
    store = Store(cluster.tmp / f"{node}.sqlite")
    try:
        return sum(v.cumulative for v in store.latest("received").values())
    finally:
        store.close()


def test_a_forger_is_caught_earns_nothing_and_the_honest_path_carries_the_stream(cluster):
    start_diamond(cluster, "forger", rate=40)

    def caught() -> bool:
        snap = cluster.stats("n0")
        reasons = " | ".join(cluster.reasons("n0"))
        return (
            "forged receipt" in reasons
            and "unsigned delivery claim" in reasons
            and snap.get("peers", {}).get("n1", {}).get("success", 1.0) < 0.5
            and cluster.stats("n3").get("stats", {}).get("delivered", 0) > 20
        )

    cluster.wait_for(caught, timeout=60, what="forged claims rejected and deliveries through n2")
    for n in ("n0", "n1", "n2", "n3"):
        assert cluster.terminate(n) == 0
    reasons = cluster.reasons("n0")
    assert any(r.startswith("forged receipt") for r in reasons), reasons
    assert any(r.startswith("unsigned delivery claim") for r in reasons), reasons
    final = cluster.stats("n0")
    assert final["payment"] == "on_delivery"
    assert final["stats"]["receipts_verified"] > 20 and final["peers"]["n1"]["success"] < 0.5
    assert final["peers"]["n2"]["success_count"] > 0  # n0 learnt from n2's receipts too
    # money: the forger holds no voucher worth a wei; the honest relay holds what n0 signed for it
    assert _held(cluster, "n1") == 0 and cluster.stats("n1")["stats"]["earned_wei"] == 0
    assert _held(cluster, "n2") > 0
    assert cluster.stats("n1")["stats"]["forged_receipts"] >= final["stats"]["forged_receipts"]
