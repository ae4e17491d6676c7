"""The scale row of ``eval.bench env`` reports a reset time even when its only reset was traced (it printed nan)."""

from __future__ import annotations

import math

from eval.bench_env import CoreBench


def test_a_scale_row_timed_once_reports_its_traced_reset():
    bench = CoreBench(nodes=64, meshes=1, steps=2)
    bench.episode(trace_memory=True)
    row = bench.summary()
    assert math.isfinite(row["reset_s"]) and row["reset_s"] > 0
    assert row["reset_s_traced"] is True and row["reset_s"] == row["reset_traced_s"]


def test_untraced_resets_are_preferred():
    bench = CoreBench(nodes=64, meshes=1, steps=2)
    bench.episode(trace_memory=True)
    bench.episode()
    row = bench.summary()
    assert row["reset_s_traced"] is False and row["reset_s"] == bench.reset_times[0]
