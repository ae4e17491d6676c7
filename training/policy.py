"""The learned routing policy: a per-neighbour scorer plugged into sb3-contrib's ``MaskablePPO``.

Each neighbour slot's feature row (``agents.features``, 27 columns) goes through the same small
MLP (``phi``: shared weights across slots). A *context* vector, the masked mean of the slot
embeddings, lets a slot's score depend on its rivals (DeepSets), so the scorer can say "the best
of a bad lot" while staying permutation-equivariant: permuting the slots permutes the scores.
A head maps ``[embedding_i, context]`` to one score per slot; ``MaskablePPO`` applies the action
mask and a softmax over slots. This is the origin's ``0.3/0.3/0.2/0.2`` weighted sum with the
weights learned and made non-linear.

The critic has its own trunk of the same shape and reads the masked mean and max of its slot
embeddings, so the value does not depend on slot order either. Only the actor is exported
(``training.export``); ``agents.inference`` evaluates exactly the same arithmetic with numpy.

Slots are *valid* where the ``active`` feature (column ``ACTIVE``) is 1: ``build_observation`` zeroes
the rows of masked slots and of nodes without a piece to route.
"""

from __future__ import annotations

import itertools
from functools import partial
from typing import Any

import gymnasium
import numpy as np
import torch as th
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from agents.features import FEATURE_INDEX

#: Column of the ``active`` feature: 1 on the rows of valid slots of a node with a decision.
ACTIVE = FEATURE_INDEX["active"]
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


class SlotFeatures(BaseFeaturesExtractor):
    """Pass-through extractor that keeps the ``(batch, slots, features)`` shape."""

    def __init__(self, observation_space: gymnasium.spaces.Box) -> None:
        super().__init__(observation_space, features_dim=int(np.prod(observation_space.shape)))

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return observations.float()


def _mlp(sizes: list[int], activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), activation()]
    return nn.Sequential(*layers)


class SlotScorer(nn.Module):
    """Actor and critic over neighbour slots (the ``mlp_extractor`` of :class:`SlotScorerPolicy`).

    :param n_features: feature columns per slot.
    :param hidden: width of every hidden layer.
    :param depth: layers of the per-slot trunk ``phi`` (>= 1).
    :param activation: ``relu`` or ``tanh``.
    """

    def __init__(self, n_features: int, hidden: int = 64, depth: int = 2, activation: str = "relu") -> None:
        super().__init__()
        act = ACTIVATIONS[activation]
        self.n_features, self.hidden, self.depth, self.activation = n_features, hidden, depth, activation
        self.phi = _mlp([n_features] + [hidden] * depth, act)
        self.head = _mlp([2 * hidden, hidden], act)
        self.score = nn.Linear(hidden, 1)
        self.phi_vf = _mlp([n_features] + [hidden] * depth, act)
        self.head_vf = _mlp([2 * hidden, hidden], act)
        self.latent_dim_vf = hidden

    @property
    def latent_dim_pi(self) -> int:
        return 1  # unused: scores come out per slot

    @staticmethod
    def _valid(obs: th.Tensor) -> th.Tensor:
        return obs[..., ACTIVE : ACTIVE + 1]  # (B, K, 1): exactly 1 on valid slots, 0 elsewhere

    def forward_actor(self, obs: th.Tensor) -> th.Tensor:
        """Scores ``(batch, slots)`` (logits before masking)."""
        valid = self._valid(obs)
        h = self.phi(obs)
        context = (h * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1.0)  # (B, H)
        z = self.head(th.cat([h, context.unsqueeze(1).expand_as(h)], dim=-1))
        return self.score(z).squeeze(-1)

    def forward_critic(self, obs: th.Tensor) -> th.Tensor:
        """Critic latent ``(batch, hidden)`` from the masked mean and max of slot embeddings."""
        valid = self._valid(obs)
        h = self.phi_vf(obs)
        mean = (h * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1.0)
        peak = (h * valid).amax(dim=1)
        return self.head_vf(th.cat([mean, peak], dim=-1))

    def forward(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        return self.forward_actor(obs), self.forward_critic(obs)


class SlotScorerPolicy(MaskableActorCriticPolicy):
    """``MaskableActorCriticPolicy`` whose logits are :class:`SlotScorer` slot scores.

    Extra keyword arguments (through ``policy_kwargs``):

    :param hidden: width of the scorer's hidden layers.
    :param depth: layers of the per-slot trunk.
    :param activation_name: ``relu`` or ``tanh``.
    """

    def __init__(
        self,
        observation_space: gymnasium.spaces.Space,
        action_space: gymnasium.spaces.Space,
        lr_schedule: Schedule,
        hidden: int = 64,
        depth: int = 2,
        activation_name: str = "relu",
        **kwargs: Any,
    ) -> None:
        self.hidden, self.depth, self.activation_name = hidden, depth, activation_name
        kwargs.setdefault("features_extractor_class", SlotFeatures)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(hidden=self.hidden, depth=self.depth, activation_name=self.activation_name)
        return data

    def _build_mlp_extractor(self) -> None:
        n_features = int(self.observation_space.shape[-1])
        self.mlp_extractor = SlotScorer(n_features, self.hidden, self.depth, self.activation_name)

    def _build(self, lr_schedule: Schedule) -> None:
        self._build_mlp_extractor()
        self.action_net = nn.Identity()
        self.value_net = nn.Linear(self.mlp_extractor.latent_dim_vf, 1)
        if self.ortho_init:
            scorer = self.mlp_extractor
            for module, gain in (
                (scorer.phi, np.sqrt(2)),
                (scorer.head, np.sqrt(2)),
                (scorer.score, 0.01),
                (scorer.phi_vf, np.sqrt(2)),
                (scorer.head_vf, np.sqrt(2)),
                (self.value_net, 1.0),
            ):
                module.apply(partial(self.init_weights, gain=gain))
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def slot_scores(self, obs: th.Tensor) -> th.Tensor:
        """Unmasked slot scores ``(batch, slots)`` for observations ``(batch, slots, features)``."""
        return self.mlp_extractor.forward_actor(obs.float())

    def masked_probabilities(self, obs: th.Tensor, action_mask: th.Tensor) -> th.Tensor:
        """Masked softmax over slots, the action distribution the policy samples from."""
        scores = self.slot_scores(obs)
        scores = th.where(action_mask.bool(), scores, th.full_like(scores, -1e8))
        return th.softmax(scores, dim=-1)


class TorchRoutingPolicy:
    """A :class:`SlotScorerPolicy` behind the baselines' ``act`` interface (greedy over scores).

    :param policy: the SB3 policy.
    :param name: name shown in reports.
    """

    needs_oracle = False

    def __init__(self, policy: SlotScorerPolicy, name: str = "learned") -> None:
        self.policy, self.name = policy, name

    def act(self, features, action_mask, rng=None, oracle_actions=None) -> np.ndarray:
        with th.no_grad():
            scores = self.policy.slot_scores(th.as_tensor(features)).numpy()
        return np.argmax(np.where(action_mask.astype(bool), scores, -np.inf), axis=-1)
