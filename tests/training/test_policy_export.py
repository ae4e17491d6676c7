"""The scorer, its export and its numpy inference: equivariance, round trip, refusal of a wrong hash."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch as th
from sb3_contrib import MaskablePPO

from agents.features import FEATURE_INDEX, N_FEATURES, SLOTS
from agents.inference import PolicyLoadError, load_policy
from envs.core import MeshCore
from envs.scenario import as_scenario
from training.export import export_policy
from training.policy import SlotScorerPolicy
from training.vec import make_env


@pytest.fixture(scope="module")
def model() -> MaskablePPO:
    th.manual_seed(0)
    env = make_env(["liars"], n_meshes=1, seed=0)
    m = MaskablePPO(SlotScorerPolicy, env, n_steps=8, batch_size=64, policy_kwargs={"hidden": 16, "depth": 2}, seed=0)
    # Random, non-trivial weights (the default init makes scores nearly zero).
    with th.no_grad():
        for p in m.policy.mlp_extractor.parameters():
            p.normal_(0.0, 0.5)
    return m


@pytest.fixture(scope="module")
def observations() -> tuple[np.ndarray, np.ndarray]:
    """Real decisions from a mesh with dishonest nodes, after some steps of traffic."""
    core = MeshCore([as_scenario("mixed_heavy")], n_meshes=4, seed=3)
    core.reset()
    rng = np.random.default_rng(0)
    feats, masks = [], []
    for _ in range(40):
        obs = core.agent_observation()
        active = core.agent_active()
        feats.append(obs.features[active])
        masks.append(obs.action_mask[active])
        mask = obs.action_mask.astype(bool)
        core.step(np.argmax(np.where(mask, rng.random(mask.shape), -1.0), axis=1))
    return np.concatenate(feats), np.concatenate(masks)


def test_permuting_slots_permutes_scores(model, observations):
    features, _ = observations
    x = th.as_tensor(features[:64])
    perm = th.as_tensor(np.random.default_rng(1).permutation(SLOTS))
    with th.no_grad():
        scores = model.policy.slot_scores(x)
        permuted = model.policy.slot_scores(x[:, perm])
    assert scores.std() > 1e-3  # the check means something
    np.testing.assert_allclose(permuted.numpy(), scores[:, perm].numpy(), rtol=1e-5, atol=1e-5)


def test_export_round_trip_matches_torch(model, observations, tmp_path):
    features, mask = observations
    assert features.shape[1:] == (SLOTS, N_FEATURES) and len(features) > 50
    export_policy(model.policy, tmp_path, name="t", training_config={}, command="test")
    policy = load_policy(tmp_path)
    assert policy.name == "t" and policy.needs_oracle is False
    with th.no_grad():
        expected = model.policy.masked_probabilities(th.as_tensor(features), th.as_tensor(mask)).numpy()
    got = policy.probabilities(features, mask)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.all(got[mask == 0] == 0.0)
    for i in range(10):  # the single-decision fast path agrees with the batched one
        np.testing.assert_allclose(policy.probabilities(features[i], mask[i]), got[i : i + 1], atol=1e-6)
    actions = policy.act(features, mask)
    assert np.all(mask[np.arange(len(mask)), actions] == 1)
    np.testing.assert_array_equal(actions, np.argmax(np.where(mask == 1, expected, -1.0), axis=1))


def test_wrong_hash_and_broken_exports_are_refused(model, tmp_path):
    export_policy(model.policy, tmp_path, name="t", training_config={}, command="test")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["obs_spec_hash"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PolicyLoadError, match="observation-spec hash"):
        load_policy(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(PolicyLoadError, match="not valid JSON"):
        load_policy(tmp_path)
    with pytest.raises(PolicyLoadError, match="no such directory"):
        load_policy(tmp_path / "missing")


def test_agents_load_exports_without_torch(model, tmp_path):
    export_policy(model.policy, tmp_path, name="t", training_config={}, command="test")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from agents.features import FEATURE_INDEX, N_FEATURES\n"
        "from agents.inference import load_policy\n"
        f"p = load_policy({str(tmp_path)!r})\n"
        "x = np.zeros((1, 8, N_FEATURES), np.float32); x[0, :3, FEATURE_INDEX['active']] = 1\n"
        "m = np.zeros((1, 8), np.int8); m[0, :3] = 1\n"
        "print(p.act(x, m)[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() in {"0", "1", "2"}


def test_inactive_rows_are_all_zero_and_valid_slots_match_mask(observations):
    features, mask = observations
    valid = features[..., FEATURE_INDEX["active"]] > 0.5
    np.testing.assert_array_equal(valid, mask.astype(bool))
