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

from agents.baselines import RoutingPolicy
from envs.core import MeshCore
from envs.scenario import Scenario, as_scenario
from training.paths import CONF_DIR, ROOT, project_path

#: Metrics summarised by :func:`evaluate` (all of ``envs.core.METRIC_NAMES`` that a comparison needs).
SUMMARY_METRICS = ("delivery_rate", "welfare", "mean_latency", "dishonest_share", "dishonest_payments_share")


def run_episodes(policy: RoutingPolicy, scenario: str | Scenario, episodes: int = 20, offset: int = 0) -> list[dict]:
    """Per-episode metrics of ``policy`` on ``episodes`` fixed episodes of ``scenario``.

    :param policy: anything with the baselines' ``act`` signature (a baseline, a ``NumpyPolicy``).
    :param scenario: name, path or :class:`~envs.scenario.Scenario`.
    :param episodes: number of episodes (meshes stepped together).
    :param offset: first episode index (seeds ``scenario.seed + offset + k``).
    """
    sc = as_scenario(scenario)
    core = MeshCore([sc], n_meshes=episodes, seed=sc.seed)
    core.reset(episode_seeds=[sc.seed + offset + k for k in range(episodes)])
    rng = np.random.default_rng(sc.seed + offset)
    for _ in range(core.episode_steps):
        obs = core.agent_observation()
        oracle = core.oracle_slots() if policy.needs_oracle else None
        core.step(policy.act(obs.features, obs.action_mask, rng=rng, oracle_actions=oracle))
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
    policies: Sequence[RoutingPolicy], scenarios: Sequence[str | Scenario], episodes: int = 20, offset: int = 0
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``{scenario: {policy: {metric: {mean, lo, hi, n}}}}`` over the same episodes for every policy."""
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for scenario in scenarios:
        sc = as_scenario(scenario)
        per_policy = {}
        for policy in policies:
            rows = run_episodes(policy, sc, episodes, offset)
            per_policy[policy.name] = {m: mean_ci([r[m] for r in rows]) for m in SUMMARY_METRICS}
        out[sc.name] = per_policy
    return out


def verdict(a: dict[str, float], b: dict[str, float], higher_is_better: bool = True) -> str:
    """``better`` / ``worse`` when the 95 % CIs do not overlap, else ``tie``."""
    if a["lo"] > b["hi"]:
        return "better" if higher_is_better else "worse"
    if a["hi"] < b["lo"]:
        return "worse" if higher_is_better else "better"
    return "tie"


def comparison_table(
    results: dict, candidate: str, reference: str, metrics: Sequence[str] = ("delivery_rate", "welfare")
) -> str:
    """A plain-text table: candidate vs reference per scenario and metric, with the CI verdict."""
    lines = [f"{'scenario':<14} {'metric':<14} {candidate:>22} {reference:>22}  verdict"]
    for scenario, per_policy in results.items():
        for m in metrics:
            a, b = per_policy[candidate][m], per_policy[reference][m]

            def fmt(s: dict[str, float]) -> str:
                return f"{s['mean']:.3f} [{s['lo']:.3f},{s['hi']:.3f}]"

            lines.append(f"{scenario:<14} {m:<14} {fmt(a):>22} {fmt(b):>22}  {verdict(a, b)}")
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
        scenarios = ["honest", "blackholes", "liars", "overpricers", "mixed_heavy", "default"]
        scenarios += [str(p.relative_to(ROOT)) for p in sorted((CONF_DIR / "heldout").glob("*.yaml"))]
    if isinstance(policy, SlotScorerPolicy):
        policy = TorchRoutingPolicy(policy, "learned")
    scenarios = [s if Path(s).suffix == "" else str(project_path(s)) for s in scenarios]
    result = evaluate([policy, get_baseline("seed")], scenarios, episodes)
    return {"episodes": episodes, "episode_seeds": "scenario.seed + k, k < episodes", "results": result}
