"""Evaluate routing policies on a scenario, with 95 % confidence intervals over episodes.

Every policy plays the *same* episodes: episode ``k`` uses seed ``S + k`` (``S`` = ``--seed``,
default the scenario's own ``seed``), which fixes the graph, the roles, the traffic and the
measurement noise (``MeshCore.reset(episode_seeds=...)``), so differences between policies come
from their decisions alone. The episodes of one policy run together as one batch of meshes.

Modes (combinable):

* ``--scenario X --policy P [--policy Q ...]``: evaluate, print a table, ``--json`` / ``--png``.
* ``--suite``: every shipped scenario x every baseline (+ ``checkpoints/default`` when it loads),
  written to ``--results`` (suite.json, suite.md, PNGs).
* ``--learning-curve RUN_DIR``: plot ``--scalar`` from a tensorboard run to a PNG.

JSON of one policy::

    {"scenario": str, "policy": str, "episodes": int, "seed": int,
     "metrics": {METRIC: {"mean": float, "ci95": [lo, hi]}}}

With several policies: ``{"scenario", "episodes", "seed", "results": [<one object as above per
policy>], "paired": [{"policy", "reference", "metrics": {METRIC: {"mean", "ci95"}}}]}`` where
``paired`` holds, for every policy after the first, its episode-by-episode difference to the first
``--policy`` (same episodes, so between-episode spread cancels). ``suite.json`` is
``{"episodes", "results": [...]}`` over scenarios and policies.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from scipy.special import stdtrit

from agents.baselines import BASELINES, RoutingPolicy
from agents.policies import PolicyError, policy_label, resolve_policy
from envs.core import METRIC_NAMES, MeshCore
from envs.scenario import (
    PAYMENT_MODES,
    RECEIPT_MODES,
    Scenario,
    ScenarioError,
    load_scenario,
    shipped_scenarios,
)
from eval.cli import OneLineParser, positive_int, seed_arg

#: Most meshes stepped together in one batch (bounds memory on large scenarios).
MAX_BATCH = 64
#: Column order of the suite: from the weakest reference to the strongest.
SUITE_ORDER = ("random", "shortest", "seed", "oracle")
DEFAULT_RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "default"


class UsageError(ValueError):
    """A user mistake reported as one line with exit status 2."""


# ---------------------------------------------------------------------------- running


def episode_seeds(base: int, episodes: int) -> list[int]:
    """Seeds of the evaluation episodes: ``base, base + 1, ...``."""
    return [base + k for k in range(episodes)]


def run_policy(
    scenario: Scenario,
    policy: RoutingPolicy,
    seeds: Sequence[int],
    rng_seed: int = 0,
    progress: Progress | None = None,
    label: str = "",
) -> list[dict[str, float]]:
    """Play one episode per seed with ``policy``; the metrics of each episode, in seed order.

    :param rng_seed: seed of the generator handed to stochastic policies (``random``).
    :param progress: a rich progress to advance by one per episode-step batch.
    """
    rng = np.random.default_rng(rng_seed)
    needs_oracle = bool(getattr(policy, "needs_oracle", False))
    out: list[dict[str, float]] = []
    task = progress.add_task(label, total=len(seeds) * scenario.episode_steps) if progress else None
    for start in range(0, len(seeds), MAX_BATCH):
        chunk = list(seeds[start : start + MAX_BATCH])
        core = MeshCore(scenario, n_meshes=len(chunk))
        core.reset(episode_seeds=chunk)
        for _ in range(core.episode_steps):
            obs = core.agent_observation()
            oracle = core.oracle_slots() if needs_oracle else None
            actions = policy.act(obs.features, obs.action_mask, rng=rng, oracle_actions=oracle)
            core.step(actions)
            if progress is not None:
                progress.advance(task, len(chunk))
        out.extend(core.metrics())
    if progress is not None:
        progress.remove_task(task)
    return out


def summarise(values: Sequence[float]) -> dict:
    """Mean and 95 % confidence interval (Student t over episodes) of ``values``."""
    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if x.size < 2:
        return {"mean": mean, "ci95": [mean, mean]}
    half = float(stdtrit(x.size - 1, 0.975) * x.std(ddof=1) / math.sqrt(x.size))
    return {"mean": mean, "ci95": [mean - half, mean + half]}


def evaluate_episodes(
    scenario: Scenario,
    policies: dict[str, RoutingPolicy],
    seeds: Sequence[int],
    rng_seed: int,
    progress: Progress | None = None,
) -> dict[str, list[dict[str, float]]]:
    """Per-episode metrics of every policy, all on the episodes of ``seeds``: ``{label: [metrics, ...]}``."""
    return {
        label: run_policy(scenario, policy, seeds, rng_seed=rng_seed, progress=progress, label=label)
        for label, policy in policies.items()
    }


def result_object(scenario_label: str, label: str, seed: int, per_episode: Sequence[dict[str, float]]) -> dict:
    """The single-policy JSON object from one policy's per-episode metrics."""
    return {
        "scenario": scenario_label,
        "policy": label,
        "episodes": len(per_episode),
        "seed": seed,
        "metrics": {m: summarise([e[m] for e in per_episode]) for m in METRIC_NAMES},
    }


def paired_differences(
    per_policy: dict[str, list[dict[str, float]]], reference: str, metrics: Sequence[str] = METRIC_NAMES
) -> list[dict]:
    """Per policy other than ``reference``: mean and 95 % CI of its per-episode difference to it.

    Every policy plays the same episodes, so the difference is taken episode by episode; the
    between-episode spread (graph, roles, traffic) cancels and the interval is much tighter than
    the difference of two independent intervals.
    """
    base = per_policy[reference]
    out = []
    for label, episodes in per_policy.items():
        if label == reference:
            continue
        diffs = {m: summarise([e[m] - b[m] for e, b in zip(episodes, base, strict=True)]) for m in metrics}
        out.append({"policy": label, "reference": reference, "metrics": diffs})
    return out


def evaluate(
    scenario: Scenario,
    policies: dict[str, RoutingPolicy],
    episodes: int,
    seed: int,
    scenario_label: str,
    progress: Progress | None = None,
) -> list[dict]:
    """One result object (the single-policy JSON shape) per policy, all on the same episodes."""
    per_policy = evaluate_episodes(scenario, policies, episode_seeds(seed, episodes), seed, progress)
    return [result_object(scenario_label, label, seed, eps) for label, eps in per_policy.items()]


# ---------------------------------------------------------------------------- output


def _cell(summary: dict) -> str:
    lo, hi = summary["ci95"]
    return f"{summary['mean']:.3f} ± {(hi - lo) / 2:.3f}"


def results_table(results: Sequence[dict], title: str) -> Table:
    """Rich table: a row per metric, a column per policy, cells ``mean ± half-width of the 95 % CI``."""
    table = Table(title=title)
    table.add_column("metric")
    for r in results:
        table.add_column(r["policy"], justify="right")
    for m in METRIC_NAMES:
        table.add_row(m, *(_cell(r["metrics"][m]) for r in results))
    return table


def suite_markdown(results: Sequence[dict], scenarios: Sequence[str], policies: Sequence[str], episodes: int) -> str:
    """Markdown: a table per metric, scenarios as rows and policies as columns, ``mean ± CI half-width``."""
    by_key = {(r["scenario"], r["policy"]): r for r in results}
    lines = [
        "# Evaluation suite",
        "",
        f"Every shipped scenario x every policy, {episodes} episodes each (the same episodes for every policy),",
        "mean ± half-width of the 95 % confidence interval (Student t).",
        "Regenerate with `python -m eval.evaluate --suite`.",
    ]
    for m in METRIC_NAMES:
        lines += ["", f"## {m}", "", "| scenario | " + " | ".join(policies) + " |"]
        lines.append("|---|" + "---:|" * len(policies))
        for s in scenarios:
            cells = [_cell(by_key[(s, p)]["metrics"][m]) if (s, p) in by_key else "-" for p in policies]
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _rounded(value, digits: int = 5):
    """``value`` with every float rounded (keeps the committed suite.json small and diffable)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return value


def _write_json(path: Path, payload: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2) + "\n")
    except OSError as err:
        raise UsageError(f"cannot write '{path}': {err.strerror or err}") from None


def _check_writable(path: Path) -> None:
    """Refuse, before any episode is played, an output file that cannot be written (a missing
    directory that cannot be made, a directory in its place, no permission): the same one-line
    error the write itself would give at the end of the run."""
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as err:
        raise UsageError(f"cannot write '{path}': {err.strerror or err}") from None
    if not existed:
        path.unlink(missing_ok=True)


def _make_progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


# ---------------------------------------------------------------------------- modes


def _scenario(
    spec: str, episode_steps: int | None, payment: str | None = None, receipts: str | None = None
) -> Scenario:
    scenario = load_scenario(spec)
    if episode_steps is not None:
        scenario = scenario.replace(episode_steps=episode_steps)
    economy = {k: v for k, v in (("payment", payment), ("receipts", receipts)) if v is not None}
    if economy:
        scenario = scenario.replace(economy=economy)
    return scenario


def _policies(specs: Sequence[str]) -> dict[str, RoutingPolicy]:
    policies: dict[str, RoutingPolicy] = {}
    for spec in specs:
        label = policy_label(spec)
        if label in policies:
            raise UsageError(f"policy '{label}' given twice")
        policies[label] = resolve_policy(spec, allow_prefix=True)
    return policies


def paired_table(paired: Sequence[dict], title: str) -> Table:
    """Rich table of paired differences: a row per metric, a column per compared policy."""
    table = Table(title=title)
    table.add_column("metric")
    for d in paired:
        table.add_column(f"{d['policy']} - {d['reference']}", justify="right")
    for m in METRIC_NAMES:
        table.add_row(m, *(_cell(d["metrics"][m]) for d in paired))
    return table


def run_single(args: argparse.Namespace, out: Console, err: Console) -> None:
    """``--scenario`` + ``--policy`` mode."""
    scenario = _scenario(args.scenario, args.episode_steps, args.payment, args.receipts)
    policies = _policies(args.policy)
    if args.json:
        _check_writable(args.json)
    seed = scenario.seed if args.seed is None else args.seed
    with _make_progress(err) as progress:
        per_policy = evaluate_episodes(scenario, policies, episode_seeds(seed, args.episodes), seed, progress)
    results = [result_object(args.scenario, label, seed, eps) for label, eps in per_policy.items()]
    title = f"{args.scenario} (adversaries: {scenario.adversary_summary()}): {args.episodes} episodes from seed {seed}"
    out.print(results_table(results, f"{title}, mean ± 95% CI"))
    paired = paired_differences(per_policy, results[0]["policy"]) if len(results) > 1 else []
    if paired:
        title = f"paired difference to {results[0]['policy']} on the same episodes, mean ± 95% CI"
        out.print(paired_table(paired, title))
    if args.json:
        if len(results) == 1:
            payload = results[0]
        else:
            payload = {
                "scenario": args.scenario,
                "episodes": args.episodes,
                "seed": seed,
                "results": results,
                "paired": paired,
            }
        _write_json(args.json, payload)
        err.print(f"wrote {args.json}")
    if args.png:
        from eval.plots import metric_bars

        paths = metric_bars(results, METRIC_NAMES, args.png, args.scenario)
        err.print(f"wrote {len(paths)} charts to {args.png}")


def suite_policies(checkpoint: Path = DEFAULT_CHECKPOINT) -> tuple[dict[str, RoutingPolicy], str | None]:
    """Every baseline, plus ``checkpoint`` when it exists and loads; and a note if it did not load."""
    order = [n for n in SUITE_ORDER if n in BASELINES] + [n for n in BASELINES if n not in SUITE_ORDER]
    policies = {name: resolve_policy(name) for name in order}
    note = None
    if checkpoint.is_dir():
        try:
            policies[f"checkpoints/{checkpoint.name}"] = resolve_policy(checkpoint, allow_prefix=True)
        except PolicyError as error:
            note = f"skipped {checkpoint}: {error}"
    return policies, note


def run_suite(args: argparse.Namespace, out: Console, err: Console) -> None:
    """``--suite`` mode: every shipped scenario x every baseline (+ the default checkpoint)."""
    policies, note = suite_policies()
    if note:
        err.print(note)
    scenarios = shipped_scenarios()
    results: list[dict] = []
    with _make_progress(err) as progress:
        overall = progress.add_task("suite", total=len(scenarios))
        for name in scenarios:
            scenario = _scenario(name, args.episode_steps, args.payment, args.receipts)
            seed = scenario.seed if args.seed is None else args.seed
            results += evaluate(scenario, policies, args.episodes, seed, name, progress)
            progress.advance(overall)
    labels = list(policies)
    target: Path = args.results
    _write_json(target / "suite.json", {"episodes": args.episodes, "results": _rounded(results)})
    try:
        (target / "suite.md").write_text(suite_markdown(results, scenarios, labels, args.episodes))
    except OSError as error:
        raise UsageError(f"cannot write '{target / 'suite.md'}': {error.strerror or error}") from None
    from eval.plots import suite_bars

    for m in METRIC_NAMES:
        title = f"{m} per scenario, {args.episodes} episodes, 95% CI"
        suite_bars(results, scenarios, labels, m, target / f"suite_{m}.png", title)
    table = Table(title=f"suite: delivery_rate, {args.episodes} episodes, mean ± 95% CI")
    table.add_column("scenario")
    for p in labels:
        table.add_column(p, justify="right")
    by_key = {(r["scenario"], r["policy"]): r for r in results}
    for s in scenarios:
        table.add_row(s, *(_cell(by_key[(s, p)]["metrics"]["delivery_rate"]) for p in labels))
    out.print(table)
    err.print(f"wrote {target}/suite.json, suite.md and {len(METRIC_NAMES)} charts")


def run_learning_curve(args: argparse.Namespace, err: Console) -> None:
    """``--learning-curve`` mode."""
    from eval.plots import RunLogError, learning_curve

    run_dir: Path = args.learning_curve
    out_dir = args.png or run_dir
    path = out_dir / f"learning_curve_{args.scalar.replace('/', '_')}.png"
    try:
        learning_curve(run_dir, args.scalar, path)
    except RunLogError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"cannot write '{path}': {error.strerror or error}") from None
    err.print(f"wrote {path}")


# ---------------------------------------------------------------------------- CLI


def _episodes(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError("at least 2 episodes are needed for a confidence interval")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m eval.evaluate`` argument parser."""
    p = OneLineParser(
        prog="python -m eval.evaluate",
        description="Evaluate routing policies on a mesh scenario: every policy plays the same episodes; "
        "reports the mean and 95% confidence interval (Student t over episodes) of every metric.",
    )
    p.add_argument(
        "--scenario",
        metavar="NAME_OR_PATH",
        help=f"shipped scenario name ({', '.join(shipped_scenarios())}) or a YAML file",
    )
    p.add_argument(
        "--policy",
        action="append",
        metavar="NAME_OR_DIR",
        help=f"a baseline ({', '.join(BASELINES)}) or an exported policy directory; repeat to compare several",
    )
    p.add_argument("--episodes", type=_episodes, default=20, help="episodes per policy (>= 2; default 20)")
    p.add_argument(
        "--seed",
        type=seed_arg,
        default=None,
        help="episode k uses seed SEED + k (default: the scenario's own seed); also seeds the random policy",
    )
    p.add_argument(
        "--episode-steps",
        type=positive_int,
        default=None,
        metavar="N",
        help="override the scenarios' episode_steps (quick checks; the default keeps each scenario's)",
    )
    p.add_argument(
        "--payment",
        choices=PAYMENT_MODES,
        default=None,
        help="override the scenarios' economy.payment: on_delivery (hops paid when the receipt comes back) "
        "or per_hop (paid at each hand-over); default: each scenario's own (on_delivery unless set)",
    )
    p.add_argument(
        "--receipts",
        choices=RECEIPT_MODES,
        default=None,
        help="override the scenarios' economy.receipts: signed (forged delivery claims are rejected) or "
        "unsigned (a forger's claim is believed); default: each scenario's own (signed unless set)",
    )
    p.add_argument("--json", type=Path, metavar="OUT", help="write the results as JSON to this file")
    p.add_argument(
        "--png",
        type=Path,
        metavar="DIR",
        help="write one bar chart per metric (a bar per policy, 95%% CI) to DIR/<metric>.png; "
        "with --learning-curve, also where its PNG goes",
    )
    p.add_argument(
        "--suite",
        action="store_true",
        help="evaluate every shipped scenario with every baseline (plus checkpoints/default if it loads) and "
        "write suite.json, suite.md and suite_<metric>.png to --results",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=DEFAULT_RESULTS,
        metavar="DIR",
        help="output directory of --suite (default: eval/results)",
    )
    p.add_argument(
        "--learning-curve",
        type=Path,
        metavar="RUN_DIR",
        help="plot --scalar from the tensorboard event files under RUN_DIR to "
        "learning_curve_<scalar>.png in --png DIR (default: RUN_DIR)",
    )
    p.add_argument(
        "--scalar",
        default="charts/delivery_rate",
        help="tensorboard scalar tag for --learning-curve (default: charts/delivery_rate)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on a user mistake, with a one-line message)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    single = args.scenario is not None or args.policy is not None
    if single and (args.scenario is None or not args.policy):
        parser.error("--scenario and --policy go together")
    if not (single or args.suite or args.learning_curve):
        parser.error("nothing to do: give --scenario and --policy, --suite, or --learning-curve")
    # Piped output (logs, CI) gets a wide table instead of rich's 80-column default.
    out = Console() if sys.stdout.isatty() else Console(width=160)
    err = Console(stderr=True)
    try:
        if single:
            run_single(args, out, err)
        if args.suite:
            run_suite(args, out, err)
        if args.learning_curve:
            run_learning_curve(args, err)
    except (ScenarioError, PolicyError, UsageError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # an output path that cannot be created or written (e.g. --png is a file)
        where = f"'{error.filename}'" if error.filename else "output"
        print(f"{parser.prog}: error: cannot write {where}: {error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
