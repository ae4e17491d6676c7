"""Adversarial training: the mix it trains on, the actor initialised from an export, the frozen-actor
critic warm-up, and a short real robust run (attacker and defender phases, the population grows)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch as th

from agents.inference import load_policy
from tests.training.test_mix import config
from training.paths import ROOT
from training.robust import actor_parameters, check_robust, load_actor, robust_mix
from training.train import UserError, check_config


def test_robust_mix_adds_the_learned_scenario_at_its_share_and_the_scripted_kinds_in_its_place():
    cfg = config(**{"randomise.count": 0})
    base = check_config(cfg)
    mix, learned = robust_mix(cfg, base)
    assert learned.learned_count() > 0
    played_by_policies = [s for s in mix if s.learned_count() > 0]
    share = len(played_by_policies) / len(mix)
    assert abs(share - cfg.adversarial.share) < 0.05
    scripted = [s for s in mix if s.name.startswith(f"{learned.name}@")]
    assert sorted(s.name.split("@")[1] for s in scripted) == sorted(cfg.adversarial.scripted)
    assert all(s.learned_count() == 0 and s.nodes == learned.nodes for s in scripted)


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("adversarial.share", 1.5, "adversarial.share"),
        ("adversarial.scripted", ["blackhole", "dragon"], "unknown kind 'dragon'"),
        ("adversarial.scenario", "default", "no learned attackers"),
    ],
)
def test_bad_adversarial_settings_are_one_line_errors(key, value, words):
    cfg = config(**{"randomise.count": 0, key: value})
    with pytest.raises(UserError, match=words):
        robust_mix(cfg, check_config(cfg))


def test_bad_rounds_are_refused():
    with pytest.raises(UserError, match=r"adversarial\.rounds"):
        check_robust(config(**{"adversarial.rounds": 0}))


def _model(tmp_path):
    from sb3_contrib import MaskablePPO

    from training.policy import SlotScorerPolicy
    from training.vec import make_env

    env = make_env(["default"], 2, 0)
    return MaskablePPO(SlotScorerPolicy, env, n_steps=8, batch_size=64, device="cpu", seed=0)


@pytest.mark.parametrize("export", ["default", "pre_gossip"])
def test_actor_loads_from_an_export_and_acts_as_it(tmp_path, export):
    """``pre_gossip`` is an obs-spec v2 export: its new feature columns start at zero, so the actor
    scores exactly as the export does (which reads only the v2 columns)."""
    from agents.features import FEATURE_INDEX, N_FEATURES

    model = _model(tmp_path)
    load_actor(model.policy, ROOT / "checkpoints" / export)
    shipped = load_policy(ROOT / "checkpoints" / export, allow_prefix=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8, N_FEATURES)).astype(np.float32)
    x[..., FEATURE_INDEX["active"]] = 1.0  # every slot valid
    with th.no_grad():
        torch_scores = model.policy.slot_scores(th.as_tensor(x)).numpy()
    assert np.allclose(torch_scores, shipped.scores(x), atol=1e-4)


def test_init_refuses_an_export_of_another_network_shape(tmp_path):
    from sb3_contrib import MaskablePPO

    from training.policy import SlotScorerPolicy
    from training.vec import make_env

    model = MaskablePPO(
        SlotScorerPolicy,
        make_env(["default"], 2, 0),
        n_steps=8,
        batch_size=64,
        device="cpu",
        policy_kwargs={"hidden": 16, "depth": 1, "activation_name": "relu"},
    )
    with pytest.raises(UserError, match="differs from policy"):
        load_actor(model.policy, ROOT / "checkpoints" / "default")


def test_critic_warm_up_leaves_the_actor_untouched(tmp_path):
    model = _model(tmp_path)
    before = [p.detach().clone() for p in actor_parameters(model.policy)]
    critic_before = [p.detach().clone() for p in model.policy.mlp_extractor.phi_vf.parameters()]
    for p in actor_parameters(model.policy):
        p.requires_grad_(False)
    model.learn(256)
    assert all(th.equal(a, b) for a, b in zip(before, actor_parameters(model.policy), strict=True))
    after = list(model.policy.mlp_extractor.phi_vf.parameters())
    assert any(not th.equal(a, b) for a, b in zip(critic_before, after, strict=True))


@pytest.mark.slow
def test_a_short_robust_run_alternates_phases_and_grows_the_population(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "training.train",
        "robust=true",
        "init=checkpoints/default",
        "name=robust_test",
        "total_timesteps=4000",
        "n_envs=2",
        "randomise.count=0",
        "scenarios=[default]",
        "ppo.n_steps=8",
        "ppo.batch_size=256",
        "adversarial.rounds=2",
        "adversarial.attacker_steps=1024",
        "adversarial.attacker_envs=2",
        "adversarial.critic_warmup=500",
        "adversarial.eval_episodes=2",
        "eval.every=0",
        "eval.final_scenarios=[]",
        "progress_bar=false",
        f"checkpoints_dir={tmp_path / 'ckpt'}",
        f"runs_dir={tmp_path / 'runs'}",
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "round 0: best response leaves delivery" in done.stdout
    assert "round 1: best response leaves delivery" in done.stdout
    run = tmp_path / "ckpt" / "robust_test"
    for r in (0, 1):
        assert json.loads((run / "attackers" / f"round_{r}" / "manifest.json").read_text())["format"]
        assert (run / "defenders" / f"round_{r}" / "policy.safetensors").is_file()
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    rounds = manifest["budget"]["adversarial_rounds"]
    assert [r["round"] for r in rounds] == [0, 1]
    assert all(0.0 <= r["delivery_rate"]["attacked"]["mean"] <= 1.0 for r in rounds)
    assert (tmp_path / "runs" / "robust_test" / "attacker_round_1").is_dir()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["init=no/such/export"], "no such directory"),
        (["init=checkpoints/default", "policy.hidden=32"], "differs from policy"),
        (["robust=true", "init=eval/results"], "missing manifest.json"),
    ],
)
def test_a_bad_init_is_one_line_and_leaves_no_run_behind(tmp_path, overrides, message):
    cmd = [sys.executable, "-m", "training.train", *overrides, f"checkpoints_dir={tmp_path / 'ckpt'}",
           f"runs_dir={tmp_path / 'runs'}", f"hydra.run.dir={tmp_path / 'hydra'}"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-1000:]
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / "runs").exists()
