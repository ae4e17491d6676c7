"""``make train``: train on the default mix, export, evaluate against ``seed``, print the comparison.

Sized for a two-core machine: the default budget (10M agent-steps over the shipped scenarios plus
the randomised ones of ``conf/train.yaml``) trains in about five minutes with the decision-only loop
(``training.ppo.DecisionPPO``; 273 s to 10M on a shared two-core box, issue 26), the evaluation
(every shipped adversarial scenario and every held-out file, 20 episodes) takes a few. The last
line says the wall-clock time of the training and of the whole command. The verdict
of each row is the paired difference learned - seed on the same episodes: ``better``/``worse``
when its 95 % CI excludes 0. The shipped ``checkpoints/default`` came from the same entry
point with a larger budget (its manifest records the command and the budget).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from training.evaluation import ACCEPTANCE_SCENARIOS as ACCEPTANCE
from training.paths import ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.make_train", description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=10_000_000, help="PPO budget in agent-steps (default 10M)")
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes per scenario (>= 2)")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--json", type=Path, default=None, help="also write the comparison to this JSON file")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for python -m training.train")
    args = parser.parse_args(argv)
    if args.timesteps <= 0 or args.episodes < 2:
        print("error: --timesteps must be > 0 and --episodes >= 2", file=sys.stderr)
        return 2

    started = time.time()
    name = f"mix__make__{args.seed}__{int(time.time())}"
    cmd = [
        sys.executable,
        "-m",
        "training.train",
        f"name={name}",
        "exp=make",
        f"seed={args.seed}",
        f"total_timesteps={args.timesteps}",
        "eval.every=0",
        "eval.final_scenarios=[]",
        *args.overrides,
    ]
    print("$ " + " ".join(["python", *cmd[1:]]), flush=True)
    t0 = time.time()
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:
        print("error: training failed (see above)", file=sys.stderr)
        return 1
    trained = time.time() - t0

    from agents.baselines import get_baseline
    from agents.inference import load_policy
    from training.evaluation import comparison_table, evaluate

    export = ROOT / "checkpoints" / name / "export"
    policy = load_policy(export)
    policy.name = "learned"
    heldout = [str(p) for p in sorted((ROOT / "conf" / "heldout").glob("*.yaml"))]
    print(
        f"\nevaluating {export.relative_to(ROOT)} against seed on {args.episodes} episodes per scenario ...", flush=True
    )
    t1 = time.time()
    paired: dict = {}
    results = evaluate([get_baseline("seed"), policy], ACCEPTANCE + heldout, args.episodes, paired=paired)
    print(comparison_table(results, "learned", "seed", paired=paired))
    print(
        f"\ntrained in {trained:.0f} s, evaluated in {time.time() - t1:.0f} s; "
        f"policy: {export.relative_to(ROOT)}; tensorboard --logdir runs"
    )
    print(
        "verdict: 'better'/'worse' = the 95 % CI of the paired difference learned - seed (same episodes) "
        "lies above/below 0, else 'tie'."
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"policy": str(export), "results": results, "paired_learned_minus_seed": paired}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wall-clock: training {trained:.0f} s, whole make train {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
