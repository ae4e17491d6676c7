"""What signing receipts and paying on delivery change: policies x payment mode x receipts.

``python -m eval.economy`` plays every policy on every scenario under the four economies
(``economy.payment`` in ``per_hop`` / ``on_delivery`` x ``economy.receipts`` in ``unsigned`` /
``signed``), all on the **same** episodes (episode ``k`` uses seed ``S + k``, as in
``eval.evaluate``; the economy changes no draw of the graph, the roles or the traffic), and writes
a markdown report (``--out``, default ``eval/results/economy.md``) and its JSON (``--json``):

* per scenario, the mean and 95 % CI of each column for every (economy, policy);
* the paired difference of every economy to ``per_hop`` + ``unsigned`` (the economy before proof
  of delivery), policy by policy, episode by episode;
* the paired difference of every policy to the first ``--policy`` within each economy.

Columns: ``delivery_rate``, ``welfare``, ``dishonest_share`` (hops taken by dishonest nodes),
``dishonest_payments_share``, ``earned_swallowers`` (what blackholes and forgers were paid in the
episode) and ``forged_receipts_rejected``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from agents.policies import PolicyError, policy_label, resolve_policy
from envs.scenario import ScenarioError
from eval.cli import OneLineParser, positive_int
from eval.evaluate import (
    DEFAULT_RESULTS,
    UsageError,
    _make_progress,
    _rounded,
    _scenario,
    _write_json,
    episode_seeds,
    evaluate_episodes,
    paired_differences,
    summarise,
)

#: The four economies, the reference (the economy before proof of delivery) first.
ECONOMIES = (("per_hop", "unsigned"), ("per_hop", "signed"), ("on_delivery", "unsigned"), ("on_delivery", "signed"))
COLUMNS = (
    "delivery_rate",
    "welfare",
    "dishonest_share",
    "dishonest_payments_share",
    "earned_swallowers",
    "forged_receipts_rejected",
)
DEFAULT_SCENARIOS = ("blackholes", "forgers")
DEFAULT_POLICIES = ("seed", "checkpoints/default", "oracle")


def _label(economy: tuple[str, str]) -> str:
    return f"{economy[0]} + {economy[1]}"


def compare(
    scenarios: Sequence[str],
    policy_specs: Sequence[str],
    episodes: int,
    seed: int | None = None,
    episode_steps: int | None = None,
    progress=None,
) -> dict:
    """Play every policy on every scenario under every economy; summaries and paired differences.

    :returns: ``{"episodes", "policies", "scenarios": [{"scenario", "seed", "results": [{"economy",
        "policy", "metrics"}], "vs_reference_economy": [...], "vs_first_policy": [...]}]}``.
    """
    policies = {}
    for spec in policy_specs:
        label = policy_label(spec)
        if label in policies:
            raise UsageError(f"policy '{label}' given twice")
        policies[label] = resolve_policy(spec, allow_prefix=True)
    first = next(iter(policies))
    out = {"episodes": episodes, "policies": list(policies), "scenarios": []}
    for name in scenarios:
        runs: dict[tuple[str, str], dict[str, list[dict[str, float]]]] = {}
        base_seed = None
        for economy in ECONOMIES:
            scenario = _scenario(name, episode_steps, *economy)
            base_seed = scenario.seed if seed is None else seed
            per_policy = evaluate_episodes(scenario, policies, episode_seeds(base_seed, episodes), base_seed, progress)
            for eps in per_policy.values():
                for e in eps:
                    e["earned_swallowers"] = e["earned_blackhole"] + e["earned_forger"]
            runs[economy] = per_policy
        results, vs_economy, vs_policy = [], [], []
        for economy, per_policy in runs.items():
            for label, eps in per_policy.items():
                metrics = {m: summarise([e[m] for e in eps]) for m in COLUMNS}
                results.append({"economy": _label(economy), "policy": label, "metrics": metrics})
            for d in paired_differences(per_policy, first, COLUMNS):
                vs_policy.append({"economy": _label(economy), **d})
        for label in policies:
            by_economy = {_label(e): runs[e][label] for e in ECONOMIES}
            for d in paired_differences(by_economy, _label(ECONOMIES[0]), COLUMNS):
                vs_economy.append(
                    {"policy": label, "economy": d["policy"], "reference": d["reference"], "metrics": d["metrics"]}
                )
        out["scenarios"].append(
            {
                "scenario": name,
                "seed": base_seed,
                "results": results,
                "vs_reference_economy": vs_economy,
                "vs_first_policy": vs_policy,
            }
        )
    return out


def _cell(summary: dict) -> str:
    lo, hi = summary["ci95"]
    return f"{summary['mean']:.3f} ± {(hi - lo) / 2:.3f}"


def _table(rows: Sequence[tuple[str, str, dict]], first: str, second: str) -> list[str]:
    lines = [f"| {first} | {second} | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---:|" * len(COLUMNS)]
    for a, b, metrics in rows:
        lines.append(f"| {a} | {b} | " + " | ".join(_cell(metrics[m]) for m in COLUMNS) + " |")
    return lines


def markdown(report: dict, command: str) -> str:
    """The report as markdown: three tables per scenario (see the module docstring)."""
    ref = _label(ECONOMIES[0])
    first = report["policies"][0]
    lines = [
        "# Economy: payment mode x receipts",
        "",
        f"{report['episodes']} episodes per (scenario, economy, policy); every cell of a scenario plays the same",
        "episodes (same graphs, roles, traffic). Mean ± half-width of the 95 % CI (Student t over episodes).",
        "`earned_swallowers`: what blackholes and forgers were paid per episode (money units).",
        "A policy given as a directory is an exported checkpoint: its manifest.json says how it was trained.",
        "",
        "Produced by:",
        "",
        "```bash",
        command,
        "```",
    ]
    for s in report["scenarios"]:
        lines += ["", f"## {s['scenario']} (episodes from seed {s['seed']})", "", "### Mean per economy and policy", ""]
        lines += _table([(r["economy"], r["policy"], r["metrics"]) for r in s["results"]], "economy", "policy")
        lines += ["", f"### Paired difference to `{ref}` (same policy, same episodes)", ""]
        lines += _table(
            [(d["economy"], d["policy"], d["metrics"]) for d in s["vs_reference_economy"]], "economy", "policy"
        )
        lines += ["", f"### Paired difference to `{first}` (same economy, same episodes)", ""]
        rows = [(d["economy"], f"{d['policy']} - {first}", d["metrics"]) for d in s["vs_first_policy"]]
        lines += _table(rows, "economy", "policy")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m eval.economy`` argument parser."""
    p = OneLineParser(
        prog="python -m eval.economy",
        description="Compare policies under the four economies (payment per_hop/on_delivery x receipts "
        "unsigned/signed) on the same episodes; writes a markdown report with paired differences.",
    )
    p.add_argument(
        "--scenario",
        action="append",
        metavar="NAME_OR_PATH",
        help=f"scenario (repeat; default: {', '.join(DEFAULT_SCENARIOS)})",
    )
    p.add_argument(
        "--policy",
        action="append",
        metavar="NAME_OR_DIR",
        help=f"policy (repeat; the first is the reference of the paired differences; default: "
        f"{', '.join(DEFAULT_POLICIES)})",
    )
    p.add_argument("--episodes", type=positive_int, default=20, help="episodes per cell (>= 2; default 20)")
    p.add_argument("--seed", type=int, default=None, help="episode k uses seed SEED + k (default: the scenario's)")
    p.add_argument("--episode-steps", type=positive_int, default=None, metavar="N", help="override episode_steps")
    p.add_argument(
        "--out", type=Path, default=DEFAULT_RESULTS / "economy.md", help="markdown report (default: %(default)s)"
    )
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the report as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on a user mistake, with a one-line message)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.episodes < 2:
        parser.error("argument --episodes: at least 2 episodes are needed for a confidence interval")
    scenarios = args.scenario or list(DEFAULT_SCENARIOS)
    policies = args.policy or list(DEFAULT_POLICIES)
    command = "python -m eval.economy " + " ".join(
        [*(f"--scenario {s}" for s in scenarios), *(f"--policy {p}" for p in policies), f"--episodes {args.episodes}"]
        + ([f"--seed {args.seed}"] if args.seed is not None else [])
        + ([f"--episode-steps {args.episode_steps}"] if args.episode_steps else [])
    )
    err = Console(stderr=True)
    try:
        with _make_progress(err) as progress:
            report = compare(scenarios, policies, args.episodes, args.seed, args.episode_steps, progress)
        text = markdown(report, command)
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text)
        except OSError as error:
            raise UsageError(f"cannot write '{args.out}': {error.strerror or error}") from None
        if args.json:
            _write_json(args.json, _rounded(report))
    except (ScenarioError, PolicyError, UsageError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    print(text)
    err.print(f"wrote {args.out}" + (f" and {args.json}" if args.json else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
