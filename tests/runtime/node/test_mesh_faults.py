"""Faults without an attacker, with real processes: garbage to every node, kill -9 and restart of the
busiest nodes, tight deadlines, then settlement on anvil. Honest links must survive all of it."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading

import pytest

from tests.runtime.node.procs import REPO

pytestmark = [pytest.mark.chain, pytest.mark.slow]

#: cut-offs that would mean honest ledgers or custody disagree
MONEY_REASONS = {"unpaid credit", "overcharge", "receipt mismatch", "receipt for unknown piece", "forged receipt"}


def _garbage(workdir, stop: threading.Event, seed: int = 1) -> int:
    """Until ``stop``: connect to every node whose config exists and send it random bytes."""
    rng = random.Random(seed)
    sent = 0
    while not stop.is_set():
        for cfg in workdir.glob("n*.json"):
            try:
                port = json.loads(cfg.read_text())["listen"]["port"]
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))))
                    sent += 1
            except (OSError, ValueError, KeyError):
                pass
        stop.wait(0.5)
    return sent


def test_garbage_kill9_restarts_and_tight_deadlines_never_cut_an_honest_link(tmp_path):
    out, workdir = tmp_path / "mesh.json", tmp_path / "w"
    workdir.mkdir()
    stop = threading.Event()
    thread = threading.Thread(target=_garbage, args=(workdir, stop), daemon=True)
    thread.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "runtime.mesh", "--nodes", "8", "--duration", "24", "--policy", "seed",
             "--adversaries", "", "--operators", "0", "--deadline-factor", "1.0", "--deadline-slack", "2",
             "--kill-restarts", "2", "--restart-delay", "1", "--json", str(out), "--quiet",
             "--workdir", str(workdir), "--seed", "5"],
            cwd=REPO, capture_output=True, text=True, timeout=400, env={**os.environ},
        )  # fmt: skip
    finally:
        stop.set()
        thread.join(timeout=5)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert len(r["restarts"]) == 2 and r["pieces_delivered"] > 0
    assert not MONEY_REASONS & set(r["honest_cutoffs_by_reason"]), r["honest_cutoffs_by_reason"]
    ledgers = r["honest_ledgers"]
    assert ledgers["pairs"] > 0 and ledgers["agreeing"] == ledgers["pairs"], ledgers["disagreeing"]
    assert r["settled_exactly"] is True and r["claimed_onchain_wei"] == r["owed_by_vouchers_wei"]
    assert r["honest_alive"] is True
