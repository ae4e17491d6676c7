"""Helpers to run real ``python -m runtime.node`` processes in tests, and to always clean them up."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from runtime.chain.anvil import DEV_PRIVATE_KEYS
from runtime.chain.vouchers import VoucherSigner
from runtime.node.mesh import _term_with_parent

REPO = Path(__file__).resolve().parents[3]


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def address(i: int) -> str:
    return VoucherSigner(DEV_PRIVATE_KEYS[i], 31337, "0x" + "0" * 39 + "1").address


class Cluster:
    """Node processes in a temp dir; ``stop()`` (called by the fixture) kills whatever is left."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen] = {}
        self.cfgs: dict[str, dict] = {}

    def config(self, node_id: str, key_index: int, port: int, peers: list[dict], **extra) -> dict:
        cfg = {
            "node_id": node_id,
            "listen": {"port": port},
            "peers": peers,
            "policy": "seed",
            "store": str(self.tmp / f"{node_id}.sqlite"),
            "key_env": "OPENSTREAMING_NODE_KEY",
            "stats_file": str(self.tmp / f"{node_id}.stats.json"),
            "log_file": str(self.tmp / f"{node_id}.log"),
            "behaviour": {"step_ms": 10, "drain_s": 0.3, "handshake_timeout_s": 2.0},
            "seed": key_index,
        }
        for k, v in extra.items():
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k] = {**cfg[k], **v}
            else:
                cfg[k] = v
        cfg["_key_index"] = key_index
        self.cfgs[node_id] = cfg
        return cfg

    def start(self, node_id: str) -> subprocess.Popen:
        cfg = dict(self.cfgs[node_id])
        key_index = cfg.pop("_key_index")
        path = self.tmp / f"{node_id}.json"
        path.write_text(json.dumps(cfg))
        env = {**os.environ, "OPENSTREAMING_NODE_KEY": DEV_PRIVATE_KEYS[key_index]}
        err = open(self.tmp / f"{node_id}.stderr", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.node", "--config", str(path)],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            preexec_fn=_term_with_parent,
        )
        err.close()
        self.procs[node_id] = proc
        return proc

    def stats(self, node_id: str) -> dict:
        try:
            return json.loads((self.tmp / f"{node_id}.stats.json").read_text())
        except (OSError, ValueError):
            return {}

    def logs(self, node_id: str) -> list[dict]:
        path = self.tmp / f"{node_id}.log"
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def reasons(self, node_id: str) -> list[str]:
        return [e["reason"] for e in self.logs(node_id) if e["event"] == "reject"]

    def wait_for(self, cond, timeout: float = 30.0, what: str = "condition") -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return
            dead = [n for n, p in self.procs.items() if p.poll() is not None and p.returncode not in (0, -9)]
            if dead:
                raise AssertionError(f"{dead[0]} exited: {(self.tmp / f'{dead[0]}.stderr').read_text()[-800:]}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def terminate(self, node_id: str, timeout: float = 30.0) -> int:
        p = self.procs[node_id]
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        return p.wait(timeout=timeout)

    def kill9(self, node_id: str) -> None:
        p = self.procs[node_id]
        p.kill()
        p.wait(timeout=10)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
        for p in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)


def start_diamond(cluster: Cluster, relay_kind: str, rate: float) -> None:
    """Start ``n0 - n1 - n3`` / ``n0 - n2 - n3`` with a stream ``n0 -> n3`` at ``rate``; ``n1`` is a
    ``relay_kind`` node, the others are honest."""
    ports = free_ports(4)
    peer = lambda n, i: {"node_id": n, "port": ports[i], "address": address(i), "latency_ms": 5}  # noqa: E731
    cluster.config(
        "n0", 0, ports[0], [peer("n1", 1), peer("n2", 2)], streams=[{"subscribers": ["n3"], "rate": rate}],
        start_streams=True, directory={"n3": address(3)},
    )  # fmt: skip
    cluster.config("n1", 1, ports[1], [peer("n0", 0), peer("n3", 3)], behaviour={"kind": relay_kind})
    cluster.config("n2", 2, ports[2], [peer("n0", 0), peer("n3", 3)])
    cluster.config("n3", 3, ports[3], [peer("n1", 1), peer("n2", 2)])
    for n in ("n0", "n1", "n2", "n3"):
        cluster.start(n)
