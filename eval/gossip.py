"""Gossip on against gossip off, on the same episodes: ``python -m eval.gossip``.

For every scenario (by default one per attacker kind, the learned one driven by the shipped
``checkpoints/attacker``) and every policy, plays the same episodes twice, with the scenario's
``gossip.enabled`` true and false, and reports the paired on - off difference of the honest
delivery rate (mean and 95 % CI), and ``detection_steps`` and ``false_accusations`` with and without
gossip. "Gossip never hurts" holds where the paired difference's interval does not lie below 0.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.policies import PolicyError, policy_label
from envs.scenario import ScenarioError, load_scenario
from eval.cli import OneLineParser, positive_int, seed_arg, write_reports

#: One shipped scenario per attacker kind (``learned`` is played against the shipped attacker).
KIND_SCENARIOS = {
    "bandwidth_liar": "liars",
    "blackhole": "blackholes",
    "overpricer": "overpricers",
    "forger": "forgers",
    "grey_hole": "grey_holes",
    "on_off": "on_off",
    "selective": "selective",
    "whitewasher": "whitewashers",
    "slanderer": "slanderers",
    "ballot_stuffer (clique)": "ballot_stuffers",
    "learned": "learned",
}
DEFAULT_POLICIES = ("seed", "checkpoints/default")
DEFAULT_ATTACKER = "checkpoints/attacker"
TRUST_METRICS = ("detection_steps", "detected_share", "false_accusations")


def compare(policy: Any, scenario: Any, episodes: int, offset: int, attacker: Any = None) -> dict:
    """``policy`` on ``episodes`` episodes of ``scenario`` with gossip on and off: summaries and pairs."""
    from training.evaluation import mean_ci, run_episodes

    runs = {
        on: run_episodes(policy, scenario.replace(gossip={"enabled": on}), episodes, offset, attacker)
        for on in (True, False)
    }
    on, off = runs[True], runs[False]
    out: dict[str, Any] = {
        "delivery_rate": {
            "on": mean_ci([e["delivery_rate"] for e in on]),
            "off": mean_ci([e["delivery_rate"] for e in off]),
        },
        "paired_on_minus_off": {
            m: mean_ci([a[m] - b[m] for a, b in zip(on, off, strict=True)]) for m in ("delivery_rate", "welfare")
        },
    }
    for m in TRUST_METRICS:
        out[m] = {"on": mean_ci([e[m] for e in on]), "off": mean_ci([e[m] for e in off])}
    return out


def markdown(report: dict) -> str:
    """The report as a markdown table, a row per (kind, policy)."""
    lines = [
        f"Gossip on vs off, {report['episodes']} paired episodes per row (seeds: {report['episode_seeds']}).",
        "",
        "| attacker kind | scenario | policy | delivery (gossip on) | on - off, paired [95 % CI] "
        "| detection steps on / off | detected on / off | false accusations on / off |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        r = row["result"]
        pair = r["paired_on_minus_off"]["delivery_rate"]
        d, s, f = (r[m] for m in TRUST_METRICS)
        lines.append(
            f"| {row['kind']} | {row['scenario']} | {row['policy']} | {r['delivery_rate']['on']['mean']:.3f} "
            f"| {pair['mean']:+.3f} [{pair['lo']:+.3f}, {pair['hi']:+.3f}] "
            f"| {d['on']['mean']:.1f} / {d['off']['mean']:.1f} | {s['on']['mean']:.2f} / {s['off']['mean']:.2f} "
            f"| {f['on']['mean']:.3f} / {f['off']['mean']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def build_parser() -> OneLineParser:
    p = OneLineParser(
        prog="python -m eval.gossip",
        description="Play every policy on the same episodes with gossip on and off, one scenario per attacker "
        "kind, and report the paired delivery difference, detection steps and false accusations.",
    )
    p.add_argument(
        "--policy",
        action="append",
        metavar="POLICY",
        help="a baseline or an exported policy directory; repeat for several (default: seed and checkpoints/default)",
    )
    p.add_argument(
        "--scenario",
        action="append",
        metavar="NAME_OR_PATH",
        help="a scenario instead of the one-per-kind list; repeat for several",
    )
    p.add_argument(
        "--attacker",
        default=DEFAULT_ATTACKER,
        metavar="DIR",
        help="attacker export driving the learned nodes of a scenario that has them (default %(default)s)",
    )
    p.add_argument("--episodes", type=positive_int, default=20, help="paired episodes per row (default %(default)s)")
    p.add_argument("--offset", type=seed_arg, default=30_000, help="first episode index (default %(default)s)")
    p.add_argument("--json", type=Path, metavar="OUT", help="write the report as JSON here")
    p.add_argument("--markdown", type=Path, metavar="OUT", help="write the markdown table here too")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on a user mistake, with a one-line message)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from rich.progress import Progress

    from agents.attacker import AttackerLoadError, load_attacker
    from training.attack import resolve_defender
    from training.hydra_app import UserError
    from training.paths import project_path

    if args.episodes < 2:
        parser.error("--episodes must be at least 2 (a confidence interval needs two episodes)")
    kinds = {s: s for s in args.scenario} if args.scenario else KIND_SCENARIOS
    try:
        policies = [(policy_label(p), resolve_defender(p)) for p in (args.policy or DEFAULT_POLICIES)]
        scenarios = {kind: load_scenario(name) for kind, name in kinds.items()}
        attacker = None
        if any(s.learned_count() > 0 for s in scenarios.values()):
            attacker = load_attacker(project_path(args.attacker))
    except (UserError, ScenarioError, PolicyError, AttackerLoadError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {
        "episodes": args.episodes,
        "episode_seeds": f"scenario.seed + {args.offset} + k",
        "attacker": args.attacker if attacker is not None else None,
        "rows": [],
    }
    try:
        with Progress(transient=True) as progress:
            task = progress.add_task("gossip on / off", total=len(scenarios) * len(policies))
            for kind, scenario in scenarios.items():
                for label, policy in policies:
                    progress.update(task, description=f"{scenario.name}: {label}")
                    result = compare(policy, scenario, args.episodes, args.offset, attacker)
                    report["rows"].append({"kind": kind, "scenario": scenario.name, "policy": label, "result": result})
                    progress.advance(task)
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    table = markdown(report)
    print(table)
    return write_reports(parser.prog, [(args.json, json.dumps(report, indent=2) + "\n"), (args.markdown, table)])


if __name__ == "__main__":
    raise SystemExit(main())
