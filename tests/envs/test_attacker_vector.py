"""The attacker team as an SB3 VecEnv (``AttackerVecEnv``), and ``MeshVecEnv`` driving learned
attackers by fixed opponents (an attacker policy and scripted kinds in their place)."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.spaces import Box, MultiDiscrete

from agents.attacker import ACTION_NVEC, DROP, N_ATTACKER_FEATURES, NULL_ACTION, NullAttacker, NumpyAttacker
from agents.baselines import get_baseline
from envs.attacker_vector import AttackerVecEnv
from envs.core import METRIC_NAMES
from envs.scenario import ScenarioError, as_scenario, load_scenario
from envs.vector import MeshVecEnv, expand_for_opponents

STEPS = 6
LEARNED = load_scenario("learned").replace(episode_steps=STEPS)
#: Fewer learned nodes (2) than LEARNED (4): its meshes leave attacker slots as padding.
SMALL = as_scenario(
    {
        "name": "small_learned",
        "nodes": 10,
        "topology": {"mean_degree": 4},
        "traffic": {"streams": 3, "subscribers": 2, "load": 1.0},
        "adversaries": {"bandwidth_liar": 0, "blackhole": 0, "overpricer": 0, "learned": 0.2},
        "episode_steps": STEPS,
    }
)


def fixed_attacker(action: tuple[int, int, int, int], name: str = "fixed") -> NumpyAttacker:
    """A deterministic NumpyAttacker that always plays ``action`` (zero weights, one-hot biases)."""
    hidden = 4
    w0, b0 = np.zeros((N_ATTACKER_FEATURES, hidden), np.float32), np.zeros(hidden, np.float32)
    bias = np.zeros(sum(ACTION_NVEC), np.float32)
    offsets = np.concatenate([[0], np.cumsum(ACTION_NVEC)[:-1]])
    bias[offsets + np.asarray(action)] = 5.0
    return NumpyAttacker(name, [(w0, b0)], (np.zeros((hidden, sum(ACTION_NVEC)), np.float32), bias), True)


def test_shapes_spaces_and_episode_end():
    venv = AttackerVecEnv(LEARNED, get_baseline("seed"), n_meshes=3, seed=0)
    assert venv.num_envs == 3 * LEARNED.learned_count() == 12
    assert isinstance(venv.observation_space, Box) and venv.observation_space.shape == (N_ATTACKER_FEATURES,)
    assert venv.action_space == MultiDiscrete(ACTION_NVEC)
    obs = venv.reset()
    assert obs.shape == (12, N_ATTACKER_FEATURES) and obs.dtype == np.float32
    rng = np.random.default_rng(0)
    returns = np.zeros(12)
    for step in range(STEPS):
        obs, rewards, dones, infos = venv.step(rng.integers(0, ACTION_NVEC, (12, len(ACTION_NVEC))))
        assert obs.shape == (12, N_ATTACKER_FEATURES) and rewards.shape == (12,) and rewards.dtype == np.float32
        assert np.isfinite(rewards).all() and (rewards >= 0).all()  # damage objective
        returns += rewards
        assert dones.all() == (step == STEPS - 1)
        if step < STEPS - 1:
            assert all(info == {} for info in infos)
    assert venv.core.t == 0  # reset for the next episode
    for i, info in enumerate(infos):
        assert info["terminal_observation"].shape == (N_ATTACKER_FEATURES,)
        assert info["TimeLimit.truncated"] is True
        assert info["episode"]["l"] == STEPS
        assert info["episode"]["r"] == pytest.approx(returns[i], rel=1e-5, abs=1e-6)
        assert ("mesh_metrics" in info) == (i % 4 == 0)
    for b in range(3):
        assert set(METRIC_NAMES) <= set(infos[4 * b]["mesh_metrics"])


def test_padding_slots_are_zero():
    venv = AttackerVecEnv([LEARNED, SMALL], get_baseline("seed"), n_meshes=4, seed=0)
    assert venv.core.attackers_per_mesh == 4 and venv.num_envs == 16
    rng = np.random.default_rng(0)
    for _ in range(5):  # until both scenarios are in the batch
        names = [m.scenario.name for m in venv.core.meshes]
        if {"learned", "small_learned"} <= set(names):
            break
        venv.reset()
    assert "small_learned" in names and "learned" in names
    padding = ~venv.core.attacker_valid
    assert padding.sum() == 2 * names.count("small_learned")
    obs = venv.core.attacker_observation()
    assert np.all(obs[padding] == 0.0) and np.any(obs[~padding] != 0.0)
    for step in range(STEPS):
        obs, rewards, _, infos = venv.step(rng.integers(0, ACTION_NVEC, (16, len(ACTION_NVEC))))
        if step < STEPS - 1:
            assert np.all(obs[padding] == 0.0)
        assert np.all(rewards[padding] == 0.0)
    assert all(("episode" in info) == bool(valid) for info, valid in zip(infos, ~padding, strict=True))
    assert all(np.all(infos[i]["terminal_observation"] == 0.0) for i in np.flatnonzero(padding))


def test_seeded_reset_replays_the_episode():
    venv = AttackerVecEnv(LEARNED, get_baseline("seed"), n_meshes=2, seed=0)  # a defender without draws

    def play(seed: int) -> tuple[np.ndarray, np.ndarray]:
        venv.seed(seed)
        obs, rewards = [venv.reset()], []
        for _ in range(STEPS - 1):
            o, r, _, _ = venv.step(np.tile(np.asarray([DROP, 5, 3, 0, 0]), (venv.num_envs, 1)))
            obs.append(o)
            rewards.append(r)
        return np.stack(obs), np.stack(rewards)

    first, again, other = play(9), play(9), play(10)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_a_scenario_without_learned_nodes_is_refused_in_one_line():
    with pytest.raises(ScenarioError) as info:
        AttackerVecEnv(["learned", "default"], get_baseline("seed"), n_meshes=1)
    message = str(info.value)
    assert "\n" not in message and "'default'" in message and "adversaries.learned" in message


def test_mesh_vec_env_expands_the_mix_for_opponents_and_drives_the_attackers():
    dropper = fixed_attacker((DROP, 5, 3, 0, 0), "dropper")
    venv = MeshVecEnv(LEARNED, n_meshes=6, seed=0, opponents=[dropper, "blackhole"])
    assert [s.name for s in venv.core.mix] == ["learned", "learned@blackhole"]
    assert venv.core.mix[1].adversary_counts()["blackhole"] == 4 and venv.core.mix[1].learned_count() == 0
    assert venv.num_envs == 6 * LEARNED.honest_count()
    for _ in range(5):
        names = [m.scenario.name for m in venv.core.meshes]
        if len(set(names)) == 2:
            break
        venv.reset()
    assert set(names) == {"learned", "learned@blackhole"}
    attack = venv.attacker_actions()
    assert attack is not None and attack.shape == (6 * 4, len(ACTION_NVEC))
    valid = venv.core.attacker_valid
    assert valid.sum() == 4 * names.count("learned")
    np.testing.assert_array_equal(attack[valid], np.tile([DROP, 5, 3, 0, 0], (valid.sum(), 1)))
    rows = venv.core.attacker_rows[valid]
    for _ in range(STEPS - 1):
        venv.step(np.argmax(venv.action_masks(), axis=1))
    assert venv.core.traffic[rows].sum() == 0  # the droppers forwarded nothing
    assert np.all(venv.core.claim_factor[rows] == 1.5) and np.all(venv.core.route_discount[rows] == 0.25)
    # Between phases: other policies from the next episode on.
    venv.set_attacker_policies([NullAttacker()])
    venv.reset()
    attack = venv.attacker_actions()
    if venv.core.has_learned:
        valid = venv.core.attacker_valid
        np.testing.assert_array_equal(attack[valid], np.tile(NULL_ACTION, (valid.sum(), 1)))


def test_mesh_vec_env_without_opponents_plays_the_null_action():
    venv = MeshVecEnv(LEARNED, n_meshes=2, seed=0)
    assert [s.name for s in venv.core.mix] == ["learned"]
    assert venv.core.has_learned and venv.attacker_actions() is None
    for _ in range(STEPS - 1):
        venv.step(np.argmax(venv.action_masks(), axis=1))
    assert venv.core.metrics()[0]["earned_learned"] >= 0.0
    assert np.all(venv.core.claim_factor == 1.0)


def test_expand_for_opponents_keeps_scenarios_without_learned_nodes():
    mix = [load_scenario("default"), load_scenario("learned")]
    out = expand_for_opponents(mix, ["blackhole", "grey_hole"])
    assert [s.name for s in out] == ["default", "learned", "learned", "learned@blackhole", "learned@grey_hole"]
    assert expand_for_opponents(mix, []) == mix


def test_unknown_scripted_opponent_is_refused_in_one_line():
    with pytest.raises(ScenarioError) as info:
        MeshVecEnv(LEARNED, n_meshes=1, opponents=[NullAttacker(), "vampire"])
    message = str(info.value)
    assert "\n" not in message and "unknown scripted kind 'vampire'" in message and "blackhole" in message


def test_scripted_only_opponents_replace_the_learned_scenario():
    mix = expand_for_opponents([load_scenario("learned")], ["blackhole", "grey_hole"], with_policies=False)
    assert [s.name for s in mix] == ["learned@blackhole", "learned@grey_hole"]
    env = MeshVecEnv("learned", n_meshes=2, seed=0, opponents=["blackhole"])
    assert not env.core.has_learned and {m.scenario.name for m in env.core.meshes} == {"learned@blackhole"}


def test_seed_replays_the_sampling_opponents_and_defender_draws():
    rng = np.random.default_rng(5)
    policy = NumpyAttacker(
        "random_weights",
        [(rng.normal(size=(N_ATTACKER_FEATURES, 8)).astype(np.float32), np.zeros(8, np.float32))],
        (rng.normal(size=(8, sum(ACTION_NVEC))).astype(np.float32), np.zeros(sum(ACTION_NVEC), np.float32)),
    )

    honest = MeshVecEnv("learned", n_meshes=2, seed=0, opponents=[policy])
    attacker = AttackerVecEnv("learned", get_baseline("random"), n_meshes=2, seed=0)
    null = np.tile(np.asarray(NULL_ACTION), (attacker.num_envs, 1))

    def replay(env, action) -> list[np.ndarray]:
        # The same env object twice: seed() must reseed its own draws, not only the core.
        env.seed(11)
        env.reset()
        out = []
        for _ in range(20):
            if isinstance(env, MeshVecEnv):
                out.append(env.attacker_actions())
            out.append(env.step(action)[1])
        return out

    for env, action in ((honest, np.zeros(honest.num_envs, int)), (attacker, null)):
        first, second = replay(env, action), replay(env, action)
        assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
