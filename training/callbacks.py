"""SB3 callbacks of a training run: environment metrics, hyper-parameters, periodic evaluation.

Checkpoints use SB3's own ``CheckpointCallback``; these add what is specific to the mesh.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import HParam

from agents.baselines import get_baseline
from envs.core import METRIC_NAMES
from training.evaluation import evaluate
from training.policy import TorchRoutingPolicy


class MeshMetricsCallback(BaseCallback):
    """Log each finished episode's mesh metrics (``infos[i]["mesh_metrics"]``) under ``charts/``.

    All meshes of the vector end on the same step, so one record per metric per episode batch:
    the mean over the meshes that just ended. Also logs ``charts/episodic_return`` (mean agent
    return) and ``charts/reward_clipped`` (rewards the env guard had to clip).
    """

    def _on_step(self) -> bool:
        infos = self.locals.get("infos", ())
        rows = [info["mesh_metrics"] for info in infos if "mesh_metrics" in info]
        if rows:
            for name in (*METRIC_NAMES, "generated", "delivered", "dropped", "expired"):
                self.logger.record(f"charts/{name}", float(np.mean([r[name] for r in rows])))
            returns = [info["episode"]["r"] for info in infos if "episode" in info]
            if returns:
                self.logger.record("charts/episodic_return", float(np.mean(returns)))
            guard = _find_attr(self.training_env, "pop_clipped")
            if guard is not None:
                self.logger.record("charts/reward_clipped", guard())
        return True


def _find_attr(env: Any, name: str) -> Any:
    """``env.name`` on the first wrapper of the chain that has it, else None."""
    while env is not None:
        if name in vars(type(env)) or name in vars(env):
            return getattr(env, name)
        env = getattr(env, "venv", None)
    return None


class HParamsCallback(BaseCallback):
    """Write the run's hyper-parameters as tensorboard's hparams table at the start of training.

    :param hparams: flat ``{name: value}`` (values: numbers, strings, booleans).
    """

    def __init__(self, hparams: dict[str, Any]) -> None:
        super().__init__()
        self.hparams = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}

    def _on_training_start(self) -> None:
        metrics = {"charts/delivery_rate": 0.0, "charts/welfare": 0.0, "eval/delivery_rate_gain": 0.0}
        self.logger.record("hparams", HParam(self.hparams, metrics), exclude=("stdout", "log", "json", "csv"))

    def _on_step(self) -> bool:
        return True


class SeedComparisonCallback(BaseCallback):
    """Every ``every`` agent-steps, play the greedy policy and ``seed`` on fixed episodes.

    Logs ``eval/delivery_rate_<scenario>`` and ``eval/welfare_<scenario>`` for the learned policy,
    the same for seed under ``eval/seed_...``, and ``eval/delivery_rate_gain`` (mean over scenarios
    of learned minus seed). Evaluation episodes start at ``offset`` so they differ from the
    acceptance episodes.

    :param scenarios: scenario names or paths.
    :param every: agent-steps between evaluations.
    :param episodes: episodes per scenario.
    :param offset: first episode index.
    """

    def __init__(self, scenarios: Sequence[str], every: int, episodes: int = 20, offset: int = 10_000) -> None:
        super().__init__()
        self.scenarios, self.every, self.episodes, self.offset = list(scenarios), every, episodes, offset
        self._next = every

    def _on_step(self) -> bool:
        if self.every > 0 and self.num_timesteps >= self._next:
            self._next = self.num_timesteps + self.every
            self.run_evaluation()
        return True

    def run_evaluation(self) -> dict:
        """Evaluate now and log; returns the ``training.evaluation.evaluate`` result."""
        learned = TorchRoutingPolicy(self.model.policy, "learned")
        result = evaluate([learned, get_baseline("seed")], self.scenarios, self.episodes, self.offset)
        gains = []
        for scenario, per_policy in result.items():
            for metric in ("delivery_rate", "welfare"):
                self.logger.record(f"eval/{metric}_{scenario}", per_policy["learned"][metric]["mean"])
                self.logger.record(f"eval/seed_{metric}_{scenario}", per_policy["seed"][metric]["mean"])
            gains.append(per_policy["learned"]["delivery_rate"]["mean"] - per_policy["seed"]["delivery_rate"]["mean"])
        self.logger.record("eval/delivery_rate_gain", float(np.mean(gains)))
        return result
