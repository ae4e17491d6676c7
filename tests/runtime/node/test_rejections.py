"""Counters that peers cannot grow: rejection classes from a fixed enum, capped per-peer maps."""

from __future__ import annotations

import socket
import struct
import time

from runtime.node.rejections import Reason, RejectionCounter, classify
from runtime.node.wire import Hello, encode
from tests.runtime.node.procs import Cluster, free_ports


def test_every_reason_line_the_node_writes_maps_to_a_fixed_class():
    assert classify("frame of 123456 bytes exceeds the limit of 4096") is Reason.FRAME_TOO_LARGE
    assert classify("protocol version 77 (we speak 1)") is Reason.PROTOCOL_VERSION
    assert classify("unexpected Piece before hello") is Reason.UNEXPECTED_FRAME
    assert classify("dialled n1, answered by n9") is Reason.WRONG_PEER
    assert classify("forged vack: 5 wei above the 3 this node signed") is Reason.FORGED_VACK
    assert classify("duplicate piece: id 9 already held or resolved here") is Reason.DUPLICATE_PIECE
    assert classify("anything 123: a peer could make up") is Reason.OTHER
    assert classify("") is Reason.OTHER


def test_ever_new_numbers_leave_the_same_keys_and_the_log_is_capped_per_class():
    lines: list[tuple[str, dict]] = []
    t = [0.0]
    counter = RejectionCounter({"a"}, lambda e, **f: lines.append((e, f)), clock=lambda: t[0])
    for i in range(5000):
        counter.count(f"frame of {i} bytes exceeds the limit of 4096", None)
        counter.count(f"protocol version {i} (we speak 1)", f"stranger{i}")
        counter.count(f"{i}: garbage", "a")
    assert set(counter.counts) == {"frame too large", "protocol version", "other"}
    assert counter.counts["frame too large"] == 5000
    assert set(counter.by_peer) == {"a", "unauthenticated"}
    assert len(lines) == 60  # 20 per class per window
    t[0] = 11.0
    counter.count("frame of 1 bytes exceeds the limit of 4096", None)
    assert ("reject_suppressed", {"reason": "frame too large", "count": 4980}) in lines


def test_thousands_of_unauthenticated_connections_leave_bounded_keys_and_a_bounded_stats_file(cluster: Cluster):
    """Real process: each connection sends a frame header with its own size, or a hello with its
    own protocol version (the peer-chosen numbers that used to become keys)."""
    (port,) = free_ports(1)
    cluster.config("n1", 1, port, [], behaviour={"max_frame": 4096})
    cluster.start("n1")
    cluster.wait_for(lambda: cluster.stats("n1").get("node_id") == "n1", what="n1 up")
    n = 2000
    for i in range(n):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            if i % 2:
                s.sendall(struct.pack(">I", 10_000 + i))
            else:
                hello = Hello(version=2 + i, node_id=f"x{i}", address="0x" + "9" * 40, claimed_bw=1.0,
                              quote_wei=1, nonce=bytes(16))  # fmt: skip
                s.sendall(encode(hello))
    rej = lambda: cluster.stats("n1").get("rejections", {})  # noqa: E731
    cluster.wait_for(lambda: sum(rej().values()) >= n * 0.9, timeout=60, what="the rejections counted")
    time.sleep(1.0)  # a stats rewrite after the last
    snap = cluster.stats("n1")
    assert set(snap["rejections"]) <= {r.value for r in Reason}
    assert len(snap["rejections"]) <= 5, snap["rejections"]
    assert set(snap["rejections_by_peer"]) == {"unauthenticated"}
    size = (cluster.tmp / "n1.stats.json").stat().st_size
    assert size < 16_000, size
    logged = [e for e in cluster.logs("n1") if e["event"] == "reject"]
    assert len(logged) <= 20 * 5 * 4  # per class per 10 s window, over the run's few windows
    assert cluster.procs["n1"].poll() is None
