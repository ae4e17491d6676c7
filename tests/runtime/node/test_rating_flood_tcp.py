"""Trust gossip on real node processes (loopback TCP, offline chain): a rating flood against an honest
node. ``h`` streams to ``a`` and ``b``; ``f``, a ``rating_flooder`` neighbour of all three, sends
``h`` hundreds of rating frames a second (subjects nobody knows, ``h`` itself, its honest neighbours
slandered, forged signatures, replayed sequence numbers). ``h`` keeps its memory and CPU bounded,
its honest links up, and its verdicts on its honest neighbours where its own evidence puts them."""

from __future__ import annotations

import time
from pathlib import Path

from tests.runtime.node.procs import Cluster, address, free_ports


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, clock ticks of 1/100 s


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_a_rating_flood_moves_nothing_and_costs_a_bounded_share(cluster: Cluster):
    names = ["h", "a", "b", "f"]
    ports = free_ports(4)
    peer = lambda i: {"node_id": names[i], "port": ports[i], "address": address(i), "latency_ms": 5}  # noqa: E731
    for i, n in enumerate(names):
        extra = {"streams": [{"subscribers": ["a", "b"], "rate": 40}]} if n == "h" else {}
        behaviour = {"kind": "rating_flooder", "attack_rate": 50} if n == "f" else {}
        cluster.config(
            n, i, ports[i], [peer(j) for j in range(4) if j != i], start_streams=True,
            behaviour={**behaviour, "gossip_period_s": 0.1}, **extra,
        )  # fmt: skip
        cluster.start(n)
    pid = cluster.procs["h"].pid

    def flooded() -> bool:
        r = cluster.stats("h").get("rejections", {})
        return r.get("forged rating", 0) > 5 and r.get("rating flood", 0) > 100 and r.get("rating mismatch", 0) > 5

    cluster.wait_for(flooded, timeout=30, what="the flood reaching h")
    rss0, cpu0, t0 = _rss_kb(pid), _cpu_s(pid), time.monotonic()
    time.sleep(3.0)
    rss1, cpu1, t1 = _rss_kb(pid), _cpu_s(pid), time.monotonic()
    s = cluster.stats("h")
    assert rss1 - rss0 < 20_000, (rss0, rss1)  # memory bounded (kB)
    assert (cpu1 - cpu0) / (t1 - t0) < 0.8, (cpu1 - cpu0, t1 - t0)  # CPU bounded
    peers = s["peers"]
    for n in ("a", "b"):
        assert peers[n]["connected"], n
        assert peers[n]["rating"] > 0.9 and peers[n]["net_rate"] == 1.0, (n, peers[n])
    assert peers["f"]["credibility"] < 0.6  # its slander failed h's own evidence
    st, rej = s["stats"], s["rejections"]
    assert st["ratings_accepted"] > 0 and st["ratings_rejected"] > 100
    assert rej.get("rating mismatch", 0) > 0 and rej.get("forged rating", 0) > 5
    assert set(s["rejections_by_peer"]) <= {"f"}, s["rejections_by_peer"]  # nothing against the honest
    assert st["delivered"] == 0 and cluster.stats("a")["stats"]["delivered"] > 20
