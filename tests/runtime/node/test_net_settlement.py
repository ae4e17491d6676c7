"""Real processes: ``python -m runtime.mesh --settlement net``, with and without a wrong root."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.runtime.node.procs import REPO

pytestmark = pytest.mark.chain


def _mesh(tmp_path, *extra: str) -> dict:
    out = tmp_path / "mesh.json"
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.mesh", "--nodes", "5", "--duration", "4", "--policy", "seed",
         "--adversaries", "blackhole=1", "--json", str(out), "--quiet", "--workdir", str(tmp_path / "w"),
         "--seed", "3", "--settlement", "net", *extra],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_net_settlement_pays_every_voucher_through_one_root(tmp_path):
    r = _mesh(tmp_path)
    assert r["settlement"] == "net" and r["roots_executed"] == 1 and r["roots_voided"] == 0
    assert r["net_claims"] >= 1 and r["net_fallback_direct_claims"] == 0
    assert r["claimed_onchain_wei"] > 0 and r["settled_exactly"] is True
    assert r["per_channel_claimed_equals_last_voucher"] is True
    assert r["settlement_gas_used"] > 0 and r["gas_per_node_epoch"] > 0
    # Where the gas went: every transaction in one category; no flow attestations in net mode (the
    # net root is the attested record), and settlement gas is exactly the root plus the net claims.
    b = r["gas_breakdown"]
    assert sum(c["gas"] for c in b.values()) == r["gas_used"]
    assert b["flow_attestations"]["txs"] == 0 and b["claims"]["txs"] == 0 and r["epochs_finalised"] == 0
    assert b["net_roots"]["txs"] == 1 and b["net_claims"]["txs"] == r["net_claims"]
    assert b["net_roots"]["gas"] + b["net_claims"]["gas"] == r["settlement_gas_used"]


@pytest.mark.slow
def test_wrong_root_is_voided_by_a_node_and_honest_nodes_get_exactly_their_vouchers(tmp_path):
    r = _mesh(tmp_path, "--faulty-operator", "wrong-root")
    assert r["roots_voided"] == 1 and r["roots_executed"] == 0
    assert r["net_fraud_prover"] is not None
    assert r["net_slashed_wei"] == 2 * 10**18  # both signers' whole bonds
    assert r["net_fallback_direct_claims"] >= 1
    assert r["settled_exactly"] is True and r["per_channel_claimed_equals_last_voucher"] is True
    assert r["contract_balance_after_wei"] == 0


def test_settlement_net_usage_errors_are_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.mesh", "--settlement", "net", "--operators", "0", "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--settlement net needs" in proc.stderr and "Traceback" not in proc.stderr
