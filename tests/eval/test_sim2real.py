"""``eval.sim2real``: one short scenario played in the environment and as a live mesh on anvil."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from envs.core import KIND_NAMES, MeshCore
from envs.scenario import load_scenario
from eval.sim2real import METRICS, gap_report, live_metrics, main, markdown

REPO = Path(__file__).resolve().parents[2]


def test_the_gap_report_pairs_by_seed_and_has_the_issues_form():
    runs = {
        "seed": [
            {"seed": s, "sim": dict.fromkeys(METRICS, 0.5), "live": dict.fromkeys(METRICS, 0.5 + d)}
            for s, d in ((0, 0.01), (1, 0.03))
        ],
        "checkpoints/default": [
            {"seed": s, "sim": dict.fromkeys(METRICS, 0.7), "live": dict.fromkeys(METRICS, 0.6)} for s in (0, 1)
        ],
    }
    report = gap_report("default", [0, 1], runs, 16, 50.0)
    assert set(report) >= {"scenario", "seeds", "results"}
    first = report["results"][0]
    assert first["policy"] == "seed" and set(first) >= {"sim", "live", "gap"}
    assert first["gap"]["delivery_rate"]["mean"] == pytest.approx(0.02)
    lo, hi = first["gap"]["delivery_rate"]["ci95"]
    assert lo < 0.02 < hi
    adv = report["advantage"][0]
    assert adv["reference"] == "seed" and adv["sim"]["delivery_rate"]["mean"] == pytest.approx(0.2)
    assert adv["live"]["delivery_rate"]["mean"] == pytest.approx(0.08)
    table = markdown(report)
    assert "| `seed` | delivery_rate | 0.500 | 0.520 | +0.020 [" in table and "delivery advantage, live" in table


def test_live_payments_to_cheats_are_the_vouchers_their_payees_hold():
    report = {"delivery_rate": 0.5, "dishonest_share": 0.1, "mean_latency_steps": 4.0,
              "earned_wei_by_kind": {"honest": 300, "overpricer": 100, "blackhole": 0}}  # fmt: skip
    assert live_metrics(report)["dishonest_payments_share"] == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scenario", "churn", "--policy", "seed"], "dynamics"),
        (["--scenario", "default", "--policy", "oracle"], "oracle"),
        (["--scenario", "default", "--policy", "seed", "--seeds", "0"], "--seeds"),
        (["--scenario", "default", "--policy", "nosuch"], "nosuch"),
    ],
)
def test_mistakes_are_one_line_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


@pytest.mark.slow
def test_one_short_scenario_played_both_ways_agrees(tmp_path):
    """The live mesh plays the environment's episode: the same roles, and delivery within a generous bound."""
    scenario = load_scenario("default").replace(nodes=8, episode_steps=120)
    spec = tmp_path / "short.yaml"
    spec.write_text(yaml.safe_dump({**scenario.to_dict(), "name": "short"}))
    out = tmp_path / "gap.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "eval.sim2real", "--scenario", str(spec), "--policy", "seed", "--seeds", "1",
         "--seed-base", "3", "--json", str(out), "--workdir", str(tmp_path / "runs")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["scenario"] == "short" and report["seeds"] == [3]
    assert out.with_suffix(".png").stat().st_size > 1000
    live = json.loads(next((tmp_path / "runs").glob("live-3-*.json")).read_text())
    core = MeshCore(scenario, n_meshes=1)
    core.reset(episode_seeds=[3])
    assert live["kinds"] == {f"n{i}": KIND_NAMES[int(k)] for i, k in enumerate(core.meshes[0].kind)}
    assert live["settled_exactly"]
    gap = report["results"][0]["gap"]["delivery_rate"]["mean"]
    assert abs(gap) < 0.3, report["results"][0]


def test_beside_prints_the_simulation_of_the_seed_a_live_run_played(tmp_path, capsys):
    """``--beside REPORT`` (what ``make mesh`` runs after its live run): sim, live and their difference."""
    report = {
        "delivery_rate": 0.25,
        "dishonest_share": 0.5,
        "mean_latency_steps": 4.0,
        "earned_wei_by_kind": {"honest": 3, "blackhole": 1},
        "clock_lag": {"ingests": 0},
    }
    path = tmp_path / "mesh.json"
    path.write_text(json.dumps(report))
    argv = ["--beside", str(path), "--scenario", "default", "--nodes", "8", "--seed-base", "1", "--policy", "seed"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    scenario = load_scenario("default").replace(nodes=8)
    from eval.sim2real import sim_metrics

    sim = sim_metrics(scenario, "seed", 1)
    row = next(line for line in out.splitlines() if "delivery_rate" in line)
    assert f"{sim['delivery_rate']:.3f}" in row and "0.250" in row
    assert f"{0.25 - sim['delivery_rate']:+.3f}" in row


@pytest.mark.parametrize(
    ("content", "message"),
    [("{}", "not a runtime.mesh --json report"), ("[1, 2]", "not a runtime.mesh --json report"), (None, "cannot read")],
)
def test_beside_refuses_what_is_not_a_report_in_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "mesh.json"
    if content is not None:
        path.write_text(content)
    assert main(["--beside", str(path), "--scenario", "default", "--policy", "seed"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
