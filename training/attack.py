"""Train a best-response attacker against a frozen defender: ``python -m training.attack defender=DIR_OR_NAME``.

Hydra app over ``conf/attack.yaml``, the conventions of ``training.train``. A run:

1. resolves the defender (``seed``, ``oracle``, ``shortest``, ``random`` or an exported policy
   directory, ``agents.policies.resolve_policy``) and the scenario mix (every scenario must have
   ``adversaries.learned`` nodes; ``objective=`` overrides their objective);
2. trains SB3's ``PPO`` (``MlpPolicy``, tanh layers ``policy.hidden``) on
   ``envs.attacker_vector.AttackerVecEnv``: every learned node of every mesh copy is one vector
   slot, the honest nodes play the frozen defender; rewards normalised with ``VecNormalize``;
3. logs SB3's losses, the mesh's episode metrics (``charts/*``: the honest delivery rate and
   welfare the attack leaves) and the hyper-parameters to tensorboard under ``runs/<run>/``,
   checkpoints under ``checkpoints/<run>/``;
4. exports the actor for numpy inference (``agents.attacker.load_attacker``) to
   ``checkpoints/<run>/export/`` and, with ``eval.episodes``, evaluates it on fixed episodes:
   honest delivery rate and welfare under this attacker against the same episodes under the null
   attacker (the paired cost of the attack), written to the manifest's ``evaluation``.

:func:`train_attacker` and :func:`export_attacker` are the library side, used by ``eval.exploit``
and by adversarial training (``training.robust``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.attacker import (
    ACTION_NVEC,
    ATTACKER_FORMAT,
    ATTACKER_SPEC,
    NullAttacker,
    NumpyAttacker,
    attacker_spec_hash,
)
from agents.baselines import RoutingPolicy
from agents.export_files import MANIFEST, WEIGHTS
from training.hydra_app import UserError, field_docs, flat, run_app
from training.paths import CONF_DIR, project_path

#: PPO settings of ``conf/attack.yaml`` (what :func:`train_attacker` uses when given none).
DEFAULT_PPO = {
    "n_steps": 64,
    "batch_size": 1024,
    "n_epochs": 4,
    "learning_rate": 3.0e-4,
    "gamma": 0.97,
    "gae_lambda": 0.95,
    "clip_range": 0.2,
    "ent_coef": 0.01,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
}


def attacker_scenarios(specs: Sequence[str], objective: str | None = None) -> list:
    """The scenario mix of an attack: each must have learned nodes; ``objective`` overrides theirs."""
    from envs.scenario import LEARNED, ScenarioError, as_scenario

    if not specs:
        raise UserError("scenarios must name at least one scenario with adversaries.learned")
    if objective not in (None, "damage", "profit"):
        raise UserError(f"objective must be damage or profit (or null), got {objective}")
    mix = []
    for spec in specs:
        path = None if Path(str(spec)).suffix == "" else project_path(str(spec))
        try:
            sc = as_scenario(str(spec) if path is None else path)
        except ScenarioError as err:
            raise UserError(str(err)) from None
        if sc.learned_count() == 0:
            raise UserError(
                f"scenario '{spec}' has no learned attackers: set adversaries.learned (e.g. {{fraction: 0.15}})"
            )
        if objective is not None:
            learned = dict(fraction=sc.adversary(LEARNED).fraction, objective=objective)
            sc = sc.replace(adversaries={LEARNED: learned})
        mix.append(sc)
    if len({s.episode_steps for s in mix}) != 1:
        raise UserError("scenarios of the mix must share episode_steps")
    return mix


def resolve_defender(name_or_dir: str) -> RoutingPolicy:
    """A defender from a baseline name or an export directory (relative to the project root)."""
    from agents.baselines import BASELINES
    from agents.policies import PolicyError, resolve_policy

    text = str(name_or_dir)
    try:
        return resolve_policy(text if text in BASELINES else project_path(text), allow_prefix=True)
    except PolicyError as err:
        raise UserError(str(err)) from None


def train_attacker(
    defender: RoutingPolicy,
    scenarios: Sequence[Any],
    total_timesteps: int,
    seed: int = 0,
    n_envs: int = 32,
    ppo: dict | None = None,
    hidden: Sequence[int] = (64, 64),
    normalize_reward: bool = True,
    log_dir: Path | None = None,
    callbacks: Sequence[Any] = (),
    progress_bar: bool = False,
) -> Any:
    """PPO best response of the learned nodes of ``scenarios`` to ``defender``; returns the SB3 model.

    :param log_dir: tensorboard and csv logs go here (None: no logging).
    :param callbacks: extra SB3 callbacks (checkpoints, metrics).
    """
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.vec_env import VecNormalize

    from envs.attacker_vector import AttackerVecEnv

    p = {**DEFAULT_PPO, **(ppo or {})}
    env = AttackerVecEnv(list(scenarios), defender, n_meshes=n_envs, seed=seed)
    venv = VecNormalize(env, norm_obs=False, norm_reward=normalize_reward, gamma=p["gamma"])
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=int(p["n_steps"]),
        batch_size=min(int(p["batch_size"]), int(p["n_steps"]) * env.num_envs),  # at most one rollout
        n_epochs=int(p["n_epochs"]),
        learning_rate=float(p["learning_rate"]),
        gamma=float(p["gamma"]),
        gae_lambda=float(p["gae_lambda"]),
        clip_range=float(p["clip_range"]),
        ent_coef=float(p["ent_coef"]),
        vf_coef=float(p["vf_coef"]),
        max_grad_norm=float(p["max_grad_norm"]),
        policy_kwargs={"net_arch": {"pi": list(hidden), "vf": list(hidden)}},
        seed=seed,
        device="cpu",
        verbose=0,
    )
    if log_dir is not None:
        model.set_logger(configure(str(log_dir), ["tensorboard", "csv"]))
    from training.callbacks import MeshMetricsCallback

    model.learn(
        int(total_timesteps), callback=CallbackList([MeshMetricsCallback(), *callbacks]), progress_bar=progress_bar
    )
    return model


def attacker_tensors(policy: Any) -> dict[str, np.ndarray]:
    """The actor's weights (``policy_net.*``, ``action_net.*``) as float32 numpy arrays."""
    out = {}
    for key, value in policy.mlp_extractor.policy_net.state_dict().items():
        out[f"policy_net.{key}"] = value.detach().cpu().numpy().astype(np.float32)
    for key, value in policy.action_net.state_dict().items():
        out[f"action_net.{key}"] = value.detach().cpu().numpy().astype(np.float32)
    return out


def _trunk(tensors: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The actor's hidden ``(weight, bias)`` pairs in layer order (``policy_net.0``, ``.2``, ...: the
    Linear layers of SB3's Sequential, a Tanh between them), not in the keys' string order."""
    out, i = [], 0
    while f"policy_net.{i}.weight" in tensors:
        out.append((tensors[f"policy_net.{i}.weight"], tensors[f"policy_net.{i}.bias"]))
        i += 2
    return out


def numpy_attacker(policy: Any, name: str = "attacker", deterministic: bool = False) -> NumpyAttacker:
    """The SB3 actor as a :class:`~agents.attacker.NumpyAttacker` (same arithmetic as the export)."""
    t = attacker_tensors(policy)
    layers = [(np.ascontiguousarray(w.T), b) for w, b in _trunk(t)]
    logits = (np.ascontiguousarray(t["action_net.weight"].T), t["action_net.bias"])
    return NumpyAttacker(name, layers, logits, deterministic)


def export_attacker(
    policy: Any,
    directory: str | Path,
    *,
    name: str,
    training_config: dict,
    command: str,
    defender: str,
    budget: dict | None = None,
    evaluation: dict | None = None,
) -> Path:
    """Write ``policy.safetensors`` and ``manifest.json`` of an SB3 ``MlpPolicy`` attacker into ``directory``."""
    from safetensors.numpy import save_file

    from training.export import git_commit

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = attacker_tensors(policy)
    save_file(tensors, str(directory / WEIGHTS))
    hidden = [int(b.shape[0]) for _, b in _trunk(tensors)]
    manifest = {
        "format": ATTACKER_FORMAT,
        "name": name,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "attacker_spec_hash": attacker_spec_hash(),
        "attacker_spec": ATTACKER_SPEC,
        "action_spec": {
            "type": "multi_discrete",
            "nvec": list(ACTION_NVEC),
            "distribution": "one softmax per component over its logits (sampled; argmax when deterministic)",
        },
        "network": {"kind": "MLP (SB3 MlpPolicy actor)", "hidden": hidden, "activation": "tanh"},
        "defender": defender,
        "training_config": training_config,
        "git_commit": git_commit(),
        "command": command,
        "budget": budget or {},
        "evaluation": evaluation or {},
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return directory


def attack_cost(defender: RoutingPolicy, attacker: Any, scenario: Any, episodes: int, offset: int) -> dict:
    """Honest delivery rate and welfare under ``attacker`` and under the null attacker, same episodes.

    Returns ``{"attacked": rows, "null": rows}`` of per-episode metrics (``training.evaluation``).
    """
    from training.evaluation import run_episodes

    return {
        "attacked": run_episodes(defender, scenario, episodes, offset, attacker=attacker),
        "null": run_episodes(defender, scenario, episodes, offset, attacker=NullAttacker()),
    }


def cost_summary(rows: dict) -> dict:
    """Means and CIs of the attacked and null runs and of their paired differences (attacked - null)."""
    from training.evaluation import mean_ci

    out: dict[str, Any] = {}
    for metric in ("delivery_rate", "honest_welfare"):
        attacked = [r[metric] for r in rows["attacked"]]
        null = [r[metric] for r in rows["null"]]
        out[metric] = {
            "attacked": mean_ci(attacked),
            "null": mean_ci(null),
            "paired_attacked_minus_null": mean_ci([a - b for a, b in zip(attacked, null, strict=True)]),
        }
    return out


# ---------------------------------------------------------------- the Hydra app


def print_field_docs() -> None:
    print("python -m training.attack [key=value ...]   (Hydra app, conf/attack.yaml)\n")
    print("Config fields (key = default  meaning):")
    print("\n".join(field_docs([(CONF_DIR / "attack.yaml", "")])))
    print("\nExamples: python -m training.attack defender=seed total_timesteps=100000")
    print("          python -m training.attack defender=checkpoints/default objective=profit\n")
    print("Hydra's own help follows.\n")


def run(cfg: Any, command: str) -> dict:
    """One attacker training job described by ``cfg`` (``conf/attack.yaml``); returns a summary."""
    if int(cfg.total_timesteps) <= 0:
        raise UserError(f"total_timesteps must be > 0, got {cfg.total_timesteps}")
    if int(cfg.n_envs) < 1:
        raise UserError(f"n_envs must be >= 1, got {cfg.n_envs}")
    if not cfg.policy.hidden or any(int(h) < 1 for h in cfg.policy.hidden):
        raise UserError("policy.hidden must list widths >= 1")
    if int(cfg.eval.episodes) < 0:
        raise UserError(f"eval.episodes must be >= 0, got {cfg.eval.episodes}")
    mix = attacker_scenarios([str(s) for s in cfg.scenarios], cfg.objective)
    defender = resolve_defender(str(cfg.defender))
    import torch as th
    from omegaconf import OmegaConf
    from stable_baselines3.common.callbacks import CheckpointCallback

    from training.callbacks import HParamsCallback

    th.set_num_threads(int(cfg.torch_threads))
    if cfg.get("name"):
        name = str(cfg.name)
    else:
        stem = Path(str(cfg.scenarios[0])).stem if len(cfg.scenarios) == 1 else "mix"
        name = f"{stem}__{cfg.exp}__{cfg.seed}__{int(time.time())}"
    run_dir = project_path(cfg.runs_dir) / name
    ckpt_dir = project_path(cfg.checkpoints_dir) / name
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    config = OmegaConf.to_container(cfg, resolve=True)
    (ckpt_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    callbacks: list[Any] = [HParamsCallback(flat(config))]
    slots = int(cfg.n_envs) * max(s.learned_count() for s in mix)
    if int(cfg.checkpoint_every) > 0:
        every = max(int(cfg.checkpoint_every) // slots, 1)
        callbacks.append(CheckpointCallback(every, str(ckpt_dir), name_prefix="attacker", save_vecnormalize=True))
    where = f"tensorboard --logdir {run_dir.parent}"
    print(f"run {name}: {slots} attacker slots ({cfg.n_envs} meshes) against {cfg.defender}, {where}")
    t0 = time.time()
    try:
        model = train_attacker(
            defender,
            mix,
            int(cfg.total_timesteps),
            seed=int(cfg.seed),
            n_envs=int(cfg.n_envs),
            ppo=dict(cfg.ppo),
            hidden=[int(h) for h in cfg.policy.hidden],
            normalize_reward=bool(cfg.normalize_reward),
            log_dir=run_dir,
            callbacks=callbacks,
            progress_bar=bool(cfg.progress_bar),
        )
    except KeyboardInterrupt:
        print("\ninterrupted: nothing exported (checkpoints so far are in", ckpt_dir, ")")
        raise
    seconds = time.time() - t0
    model.save(ckpt_dir / "final.zip")
    print(f"trained {model.num_timesteps} attacker-steps in {seconds:.0f} s")
    summary: dict[str, Any] = {"run": name, "checkpoint": str(ckpt_dir / "final.zip")}
    if cfg.export:
        evaluation = {}
        if int(cfg.eval.episodes) > 0:
            attacker = numpy_attacker(model.policy, name)
            rows = attack_cost(defender, attacker, mix[0], int(cfg.eval.episodes), int(cfg.eval.offset))
            evaluation = {
                "scenario": mix[0].name,
                "episodes": int(cfg.eval.episodes),
                "episode_seeds": f"scenario.seed + {int(cfg.eval.offset)} + k",
                **cost_summary(rows),
            }
            d = evaluation["delivery_rate"]
            print(
                f"honest delivery rate {d['attacked']['mean']:.3f} under this attacker, "
                f"{d['null']['mean']:.3f} under the null attacker (paired "
                f"{d['paired_attacked_minus_null']['mean']:+.3f} "
                f"[{d['paired_attacked_minus_null']['lo']:+.3f}, {d['paired_attacked_minus_null']['hi']:+.3f}])"
            )
        budget = {
            "total_timesteps": int(cfg.total_timesteps),
            "wall_clock_s": round(seconds, 1),
            "machine": f"{os.cpu_count()} CPUs, {platform.machine()}",
        }
        out = export_attacker(
            model.policy,
            ckpt_dir / "export",
            name=name,
            training_config=config,
            command=command,
            defender=str(cfg.defender),
            budget=budget,
            evaluation=evaluation,
        )
        summary["export"] = str(out)
        print(f"exported {out}")
    return summary


def main() -> None:
    """Hydra entry point (``python -m training.attack``)."""
    run_app("attack", run, "python -m training.attack", print_field_docs)


if __name__ == "__main__":
    main()
