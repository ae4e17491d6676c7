"""Batched signatures on real node processes (loopback TCP, offline chain): a spliced proof fails.

A diamond ``n0 - n1 - n3`` / ``n0 - n2 - n3`` with a busy stream ``n0 -> n3``. The destination
``n3`` seals the receipts and acceptances of each turn of its event loop under one signature
(``runtime.node.sealing``). ``n1`` is a ``proof_splicer``: it relays every other piece honestly and
keeps the destination's genuine signature and Merkle proof from a receipt it relayed; it drops the
other pieces and answers each with a receipt for it carrying that signature and proof. A signature
covers only the digests of its own batch, so ``n0`` refuses the splice as a forged receipt.
"""

from __future__ import annotations

from runtime.node.store import Store
from tests.runtime.node.procs import Cluster, start_diamond


def _stat(cluster: Cluster, node: str, key: str) -> float:
    return cluster.stats(node).get("stats", {}).get(key, 0)


def test_a_receipt_spliced_from_another_batch_is_a_forgery_and_the_honest_path_carries_the_stream(cluster):
    start_diamond(cluster, "proof_splicer", rate=150)

    def caught() -> bool:
        return (
            any(r.startswith("forged receipt") for r in cluster.reasons("n0"))
            and _stat(cluster, "n3", "delivered") > 100
            and _stat(cluster, "n3", "seals_signed") < _stat(cluster, "n3", "sealed_frames")
        )

    cluster.wait_for(caught, timeout=60, what="a spliced receipt refused, and batches sealed at n3")
    for n in ("n0", "n1", "n2", "n3"):
        assert cluster.terminate(n) == 0
    n0, n1, n3 = (cluster.stats(n) for n in ("n0", "n1", "n3"))
    assert n1["stats"]["attack_frames"] >= 1  # it did splice
    assert n0["stats"]["forged_receipts"] >= 1
    # the destination signed fewer times than it issued receipts and acceptances, and n0 believed
    # (verified) receipts from those batches all along
    assert n3["stats"]["seals_signed"] < n3["stats"]["sealed_frames"]
    assert n0["stats"]["receipts_verified"] > 20 and n0["stats"]["receipts_verified_sealed"] > 0
    # money: n0 paid n1 for no more than the deliveries it verified through it, and every voucher
    # n0 signed is on disk at n0 (at most what the payee holds is what was signed)
    at_n0 = n0["peers"]["n1"]
    assert at_n0["pay_cumulative"] <= at_n0["accepted_wei"]
    store = Store(cluster.tmp / "n1.sqlite")
    try:
        held = sum(v.cumulative for v in store.latest("received").values())
    finally:
        store.close()
    assert held <= at_n0["accepted_wei"]
