"""The training mix: shipped scenarios plus randomised ones, never a held-out scenario; paired verdicts."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from agents.baselines import get_baseline
from envs.scenario import load_scenario
from training.evaluation import comparison_table, evaluate, paired_verdict
from training.paths import CONF_DIR
from training.train import UserError, check_config


def config(**changes):
    cfg = OmegaConf.load(CONF_DIR / "train.yaml")
    cfg.policy = OmegaConf.load(CONF_DIR / "policy" / "scorer.yaml")
    for key, value in changes.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def test_default_mix_has_every_shipped_scenario_and_the_randomised_ones():
    cfg = config()
    mix = check_config(cfg)
    shipped = [s for s in mix if not s.name.startswith("random_")]
    randomised = [s for s in mix if s.name.startswith("random_")]
    assert len(shipped) == len(cfg.scenarios) and len(randomised) == cfg.randomise.count
    assert not any(s.held_out for s in mix)
    assert {s.name for s in shipped} >= {"grey_holes", "on_off", "selective", "whitewashers", "adaptive_mix"}
    sizes = [s.nodes for s in randomised]
    assert min(sizes) >= 16 and max(sizes) <= 128 and max(sizes) - min(sizes) > 40
    # Seeded: the same configuration draws the same mix.
    assert check_config(config()) == mix
    assert check_config(config(**{"randomise.seed": 2})) != mix
    assert len(check_config(config(**{"randomise.count": 0}))) == len(cfg.scenarios)


@pytest.mark.parametrize("spec", sorted(str(p) for p in (CONF_DIR / "heldout").glob("*.yaml")))
def test_every_held_out_file_is_refused(spec):
    with pytest.raises(UserError) as info:
        check_config(config(scenarios=["default", spec]))
    assert "held" in str(info.value) and "\n" not in str(info.value)


def test_a_held_out_scenario_outside_conf_heldout_is_refused(tmp_path):
    path = tmp_path / "sneaky.yaml"
    path.write_text((CONF_DIR / "heldout" / "on_off_fast.yaml").read_text())
    with pytest.raises(UserError, match="held_out"):
        check_config(config(scenarios=[str(path)]))


def test_bad_randomise_ranges_are_user_errors():
    with pytest.raises(UserError, match=r"randomise\.nodes"):
        check_config(config(**{"randomise.nodes": [2, 10]}))


def test_paired_verdict_uses_the_difference_on_the_same_episodes():
    assert paired_verdict({"mean": 0.1, "lo": 0.02, "hi": 0.18}) == "better"
    assert paired_verdict({"mean": -0.1, "lo": -0.2, "hi": -0.01}) == "worse"
    assert paired_verdict({"mean": 0.1, "lo": -0.02, "hi": 0.2}) == "tie"
    scenario = load_scenario("blackholes").replace(episode_steps=30)
    paired: dict = {}
    seed, oracle = get_baseline("seed"), get_baseline("oracle")
    results = evaluate([seed, oracle], [scenario], 3, paired=paired)
    diff = paired["blackholes"]["oracle"]["delivery_rate"]
    means = results["blackholes"]
    assert diff["mean"] == pytest.approx(
        means["oracle"]["delivery_rate"]["mean"] - means["seed"]["delivery_rate"]["mean"]
    )
    table = comparison_table(results, "oracle", "seed", paired=paired)
    assert "paired difference" in table and paired_verdict(diff) in table.splitlines()[1]
