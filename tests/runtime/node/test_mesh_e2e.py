"""End to end: ``python -m runtime.mesh`` on a fresh anvil with a few nodes for a few seconds."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.runtime.node.procs import REPO

pytestmark = pytest.mark.chain


def test_mesh_delivers_and_settles_to_the_wei(tmp_path):
    out = tmp_path / "mesh.json"
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.mesh", "--nodes", "5", "--duration", "4", "--policy", "seed",
         "--adversaries", "blackhole=1", "--json", str(out), "--quiet", "--workdir", str(tmp_path / "w"),
         "--seed", "3"],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    for key in ("pieces_sent", "pieces_delivered", "delivery_rate", "dishonest_share", "vouchers",
                "claimed_onchain_wei", "owed_by_vouchers_wei", "refunded_wei", "gas_used"):  # fmt: skip
        assert key in r
    assert r["pieces_delivered"] > 0 and 0 < r["delivery_rate"] <= 1
    assert r["vouchers"] > 0 and r["claimed_onchain_wei"] > 0
    assert r["claimed_onchain_wei"] == r["owed_by_vouchers_wei"]
    assert r["per_channel_claimed_equals_last_voucher"] is True
    assert r["deposits_wei"] == r["claimed_onchain_wei"] + r["refunded_wei"]
    assert r["contract_balance_after_wei"] == 0 and r["unclosed_channels"] == 0
    assert all(code == 0 for code in r["exit_codes"].values())
    assert r["gas_used"] > 0
    # custody and trust gossip (issue 22): rating frames flowed, the verdicts are reported
    assert r["gossip"] is True and r["ratings_sent"] > 0 and r["ratings_accepted"] > 0
    assert set(r["detection_s"]) == {"blackhole"} and 0 <= r["false_accusations"] <= 1
    # the settlement service ran beside it (3 operators by default)
    assert r["operators"] == 3 and r["epochs_finalised"] >= 1
    assert r["roots_match_recomputed"] is True
    assert r["slashed_operators"] == [] and r["node_flow_mismatches"] == 0


def test_mesh_cli_usage_errors_are_one_line():
    for args, needle in [
        (["--adversaries", "saint=1"], "--adversaries"),
        (["--nodes", "2"], "--nodes"),
        (["--policy", "nope"], "unknown policy"),
        (["--nodes", "4", "--adversaries", "blackhole=3"], "fewer than 2 honest"),
        (["--operators", "2", "--faulty-operator", "equivocate"], "--faulty-operator"),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "runtime.mesh", *args, "--quiet"], cwd=REPO, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert proc.returncode == 2, (args, proc.stderr)
        assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_mesh_on_a_given_rpc_url_funds_from_the_env_key(tmp_path, chain):
    import os

    from runtime.chain.anvil import DEV_PRIVATE_KEYS

    rpc_url, _ = chain
    out = tmp_path / "mesh.json"
    env = {**os.environ, "OPENSTREAMING_FUNDER_KEY": DEV_PRIVATE_KEYS[5]}
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.mesh", "--nodes", "4", "--duration", "3", "--policy", "seed",
         "--adversaries", "", "--rpc-url", rpc_url, "--json", str(out), "--quiet", "--workdir", str(tmp_path / "w")],
        cwd=REPO, capture_output=True, text=True, timeout=240, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["pieces_delivered"] > 0 and r["dishonest_share"] == 0.0
    assert r["settled_exactly"] is True and r["claimed_onchain_wei"] == r["owed_by_vouchers_wei"] > 0
    assert r["swept_back_wei"] > 0  # the throwaway node keys' refunds went back to the funder
    logs = "".join(f.read_text() for f in (tmp_path / "w").glob("*.log"))
    assert '"event": "released"' in logs  # payees released their channels: refunds without waiting an hour
    assert DEV_PRIVATE_KEYS[5][2:] not in proc.stdout + proc.stderr
    for f in (tmp_path / "w").iterdir():  # configs, logs, stats: no key was written anywhere
        if f.suffix in (".json", ".log", ".stderr"):
            assert DEV_PRIVATE_KEYS[5][2:] not in f.read_text(errors="replace")
