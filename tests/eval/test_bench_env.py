"""The env benchmark runs through the ``eval.bench`` dispatcher and reports its ratios (no timing asserted)."""

from __future__ import annotations

import json

from eval.bench import main


def test_bench_env_reports_every_configuration_and_the_ratios(tmp_path):
    out = tmp_path / "bench.json"
    argv = ["env", "--steps", "3", "--episodes", "2", "--mpe-steps", "30", "--json", str(out)]
    argv += ["--scale-nodes", "200", "--scale-rounds", "1"]  # the 4,096-node default is for real runs
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert set(result["env"]) == {"16", "64", "256"}
    for row in result["env"].values():
        assert row["agents"] > 0 and row["agent_steps_per_s"] > 0
    assert result["mpe_simple_spread"]["agents"] == 3
    assert result["ratio_64_vs_mpe"] > 0 and result["per_agent_cost_256_vs_16"] > 0
    assert set(result["goals"]) == {
        "ratio_64_vs_mpe",
        "per_agent_cost_256_vs_16",
        "per_agent_cost_scale_vs_16",
        "ratio_parallel_api_64_vs_mpe",
    }
    scale = result["env_scale"]
    assert scale["nodes"] == 200 and scale["agents"] > 0 and result["per_agent_cost_scale_vs_16"] > 0
    assert 0 < scale["routing_mib"] <= scale["routing_bound_mib"]
    assert scale["routing_mib"] < scale["arrays_mib"] and scale["reset_peak_traced_mib"] > 0
    parallel = result["parallel_api_64"]
    assert parallel["nodes"] == 64 and parallel["agents"] > 0 and parallel["agent_steps_per_s"] > 0
    assert result["ratio_parallel_api_64_vs_mpe"] > 0
