"""``python -m eval.bench node`` on a tiny budget: both payment modes, a receipt and a voucher per piece."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_node_measures_both_payment_modes_with_receipts(tmp_path):
    out = tmp_path / "node.json"
    proc = subprocess.run(
        [sys.executable, "-m", "eval.bench", "node", "--seconds", "0.5", "--warmup", "0.2", "--idle-seconds", "0.2",
         "--window", "32", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert set(r["modes"]) == {"on_delivery", "per_hop", "on_delivery_unbatched", "on_delivery_without_custody"}
    # custody acceptances: one per piece taken in, and none on the comparison node of the same run
    assert r["modes"]["on_delivery"]["custody_acceptances_signed"] >= r["modes"]["on_delivery"]["pieces_forwarded"]
    assert r["modes"]["on_delivery_without_custody"]["custody_acceptances_signed"] == 0
    assert r["node_pieces_per_s"] == r["modes"]["on_delivery"]["pieces_per_s"] > 0
    for mode, m in r["modes"].items():
        forwarded = m["pieces_forwarded"]
        assert forwarded > 0 and m["rejected"] == 0, (mode, m)
        # every piece the node forwarded came back with a receipt it checked, and was paid both ways
        # (a few of the last pieces may still be in flight when the node is stopped)
        assert m["receipts_verified_and_relayed"] >= forwarded - 32, (mode, m)
        assert m["vouchers_verified_and_stored"] > 0
        if mode != "per_hop":  # paid on delivery: the downstream's flat charge (1 gwei) per verified receipt
            assert m["paid_wei"] == 10**9 * m["receipts_verified_and_relayed"], (mode, m)
        if mode == "on_delivery_unbatched":  # a voucher per piece, a signature per acceptance
            assert m["vouchers_signed_and_stored"] >= forwarded - 32
            assert m["signatures_over_sealed_batches"] == m["custody_acceptances_signed"]
        else:  # at most a voucher and a signature per piece; fewer when a turn carries several
            assert 0 < m["vouchers_signed_and_stored"] <= forwarded
            assert m["signatures_over_sealed_batches"] <= m["custody_acceptances_signed"]
    assert r["reference_relay_pieces_per_s"] > 0


def test_bench_node_refuses_an_unknown_mode():
    proc = subprocess.run(
        [sys.executable, "-m", "eval.bench", "node", "--modes", "sometimes"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0 and "--modes" in proc.stderr and "Traceback" not in proc.stderr
