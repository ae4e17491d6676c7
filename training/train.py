"""Train the routing policy with PPO: ``python -m training.train [key=value ...]`` (Hydra, ``conf/train.yaml``).

Read top to bottom, a run:

1. builds the environment: ``envs.vector.MeshVecEnv`` over the scenario mix — the shipped
   ``scenarios`` plus ``randomise.count`` random ones (domain randomisation over topology, size,
   load, attacker kinds and parameters and dynamics, ``envs.sampler``); never a held-out file —
   (one vector slot per honest node per mesh copy, so every agent shares the one policy), guarded
   (``training.vec``), rewards normalised with ``VecNormalize`` (observations are not);
2. builds ``training.ppo.DecisionPPO`` (sb3-contrib's ``MaskablePPO`` whose update sees only the
   rows with a decision; ``ppo.decisions_only=false`` gives the plain ``MaskablePPO``) with
   ``training.policy.SlotScorerPolicy`` (a per-neighbour scorer, masked softmax over slots), or
   loads a checkpoint when ``resume=PATH``;
3. optionally clones the oracle first (``bc.steps > 0``; off by default): a short supervised pass
   that initialises the scorer, after which PPO trains everything;
4. learns for ``total_timesteps`` agent-steps with a progress bar, logging SB3's losses plus
   ``charts/*`` (the mesh's episode metrics) and ``eval/*`` (greedy policy vs ``seed``) to
   tensorboard under ``runs/<scenario>__<exp>__<seed>__<time>/``, the hyper-parameters as an
   hparams table, and a checkpoint every ``checkpoint_every`` agent-steps under
   ``checkpoints/<run>/``; Ctrl-C saves a checkpoint before exiting;
5. saves ``checkpoints/<run>/final.zip``, exports ``checkpoints/<run>/export/`` (``training.export``)
   and evaluates the exported numpy policy against ``seed`` for the manifest's summary.

Sweeps: ``python -m training.train -m seed=0,1,2`` (joblib launcher, two parallel jobs).
"""

from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path
from typing import Any

from training.hydra_app import UserError, field_docs, flat, run_app
from training.paths import CONF_DIR, project_path

__all__ = ["UserError", "check_config", "field_docs", "main", "train"]

# ---------------------------------------------------------------- config help


def print_field_docs() -> None:
    print("python -m training.train [key=value ...] [-m key=a,b,c]   (Hydra app, conf/train.yaml)\n")
    print("Config fields (key = default  meaning):")
    print("\n".join(field_docs([(CONF_DIR / "train.yaml", ""), (CONF_DIR / "policy" / "scorer.yaml", "policy")])))
    print(f"  {'policy = scorer':<40} config group: conf/policy/{{scorer,tiny}}.yaml\n")
    print("Examples: python -m training.train total_timesteps=200000 policy=tiny")
    print("          python -m training.train resume=checkpoints/RUN/          (continue a run)")
    print("          python -m training.train robust=true init=checkpoints/default   (adversarial training)")
    print("          python -m training.train -m seed=0,1,2                    (sweep, joblib launcher)\n")
    print("Hydra's own help follows.\n")


# ---------------------------------------------------------------- helpers


def run_name(cfg: Any) -> str:
    """``<scenario>__<exp>__<seed>__<time>``; the scenario part is ``mix`` for a mix."""
    if cfg.get("name"):
        return str(cfg.name)
    scenarios = list(cfg.scenarios)
    scenario = Path(str(scenarios[0])).stem if len(scenarios) == 1 else "mix"
    return f"{scenario}__{cfg.exp}__{cfg.seed}__{int(time.time())}"


def check_config(cfg: Any) -> list:
    """Validate what Hydra cannot; returns the scenario objects of the mix."""
    from envs.scenario import ScenarioError, as_scenario

    if cfg.total_timesteps <= 0:
        raise UserError(f"total_timesteps must be > 0, got {cfg.total_timesteps}")
    if cfg.n_envs < 1:
        raise UserError(f"n_envs must be >= 1, got {cfg.n_envs}")
    if cfg.policy.depth < 1 or cfg.policy.hidden < 1:
        raise UserError("policy.depth and policy.hidden must be >= 1")
    if cfg.policy.activation not in ("relu", "tanh"):
        raise UserError(f"policy.activation must be relu or tanh, got {cfg.policy.activation}")
    if not cfg.scenarios:
        raise UserError("scenarios must name at least one scenario")
    heldout_dir = (CONF_DIR / "heldout").resolve()
    mix = []
    for spec in cfg.scenarios:
        path = None if Path(str(spec)).suffix == "" else project_path(str(spec))
        if path is not None and path.resolve().is_relative_to(heldout_dir):
            raise UserError(f"scenario '{spec}' is in conf/heldout/: held-out scenarios must never be trained on")
        try:
            sc = as_scenario(str(spec) if path is None else path)
        except ScenarioError as err:
            raise UserError(str(err)) from None
        if sc.held_out:
            raise UserError(f"scenario '{spec}' is marked held_out: it must never be trained on")
        mix.append(sc)
    if len({s.episode_steps for s in mix}) != 1:
        raise UserError("scenarios of the mix must share episode_steps")
    mix += randomised_scenarios(cfg, mix[0].episode_steps)
    return mix


def randomised_scenarios(cfg: Any, episode_steps: int) -> list:
    """The ``randomise`` part of the mix: ``randomise.count`` scenarios drawn by ``envs.sampler``."""
    from envs.sampler import Ranges, sample_scenarios
    from envs.scenario import ScenarioError

    r = cfg.get("randomise")
    if not r or int(r.count) <= 0:
        return []
    try:
        ranges = Ranges(
            nodes=(int(r.nodes[0]), int(r.nodes[1])),
            topologies=tuple(str(k) for k in r.topologies),
            load=(float(r.load[0]), float(r.load[1])),
            dishonest=(float(r.dishonest[0]), float(r.dishonest[1])),
            kinds=tuple(str(k) for k in r.kinds),
            dynamics_probability=float(r.dynamics_probability),
            episode_steps=episode_steps,
        )
        return sample_scenarios(int(r.count), int(r.seed), ranges)
    except ScenarioError as err:
        raise UserError(str(err)) from None
    except (TypeError, ValueError, IndexError) as err:
        raise UserError(f"randomise: {err}") from None


def resolve_resume(path: str) -> Path:
    """A checkpoint .zip: ``path`` itself, or the newest ``*.zip`` in the folder ``path``."""
    p = project_path(path)
    if p.is_dir():
        zips = sorted(p.glob("*.zip"), key=lambda z: z.stat().st_mtime)
        if not zips:
            raise UserError(f"resume: no checkpoint .zip in '{path}'")
        return zips[-1]
    if not p.is_file():
        raise UserError(f"resume: '{path}' does not exist")
    return p


def vecnormalize_for(checkpoint: Path) -> Path | None:
    """The ``VecNormalize`` statistics saved beside ``checkpoint`` (None if absent)."""
    stem = checkpoint.stem
    m = re.match(r"^(.*)_(\d+)_steps$", stem)
    candidates = [checkpoint.with_name(f"{m.group(1)}_vecnormalize_{m.group(2)}_steps.pkl")] if m else []
    candidates.append(checkpoint.with_name(f"{stem}_vecnormalize.pkl"))
    return next((c for c in candidates if c.is_file()), None)


# ---------------------------------------------------------------- behaviour cloning


def behaviour_cloning(model: Any, mix: list, cfg: Any, logger: Any) -> dict:
    """Clone the oracle into the scorer: cross-entropy on oracle choices from oracle roll-outs.

    The oracle is privileged (it knows who is dishonest and every queue); this only initialises
    the scorer, PPO then trains it on rewards. Returns the cloning statistics for the manifest.
    """
    import numpy as np
    import torch as th

    from training.vec import make_env

    env = make_env(mix, cfg.n_envs, cfg.seed + 10_007, cfg.welfare_weight, cfg.reward_clip)
    base = env.venv
    obs, masks, targets = [], [], []
    for _ in range(int(cfg.bc.steps)):
        active = base.core.agent_active()
        oracle = base.oracle_actions()
        if active.any():
            obs.append(base._obs.features[active].copy())
            masks.append(base._obs.action_mask[active].astype(bool))
            targets.append(oracle[active])
        env.step(oracle)
    x = th.as_tensor(np.concatenate(obs))
    m = th.as_tensor(np.concatenate(masks))
    y = th.as_tensor(np.concatenate(targets)).long()
    policy = model.policy
    params = [
        p for name, p in policy.mlp_extractor.named_parameters() if not name.endswith("_vf") and "_vf." not in name
    ]
    opt = th.optim.Adam(params, lr=cfg.bc.learning_rate)
    n = x.shape[0]
    batch = 4096
    gen = th.Generator().manual_seed(int(cfg.seed))
    loss_v, acc = float("nan"), float("nan")
    for _epoch in range(int(cfg.bc.epochs)):
        perm = th.randperm(n, generator=gen)
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            scores = policy.slot_scores(x[idx]).masked_fill(~m[idx], -1e8)
            loss = th.nn.functional.cross_entropy(scores, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with th.no_grad():
            scores = policy.slot_scores(x).masked_fill(~m, -1e8)
            loss_v = float(th.nn.functional.cross_entropy(scores, y))
            acc = float((scores.argmax(-1) == y).float().mean())
    logger.record("bc/loss", loss_v)
    logger.record("bc/accuracy", acc)
    logger.record("bc/samples", n)
    return {
        "samples": int(n),
        "env_steps": int(cfg.bc.steps),
        "epochs": int(cfg.bc.epochs),
        "loss": loss_v,
        "accuracy": acc,
    }


# ---------------------------------------------------------------- the run


def ppo_kwargs(p: Any, policy_cfg: Any) -> dict[str, Any]:
    """The PPO arguments every model of this project is built with, from ``cfg.ppo`` and ``cfg.policy``.

    The caller adds what differs between uses: ``batch_size``, ``target_kl`` and ``seed``.
    """
    from stable_baselines3.common.utils import LinearSchedule

    return {
        "learning_rate": LinearSchedule(p.learning_rate, p.learning_rate * p.lr_final_fraction, 1.0),
        "n_steps": int(p.n_steps),
        "n_epochs": int(p.n_epochs),
        "gamma": p.gamma,
        "gae_lambda": p.gae_lambda,
        "clip_range": p.clip_range,
        "ent_coef": p.ent_coef,
        "vf_coef": p.vf_coef,
        "max_grad_norm": p.max_grad_norm,
        "policy_kwargs": {
            "hidden": int(policy_cfg.hidden),
            "depth": int(policy_cfg.depth),
            "activation_name": str(policy_cfg.activation),
        },
        "device": "cpu",
        "verbose": 0,
    }


def train(cfg: Any, command: str) -> dict:
    """Run one training job described by ``cfg`` (see ``conf/train.yaml``); returns a summary dict."""
    mix = check_config(cfg)  # before the heavy imports: a mistake is reported at once
    learned = None
    if cfg.get("robust"):
        from training.robust import check_robust, robust_mix

        check_robust(cfg)
        mix, learned = robust_mix(cfg, mix)
        if cfg.resume:
            raise UserError("robust=true does not resume a run; start from a policy with init=DIR instead")
    if cfg.get("init"):
        from training.robust import check_init

        check_init(project_path(str(cfg.init)), cfg.policy)
    import torch as th
    from omegaconf import OmegaConf
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.vec_env import VecNormalize

    from agents.inference import load_policy
    from training.callbacks import HParamsCallback, MeshMetricsCallback, SeedComparisonCallback
    from training.evaluation import summarise
    from training.export import export_policy
    from training.policy import SlotScorerPolicy
    from training.ppo import DecisionPPO
    from training.vec import make_env

    algorithm = DecisionPPO if cfg.ppo.get("decisions_only", True) else MaskablePPO
    th.set_num_threads(int(cfg.torch_threads))
    resume = resolve_resume(cfg.resume) if cfg.resume else None
    name = resume.parent.name if resume else run_name(cfg)
    run_dir = project_path(cfg.runs_dir) / name
    ckpt_dir = project_path(cfg.checkpoints_dir) / name
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    config = OmegaConf.to_container(cfg, resolve=True)
    (ckpt_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))

    env = make_env(mix, int(cfg.n_envs), int(cfg.seed), cfg.welfare_weight, float(cfg.reward_clip))
    p = cfg.ppo
    if resume:
        stats = vecnormalize_for(resume)
        venv = VecNormalize.load(str(stats), env) if stats else VecNormalize(env, norm_obs=False, gamma=p.gamma)
        venv.training = True
        venv.norm_reward = bool(cfg.normalize_reward)
        model = algorithm.load(resume, env=venv, device="cpu")
        print(f"resuming {resume} at {model.num_timesteps} agent-steps")
    else:
        venv = VecNormalize(env, norm_obs=False, norm_reward=bool(cfg.normalize_reward), gamma=p.gamma)
        model = algorithm(
            SlotScorerPolicy,
            venv,
            batch_size=int(p.batch_size),
            target_kl=p.target_kl,
            seed=int(cfg.seed),
            **ppo_kwargs(p, cfg.policy),
        )
        if cfg.get("init"):
            from training.robust import load_actor

            load_actor(model.policy, project_path(str(cfg.init)))
            print(f"actor initialised from {cfg.init}")
    logger = configure(str(run_dir), ["tensorboard", "csv"])
    model.set_logger(logger)
    print(f"run {name}: {env.num_envs} agent slots ({cfg.n_envs} meshes), tensorboard --logdir {run_dir.parent}")

    bc_stats = None
    if not resume and int(cfg.bc.steps) > 0:
        t0 = time.time()
        bc_stats = behaviour_cloning(model, mix, cfg, logger)
        bc_stats["seconds"] = round(time.time() - t0, 1)
        logger.dump(0)
        print(f"behaviour cloning: {bc_stats}")

    every_call = max(int(cfg.checkpoint_every) // env.num_envs, 1)
    callbacks = [
        MeshMetricsCallback(),
        HParamsCallback(flat(config)),
        CheckpointCallback(every_call, str(ckpt_dir), name_prefix="model", save_vecnormalize=True),
    ]
    if int(cfg.eval.every) > 0:
        callbacks.append(SeedComparisonCallback(list(cfg.eval.scenarios), int(cfg.eval.every), int(cfg.eval.episodes)))
    remaining = int(cfg.total_timesteps) - (model.num_timesteps if resume else 0)
    t0 = time.time()
    start_steps = model.num_timesteps
    robust_records = None
    try:
        if learned is not None:
            from training.robust import run_robust

            robust_records = run_robust(
                cfg, model, env.venv, CallbackList(callbacks), learned, ckpt_dir, run_dir, bool(cfg.progress_bar)
            )
        elif remaining > 0:
            model.learn(
                remaining,
                callback=CallbackList(callbacks),
                reset_num_timesteps=not resume,
                progress_bar=bool(cfg.progress_bar),
            )
    except KeyboardInterrupt:
        path = ckpt_dir / f"model_{model.num_timesteps}_steps.zip"
        model.save(path)
        venv.save(str(ckpt_dir / f"model_vecnormalize_{model.num_timesteps}_steps.pkl"))
        print(f"\ninterrupted: saved {path}; continue with resume={path}")
        raise
    seconds = time.time() - t0
    model.save(ckpt_dir / "final.zip")
    venv.save(str(ckpt_dir / "final_vecnormalize.pkl"))
    steps = model.num_timesteps - start_steps
    rate = f"{steps / max(seconds, 1e-9):.0f} agent-steps/s"
    if isinstance(model, DecisionPPO):
        rate += f", {model.decisions_learned / max(seconds, 1e-9):.0f} decisions learned/s"
    print(f"trained {steps} agent-steps in {seconds:.0f} s ({rate})")

    summary: dict[str, Any] = {"run": name, "checkpoint": str(ckpt_dir / "final.zip")}
    if cfg.export:
        budget = {
            "total_timesteps": int(cfg.total_timesteps),
            "agent_steps_this_session": int(steps),
            "wall_clock_s_this_session": round(seconds, 1),
            "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, shared with other jobs",
            "torch_threads": int(cfg.torch_threads),
            "behaviour_cloning": bc_stats,
        }
        notes = []
        if bc_stats:
            notes.append(
                f"scorer initialised by behaviour cloning of the privileged oracle ({bc_stats['samples']} decisions), "
                "then trained with MaskablePPO on rewards"
            )
        if resume:
            notes.append(f"resumed from {resume}")
        if cfg.get("init"):
            warm = "; critic trained alone first (adversarial.critic_warmup)" if robust_records is not None else ""
            notes.append(f"actor initialised from the export {cfg.init}{warm}")
        if robust_records is not None:
            budget["adversarial_rounds"] = robust_records
            notes.append(
                f"adversarial training: {len(robust_records)} rounds of a best-response attacker "
                f"({cfg.adversarial.attacker_steps} attacker-steps each) then a defender phase against the population"
            )
        export_dir = ckpt_dir / "export"
        export_kwargs = dict(name=name, training_config=config, command=command, budget=budget, notes=notes)
        export_policy(model.policy, export_dir, **export_kwargs)
        if cfg.eval.final_scenarios:
            numpy_policy = load_policy(export_dir)
            numpy_policy.name = "learned"
            scenarios = [str(s) for s in cfg.eval.final_scenarios]
            evaluation = summarise(numpy_policy, scenarios, int(cfg.eval.final_episodes))
            export_policy(model.policy, export_dir, evaluation=evaluation, **export_kwargs)
            summary["evaluation"] = evaluation
        summary["export"] = str(export_dir)
        print(f"exported {export_dir}")
    return summary


def main() -> None:
    """Hydra entry point (``python -m training.train``)."""
    run_app("train", train, "python -m training.train", print_field_docs)


if __name__ == "__main__":
    main()
