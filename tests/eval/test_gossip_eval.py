"""``python -m eval.gossip``: gossip on against off on the same episodes, and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

from eval.gossip import main
from training.paths import ROOT


def test_report_pairs_on_and_off_on_the_same_episodes(tmp_path, capsys):
    out = tmp_path / "gossip.json"
    md = tmp_path / "gossip.md"
    args = [
        "--policy",
        "seed",
        "--scenario",
        "slanderers",
        "--episodes",
        "2",
        "--json",
        str(out),
        "--markdown",
        str(md),
    ]
    assert main(args) == 0
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    r = row["result"]
    assert row["policy"] == "seed" and row["scenario"] == "slanderers"
    # seed ignores the gossip features, so the episodes are the same: the paired difference is exactly 0
    assert r["paired_on_minus_off"]["delivery_rate"]["mean"] == 0.0
    assert r["delivery_rate"]["on"]["mean"] == r["delivery_rate"]["off"]["mean"] > 0
    assert r["false_accusations"]["off"]["mean"] == 0.0 and 0 <= r["false_accusations"]["on"]["mean"] <= 1
    assert "| slanderers | slanderers | seed |" in md.read_text() and "false accusations" in capsys.readouterr().out


def test_a_bad_policy_or_scenario_is_one_line_with_status_2():
    unwritable = ["--policy", "seed", "--scenario", "honest", "--episodes", "2", "--json", "/proc/no/such.json"]
    for args in (["--policy", "no_such_policy"], ["--scenario", "no_such_scenario"], ["--episodes", "1"], unwritable):
        done = subprocess.run([sys.executable, "-m", "eval.gossip", *args], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 2, args
        assert done.stderr.count("\n") == 1 and "error:" in done.stderr and "Traceback" not in done.stderr
