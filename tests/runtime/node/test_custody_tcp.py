"""Signed custody on real node processes (loopback TCP, offline chain): the loss lands where the
piece died, and a relay that forges a downstream acceptance is refused.

A line ``n0 - n1 - n2 - n3`` with a stream ``n0 -> n3``: with ``n2`` a blackhole, ``n0`` learns that
its honest relay ``n1`` passed every lost piece on (``n2``'s signed acceptance, relayed in ``n1``'s
loss reports), and ``n1`` blames ``n2``; with ``n1`` a ``blame_shifter`` (it drops and reports each
loss with an acceptance it signed itself in ``n2``'s name), ``n0`` refuses the evidence (``forged
custody``) and the loss stays with ``n1``.
"""

from __future__ import annotations

from tests.runtime.node.procs import Cluster, address, free_ports


def _line(cluster: Cluster, kinds: list[str]) -> None:
    ports = free_ports(len(kinds))
    peer = lambda i: {"node_id": f"n{i}", "port": ports[i], "address": address(i), "latency_ms": 5}  # noqa: E731
    for i, kind in enumerate(kinds):
        peers = [peer(j) for j in (i - 1, i + 1) if 0 <= j < len(kinds)]
        extra = {"streams": [{"subscribers": ["n3"], "rate": 40, "deadline_slack": 4}], "start_streams": True}
        cluster.config(
            f"n{i}", i, ports[i], peers, behaviour={"kind": kind, "blame_wait_s": 0.5},
            directory={f"n{j}": address(j) for j in range(len(kinds)) if j != i}, **(extra if i == 0 else {}),
        )  # fmt: skip
    for i in range(len(kinds)):
        cluster.start(f"n{i}")


def test_the_upstream_clears_an_honest_relay_and_the_relay_blames_the_blackhole(cluster):
    _line(cluster, ["honest", "honest", "blackhole", "honest"])

    def attributed() -> bool:
        p01 = cluster.stats("n0").get("peers", {}).get("n1", {})
        p12 = cluster.stats("n1").get("peers", {}).get("n2", {})
        return p01.get("beyond_losses", 0) >= 10 and p12.get("own_losses", 0) >= 10

    cluster.wait_for(attributed, timeout=30, what="losses attributed beyond n1 and to n2")
    s0 = cluster.stats("n0")
    p01 = s0["peers"]["n1"]
    # n1 drops some pieces itself (before routes converge, and once it rates n2 a cheat on this line
    # it has no other way on): those are rightly its own; most losses are still attributed beyond it.
    assert p01["beyond_losses"] > p01["own_losses"] and p01["connected"]
    assert p01["success"] < 0.5  # end to end, the path through n1 still fails
    assert s0["stats"]["custody_verified"] >= 10 and s0["rejections"].get("forged custody", 0) == 0
    assert cluster.stats("n1")["peers"]["n2"]["custody"] < 0.5


def test_a_relay_that_forges_a_downstream_acceptance_is_refused(cluster):
    _line(cluster, ["honest", "blame_shifter", "honest", "honest"])

    def refused() -> bool:
        s0 = cluster.stats("n0")
        return s0.get("rejections", {}).get("forged custody", 0) >= 2

    cluster.wait_for(refused, timeout=30, what="forged custody refused at n0")
    s0 = cluster.stats("n0")
    assert s0["stats"]["forged_custody"] >= 2
    assert s0["peers"]["n1"]["beyond_losses"] == 0  # the forged evidence never moved the blame
    assert s0["cutoffs_by_peer"]["n1"].get("forged custody", 0) >= 2
    assert any(r.startswith("forged custody") for r in cluster.reasons("n0"))
