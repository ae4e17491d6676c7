"""``--payment`` / ``--receipts`` overrides of eval.evaluate and the ``eval.economy`` report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from envs.scenario import load_scenario
from eval import economy
from eval.evaluate import main as evaluate_main


@pytest.fixture
def tiny(tmp_path) -> dict[str, Path]:
    """Short-episode copies of the blackhole and forger scenarios."""
    out = {}
    for name in ("blackholes", "forgers"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(load_scenario(name).replace(episode_steps=40, name=name).to_dict()))
        out[name] = path
    return out


def test_payment_override_moves_money_to_blackholes_only_per_hop(tiny, tmp_path):
    shares = {}
    for payment in ("per_hop", "on_delivery"):
        out = tmp_path / f"{payment}.json"
        argv = ["--scenario", str(tiny["blackholes"]), "--policy", "seed", "--episodes", "2"]
        assert evaluate_main([*argv, "--payment", payment, "--json", str(out)]) == 0
        shares[payment] = json.loads(out.read_text())["metrics"]["dishonest_payments_share"]["mean"]
    assert shares["per_hop"] > 0 and shares["on_delivery"] == 0


def test_bad_economy_override_is_one_line(tiny, capsys):
    argv = ["--scenario", str(tiny["blackholes"]), "--policy", "seed", "--receipts", "maybe"]
    with pytest.raises(SystemExit) as info:
        evaluate_main(argv)
    assert info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert "\n" not in message and "--receipts" in message and "signed" in message


def test_economy_report_covers_four_economies_with_paired_differences(tiny, tmp_path):
    out, js = tmp_path / "economy.md", tmp_path / "economy.json"
    argv = ["--scenario", str(tiny["blackholes"]), "--scenario", str(tiny["forgers"])]
    argv += ["--policy", "seed", "--policy", "oracle", "--episodes", "2", "--out", str(out), "--json", str(js)]
    assert economy.main(argv) == 0
    report = json.loads(js.read_text())
    assert [s["scenario"] for s in report["scenarios"]] == [str(tiny["blackholes"]), str(tiny["forgers"])]
    for s in report["scenarios"]:
        assert len(s["results"]) == 4 * 2
        assert len(s["vs_reference_economy"]) == 3 * 2 and len(s["vs_first_policy"]) == 4
        earned = {(r["economy"], r["policy"]): r["metrics"]["earned_swallowers"]["mean"] for r in s["results"]}
        assert earned[("on_delivery + signed", "seed")] == 0 < earned[("per_hop + unsigned", "seed")]
    forgers = report["scenarios"][1]
    rejected = {
        (r["economy"], r["policy"]): r["metrics"]["forged_receipts_rejected"]["mean"] for r in forgers["results"]
    }
    assert rejected[("on_delivery + signed", "seed")] > 0 == rejected[("on_delivery + unsigned", "seed")]
    text = out.read_text()
    assert "python -m eval.economy" in text and text.count("### Paired difference") == 4
