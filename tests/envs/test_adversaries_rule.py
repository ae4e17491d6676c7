"""Naming ``adversaries`` in a scenario sets every kind not named to 0 (no hidden 10 % defaults).

Before the rule, ``adversaries: {blackhole: 0.25}`` also got 10 % bandwidth liars and 10 % overpricers
(the schema's defaults for the kinds not named), so "paid to cheats" was above zero on what reads as a
blackholes-only file. Every shipped scenario already named the defaulted kinds, so the rule changes no
shipped scenario (checked below against the old reading, field by field).
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import yaml

from envs import MeshEconomyEnv
from envs.scenario import ADVERSARY_KEYS, Scenario, as_scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "conf" / "scenario").glob("*.yaml")) + sorted((ROOT / "conf" / "heldout").glob("*.yaml"))


def _play(spec: dict, seed: int = 2) -> dict:
    """One episode in which every agent spreads its pieces over its neighbours in turn."""
    env = MeshEconomyEnv(spec)
    observations, _ = env.reset(seed=seed)
    step = 0
    while env.agents:
        step += 1
        actions = {a: (step + i) % max(1, int(o["action_mask"].sum())) for i, (a, o) in enumerate(observations.items())}
        observations, *_ = env.step(actions)
    return env.episode_summary()


def test_naming_adversaries_sets_the_kinds_not_named_to_zero():
    counts = as_scenario({"nodes": 24, "adversaries": {"blackhole": 0.25}}).adversary_counts()
    assert counts == {kind: (6 if kind == "blackhole" else 0) for kind in ADVERSARY_KEYS}


def test_without_the_key_the_documented_defaults_hold():
    s = as_scenario({"nodes": 20})
    assert s.adversary_summary() == "bandwidth_liar 10 %, blackhole 10 %, overpricer 10 %"
    assert as_scenario({"adversaries": {}}).adversary_summary() == "none"


def test_a_blackholes_only_file_pays_no_cheat(tmp_path):
    path = tmp_path / "holes.yaml"
    path.write_text("nodes: 20\ntraffic: {load: 0.6}\nadversaries: {blackhole: 0.25}\nepisode_steps: 60\n")
    scenario = load_scenario(path)
    assert scenario.adversary_summary() == "blackhole 25 %"
    summary = _play(scenario.to_dict())
    cheats = {k: v for k, v in summary.items() if k.startswith("earned_") and k != "earned_honest"}
    assert all(v == 0 for v in cheats.values()), cheats
    # the same mesh with the old implicit liars and overpricers pays them: the check above can fail
    implicit = {**scenario.to_dict(), "adversaries": {"blackhole": 0.25, "bandwidth_liar": 0.1, "overpricer": 0.1}}
    old = _play(implicit)
    assert old["earned_bandwidth_liar"] + old["earned_overpricer"] > 0


def test_parameters_of_a_named_kind_keep_their_defaults():
    s = as_scenario({"adversaries": {"grey_hole": {"fraction": 0.2}}})
    assert s.adversary_summary() == "grey_hole 20 % (drop_probability 0.5)"


def test_replace_merges_into_the_effective_adversaries():
    s = as_scenario({"adversaries": {"blackhole": 0.25}}).replace(adversaries={"overpricer": 0.1})
    assert s.adversary_summary() == "blackhole 25 %, overpricer 10 %"


@pytest.mark.parametrize("path", SHIPPED, ids=[f"{p.parent.name}/{p.stem}" for p in SHIPPED])
def test_every_shipped_scenario_reads_as_it_did_before_the_rule(path):
    """The old reading (struct defaults for every kind not named) gives the same scenario, so the same
    episodes for every seed: shipped results are unchanged."""
    raw = yaml.safe_load(path.read_text())
    raw.setdefault("name", path.stem)
    old = msgspec.convert(raw, type=Scenario)
    assert load_scenario(path).to_dict() == msgspec.to_builtins(old)
