"""Best-response attacker training (``training.attack``): a tiny run, the export and its numpy
inference against the SB3 policy, the loader's refusals, paired evaluation and the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO

from agents.attacker import (
    ACTION_NVEC,
    DROP,
    N_ATTACKER_FEATURES,
    AttackerLoadError,
    NullAttacker,
    NumpyAttacker,
    attacker_spec_hash,
    load_attacker,
)
from agents.baselines import get_baseline
from agents.export_files import MANIFEST, WEIGHTS
from envs.attacker_vector import AttackerVecEnv
from envs.scenario import load_scenario
from training.attack import attacker_scenarios, export_attacker, numpy_attacker, train_attacker
from training.evaluation import run_episodes
from training.hydra_app import UserError

ROOT = Path(__file__).resolve().parents[2]
SPLITS = np.cumsum(ACTION_NVEC)[:-1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[PPO, Path]:
    """PPO on the shipped ``learned`` scenario for 4096 attacker-steps (> one 200-step episode of 16 slots)."""
    threads = th.get_num_threads()
    th.set_num_threads(1)  # the machine's cores are shared: more threads only contend
    log_dir = tmp_path_factory.mktemp("attack_logs")
    try:
        model = train_attacker(
            get_baseline("seed"),
            ["learned"],
            4096,
            seed=0,
            n_envs=4,
            ppo={"n_steps": 64, "batch_size": 256, "n_epochs": 1},
            hidden=(16, 16),
            log_dir=log_dir,
        )
    finally:
        th.set_num_threads(threads)
    return model, log_dir


@pytest.fixture(scope="module")
def observations() -> np.ndarray:
    """Real attacker observations (active and idle rows) from random attacks on the seed defender."""
    venv = AttackerVecEnv("learned", get_baseline("seed"), n_meshes=2, seed=1)
    rng = np.random.default_rng(0)
    rows = [venv.reset()]
    for _ in range(40):
        obs, _, _, _ = venv.step(rng.integers(0, ACTION_NVEC, (venv.num_envs, len(ACTION_NVEC))))
        rows.append(obs)
    out = np.concatenate(rows)
    assert out[:, 0].any() and not out[:, 0].all()  # both active and idle rows
    return out


def torch_logits(policy, obs: np.ndarray) -> tuple[np.ndarray, list[th.distributions.Categorical]]:
    """The raw action logits of an SB3 MlpPolicy and its distribution's per-component Categoricals."""
    with th.no_grad():
        x = th.as_tensor(obs)
        latent = policy.mlp_extractor.forward_actor(policy.extract_features(x, policy.pi_features_extractor))
        return policy.action_net(latent).numpy(), policy.get_distribution(x).distribution


def randomised(policy):
    """A copy of ``policy`` with large random actor weights (the trained ones give near-uniform logits).

    Rebuilt from its constructor and state, not deep-copied: the policy caches its last action
    distribution, and after training that holds non-leaf tensors, which cannot be deep-copied."""
    out = type(policy)(**policy._get_constructor_parameters())
    out.load_state_dict(policy.state_dict())
    gen = th.Generator().manual_seed(0)
    with th.no_grad():
        for p in [*out.mlp_extractor.policy_net.parameters(), *out.action_net.parameters()]:
            p.copy_(th.randn(p.shape, generator=gen) * 0.7)
    return out


def export(policy, directory: Path) -> Path:
    return export_attacker(policy, directory, name="t", training_config={"k": 1}, command="test", defender="seed")


def test_train_attacker_runs_and_logs_the_mesh_metrics(trained):
    model, log_dir = trained
    assert model.num_timesteps == 4096
    assert tuple(model.action_space.nvec) == ACTION_NVEC
    header = (log_dir / "progress.csv").read_text().splitlines()[0].split(",")
    assert {"charts/delivery_rate", "charts/welfare", "train/value_loss"} <= set(header)


@pytest.mark.parametrize("which", ["trained", "randomised"])
def test_export_round_trip_matches_the_torch_policy(trained, observations, tmp_path, which):
    policy = trained[0].policy if which == "trained" else randomised(trained[0].policy)
    directory = export(policy, tmp_path / "export")
    manifest = json.loads((directory / MANIFEST).read_text())
    assert manifest["attacker_spec_hash"] == attacker_spec_hash()
    assert manifest["network"]["hidden"] == [16, 16] and manifest["defender"] == "seed"
    attacker = load_attacker(directory)
    greedy = load_attacker(directory, deterministic=True)
    assert attacker.name == "t" and greedy.deterministic
    raw, parts = torch_logits(policy, observations)
    got = np.concatenate(attacker.logits(observations), axis=1)
    assert got.shape == (len(observations), sum(ACTION_NVEC))
    np.testing.assert_allclose(got, raw, atol=1e-5)
    # The same as the in-memory conversion (what evaluation uses without an export).
    np.testing.assert_allclose(np.concatenate(numpy_attacker(policy).logits(observations), axis=1), got, atol=1e-6)
    for logits, part in zip(np.split(got, SPLITS, axis=1), parts, strict=True):
        top = logits.max(axis=1, keepdims=True)
        log_softmax = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
        np.testing.assert_allclose(log_softmax, part.logits.numpy(), atol=1e-5)  # torch normalises them
    expected = np.stack([part.probs.argmax(dim=1).numpy() for part in parts], axis=1)
    acts = greedy.act(observations)
    assert acts.shape == (len(observations), len(ACTION_NVEC)) and acts.dtype == np.int64
    np.testing.assert_array_equal(acts, expected)
    np.testing.assert_array_equal(acts, policy.predict(observations, deterministic=True)[0])
    if which == "randomised":
        assert len({tuple(a) for a in acts}) > 3  # the argmax check means something


def test_sampling_follows_the_softmax(trained, observations):
    attacker = numpy_attacker(randomised(trained[0].policy))
    row = observations[np.flatnonzero(observations[:, 0])[0]]
    draws = attacker.act(np.tile(row, (20000, 1)), rng=np.random.default_rng(0))
    for c, logits in enumerate(attacker.logits(row[None])):
        p = np.exp(logits[0] - logits[0].max())
        p /= p.sum()
        freq = np.bincount(draws[:, c], minlength=ACTION_NVEC[c]) / len(draws)
        np.testing.assert_allclose(freq, p, atol=0.015)
    again = attacker.act(np.tile(row, (20000, 1)), rng=np.random.default_rng(0))
    np.testing.assert_array_equal(draws, again)


def test_a_deep_actor_of_unequal_widths_round_trips(observations, tmp_path):
    # Regression: the export sorted its keys as strings (policy_net.10 before policy_net.2).
    venv = AttackerVecEnv("learned", get_baseline("seed"), n_meshes=1, seed=0)
    hidden = [8, 8, 8, 8, 8, 4]
    model = PPO("MlpPolicy", venv, n_steps=8, batch_size=8, policy_kwargs={"net_arch": {"pi": hidden, "vf": [8]}})
    policy = randomised(model.policy)
    directory = export(policy, tmp_path)
    assert json.loads((directory / MANIFEST).read_text())["network"]["hidden"] == hidden
    raw, _ = torch_logits(policy, observations)
    np.testing.assert_allclose(np.concatenate(load_attacker(directory).logits(observations), axis=1), raw, atol=1e-5)


def edit_manifest(directory: Path, change) -> None:
    manifest = json.loads((directory / MANIFEST).read_text())
    change(manifest)
    (directory / MANIFEST).write_text(json.dumps(manifest))


def breakages():
    """(case, how to break a good export, words the one-line error must contain)."""

    def hidden(widths):
        return lambda d: edit_manifest(d, lambda m: m["network"].update(hidden=widths))

    return [
        ("bad hash", lambda d: edit_manifest(d, lambda m: m.update(attacker_spec_hash="ab" * 32)), ["hash abab"]),
        ("no manifest", lambda d: (d / MANIFEST).unlink(), [f"missing {MANIFEST}"]),
        ("no weights", lambda d: (d / WEIGHTS).unlink(), [f"missing {WEIGHTS}"]),
        ("manifest not json", lambda d: (d / MANIFEST).write_text("{nope"), ["not valid JSON"]),
        ("other format", lambda d: edit_manifest(d, lambda m: m.update(format="x/1")), ["format x/1, not"]),
        ("corrupt weights", lambda d: (d / WEIGHTS).write_bytes(b"\x00" * 40), [f"{WEIGHTS} is unreadable"]),
        ("no network", lambda d: edit_manifest(d, lambda m: m.pop("network")), ["lack 'network'"]),
        ("wrong widths", hidden([16, 8]), ["malformed network", "layer 1"]),
        ("a layer left out", hidden([16]), ["malformed network", "policy_net.2"]),
        ("hidden not a list", hidden(7), ["malformed network"]),
    ]


@pytest.mark.parametrize(("case", "breakage", "words"), breakages(), ids=[c for c, _, _ in breakages()])
def test_load_attacker_refuses_a_broken_export_in_one_line(trained, tmp_path, case, breakage, words):
    good = export(trained[0].policy, tmp_path / "good")
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    breakage(bad)
    with pytest.raises(AttackerLoadError) as info:
        load_attacker(bad)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"attacker policy '{bad}'"), message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_load_attacker_refuses_a_missing_directory(tmp_path):
    with pytest.raises(AttackerLoadError, match="no such directory"):
        load_attacker(tmp_path / "nothing")


def fixed(action) -> NumpyAttacker:
    """A deterministic attacker that always plays ``action``."""
    bias = np.zeros(sum(ACTION_NVEC), np.float32)
    bias[np.concatenate([[0], SPLITS]) + np.asarray(action)] = 5.0
    layer = (np.zeros((N_ATTACKER_FEATURES, 2), np.float32), np.zeros(2, np.float32))
    return NumpyAttacker("fixed", [layer], (np.zeros((2, sum(ACTION_NVEC)), np.float32), bias), True)


def test_run_episodes_with_an_attacker():
    sc = load_scenario("learned").replace(episode_steps=60)
    policy = get_baseline("random")  # its draws must not depend on the attacker
    none = run_episodes(policy, sc, 3, 5)
    null = run_episodes(policy, sc, 3, 5, attacker=NullAttacker())
    assert none == null
    dropped = run_episodes(policy, sc, 3, 5, attacker=fixed((DROP, 3, 1, 3, 0)))
    assert all(r["earned_learned"] == 0.0 for r in dropped)
    assert np.mean([r["delivery_rate"] for r in dropped]) < np.mean([r["delivery_rate"] for r in null])
    assert [r["generated"] for r in dropped] == [r["generated"] for r in null]  # same traffic


def test_attacker_scenarios_override_the_objective_and_refuse_bad_mixes(tmp_path):
    (sc,) = attacker_scenarios(["learned"], "profit")
    assert sc.adversary("learned").objective == "profit" and sc.learned_count() == 4  # fraction kept
    assert attacker_scenarios(["learned"])[0].adversary("learned").objective == "damage"
    longer = tmp_path / "longer.yaml"
    longer.write_text("adversaries: {learned: 0.2}\nepisode_steps: 300\n")
    for specs, objective, words in [
        ([], None, "at least one scenario"),
        (["learned"], "chaos", "objective must be damage or profit"),
        (["learned", "honest"], None, "'honest' has no learned attackers"),
        (["no_such"], None, "no such file or shipped scenario"),
        (["learned", str(longer)], None, "share episode_steps"),
    ]:
        with pytest.raises(UserError) as info:
            attacker_scenarios(specs, objective)
        assert words in str(info.value) and "\n" not in str(info.value)


def attack_cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "training.attack",
        *overrides,
        "progress_bar=false",
        f"runs_dir={tmp_path / 'runs'}",
        f"checkpoints_dir={tmp_path / 'ck'}",
        f"hydra.run.dir={tmp_path / 'outputs'}",
    ]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)


def test_attack_cli_trains_exports_and_evaluates(tmp_path):
    out = attack_cli(
        tmp_path,
        "defender=seed",
        "total_timesteps=2048",  # > one 200-step episode of 8 slots
        "n_envs=2",
        "ppo.batch_size=256",
        "ppo.n_epochs=1",
        "policy.hidden=[16]",
        "eval.episodes=2",
        "torch_threads=1",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (run,) = (tmp_path / "ck").iterdir()
    assert run.name.startswith("learned__attack__0__")
    assert (run / "final.zip").is_file() and (run / "config.yaml").is_file()
    assert list((tmp_path / "runs" / run.name).glob("events.out.tfevents.*"))
    manifest = json.loads((run / "export" / MANIFEST).read_text())
    assert manifest["training_config"]["total_timesteps"] == 2048 and manifest["defender"] == "seed"
    assert manifest["command"].startswith("python -m training.attack defender=seed")
    evaluation = manifest["evaluation"]
    assert evaluation["scenario"] == "learned" and evaluation["episodes"] == 2
    for metric in ("delivery_rate", "honest_welfare"):
        assert set(evaluation[metric]) == {"attacked", "null", "paired_attacked_minus_null"}
        assert evaluation[metric]["null"]["n"] == 2
    attacker = load_attacker(run / "export")
    assert attacker.name == run.name and [w.shape[1] for w, _ in attacker.layers] == [16]
    assert "honest delivery rate" in out.stdout and "exported" in out.stdout


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("defender=nonexistent", ["unknown policy", "nonexistent"]),
        ("scenarios=[default]", ["'default' has no learned attackers"]),
        ("objective=bogus", ["objective must be damage or profit", "bogus"]),
    ],
)
def test_attack_cli_bad_input_is_one_line_exit_2(tmp_path, override, words):
    out = attack_cli(tmp_path, override)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in out.stderr, out.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert not (tmp_path / "ck").exists()  # nothing written


def test_the_shipped_attacker_is_a_current_export_that_hurts_the_shipped_default():
    """``checkpoints/attacker`` (README: the live learned-node example) loads under this code's
    attacker spec, names ``checkpoints/default`` as its defender, and on fixed episodes it never
    trained on costs that defender delivery against the null attacker, paired on the same episodes."""
    from agents.inference import load_policy

    attacker = load_attacker(ROOT / "checkpoints" / "attacker")
    assert attacker.manifest["defender"] == "checkpoints/default"
    defender = load_policy(ROOT / "checkpoints" / "default")
    attacked = run_episodes(defender, "learned", 4, 50_000, attacker=attacker)
    null = run_episodes(defender, "learned", 4, 50_000, attacker=NullAttacker())
    cost = [a["delivery_rate"] - n["delivery_rate"] for a, n in zip(attacked, null, strict=True)]
    assert all(c < 0 for c in cost), cost
