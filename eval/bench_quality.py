"""Time to quality: the old training loop and the new one, from the same seed, delivery against wall-clock seconds.

``python -m eval.bench training --to-quality`` trains twice on the default training mix of
``conf/train.yaml`` (its shipped scenarios and its randomised ones, 16 meshes, its PPO settings):

* ``old``: sb3-contrib's ``MaskablePPO`` over every agent slot, batch 2,048 rows (the loop and the
  settings before issue 26);
* ``new``: ``training.ppo.DecisionPPO``, which collects and learns from decision rows only, with
  ``conf/train.yaml``'s batch size (decision rows).

Both start from the same seed (same torch initialisation, same environment draws). Every
``--eval-every`` seconds of training the clock stops and the greedy policy plays ``--episodes``
fixed episodes of ``blackholes`` and ``mixed_heavy`` (episode seeds from 10,000 on, not the
acceptance episodes); ``seed`` plays the same episodes once, as the reference line. Only training
time counts. The result is a JSON (per loop: seconds, agent-steps, decisions, delivery per
scenario) and a PNG of delivery against training seconds. The machine is whatever runs it: on a
shared two-core box the other jobs' load moves both curves.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

SCENARIOS = ("blackholes", "mixed_heavy")
EVAL_OFFSET = 10_000
#: Minibatch of the old loop (rows of every slot), as conf/train.yaml had it before issue 26.
OLD_BATCH = 2048


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``--to-quality`` mode of ``python -m eval.bench training``."""
    parser.add_argument("--seconds", type=float, default=240.0, help="training seconds per loop (--to-quality)")
    parser.add_argument("--eval-every", type=float, default=30.0, help="training seconds between evaluations")
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes per scenario (>= 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of both loops")
    parser.add_argument("--png", type=Path, default=Path("eval/results/to_quality.png"), help="plot written here")


def training_mix() -> tuple[list, Any, Any]:
    """The default training mix of ``conf/train.yaml`` (shipped scenarios plus the randomised ones),
    that config and the default policy config (``conf/policy/scorer.yaml``)."""
    from omegaconf import OmegaConf

    from envs.scenario import as_scenario
    from training.paths import CONF_DIR
    from training.train import randomised_scenarios

    cfg = OmegaConf.load(CONF_DIR / "train.yaml")
    mix = [as_scenario(str(s)) for s in cfg.scenarios]
    policy = OmegaConf.load(CONF_DIR / "policy" / "scorer.yaml")
    return mix + randomised_scenarios(cfg, mix[0].episode_steps), cfg, policy


def _delivery(policy: Any, episodes: int) -> dict[str, float]:
    from training.evaluation import run_episodes

    return {
        s: float(np.mean([m["delivery_rate"] for m in run_episodes(policy, s, episodes, EVAL_OFFSET)]))
        for s in SCENARIOS
    }


def train_curve(loop: str, args: argparse.Namespace) -> list[dict]:
    """Train one loop for ``args.seconds`` of training time; the evaluation points along the way."""
    import torch as th
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import VecNormalize

    from training.policy import SlotScorerPolicy, TorchRoutingPolicy
    from training.ppo import DecisionPPO
    from training.train import ppo_kwargs
    from training.vec import make_env

    mix, cfg, policy_cfg = training_mix()
    p = cfg.ppo
    th.manual_seed(args.seed)
    env = make_env(mix, int(cfg.n_envs), args.seed, cfg.welfare_weight, float(cfg.reward_clip))
    venv = VecNormalize(env, norm_obs=False, norm_reward=bool(cfg.normalize_reward), gamma=p.gamma)
    algorithm, batch = (MaskablePPO, OLD_BATCH) if loop == "old" else (DecisionPPO, int(p.batch_size))
    model = algorithm(SlotScorerPolicy, venv, batch_size=batch, seed=args.seed, **ppo_kwargs(p, policy_cfg))
    points: list[dict] = []

    def evaluate(seconds: float) -> None:
        delivery = _delivery(TorchRoutingPolicy(model.policy), args.episodes)
        decisions = getattr(model, "decisions_learned", None)
        points.append(
            {"seconds": round(seconds, 1), "agent_steps": int(model.num_timesteps), "decisions": decisions, **delivery}
        )
        print(f"  {loop}: {seconds:6.1f} s, {model.num_timesteps:>9,} agent-steps, delivery {delivery}", flush=True)

    class Clock(BaseCallback):
        """Stops the training clock for evaluations; ends training after the budget."""

        def __init__(self) -> None:
            super().__init__()
            self.trained = 0.0
            self.since = time.perf_counter()
            self.next_eval = args.eval_every

        def _on_step(self) -> bool:
            now = time.perf_counter()
            self.trained += now - self.since
            if self.trained >= self.next_eval or self.trained >= args.seconds:
                evaluate(self.trained)
                # one point per interval, however far one long update jumped past it
                self.next_eval = (self.trained // args.eval_every + 1) * args.eval_every
            self.since = time.perf_counter()
            return self.trained < args.seconds

    evaluate(0.0)
    model.learn(10**12, callback=Clock())
    return points


def plot(result: dict, png: Path) -> None:
    """Delivery against training seconds, one panel per scenario, a line per loop and seed's level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SCENARIOS), figsize=(5 * len(SCENARIOS), 3.8), sharey=True)
    for ax, scenario in zip(axes, SCENARIOS, strict=True):
        for loop, style in (("old", "o-"), ("new", "s-")):
            pts = result["loops"][loop]
            ax.plot([p["seconds"] for p in pts], [p[scenario] for p in pts], style, label=result["labels"][loop])
        ax.axhline(result["seed"][scenario], color="grey", linestyle="--", label="seed (origin heuristic)")
        ax.set_title(scenario)
        ax.set_xlabel("training wall-clock seconds (evaluation excluded)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"delivery rate ({result['episodes']} episodes)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> dict:
    """Both loops, the seed reference, the plot; returns the figures."""
    import warnings

    from agents.baselines import get_baseline

    if args.seconds <= 0 or args.eval_every <= 0 or args.episodes < 2:
        raise SystemExit("error: --seconds and --eval-every must be > 0 and --episodes >= 2")
    warnings.filterwarnings("ignore")
    result: dict = {
        "scenarios": list(SCENARIOS),
        "episodes": args.episodes,
        "seconds_per_loop": args.seconds,
        "labels": {
            "old": f"old: MaskablePPO over every slot (batch {OLD_BATCH})",
            "new": "new: DecisionPPO, decision rows only",
        },
        "seed": _delivery(get_baseline("seed"), args.episodes),
        "loops": {},
    }
    for loop in ("old", "new"):
        print(f"to-quality: {result['labels'][loop]}, {args.seconds:.0f} s of training", flush=True)
        result["loops"][loop] = train_curve(loop, args)
    plot(result, args.png)
    result["png"] = str(args.png)
    print(f"to-quality: seed {result['seed']}; plot {args.png}")
    return result
