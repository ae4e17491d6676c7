"""``python -m eval.sim2real``: the sim-to-real gap, measured episode by episode.

Each seed's episode of a scenario is played twice per policy: in the environment
(:class:`envs.core.MeshCore`, the episode ``build_mesh(scenario, seed)``) and live
(``python -m runtime.mesh --scenario S --seed SEED``: node processes, TCP, vouchers on anvil),
which builds the very same mesh (:mod:`runtime.node.scenario_plan`). Per policy it reports each
metric's mean and 95 % CI in both worlds and the gap ``live - sim`` paired by seed; per policy
after the first, its paired advantage over the first in each world. ``--json OUT``::

    {"scenario", "nodes", "step_ms", "seeds": [...], "machine": {...},
     "results": [{"policy", "sim": {metric: {"mean", "ci95"}}, "live": {...}, "gap": {...},
                  "per_seed": [{"seed", "sim": {...}, "live": {...}, "clock_lag": {...},
                                "live_counts": {"duplicate_pieces", "delivered_late", "pieces_sent"}}]}],
     "advantage": [{"policy", "reference", "sim": {metric: {...}}, "live": {...}}]}

Metrics: ``delivery_rate`` (on-time deliveries over pieces resolved: the live mesh emits for one
episode and then runs the tail its last pieces need, so every piece it emitted is resolved),
``dishonest_share`` (share of hops taken by dishonest nodes), ``mean_latency`` (steps from birth to
on-time delivery) and ``dishonest_payments_share`` (share of the forwarding money dishonest nodes
were paid: the environment's payments, the live vouchers their payees hold).

The live mesh runs on this machine's CPUs: each live run's ``clock_lag`` says how often the nodes
served a piece more than a step after their emulated clock (a loaded machine turns lateness into
losses the environment does not have).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["METRICS", "gap_report", "live_metrics", "main", "markdown", "print_side_by_side", "sim_metrics"]

REPO_ROOT = Path(__file__).resolve().parent.parent
#: metric -> what it is, in the units both worlds report
METRICS = {
    "delivery_rate": "on-time deliveries / pieces resolved",
    "dishonest_share": "share of hops taken by dishonest nodes",
    "mean_latency": "steps from birth to on-time delivery",
    "dishonest_payments_share": "share of forwarding payments to dishonest nodes",
}
#: seconds a live run may take beyond its streaming (startup, settlement) before it is given up
LIVE_OVERHEAD_S = 240.0


class UsageError(ValueError):
    """A user mistake reported as one line with exit status 2."""


def scenario_of(spec: str, nodes: int | None):
    """The scenario ``spec`` (a shipped name or a YAML file), resized to ``nodes`` if given."""
    from envs.scenario import load_scenario

    scenario = load_scenario(spec)
    return scenario.replace(nodes=nodes) if nodes is not None else scenario


def sim_metrics(scenario, policy_spec: str, seed: int) -> dict[str, float]:
    """The environment's metrics of ``policy_spec`` on the episode ``seed`` of ``scenario``."""
    from agents.policies import resolve_policy
    from eval.evaluate import run_policy

    m = run_policy(scenario, resolve_policy(policy_spec), [seed])[0]
    return {k: float(m[k]) for k in METRICS}


def live_metrics(report: dict) -> dict[str, float]:
    """The same metrics from a ``runtime.mesh`` report."""
    earned = report.get("earned_wei_by_kind", {})
    total = sum(earned.values())
    dishonest = total - earned.get("honest", 0)
    return {
        "delivery_rate": float(report["delivery_rate"]),
        "dishonest_share": float(report["dishonest_share"]),
        "mean_latency": float(report.get("mean_latency_steps", 0.0)),
        "dishonest_payments_share": dishonest / total if total else 0.0,
    }


def run_live(scenario_spec: str, nodes: int | None, policy_spec: str, seed: int, step_ms: float, workdir: Path) -> dict:
    """Play episode ``seed`` live (``python -m runtime.mesh --scenario``) and return its report."""
    out = workdir / f"live-{seed}-{policy_spec.replace('/', '_')}.json"
    cmd = [sys.executable, "-m", "runtime.mesh", "--scenario", scenario_spec, "--seed", str(seed),
           "--policy", policy_spec, "--step-ms", f"{step_ms:g}", "--operators", "0", "--quiet",
           "--json", str(out), "--workdir", str(workdir / f"mesh-{seed}-{policy_spec.replace('/', '_')}")]  # fmt: skip
    if nodes is not None:
        cmd += ["--nodes", str(nodes)]
    scenario = scenario_of(scenario_spec, nodes)
    timeout = scenario.episode_steps * step_ms / 1000.0 + LIVE_OVERHEAD_S
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"live run of seed {seed} with {policy_spec} failed: {tail}")
    return json.loads(out.read_text())


def _summary(values: Sequence[float]) -> dict:
    from eval.evaluate import summarise

    return summarise(values)


def gap_report(
    scenario_name: str, seeds: Sequence[int], per_policy: dict[str, list[dict]], nodes: int, step_ms: float
) -> dict:
    """The JSON object (see the module docstring) from ``{policy: [{"seed", "sim", "live", ...}]}``."""
    results = []
    for policy, runs in per_policy.items():
        results.append(
            {
                "policy": policy,
                "sim": {m: _summary([r["sim"][m] for r in runs]) for m in METRICS},
                "live": {m: _summary([r["live"][m] for r in runs]) for m in METRICS},
                "gap": {m: _summary([r["live"][m] - r["sim"][m] for r in runs]) for m in METRICS},
                "per_seed": runs,
            }
        )
    advantage = []
    labels = list(per_policy)
    ref = labels[0]
    for policy in labels[1:]:
        pairs = list(zip(per_policy[policy], per_policy[ref], strict=True))
        advantage.append(
            {
                "policy": policy,
                "reference": ref,
                **{w: {m: _summary([a[w][m] - b[w][m] for a, b in pairs]) for m in METRICS} for w in ("sim", "live")},
            }
        )
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "scenario": scenario_name,
        "nodes": nodes,
        "step_ms": step_ms,
        "seeds": list(seeds),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": [round(x, 2) for x in load]},
        "results": results,
        "advantage": advantage,
    }


def _cell(s: dict, digits: int = 3) -> str:
    lo, hi = s["ci95"]
    return f"{s['mean']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def print_report(report: dict, stream=None) -> None:
    """Rich tables of a :func:`gap_report`: per policy sim, live and gap; then the advantages."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=stream) if stream is not None else Console(width=160)
    for r in report["results"]:
        t = Table(title=f"{report['scenario']} ({report['nodes']} nodes, seeds {report['seeds']}) - {r['policy']}")
        for col in ("metric", "sim", "live", "gap live - sim"):
            t.add_column(col, justify="right")
        for m in METRICS:
            t.add_row(m, _cell(r["sim"][m]), _cell(r["live"][m]), _cell(r["gap"][m]))
        console.print(t)
    for a in report["advantage"]:
        t = Table(title=f"advantage of {a['policy']} over {a['reference']} (paired by seed)")
        for col in ("metric", "sim", "live"):
            t.add_column(col, justify="right")
        for m in METRICS:
            t.add_row(m, _cell(a["sim"][m]), _cell(a["live"][m]))
        console.print(t)


def markdown(report: dict, metrics: Sequence[str] = ("delivery_rate", "dishonest_share", "mean_latency")) -> str:
    """A markdown table of a :func:`gap_report`: per policy and metric, sim, live and the paired gap."""
    rows = ["| policy | metric | sim | live | gap live - sim (95 % CI) |", "|---|---|---:|---:|---:|"]
    for r in report["results"]:
        for m in metrics:
            g = r["gap"][m]
            rows.append(
                f"| `{r['policy']}` | {m} | {r['sim'][m]['mean']:.3f} | {r['live'][m]['mean']:.3f} "
                f"| {g['mean']:+.3f} [{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}] |"
            )
    for a in report["advantage"]:
        for w in ("sim", "live"):
            d = a[w]["delivery_rate"]
            rows.append(
                f"| `{a['policy']}` - `{a['reference']}` | delivery advantage, {w} | | | "
                f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] |"
            )
    return "\n".join(rows)


def print_side_by_side(report: dict, scenario_spec: str, nodes: int | None, seed: int, policy: str) -> None:
    """After a live ``runtime.mesh --scenario`` run: the simulation of the same seed beside it."""
    from rich.console import Console
    from rich.table import Table

    scenario = scenario_of(scenario_spec, nodes)
    sim = sim_metrics(scenario, policy, seed)
    live = live_metrics(report)
    t = Table(title=f"{scenario.name}, seed {seed}, {policy}: the environment's episode beside the live mesh")
    for col in ("metric", "sim", "live", "live - sim"):
        t.add_column(col, justify="right")
    for m in METRICS:
        t.add_row(m, f"{sim[m]:.3f}", f"{live[m]:.3f}", f"{live[m] - sim[m]:+.3f}")
    Console(width=120).print(t)
    lag = report.get("clock_lag", {})
    if lag.get("ingests"):
        share = lag["late_by_over_a_step"] / lag["ingests"]
        print(
            f"clock lag: {share:.1%} of {lag['ingests']} ingests served more than a step late "
            f"(max {lag['max_s'] * 1000:.0f} ms): {'the machine kept up' if share < 0.01 else 'the CPU fell behind'}"
        )


def plot(report: dict, path: Path) -> Path:
    """A figure per metric: sim and live bars per policy with their 95 % CIs, written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = list(METRICS)
    fig, axes = plt.subplots(2, len(metrics), figsize=(4 * len(metrics), 6.6))
    labels = [r["policy"] for r in report["results"]]
    x = np.arange(len(labels))

    def bars(ax, key: str, m: str, offset: float, width: float, label: str) -> None:
        means = np.array([r[key][m]["mean"] for r in report["results"]])
        lo = np.array([r[key][m]["ci95"][0] for r in report["results"]])
        hi = np.array([r[key][m]["ci95"][1] for r in report["results"]])
        ax.bar(x + offset, means, width, yerr=np.vstack([means - lo, hi - means]), capsize=3, label=label)

    for col, m in enumerate(metrics):
        top, bottom = axes[0, col], axes[1, col]
        for k, world in enumerate(("sim", "live")):
            bars(top, world, m, (k - 0.5) * 0.38, 0.38, world)
        bars(bottom, "gap", m, 0.0, 0.5, "live - sim")
        bottom.axhline(0.0, color="black", linewidth=0.8)
        for ax in (top, bottom):
            ax.set_xticks(x, [label.replace("checkpoints/", "") for label in labels])
        top.set_title(m, fontsize=10)
        bottom.set_title(f"{m}: live - sim (paired)", fontsize=9)
    axes[0, 0].legend()
    fig.suptitle(f"sim vs live: {report['scenario']}, {report['nodes']} nodes, {len(report['seeds'])} seeds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.sim2real",
        description="Measure the sim-to-real gap: play each seed's episode of a scenario in the environment and as a "
        "live mesh of node processes on anvil (the same graph, roles, streams and adversaries), per policy, and "
        "report delivery, dishonest share of hops, latency and payments to cheats in both worlds with the gap "
        "(live - sim, paired by seed) and each policy's paired advantage over the first.",
    )
    parser.add_argument("--scenario", required=True, help="a shipped scenario name (default, blackholes, ...) or YAML")
    parser.add_argument(
        "--policy",
        action="append",
        required=True,
        help="a routing policy (seed, shortest, random, or an exported directory such as checkpoints/default); "
        "repeat to compare: the first is the reference of the advantages",
    )
    parser.add_argument("--seeds", type=int, default=3, help="episodes (seeds SEED-BASE, SEED-BASE+1, ...; default 3)")
    parser.add_argument("--seed-base", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--nodes", type=int, help="resize the scenario to this many nodes (default: its own)")
    parser.add_argument(
        "--step-ms", type=float, default=50.0, help="wall-clock milliseconds of one environment step (default 50)"
    )
    parser.add_argument("--json", type=Path, help="write the report to this JSON file")
    parser.add_argument("--plot", type=Path, help="write the sim/live bar chart to this PNG (default: next to --json)")
    parser.add_argument("--workdir", type=Path, help="directory for the live runs (default: a new one under runs/)")
    parser.add_argument(
        "--beside",
        type=Path,
        metavar="REPORT",
        help="no live run: print the environment's episode SEED-BASE of --scenario (one --policy) beside the "
        "finished live run whose `runtime.mesh --json` report this is (what `make mesh` does after its run)",
    )
    return parser


def _beside(args: argparse.Namespace) -> None:
    """``--beside REPORT``: the simulation of the seed a finished live run played, printed beside it."""
    from runtime.configfile import ConfigError, read_bounded_text

    if len(args.policy) != 1:
        raise UsageError("--beside takes exactly one --policy (the one the live run used)")
    try:
        text, _ = read_bounded_text(args.beside, 64 * 1024 * 1024, f"--beside {args.beside}")
        report = json.loads(text)
        live_metrics(report)
    except ConfigError as err:
        raise UsageError(str(err)) from None
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise UsageError(f"--beside {args.beside}: not a runtime.mesh --json report ({err})") from err
    print_side_by_side(report, args.scenario, args.nodes, args.seed_base, args.policy[0])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on a user mistake, with a one-line message)."""
    from agents.policies import PolicyError, resolve_policy
    from envs.scenario import ScenarioError
    from runtime.node.scenario_plan import ScenarioPlanError, plan_from_scenario

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if not 1 <= args.seeds <= 100:
            raise UsageError(f"--seeds must be in 1..100, got {args.seeds}")
        if args.step_ms <= 0:
            raise UsageError(f"--step-ms must be > 0, got {args.step_ms:g}")
        if len(set(args.policy)) != len(args.policy):
            raise UsageError("--policy: a policy is given twice")
        if args.beside is not None:
            _beside(args)
            return 0
        for spec in args.policy:
            if spec == "oracle":
                raise UsageError("--policy oracle needs the simulator's privileged view; a live node cannot run it")
            resolve_policy(spec)
        scenario = scenario_of(args.scenario, args.nodes)
        plan_from_scenario(scenario, args.seed_base, args.step_ms)  # refuses what cannot be played live
        seeds = list(range(args.seed_base, args.seed_base + args.seeds))
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sim2real-", dir=REPO_ROOT / "runs"))
        workdir.mkdir(parents=True, exist_ok=True)
        per_policy: dict[str, list[dict]] = {p: [] for p in args.policy}
        for seed in seeds:
            for policy in args.policy:
                sim = sim_metrics(scenario, policy, seed)
                live_report = run_live(args.scenario, args.nodes, policy, seed, args.step_ms, workdir)
                live = live_metrics(live_report)
                lag = live_report["clock_lag"]
                counts = {k: live_report.get(k, 0) for k in ("duplicate_pieces", "delivered_late", "pieces_sent")}
                run = {"seed": seed, "sim": sim, "live": live, "clock_lag": lag, "live_counts": counts}
                per_policy[policy].append(run)
                print(
                    f"seed {seed} {policy}: delivery sim {sim['delivery_rate']:.3f} live {live['delivery_rate']:.3f}, "
                    f"clock lag {lag['late_by_over_a_step']}/{lag['ingests']}",
                    file=sys.stderr,
                    flush=True,
                )
        report = gap_report(scenario.name, seeds, per_policy, scenario.nodes, args.step_ms)
    except (ScenarioError, ScenarioPlanError, PolicyError, UsageError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    except (RuntimeError, subprocess.TimeoutExpired) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    print_report(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    png = args.plot or (args.json.with_suffix(".png") if args.json else None)
    if png is not None:
        print(f"wrote {plot(report, png)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
