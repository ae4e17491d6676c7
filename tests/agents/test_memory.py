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
