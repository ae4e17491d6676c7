"""``eval.evaluate``: what its help and table header say, and an unwritable ``--json`` refused before any episode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import eval.evaluate as evaluate_module
from eval.evaluate import main

ROOT = Path(__file__).resolve().parents[2]


def test_help_prints_a_single_percent_sign():
    proc = subprocess.run(
        [sys.executable, "-m", "eval.evaluate", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 0
    assert "%%" not in proc.stdout
    assert "95% confidence interval" in " ".join(proc.stdout.split())


@pytest.mark.parametrize("where", ["missing_dir_under_a_file", "a_directory"])
def test_unwritable_json_is_refused_before_any_episode(where, tmp_path, monkeypatch, capsys):
    if where == "a_directory":
        target = tmp_path / "out"
        target.mkdir()
    else:
        blocker = tmp_path / "file"
        blocker.write_text("")
        target = blocker / "out.json"  # a directory that cannot exist: its parent is a file

    def no_episode(*args, **kwargs):
        raise AssertionError("an episode ran before the --json path was checked")

    monkeypatch.setattr(evaluate_module, "evaluate_episodes", no_episode)
    argv = ["--scenario", "blackholes", "--policy", "seed", "--episodes", "1000", "--json", str(target)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m eval.evaluate: error: cannot write") and str(target) in err[0]


def test_a_writable_json_path_is_left_as_it_was_until_the_results(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "out.json"
    seen = []

    def no_episode(*args, **kwargs):
        seen.append(target.exists())
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_module, "evaluate_episodes", no_episode)
    assert main(["--scenario", "blackholes", "--policy", "seed", "--episodes", "2", "--json", str(target)]) == 130
    assert seen == [False]  # the check wrote nothing that a failed run would leave behind


def test_table_header_names_the_effective_adversaries(tmp_path, capsys):
    path = tmp_path / "holes.yaml"
    path.write_text("nodes: 16\nadversaries: {blackhole: 0.25}\nepisode_steps: 10\n")
    assert main(["--scenario", str(path), "--policy", "seed", "--episodes", "2"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "adversaries: blackhole 25 %" in out
