"""NeighbourMemory update rules: EMAs with documented rates, batched samples, prediction error."""

from __future__ import annotations

import numpy as np
import pytest

from agents.memory import MemoryRates, NeighbourMemory


def fresh(n_nodes: int = 2, slots: int = 3) -> NeighbourMemory:
    memory = NeighbourMemory(n_nodes, slots)
    memory.reset(np.ones((n_nodes, slots)), np.full((n_nodes, slots), 0.5))
    return memory


def one(values) -> np.ndarray:
    return np.asarray(values)


def test_reset_starts_from_the_announcements():
    memory = fresh()
    np.testing.assert_array_equal(memory.observed_bw, memory.claimed_bw)
    assert (memory.success == 1.0).all() and (memory.cooperation == 1.0).all()
    assert (memory.delay == 0.0).all() and (memory.quote == 0.5).all()
    assert not memory.interacted().any()


def test_transfer_sample_is_an_ema_with_alpha_bw():
    memory = fresh()
    memory.record_transfers(one([0]), one([1]), one([0.5]))
    assert memory.observed_bw[0, 1] == pytest.approx(1.0 + 0.2 * (0.5 - 1.0))
    assert memory.bw_count[0, 1] == 1.0
    assert memory.observed_bw[0, 0] == 1.0 and memory.observed_bw[1, 1] == 1.0


def test_samples_for_one_slot_fold_as_their_mean_applied_k_times():
    memory = fresh()
    memory.record_transfers(one([0, 0]), one([1, 1]), one([0.5, 0.3]))
    # mean 0.4 applied twice: x + (1 - 0.8 ** 2) (0.4 - x)
    assert memory.observed_bw[0, 1] == pytest.approx(1.0 + 0.36 * (0.4 - 1.0))
    assert memory.bw_count[0, 1] == 2.0
    sequential = fresh()
    sequential.record_transfers(one([0]), one([1]), one([0.4]))
    sequential.record_transfers(one([0]), one([1]), one([0.4]))
    assert sequential.observed_bw[0, 1] == pytest.approx(memory.observed_bw[0, 1])


def test_refused_handover_lowers_cooperation_and_marks_interaction():
    memory = fresh()
    memory.record_handovers(one([1]), one([2]), one([False]))
    assert memory.cooperation[1, 2] == pytest.approx(0.9)
    memory.record_handovers(one([1]), one([2]), one([True]))
    assert memory.cooperation[1, 2] == pytest.approx(0.9 + 0.1 * 0.1)
    assert memory.coop_count[1, 2] == 2.0
    expected = np.zeros((2, 3), dtype=bool)
    expected[1, 2] = True
    np.testing.assert_array_equal(memory.interacted(), expected)


def test_delay_is_an_ema_from_zero():
    memory = fresh()
    memory.record_delays(one([0]), one([0]), one([5]))
    assert memory.delay[0, 0] == pytest.approx(1.0)
    assert memory.delay_count[0, 0] == 1.0


def test_outcomes_update_success_after_recording_the_prediction_error():
    memory = fresh()
    assert memory.predict_success(one([0]), one([2]))[0] == 1.0
    memory.record_outcomes(one([0]), one([2]), one([False]))
    assert memory.success[0, 2] == pytest.approx(0.85)
    assert memory.prediction_error[0] == pytest.approx(0.05 * 1.0)  # |0 - 1| folded with alpha_error
    memory.record_outcomes(one([0]), one([2]), one([True]))
    # predicted 0.85, outcome 1: error 0.15
    assert memory.prediction_error[0] == pytest.approx(0.05 + 0.05 * (0.15 - 0.05))
    assert memory.success[0, 2] == pytest.approx(0.85 + 0.15 * 0.15)
    assert memory.success_count[0, 2] == 2.0
    assert memory.prediction_error[1] == 0.0


def test_custom_rates_are_used():
    memory = NeighbourMemory(1, 2, MemoryRates(alpha_success=0.5))
    memory.reset(np.ones((1, 2)), np.ones((1, 2)))
    memory.record_outcomes(one([0]), one([0]), one([False]))
    assert memory.success[0, 0] == pytest.approx(0.5)


def test_reset_forgets_everything():
    memory = fresh()
    memory.record_transfers(one([0]), one([0]), one([0.1]))
    memory.record_outcomes(one([0]), one([0]), one([False]))
    memory.record_handovers(one([0]), one([0]), one([False]))
    memory.reset(np.full((2, 3), 0.7), np.full((2, 3), 0.2))
    assert (memory.observed_bw == 0.7).all() and (memory.success == 1.0).all()
    assert (memory.bw_count == 0).all() and (memory.prediction_error == 0).all()
    assert not memory.interacted().any()


# ---------------------------------------------------------------- what memory tells about change


def test_recent_success_moves_faster_than_the_long_ema():
    memory = fresh()
    for _ in range(3):
        memory.record_outcomes(one([0]), one([1]), one([0.0]))
    rates = MemoryRates()
    assert memory.success[0, 1] == pytest.approx((1 - rates.alpha_success) ** 3)
    assert memory.success_recent[0, 1] == pytest.approx((1 - rates.alpha_recent) ** 3)
    assert memory.success_recent[0, 1] < memory.success[0, 1]
    assert memory.success_recent[0, 0] == 1.0


def test_since_loss_counts_successes_after_the_last_loss():
    memory = fresh()
    assert not memory.ever_lost.any()
    memory.record_outcomes(one([1, 1]), one([2, 2]), one([1.0, 1.0]))
    assert memory.since_loss[1, 2] == 2 and not memory.ever_lost[1, 2]
    memory.record_outcomes(one([1]), one([2]), one([0.0]))
    assert memory.since_loss[1, 2] == 0 and memory.ever_lost[1, 2]
    memory.record_outcomes(one([1, 1, 1]), one([2, 2, 2]), one([1.0, 1.0, 1.0]))
    assert memory.since_loss[1, 2] == 3
    # A loss among simultaneous outcomes counts as the latest event.
    memory.record_outcomes(one([1, 1]), one([2, 2]), one([1.0, 0.0]))
    assert memory.since_loss[1, 2] == 0


def test_forget_makes_a_slot_new_and_leaves_the_others():
    memory = fresh()
    memory.record_outcomes(one([0, 0]), one([0, 1]), one([0.0, 0.0]))
    memory.record_handovers(one([0, 0]), one([0, 1]), one([True, False]))
    memory.forget(one([0]), one([1]), one([0.9]), one([0.04]))
    assert memory.success[0, 1] == 1.0 and memory.success_recent[0, 1] == 1.0 and memory.cooperation[0, 1] == 1.0
    assert memory.coop_count[0, 1] == 0 and memory.success_count[0, 1] == 0 and not memory.ever_lost[0, 1]
    assert memory.claimed_bw[0, 1] == memory.observed_bw[0, 1] == 0.9 and memory.quote[0, 1] == 0.04
    assert memory.success[0, 0] < 1.0 and memory.ever_lost[0, 0] and memory.coop_count[0, 0] == 1


def test_change_features_follow_the_memory():
    from agents.features import FEATURE_INDEX, SLOTS, DecisionContext, build_observation

    memory = NeighbourMemory(1, SLOTS)
    memory.reset(np.ones((1, SLOTS)), np.full((1, SLOTS), 0.02))
    mask = np.zeros((1, SLOTS), dtype=bool)
    mask[0, :3] = True

    def observe():
        ctx = DecisionContext(
            rows=one([0]),
            mask=mask,
            link_latency=np.ones((1, SLOTS)),
            route_latency=np.ones((1, SLOTS)),
            is_destination=np.zeros((1, SLOTS), dtype=bool),
            time_left=one([10.0]),
            value=one([1.0]),
            size=one([1.0]),
            hops=one([0.0]),
            own_queue=one([0.0]),
            active=one([True]),
        )
        return build_observation(memory, ctx).features[0]

    f = observe()
    # Before any hand-over every neighbour is as familiar as the others; nothing was ever lost.
    np.testing.assert_array_equal(f[:3, FEATURE_INDEX["familiarity"]], 1.0)
    np.testing.assert_array_equal(f[:3, FEATURE_INDEX["loss_recency"]], 0.0)
    for _ in range(4):
        memory.record_handovers(one([0, 0]), one([0, 1]), one([True, True]))
    memory.record_handovers(one([0]), one([0]), one([True]))
    memory.record_outcomes(one([0]), one([1]), one([0.0]))
    memory.record_outcomes(one([0]), one([1]), one([1.0]))
    f = observe()
    fam = f[:, FEATURE_INDEX["familiarity"]]
    assert fam[0] == 1.0 and fam[1] == pytest.approx(4 / 5) and fam[2] == 0.0  # slot 2: never used, new
    assert f[1, FEATURE_INDEX["loss_recency"]] == pytest.approx(0.5)  # one success since the loss
    trend = f[1, FEATURE_INDEX["success_trend"]]
    assert trend == pytest.approx(memory.success_recent[0, 1] - memory.success[0, 1], abs=1e-6)
    assert f[1, FEATURE_INDEX["success_recent"]] == pytest.approx(memory.success_recent[0, 1])
    assert (f[3:] == 0).all(), "masked slots stay all zeros"


def test_every_column_holds_the_feature_its_name_says():
    """Planes are filled by position: each named column must carry its own quantity."""
    from agents.features import (
        FEATURE_INDEX,
        LATENCY_SCALE,
        MAX_HOPS,
        N_FEATURES,
        SLOTS,
        DecisionContext,
        build_observation,
    )

    memory = NeighbourMemory(1, SLOTS)
    memory.reset(np.full((1, SLOTS), 0.8), np.full((1, SLOTS), 0.02))
    memory.record_handovers(one([0]), one([1]), one([True]))
    memory.record_outcomes(one([0]), one([1]), one([0.0]))
    mask = np.zeros((1, SLOTS), dtype=bool)
    mask[0, :2] = True
    ctx = DecisionContext(
        rows=one([0]),
        mask=mask,
        link_latency=np.full((1, SLOTS), 3.0),
        route_latency=np.full((1, SLOTS), 5.0),
        is_destination=np.zeros((1, SLOTS), dtype=bool),
        time_left=one([20.0]),
        value=one([1.25]),
        size=one([0.75]),
        hops=one([4.0]),
        own_queue=one([0.35]),
        active=one([True]),
    )
    f = build_observation(memory, ctx).features[0]
    assert f.shape == (SLOTS, N_FEATURES)
    expected = {
        "claimed_bw": 0.8,
        "link_latency": 3.0 / LATENCY_SCALE,
        "est_latency": 8.0 / LATENCY_SCALE,
        "time_left": 20.0 / LATENCY_SCALE,
        "value": 1.25,
        "size": 0.75,
        "hops": 4.0 / MAX_HOPS,
        "own_queue": 0.35,
        "active": 1.0,
    }
    for name, value in expected.items():
        np.testing.assert_allclose(f[:2, FEATURE_INDEX[name]], value, rtol=1e-6, err_msg=name)
    assert f[1, FEATURE_INDEX["success_rate"]] == pytest.approx(memory.success[0, 1])
    assert f[1, FEATURE_INDEX["success_recent"]] == pytest.approx(0.5)
    assert f[1, FEATURE_INDEX["loss_recency"]] == 1.0 and f[0, FEATURE_INDEX["loss_recency"]] == 0.0
    assert f[1, FEATURE_INDEX["familiarity"]] == 1.0 and f[0, FEATURE_INDEX["familiarity"]] == 0.0
