"""TorchRL takes the environment as it is: ``PettingZooWrapper`` + ``check_env_specs`` + a rollout."""

from __future__ import annotations

import numpy as np

from agents.features import N_FEATURES
from tests.integrations.conftest import SHORT_STEPS, require


def test_torchrl_pettingzoo_wrapper_takes_the_env_as_it_is(short_scenario):
    require("torchrl")
    from torchrl.envs.libs.pettingzoo import PettingZooWrapper
    from torchrl.envs.utils import check_env_specs

    from envs.parallel import MeshEconomyEnv

    env = PettingZooWrapper(MeshEconomyEnv(short_scenario), categorical_actions=True, seed=0)
    check_env_specs(env)
    rollout = env.rollout(SHORT_STEPS + 5, break_when_any_done=False)
    group = next(iter(env.group_map))
    n_agents = len(env.group_map[group])
    obs = rollout[group, "observation", "observation"]
    assert obs.shape == (SHORT_STEPS + 5, n_agents, 8, N_FEATURES)
    active = rollout["next", group, "info", "active"].bool()
    mask = rollout[group, "action_mask"]
    assert 0 < active.float().mean() < 1
    # idle agents (nothing to route) carry a single valid action through TorchRL too
    idle_masks = mask[1:][~active[:-1]]
    assert (idle_masks.sum(-1) == 1).all() and idle_masks[:, 0].all()
    assert rollout["next", "done"].any(), "the episode never ended"


def test_shipped_torchrl_helper_gives_flat_observations_and_is_seeded(short_scenario):
    require("torchrl")
    from torchrl.envs.utils import check_env_specs

    from envs.torchrl import GROUP, make_torchrl_env

    env = make_torchrl_env(short_scenario, seed=3, flat_obs=True)
    check_env_specs(env)
    a = env.rollout(5)[GROUP, "observation", "observation"].numpy()
    b = make_torchrl_env(short_scenario, seed=3, flat_obs=True).rollout(5)[GROUP, "observation", "observation"].numpy()
    assert a.shape[-1] == 8 * N_FEATURES
    assert np.array_equal(a[0], b[0])
