"""The real training entry point with a tiny budget and a tiny net: checkpoints, tensorboard, export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.inference import load_policy

ROOT = Path(__file__).resolve().parents[2]


def test_train_entry_point_writes_checkpoint_events_and_export(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "training.train",
        "policy=tiny",
        "exp=smoke",
        "scenarios=[liars,blackholes]",
        "randomise.count=0",  # the randomised scenarios (up to 128 nodes) would not end an episode here
        "total_timesteps=6144",  # > one 200-step episode of 24 agent slots
        "n_envs=1",
        "ppo.n_steps=64",
        "ppo.batch_size=256",
        "ppo.n_epochs=1",
        "checkpoint_every=1024",
        "eval.every=0",
        "eval.episodes=2",
        "eval.final_episodes=2",
        "eval.final_scenarios=[honest]",
        "progress_bar=false",
        f"runs_dir={tmp_path / 'runs'}",
        f"checkpoints_dir={tmp_path / 'ck'}",
        f"hydra.run.dir={tmp_path / 'outputs'}",
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    (run,) = (tmp_path / "ck").iterdir()
    assert run.name.startswith("mix__smoke__0__")
    assert sorted(p.name for p in run.glob("model_*_steps.zip"))  # periodic checkpoints
    assert (run / "final.zip").is_file()
    events = list((tmp_path / "runs" / run.name).glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    accumulator = EventAccumulator(str(events[0]))
    accumulator.Reload()
    scalars = set(accumulator.Tags()["scalars"])
    assert {"charts/delivery_rate", "charts/welfare", "charts/dishonest_share", "train/value_loss"} <= scalars
    policy = load_policy(run / "export")
    assert policy.manifest["training_config"]["total_timesteps"] == 6144
    assert "honest" in policy.manifest["evaluation"]["results"]

    bad = subprocess.run(
        [sys.executable, "-m", "training.train", "scenarios=[no_such_scenario]", f"hydra.run.dir={tmp_path / 'o2'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert "no_such_scenario" in bad.stderr and "Traceback" not in bad.stderr
