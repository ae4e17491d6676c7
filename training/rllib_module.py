"""The shipped slot scorer (``training.policy.SlotScorer``) as an RLlib ``RLModule`` (new API stack).

The module reads the environment's own observation dict, ``observation`` (``(8, N_FEATURES)`` rows, or the
flat ``(8 N_FEATURES,)`` of ``flat_obs=True``) and ``action_mask``: no renaming connector is needed. Scores
of masked slots get ``FLOAT_MIN`` added before the softmax, so an agent with nothing to route (a
single valid action) contributes no policy gradient. The value function is the scorer's critic
trunk and a linear head, exactly as in ``training.policy.SlotScorerPolicy``.

``model_config`` keys: ``hidden`` (64), ``depth`` (2), ``activation`` (``relu`` or ``tanh``).
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from ray.rllib.utils.torch_utils import FLOAT_MIN
from torch import nn

from agents.features import N_FEATURES, SLOTS
from training.policy import SlotScorer

DEFAULTS: dict[str, Any] = {"hidden": 64, "depth": 2, "activation": "relu"}


class SlotScorerRLModule(TorchRLModule, ValueFunctionAPI):
    """Per-neighbour slot scorer with a masked categorical over slots, plus its critic."""

    def setup(self) -> None:
        # RLlib adds its own keys (e.g. PPO's ``vf_share_layers``); only ours are read.
        config = {**DEFAULTS, **(self.model_config or {})}
        if config["activation"] not in ("relu", "tanh"):
            raise ValueError(f"model_config activation must be relu or tanh, got {config['activation']!r}")
        space = self.observation_space
        if not hasattr(space, "spaces") or {"observation", "action_mask"} - set(space.spaces):
            raise ValueError(f"SlotScorerRLModule needs a Dict(observation, action_mask) space, got {space}")
        self.scorer = SlotScorer(N_FEATURES, int(config["hidden"]), int(config["depth"]), str(config["activation"]))
        self.value_head = nn.Linear(self.scorer.latent_dim_vf, 1)

    @staticmethod
    def _rows(batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        obs = batch[Columns.OBS]
        rows = obs["observation"].float().reshape(-1, SLOTS, N_FEATURES)
        return rows, obs["action_mask"].reshape(-1, SLOTS)

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        rows, mask = self._rows(batch)
        scores = self.scorer.forward_actor(rows)
        scores = scores + torch.clamp(torch.log(mask.float()), min=FLOAT_MIN)
        return {Columns.ACTION_DIST_INPUTS: scores}

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        rows, _ = self._rows(batch)
        return self.value_head(self.scorer.forward_critic(rows)).squeeze(-1)


__all__ = ["DEFAULTS", "SlotScorerRLModule"]
