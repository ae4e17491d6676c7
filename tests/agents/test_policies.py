"""Baselines by name, ``resolve_policy`` and its one-line errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from agents.baselines import BASELINES, get_baseline
from agents.features import FEATURE_INDEX, N_FEATURES, SLOTS
from agents.policies import PolicyError, resolve_policy


@pytest.mark.parametrize("name", list(BASELINES))
def test_resolve_policy_gives_each_baseline(name):
    policy = resolve_policy(name)
    assert policy.name == name


def test_unknown_name_is_a_one_line_error_listing_the_baselines():
    with pytest.raises(PolicyError) as info:
        resolve_policy("sed")
    message = str(info.value)
    assert "\n" not in message and "'sed'" in message
    assert all(name in message for name in BASELINES)


def test_directory_that_does_not_load_is_a_one_line_error(tmp_path):
    with pytest.raises(PolicyError) as info:
        resolve_policy(tmp_path)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path) in message


def _batch(rng: np.random.Generator, n: int = 64):
    features = rng.random((n, SLOTS, N_FEATURES)).astype(np.float32)
    degree = rng.integers(1, SLOTS + 1, n)
    mask = (np.arange(SLOTS)[None, :] < degree[:, None]).astype(np.int8)
    return features, mask


@pytest.mark.parametrize("name", ["seed", "shortest", "random"])
def test_baselines_pick_only_valid_slots(name):
    rng = np.random.default_rng(3)
    features, mask = _batch(rng)
    actions = get_baseline(name).act(features, mask, rng=rng)
    assert actions.shape == (64,)
    assert mask[np.arange(64), actions].all()


def test_shortest_picks_the_lowest_estimated_latency():
    features = np.zeros((1, SLOTS, N_FEATURES), dtype=np.float32)
    features[0, :, FEATURE_INDEX["est_latency"]] = [5, 4, 3, 0.5, 2, 1, 1, 1]
    mask = np.array([[1, 1, 1, 0, 1, 1, 0, 0]], dtype=np.int8)  # slot 3 is lowest but masked
    assert get_baseline("shortest").act(features, mask)[0] == 5


def test_seed_prefers_a_coherent_neighbour_over_a_higher_score():
    features = np.zeros((1, SLOTS, N_FEATURES), dtype=np.float32)
    features[0, :3, FEATURE_INDEX["seed_score"]] = [0.9, 0.5, 0.4]
    features[0, :3, FEATURE_INDEX["coherent"]] = [0, 1, 1]
    mask = np.array([[1, 1, 1, 0, 0, 0, 0, 0]], dtype=np.int8)
    assert get_baseline("seed").act(features, mask)[0] == 1
    features[0, :3, FEATURE_INDEX["coherent"]] = 0  # nobody coherent: the best score overall
    assert get_baseline("seed").act(features, mask)[0] == 0


def test_oracle_needs_the_environments_choice():
    oracle = get_baseline("oracle")
    features, mask = _batch(np.random.default_rng(0), 2)
    with pytest.raises(ValueError, match="oracle_actions"):
        oracle.act(features, mask)
    np.testing.assert_array_equal(oracle.act(features, mask, oracle_actions=np.array([1, 0])), [1, 0])


class _FakeInference:
    """Stands in for ``agents.inference``: loads any directory holding ``manifest.json``."""

    @staticmethod
    def load_policy(directory, allow_prefix=False):
        if not (directory / "manifest.json").is_file():
            raise ValueError(f"policy '{directory}': missing manifest.json")
        policy = get_baseline("shortest")
        policy.name = directory.name
        return policy


def test_directory_loads_through_agents_inference(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "agents.inference", _FakeInference)
    (tmp_path / "manifest.json").write_text("{}")
    assert resolve_policy(tmp_path).name == tmp_path.name
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(PolicyError) as info:
        resolve_policy(str(tmp_path))
    assert str(info.value) == f"policy '{tmp_path}': missing manifest.json"


def test_missing_agents_inference_is_explained(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "agents.inference", None)  # import now fails as if absent
    with pytest.raises(PolicyError, match=r"learned policies need agents\.inference"):
        resolve_policy(tmp_path)
