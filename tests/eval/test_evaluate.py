"""The evaluation CLI end to end: JSON shapes, every metric, same episodes, charts, suite, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agents.baselines import get_baseline
from envs.core import METRIC_NAMES
from envs.scenario import load_scenario, shipped_scenarios
from eval.evaluate import evaluate, main, paired_differences, summarise
from eval.plots import read_scalars

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny(tmp_path) -> Path:
    """A scenario file with short episodes."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(load_scenario("blackholes").replace(episode_steps=30, name="tiny").to_dict()))
    return path


def check_result(result: dict) -> None:
    assert set(result) == {"scenario", "policy", "episodes", "seed", "metrics"}
    assert set(result["metrics"]) == set(METRIC_NAMES)
    for summary in result["metrics"].values():
        lo, hi = summary["ci95"]
        assert lo <= summary["mean"] <= hi


def test_cli_single_policy_writes_the_issue_shape(tiny, tmp_path):
    out = tmp_path / "out.json"
    cmd = [sys.executable, "-m", "eval.evaluate", "--scenario", str(tiny), "--policy", "seed"]
    cmd += ["--episodes", "3", "--seed", "5", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "delivery_rate" in proc.stdout
    result = json.loads(out.read_text())
    check_result(result)
    assert (result["scenario"], result["policy"], result["episodes"], result["seed"]) == (str(tiny), "seed", 3, 5)


def test_several_policies_share_episodes_and_write_charts(tiny, tmp_path, capsys):
    out, charts = tmp_path / "many.json", tmp_path / "charts"
    argv = ["--scenario", str(tiny), "--policy", "random", "--policy", "oracle", "--policy", "seed"]
    assert main([*argv, "--episodes", "4", "--json", str(out), "--png", str(charts)]) == 0
    payload = json.loads(out.read_text())
    assert set(payload) == {"scenario", "episodes", "seed", "results", "paired"}
    assert payload["seed"] == load_scenario(tiny).seed  # default: the scenario's own seed
    assert [r["policy"] for r in payload["results"]] == ["random", "oracle", "seed"]
    for r in payload["results"]:
        check_result(r)
    rate = {r["policy"]: r["metrics"]["delivery_rate"]["mean"] for r in payload["results"]}
    assert rate["oracle"] > rate["random"]
    paired = {d["policy"]: d for d in payload["paired"]}
    assert set(paired) == {"oracle", "seed"} and all(d["reference"] == "random" for d in paired.values())
    diff = paired["oracle"]["metrics"]["delivery_rate"]["mean"]
    assert diff == pytest.approx(rate["oracle"] - rate["random"])
    assert sorted(p.name for p in charts.glob("*.png")) == sorted(f"{m}.png" for m in METRIC_NAMES)
    assert "oracle" in capsys.readouterr().out


def test_evaluation_is_reproducible():
    scenario = load_scenario("default").replace(episode_steps=20)
    policies = {"random": get_baseline("random")}
    first = evaluate(scenario, policies, 3, 9, "default")
    assert evaluate(scenario, policies, 3, 9, "default") == first
    assert evaluate(scenario, policies, 3, 10, "default") != first


def test_paired_difference_to_itself_is_exactly_zero():
    episodes = [{m: float(i) for m in METRIC_NAMES} for i in range(4)]
    shifted = [{m: e[m] + 0.5 for m in METRIC_NAMES} for e in episodes]
    paired = paired_differences({"a": episodes, "b": episodes, "c": shifted}, "a")
    assert [d["policy"] for d in paired] == ["b", "c"]
    assert paired[0]["metrics"]["welfare"] == {"mean": 0.0, "ci95": [0.0, 0.0]}
    assert paired[1]["metrics"]["welfare"]["mean"] == pytest.approx(0.5)
    assert paired[1]["metrics"]["welfare"]["ci95"] == pytest.approx([0.5, 0.5])


def test_summarise_is_a_student_t_interval():
    result = summarise([1.0, 2.0, 3.0])
    assert result["mean"] == 2.0
    half = 4.302652729749462 * 1.0 / 3**0.5  # t(0.975, df=2) x s / sqrt(n)
    assert result["ci95"] == pytest.approx([2.0 - half, 2.0 + half])
    assert summarise([0.5, 0.5])["ci95"] == [0.5, 0.5]


def bad_scenario_files(tmp_path: Path) -> list[Path]:
    specs = [
        {"nodez": 16},
        {"nodes": "many"},
        {"topology": {"kind": "ring"}},
        {"adversaries": {"blackhole": 1.5}},
        {"adversaries": {"bandwidth_liar": 0.4, "blackhole": 0.4, "overpricer": 0.2}},
        {"nodes": 3},
    ]
    paths = []
    for i, spec in enumerate(specs):
        path = tmp_path / f"bad{i}.yaml"
        path.write_text(yaml.safe_dump(spec))
        paths.append(path)
    not_yaml = tmp_path / "not_yaml.yaml"
    not_yaml.write_text("nodes: [1, 2\n")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x81")
    return [*paths, not_yaml, binary, tmp_path / "missing.yaml"]


def test_every_bad_scenario_exits_2_with_one_line(tmp_path, capsys):
    for path in bad_scenario_files(tmp_path):
        assert main(["--scenario", str(path), "--policy", "seed", "--episodes", "2"]) == 2
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and "scenario" in lines[0] and "Traceback" not in captured.err, captured.err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--scenario", "default", "--policy", "nope"], ["unknown policy 'nope'", "seed"]),
        (["--scenario", "default", "--policy", "seed", "--episodes", "1"], ["--episodes", "at least 2"]),
        (["--scenario", "default", "--policy", "seed", "--episodes", "x"], ["--episodes"]),
        (["--scenario", "default", "--policy", "seed", "--policy", "seed"], ["given twice"]),
        (["--scenario", "default"], ["--policy"]),
        ([], ["nothing to do"]),
        (["--learning-curve", "/no/such/run"], ["no such directory"]),
        (["--scenario", "honest", "--policy", "seed", "--episode-steps", "3", "--png", __file__], ["cannot write"]),
        (["--scenario", "honest", "--policy", "seed", "--episode-steps", "3", "--json", "/"], ["cannot write"]),
    ],
)
def test_user_mistakes_exit_2_with_one_line(argv, words, capsys):
    with pytest.raises(SystemExit) as info:
        code = main(argv)
        raise SystemExit(code)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err


def test_cli_error_is_one_line_without_traceback_in_a_real_process(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("adversaries: {blackhole: 2.0}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "eval.evaluate", "--scenario", str(path), "--policy", "seed"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "python -m eval.evaluate: error: scenario key 'adversaries.blackhole': must be in [0, 1], got 2.0"
    ]


def test_help_explains_every_option():
    proc = subprocess.run(
        [sys.executable, "-m", "eval.evaluate", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 0
    for option in ("--scenario", "--policy", "--episodes", "--seed", "--json", "--png", "--suite", "--learning-curve"):
        assert option in proc.stdout


def write_events(run_dir: Path, tag: str, values: list[float]) -> None:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(run_dir))
    for step, value in enumerate(values):
        summary = Summary(value=[Summary.Value(tag=tag, simple_value=value)])
        writer.add_event(Event(step=step * 100, wall_time=1.0 + step, summary=summary))
    writer.close()


def test_learning_curve_from_tensorboard_events(tmp_path, capsys):
    run = tmp_path / "run"
    write_events(run / "PPO_1", "charts/delivery_rate", [0.2, 0.4, 0.5])
    steps, values = read_scalars(run, "charts/delivery_rate")["PPO_1"]
    assert steps.tolist() == [0, 100, 200] and values == pytest.approx([0.2, 0.4, 0.5])
    assert main(["--learning-curve", str(run), "--png", str(tmp_path / "png")]) == 0
    assert (tmp_path / "png" / "learning_curve_charts_delivery_rate.png").stat().st_size > 1000
    assert main(["--learning-curve", str(run), "--scalar", "charts/nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "charts/delivery_rate" in err[-1] and "charts/nope" in err[-1]


def test_suite_covers_every_shipped_scenario_and_baseline(tmp_path):
    results = tmp_path / "results"
    assert main(["--suite", "--episodes", "2", "--episode-steps", "8", "--results", str(results)]) == 0
    suite = json.loads((results / "suite.json").read_text())
    pairs = {(r["scenario"], r["policy"]) for r in suite["results"]}
    policies = {"seed", "shortest", "random", "oracle"}
    assert {(s, p) for s in shipped_scenarios() for p in policies} <= pairs
    for r in suite["results"]:
        check_result(r)
    markdown = (results / "suite.md").read_text()
    assert all(f"## {m}" in markdown for m in METRIC_NAMES)
    assert all(f"| {s} |" in markdown for s in shipped_scenarios())
    assert len(list(results.glob("suite_*.png"))) == len(METRIC_NAMES)


def test_an_exported_directory_is_evaluated_beside_baselines(tiny, tmp_path, monkeypatch, capsys):
    class FakeInference:  # stands in for agents.inference (owned by the training issue)
        @staticmethod
        def load_policy(directory, allow_prefix=False):
            policy = get_baseline("shortest")
            policy.name = Path(directory).name
            return policy

    monkeypatch.setitem(sys.modules, "agents.inference", FakeInference)
    export = tmp_path / "export"
    export.mkdir()
    out = tmp_path / "out.json"
    argv = ["--scenario", str(tiny), "--policy", f"{export}/", "--policy", "shortest", "--episodes", "2"]
    assert main([*argv, "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert results[0]["policy"] == str(export)
    # the stand-in is the shortest baseline: same episodes, same decisions, same numbers
    assert results[0]["metrics"] == results[1]["metrics"]
