"""eval.bench_quality: the to-quality benchmark's mix, plot and argument checks (no timing asserted)."""

from __future__ import annotations

import argparse

import pytest

from eval import bench_quality


def test_training_mix_is_the_default_mix_of_conf_train_yaml():
    mix, cfg, policy = bench_quality.training_mix()
    assert len(mix) == len(cfg.scenarios) + int(cfg.randomise.count)
    assert {s.episode_steps for s in mix} == {mix[0].episode_steps}
    assert int(policy.hidden) > 0


def test_plot_writes_a_png_of_both_loops(tmp_path):
    point = {"seconds": 0.0, "agent_steps": 0, "decisions": None, "blackholes": 0.2, "mixed_heavy": 0.3}
    later = {**point, "seconds": 30.0, "blackholes": 0.4, "mixed_heavy": 0.5}
    result = {
        "episodes": 2,
        "labels": {"old": "old", "new": "new"},
        "seed": {"blackholes": 0.3, "mixed_heavy": 0.4},
        "loops": {"old": [point, later], "new": [point, later]},
    }
    png = tmp_path / "q.png"
    bench_quality.plot(result, png)
    assert png.read_bytes().startswith(b"\x89PNG")


def test_bad_arguments_are_refused_in_one_line():
    args = argparse.Namespace(seconds=0.0, eval_every=10.0, episodes=5)
    with pytest.raises(SystemExit, match="--seconds"):
        bench_quality.run(args)
