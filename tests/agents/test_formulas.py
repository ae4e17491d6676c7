"""The origin's formulas, pinned on exact values: coherence, price quote, route score."""

from __future__ import annotations

import numpy as np
import pytest

from agents.economics import quote_price
from agents.empathy import coherence_score, is_coherent
from agents.propagation import SEED_WEIGHTS, route_score

# (observed, claimed, quoted, fair, success, cooperation) that fail every check.
NOTHING = {"observed": 0.5, "claimed": 1.0, "quoted": 20.0, "fair": 10.0, "success": 0.5, "coop": 0.5}


def score(**changes: float) -> float:
    a = {**NOTHING, **changes}
    return coherence_score(a["observed"], a["claimed"], a["quoted"], a["fair"], a["success"], a["coop"])


def coherent(**changes: float) -> bool:
    a = {**NOTHING, **changes}
    return is_coherent(a["observed"], a["claimed"], a["quoted"], a["fair"], a["success"], a["coop"])


def test_no_check_passes_scores_zero():
    assert score() == 0.0


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"observed": 0.8}, 0.3),  # observed >= 0.8 x claimed, at the boundary
        ({"observed": 5.0}, 0.3),
        ({"quoted": 11.9}, 0.3),  # |quoted - fair| < 0.2 x fair
        ({"quoted": 8.1}, 0.3),
        ({"success": 0.95}, 0.2),  # success >= 0.95, at the boundary
        ({"coop": 0.8}, 0.2),  # cooperation >= 0.8, at the boundary
    ],
)
def test_each_branch_adds_its_weight(changes, expected):
    assert score(**changes) == expected


@pytest.mark.parametrize(
    "changes",
    [
        {"observed": 0.79},  # just below 0.8 x claimed
        {"quoted": 12.0},  # |12 - 10| = 2 is not < 0.2 x 10: strict
        {"quoted": 8.0},
        {"success": 0.9499},
        {"coop": 0.7999},
    ],
)
def test_just_outside_each_branch_adds_nothing(changes):
    assert score(**changes) == 0.0


def test_all_checks_score_one():
    assert score(observed=1.0, quoted=10.0, success=1.0, coop=1.0) == 1.0
    assert coherent(observed=1.0, quoted=10.0, success=1.0, coop=1.0) is True


def test_score_of_exactly_point_seven_is_not_coherent():
    # 0.3 + 0.2 + 0.2 and 0.3 + 0.2 + 0.2 (price instead of bandwidth): exactly 0.7, not > 0.7.
    assert score(observed=1.0, success=1.0, coop=1.0) == 0.7
    assert coherent(observed=1.0, success=1.0, coop=1.0) is False
    assert score(quoted=10.0, success=1.0, coop=1.0) == 0.7
    assert coherent(quoted=10.0, success=1.0, coop=1.0) is False


def test_point_eight_is_coherent():
    assert score(observed=1.0, quoted=10.0, success=1.0) == 0.8
    assert coherent(observed=1.0, quoted=10.0, success=1.0) is True
    assert coherent(observed=1.0, quoted=10.0, coop=1.0) is True


def test_arrays_broadcast_element_wise():
    observed = np.array([1.0, 0.5, 1.0])
    result = coherence_score(observed, 1.0, np.array([10.0, 10.0, 30.0]), 10.0, np.array([1.0, 1.0, 0.0]), 1.0)
    np.testing.assert_array_equal(result, [1.0, 0.7, 0.5])
    np.testing.assert_array_equal(is_coherent(observed, 1.0, 10.0, 10.0, 1.0, 1.0), [True, False, True])


def test_quote_price_without_neighbours_is_the_cost_term():
    assert quote_price(1.0, 50.0, []) == pytest.approx(1.0 * 1.5 * 1.2)
    assert quote_price(0.02, 0.0, []) == pytest.approx(0.024)
    assert quote_price(2.0, 100.0, np.array([])) == pytest.approx(2.0 * 2.0 * 1.2)


def test_quote_price_follows_the_market_when_it_is_higher():
    # 0.9 x mean(2, 4) = 2.7 > 1.8
    assert quote_price(1.0, 50.0, [2.0, 4.0]) == pytest.approx(2.7)


def test_quote_price_keeps_the_cost_term_when_the_market_is_lower():
    # 0.9 x mean(1, 1) = 0.9 < 1.8
    assert quote_price(1.0, 50.0, [1.0, 1.0]) == pytest.approx(1.8)
    assert quote_price(1.0, 0.0, [1.0]) == pytest.approx(1.2)


def test_seed_weights_are_the_origins():
    assert SEED_WEIGHTS == (0.3, 0.3, 0.2, 0.2)


@pytest.mark.parametrize(
    ("components", "expected"),
    [
        ((1.0, 1.0, 1.0, 1.0), 1.0),
        ((1.0, 0.0, 0.0, 0.0), 0.3),
        ((0.0, 1.0, 0.0, 0.0), 0.3),
        ((0.0, 0.0, 1.0, 0.0), 0.2),
        ((0.0, 0.0, 0.0, 1.0), 0.2),
        ((0.5, 0.2, 1.0, 0.0), 0.41),
        ((0.0, 0.0, 0.0, 0.0), 0.0),
    ],
)
def test_route_score_is_the_weighted_sum(components, expected):
    assert route_score(*components) == pytest.approx(expected)


def test_route_score_takes_other_weights_and_arrays():
    assert route_score(1.0, 2.0, 3.0, 4.0, weights=(1.0, 0.0, 0.0, 0.5)) == pytest.approx(3.0)
    np.testing.assert_allclose(route_score(np.array([1.0, 0.0]), 0.0, 0.0, np.array([0.0, 1.0])), [0.3, 0.2])
