"""BenchMARL runs MAPPO on the registered task ``openstreaming/mesh_economy`` (a few hundred frames)."""

from __future__ import annotations

import pytest

from tests.integrations.conftest import SHORT_STEPS, require


@pytest.mark.slow
def test_benchmarl_mappo_on_the_registered_task(tmp_path):
    require("benchmarl")
    import torch
    from benchmarl.algorithms import MappoConfig
    from benchmarl.environments import task_config_registry
    from benchmarl.experiment import Experiment, ExperimentConfig
    from benchmarl.models import MlpConfig

    import envs.benchmarl  # noqa: F401 - registers the task

    task = task_config_registry["openstreaming/mesh_economy"].get_task(
        {"scenario": "default", "episode_steps": SHORT_STEPS}
    )
    config = ExperimentConfig.get_from_yaml()
    config.max_n_frames = 300
    config.on_policy_collected_frames_per_batch = 100
    config.on_policy_n_envs_per_worker = 1
    config.on_policy_n_minibatch_iters = 1
    config.on_policy_minibatch_size = 50
    config.evaluation = False
    config.render = False
    config.loggers = []
    config.create_json = False
    config.checkpoint_at_end = False
    config.save_folder = str(tmp_path)
    mlp = MlpConfig.get_from_yaml()
    mlp.num_cells = [32]
    experiment = Experiment(task, MappoConfig.get_from_yaml(), mlp, critic_model_config=mlp, seed=0, config=config)
    policy = experiment.policy
    before = [p.detach().clone() for p in policy.parameters()]
    experiment.run()
    assert experiment.total_frames >= 300 and experiment.n_iters_performed == 3
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, policy.parameters(), strict=True))
