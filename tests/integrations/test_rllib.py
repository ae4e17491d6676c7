"""RLlib PPO (new API stack) with the shipped slot-scorer RLModule on a local Ray head bound to 127.0.0.1.

Ray tests hold one file lock, so two xdist workers never start two heads at once on the 2-core box.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.integrations.conftest import SHORT_STEPS, require

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ray_head():
    require("ray.rllib", "filelock")
    from filelock import FileLock

    from training.rllib import start_local_head

    with FileLock(os.path.join(tempfile.gettempdir(), "openstreaming-ray-tests.lock")):
        import ray

        start_local_head(num_cpus=2)
        try:
            yield ray
        finally:
            ray.shutdown()


@pytest.mark.slow
def test_rllib_ppo_trains_the_slot_scorer_with_masks_on_a_loopback_only_head(ray_head):
    from training.rllib import listeners, ppo_config, train

    sockets = listeners()
    processes = {s.process for s in sockets}
    assert {"gcs_server", "raylet"} <= processes, f"Ray's own processes not found among {sockets}"
    exposed = [s for s in sockets if not s.loopback]
    assert not exposed, f"Ray listens beyond loopback: {exposed}"

    config = ppo_config(
        episode_steps=SHORT_STEPS,
        env_runners=1,
        train_batch=40,
        minibatch=40,
        epochs=1,
        hidden=16,
        env_api="pettingzoo",
    )
    result = train(config, iterations=2)
    algo = result.pop("_algo")
    try:
        module = algo.get_module("shared")
        weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
        assert result["env_steps"] >= 80 and result["agent_steps"] > result["env_steps"]
        assert result["env_steps_per_s"] > 0
        # masked slots get no probability: an idle agent's single valid action, a node's degree
        import torch
        from ray.rllib.core.columns import Columns

        from envs.parallel import MeshEconomyEnv
        from envs.scenario import load_scenario

        env = MeshEconomyEnv(load_scenario("default").replace(episode_steps=SHORT_STEPS))
        obs, _ = env.reset(seed=1)
        batch = {
            Columns.OBS: {
                "observation": torch.as_tensor(np.stack([o["observation"] for o in obs.values()])),
                "action_mask": torch.as_tensor(np.stack([o["action_mask"] for o in obs.values()])),
            }
        }
        with torch.no_grad():
            logits = module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS]
        probs = torch.softmax(logits, dim=-1).numpy()
        masks = batch[Columns.OBS]["action_mask"].numpy().astype(bool)
        assert np.allclose(probs[~masks], 0.0) and np.allclose(probs.sum(-1), 1.0)
        algo.train()
        after = module.state_dict()
        assert any(not torch.equal(weights[k], after[k]) for k in weights), "a PPO iteration changed no weight"
    finally:
        algo.stop()


def test_training_rllib_help_and_bad_arguments():
    run = [sys.executable, "-m", "training.rllib"]
    help_text = subprocess.run([*run, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert help_text.returncode == 0 and "--env-runners" in help_text.stdout and "--address" in help_text.stdout
    bad = subprocess.run([*run, "--env-runners", "x"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "expected counts" in bad.stderr
    bad = subprocess.run([*run, "--scenario", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: scenario 'nope'") and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_rllib_vector_runner_steps_a_batch_of_meshes_and_learns(ray_head):
    """The default env API: one env runner samples a batch of meshes through envs.gym_vector."""
    from training.rllib import ppo_config, train

    config = ppo_config(
        episode_steps=SHORT_STEPS, env_runners=1, train_batch=40, minibatch=40, epochs=1, hidden=16, meshes=2
    )
    result = train(config, iterations=1)
    algo = result.pop("_algo")
    try:
        agents = config.mesh_agents
        # RLlib's env steps are agent slots' steps here: agent-steps = mesh-steps x honest nodes
        assert result["agent_steps"] >= 40 * agents
        assert np.isclose(result["agent_steps"], result["env_steps"] * agents)
        module = algo.get_module()
        weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
        algo.train()
        after = module.state_dict()
        assert any(not torch_equal(weights[k], after[k]) for k in weights), "a PPO iteration changed no weight"
    finally:
        algo.stop()


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))
