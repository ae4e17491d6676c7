"""Paired evaluation of routing policies on fixed episodes, with 95 % confidence intervals.

Every policy plays the same episodes (``core.reset(episode_seeds=...)``: same graphs, roles
and, thanks to the core's separate traffic stream, the same traffic), all episodes of a
scenario stepped together as one batch of meshes. Episode ``k`` of a scenario uses seed
``scenario.seed + offset + k``, the shipped convention.

``eval.evaluate`` is the project's full evaluation CLI (plots, suites); this module is the
small loop that training (``make train``, the export's summary) needs, importable without it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.attacker import AttackerPolicy
from agents.baselines import RoutingPolicy
from envs.core import MeshCore
from envs.scenario import Scenario, as_scenario
from training.paths import CONF_DIR, ROOT, project_path

#: The shipped scenarios a trained policy is compared on (``make train``, the export's summary).
ACCEPTANCE_SCENARIOS = [
    "honest",
    "blackholes",
    "liars",
    "overpricers",
    "mixed_heavy",
    "default",
    "forgers",
    "grey_holes",
    "on_off",
    "selective",
    "whitewashers",
    "churn",
    "turncoats",
    "adaptive_mix",
]
#: Metrics summarised by :func:`evaluate` (all of ``envs.core.METRIC_NAMES`` that a comparison needs).
SUMMARY_METRICS = ("delivery_rate", "welfare", "mean_latency", "dishonest_share", "dishonest_payments_share")


def run_episodes(
    policy: RoutingPolicy,
    scenario: str | Scenario,
    episodes: int = 20,
    offset: int = 0,
    attacker: AttackerPolicy | None = None,
) -> list[dict]:
    """Per-episode metrics of ``policy`` on ``episodes`` fixed episodes of ``scenario``.

    :param policy: anything with the baselines' ``act`` signature (a baseline, a ``NumpyPolicy``).
    :param scenario: name, path or :class:`~envs.scenario.Scenario`.
    :param episodes: number of episodes (meshes stepped together).
    :param offset: first episode index (seeds ``scenario.seed + offset + k``).
    :param attacker: the policy of the scenario's learned nodes (None: the null action); its draws
        come from their own generator, so the honest side's are the same with any attacker.
    """
    sc = as_scenario(scenario)
    core = MeshCore([sc], n_meshes=episodes, seed=sc.seed)
    core.reset(episode_seeds=[sc.seed + offset + k for k in range(episodes)])
    rng = np.random.default_rng(sc.seed + offset)
    attacker_rng = np.random.default_rng([sc.seed + offset, 3])
    for _ in range(core.episode_steps):
        obs = core.agent_observation()
        oracle = core.oracle_slots() if policy.needs_oracle else None
        attack = attacker.act(core.attacker_observation(), rng=attacker_rng) if attacker and core.has_learned else None
        core.step(policy.act(obs.features, obs.action_mask, rng=rng, oracle_actions=oracle), attack)
    return core.metrics()


def mean_ci(values: Sequence[float]) -> dict[str, float]:
    """Mean and 95 % confidence interval (Student t) of ``values``."""
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    mean = float(x.mean()) if n else math.nan
    if n < 2:
        return {"mean": mean, "lo": mean, "hi": mean, "n": n}
    from scipy.stats import t

    half = float(t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": n}


def evaluate(
    policies: Sequence[RoutingPolicy],
    scenarios: Sequence[str | Scenario],
    episodes: int = 20,
    offset: int = 0,
    paired: dict | None = None,
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``{scenario: {policy: {metric: {mean, lo, hi, n}}}}`` over the same episodes for every policy.

    :param paired: if given, filled with ``{scenario: {policy: {metric: {mean, lo, hi, n}}}}``: the
        mean and 95 % CI of each later policy's episode-by-episode difference to the first policy
        (``policy - first``), the sharper test of "A beats B" (as ``eval.evaluate`` reports it).
    """
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for scenario in scenarios:
        sc = as_scenario(scenario)
        per_policy = {}
        rows_of = {}
        for policy in policies:
            rows = run_episodes(policy, sc, episodes, offset)
            rows_of[policy.name] = rows
            per_policy[policy.name] = {m: mean_ci([r[m] for r in rows]) for m in SUMMARY_METRICS}
        out[sc.name] = per_policy
        if paired is not None and len(policies) > 1:
            first = rows_of[policies[0].name]
            paired[sc.name] = {
                p.name: {
                    m: mean_ci([r[m] - f[m] for r, f in zip(rows_of[p.name], first, strict=True)])
                    for m in SUMMARY_METRICS
                }
                for p in policies[1:]
            }
    return out


def verdict(a: dict[str, float], b: dict[str, float], higher_is_better: bool = True) -> str:
    """``better`` / ``worse`` when the 95 % CIs do not overlap, else ``tie``."""
    if a["lo"] > b["hi"]:
        return "better" if higher_is_better else "worse"
    if a["hi"] < b["lo"]:
        return "worse" if higher_is_better else "better"
    return "tie"


def paired_verdict(diff: dict[str, float], higher_is_better: bool = True) -> str:
    """``better`` / ``worse`` when the 95 % CI of the paired difference (candidate - reference) excludes 0."""
    if diff["lo"] > 0:
        return "better" if higher_is_better else "worse"
    if diff["hi"] < 0:
        return "worse" if higher_is_better else "better"
    return "tie"


def comparison_table(
    results: dict,
    candidate: str,
    reference: str,
    metrics: Sequence[str] = ("delivery_rate", "welfare"),
    paired: dict | None = None,
) -> str:
    """A plain-text table: candidate vs reference per scenario and metric, with a verdict.

    :param paired: the ``paired`` output of :func:`evaluate` with ``reference`` as the first policy;
        then the table shows the paired difference and the verdict is :func:`paired_verdict`
        (else the verdict compares the two intervals, :func:`verdict`).
    """

    def fmt(s: dict[str, float]) -> str:
        return f"{s['mean']:.3f} [{s['lo']:.3f},{s['hi']:.3f}]"

    head = f"{'scenario':<28} {'metric':<14} {candidate:>24} {reference:>24}"
    lines = [head + (f" {'paired difference':>26}  verdict" if paired is not None else "  verdict")]
    for scenario, per_policy in results.items():
        for m in metrics:
            a, b = per_policy[candidate][m], per_policy[reference][m]
            row = f"{scenario:<28} {m:<14} {fmt(a):>24} {fmt(b):>24}"
            if paired is not None:
                d = paired[scenario][candidate][m]
                lines.append(f"{row} {fmt(d):>26}  {paired_verdict(d)}")
            else:
                lines.append(f"{row}  {verdict(a, b)}")
    return "\n".join(lines)


def summarise(policy: Any, scenarios: list[str] | None, episodes: int) -> dict:
    """Evaluation summary for a manifest: ``policy`` (torch or numpy) vs ``seed``, CIs per metric.

    :param policy: a ``SlotScorerPolicy`` or anything with the baselines' ``act``.
    :param scenarios: names or paths (None: the shipped mix and the held-out files).
    :param episodes: episodes per scenario.
    """
    from agents.baselines import get_baseline
    from training.policy import SlotScorerPolicy, TorchRoutingPolicy

    if scenarios is None:
        scenarios = list(ACCEPTANCE_SCENARIOS)
        scenarios += [str(p.relative_to(ROOT)) for p in sorted((CONF_DIR / "heldout").glob("*.yaml"))]
    if isinstance(policy, SlotScorerPolicy):
        policy = TorchRoutingPolicy(policy, "learned")
    scenarios = [s if Path(s).suffix == "" else str(project_path(s)) for s in scenarios]
    result = evaluate([policy, get_baseline("seed")], scenarios, episodes)
    return {"episodes": episodes, "episode_seeds": "scenario.seed + k, k < episodes", "results": result}
