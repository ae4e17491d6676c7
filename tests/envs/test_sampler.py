"""Domain randomisation: the sampler is seeded, stays in its ranges and draws every kind."""

from __future__ import annotations

import pytest

from envs.sampler import Ranges, sample_scenarios
from envs.scenario import ADVERSARY_KINDS, ScenarioError, as_scenario


def test_same_seed_same_scenarios_other_seed_others():
    a, b, c = sample_scenarios(8, 5), sample_scenarios(8, 5), sample_scenarios(8, 6)
    assert a == b
    assert a != c


def test_draws_stay_in_their_ranges_and_cover_every_kind_and_dynamic():
    ranges = Ranges(nodes=(16, 64), load=(0.2, 0.6), episode_steps=50)
    drawn = sample_scenarios(60, 0, ranges)
    kinds, dynamics, topologies = set(), set(), set()
    for s in drawn:
        assert as_scenario(s.to_dict()) == s
        assert 16 <= s.nodes <= 64 and 0.2 <= s.traffic.load <= 0.6 and s.episode_steps == 50
        assert not s.held_out
        kinds |= {k for k in ADVERSARY_KINDS if s.adversary(k).fraction > 0}
        dynamics |= {k for k in ("churn", "turn_dishonest", "load_shift") if getattr(s.dynamics, k) is not None}
        topologies.add(s.topology.kind)
        grey = s.adversary("grey_hole")
        if grey.fraction:
            assert 0.3 <= grey.drop_probability <= 1.0
        on_off = s.adversary("on_off")
        if on_off.fraction:
            assert 20 <= on_off.honest_steps <= 60 and 10 <= on_off.attack_steps <= 40
    assert kinds == set(ADVERSARY_KINDS)
    assert dynamics == {"churn", "turn_dishonest", "load_shift"}
    assert len(topologies) == 3


def test_kinds_can_be_restricted():
    drawn = sample_scenarios(20, 1, Ranges(kinds=("grey_hole",), dishonest=(0.1, 0.3)))
    for s in drawn:
        assert all(s.adversary(k).fraction == 0 for k in ADVERSARY_KINDS if k != "grey_hole")
        assert s.adversary("grey_hole").fraction > 0


@pytest.mark.parametrize(
    ("changes", "word"),
    [
        ({"nodes": (2, 10)}, "randomise.nodes"),
        ({"load": (0.5, 0.1)}, "randomise.load"),
        ({"dishonest": (0.0, 0.95)}, "randomise.dishonest"),
        ({"kinds": ("vampire",)}, "randomise.kinds"),
        ({"topologies": ("ring",)}, "randomise.topologies"),
        ({"dynamics_probability": 2.0}, "randomise.dynamics_probability"),
    ],
)
def test_bad_ranges_are_one_line_errors(changes, word):
    with pytest.raises(ScenarioError) as info:
        Ranges(**changes)
    assert word in str(info.value) and "\n" not in str(info.value)
