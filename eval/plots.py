"""Matplotlib figures of evaluation results and training runs, written as PNG files.

* :func:`metric_bars` — one bar chart per metric, a bar per policy with its 95 % CI.
* :func:`suite_bars` — one grouped bar chart per metric: scenarios on the x axis, a bar per policy.
* :func:`learning_curve` — a scalar (e.g. ``charts/delivery_rate``) of a tensorboard run against steps.

Results are the dicts :mod:`eval.evaluate` writes: ``{"policy", "scenario", "metrics": {METRIC:
{"mean", "ci95": [lo, hi]}}}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

DPI = 90


class RunLogError(ValueError):
    """A tensorboard run that cannot be plotted; ``str(err)`` is a one-line reason."""


def _errors(results: Sequence[dict], metric: str) -> tuple[np.ndarray, np.ndarray]:
    means = np.array([r["metrics"][metric]["mean"] for r in results], dtype=float)
    lo = np.array([r["metrics"][metric]["ci95"][0] for r in results], dtype=float)
    hi = np.array([r["metrics"][metric]["ci95"][1] for r in results], dtype=float)
    return means, np.vstack([means - lo, hi - means])


def metric_bars(results: Sequence[dict], metrics: Sequence[str], out_dir: Path, title: str) -> list[Path]:
    """Write ``out_dir/<metric>.png`` for each metric: a bar per result (policy) with its CI."""
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = [r["policy"] for r in results]
    colours = plt.cm.tab10(np.arange(len(results)) % 10)
    paths = []
    for metric in metrics:
        means, yerr = _errors(results, metric)
        fig, ax = plt.subplots(figsize=(max(3.5, 1.1 * len(results) + 1.5), 3.2))
        ax.bar(labels, means, yerr=yerr, capsize=4, color=colours)
        ax.set_title(f"{title}: {metric}", fontsize=9)
        ax.set_ylabel(f"{metric} (mean, 95% CI)", fontsize=8)
        ax.tick_params(labelsize=8)
        fig.tight_layout()
        path = out_dir / f"{metric}.png"
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        paths.append(path)
    return paths


def suite_bars(
    results: Sequence[dict], scenarios: Sequence[str], policies: Sequence[str], metric: str, path: Path, title: str
) -> Path:
    """Write one grouped bar chart of ``metric``: scenarios on the x axis, a bar (with CI) per policy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    by_key = {(r["scenario"], r["policy"]): r for r in results}
    x = np.arange(len(scenarios))
    width = 0.8 / max(len(policies), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(scenarios) + 1.5), 3.4))
    for i, policy in enumerate(policies):
        rows = [by_key.get((s, policy)) for s in scenarios]
        present = [j for j, r in enumerate(rows) if r is not None]
        means, yerr = _errors([rows[j] for j in present], metric)
        ax.bar(x[present] + (i - (len(policies) - 1) / 2) * width, means, width, yerr=yerr, capsize=2, label=policy)
    ax.set_xticks(x, scenarios, fontsize=8)
    ax.set_ylabel(f"{metric} (mean, 95% CI)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncols=min(len(policies), 5), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    ax.tick_params(labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def read_scalars(run_dir: Path, tag: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{event dir (relative to run_dir): (steps, values)}`` of ``tag`` in every event dir under ``run_dir``.

    :raises RunLogError: no such directory, no event files, or no event dir with ``tag``.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not run_dir.is_dir():
        raise RunLogError(f"run '{run_dir}': no such directory")
    event_dirs = sorted({p.parent for p in run_dir.rglob("events.out.tfevents*")})
    if not event_dirs:
        raise RunLogError(f"run '{run_dir}': no tensorboard event files found under it")
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    seen: set[str] = set()
    for d in event_dirs:
        acc = EventAccumulator(str(d), size_guidance={"scalars": 0})
        acc.Reload()
        tags = acc.Tags().get("scalars", [])
        seen.update(tags)
        if tag in tags:
            events = acc.Scalars(tag)
            label = str(d.relative_to(run_dir)) if d != run_dir else run_dir.name
            found[label] = (np.array([e.step for e in events]), np.array([e.value for e in events]))
    if not found:
        known = ", ".join(sorted(seen)[:12]) or "none"
        raise RunLogError(f"run '{run_dir}': no scalar '{tag}' (scalars found: {known})")
    return found


def learning_curve(run_dir: Path, tag: str, path: Path) -> Path:
    """Plot scalar ``tag`` of the tensorboard run in ``run_dir`` against the step, to ``path``."""
    series = read_scalars(run_dir, tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for label, (steps, values) in series.items():
        ax.plot(steps, values, label=label, linewidth=1.2, marker="o" if len(steps) <= 30 else None, markersize=3)
    ax.set_xlabel("environment steps", fontsize=8)
    ax.set_ylabel(tag, fontsize=8)
    ax.set_title(f"{run_dir.name}: {tag}", fontsize=9)
    if len(series) > 1:
        ax.legend(fontsize=7)
    ax.tick_params(labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
