"""TorchRL view of :class:`~envs.parallel.MeshEconomyEnv` (needs the ``[marl]`` extra).

TorchRL's own ``PettingZooWrapper`` takes the environment as it is (flat scalar ``infos``,
``observation`` / ``action_mask`` keys); :func:`make_torchrl_env` only fills in the arguments
that suit it: categorical actions, the action mask read from the observation, a seed::

    from envs.torchrl import make_torchrl_env
    from torchrl.envs.utils import check_env_specs

    env = make_torchrl_env("default", seed=0)
    check_env_specs(env)
    rollout = env.rollout(50)  # rollout["agents", "observation", "observation"]: (50, H, 8, N_FEATURES)

All honest nodes form one group, ``"agents"``; the mask is under ``("agents", "action_mask")``.
"""

from __future__ import annotations

from typing import Any

from torchrl.envs.libs.pettingzoo import PettingZooWrapper

from envs.parallel import MeshEconomyEnv
from envs.scenario import Scenario

#: The one agent group: every honest node shares it (parameter sharing is the default in TorchRL).
GROUP = "agents"


def make_torchrl_env(
    scenario: str | dict | Scenario = "default",
    seed: int | None = None,
    flat_obs: bool = False,
    device: str = "cpu",
    **wrapper_kwargs: Any,
) -> PettingZooWrapper:
    """A TorchRL ``PettingZooWrapper`` around a fresh :class:`MeshEconomyEnv`.

    :param scenario: scenario name, YAML path, dict or :class:`~envs.scenario.Scenario`.
    :param seed: seed of the first reset (``None``: fresh entropy).
    :param flat_obs: 1-D observations (``SLOTS * N_FEATURES``) for MLP-only libraries.
    :param device: torch device of the tensors.
    :param wrapper_kwargs: passed on to ``PettingZooWrapper`` (override the defaults here).
    """
    env = MeshEconomyEnv(scenario, flat_obs=flat_obs)
    kwargs: dict[str, Any] = {
        "categorical_actions": True,
        "use_mask": False,  # every agent acts until the shared truncation: no agent leaves early
        "group_map": {GROUP: list(env.possible_agents)},
        "device": device,
    }
    kwargs.update(wrapper_kwargs)
    wrapped = PettingZooWrapper(env, **kwargs)
    if seed is not None:
        wrapped.set_seed(seed)
    return wrapped


__all__ = ["GROUP", "make_torchrl_env"]
