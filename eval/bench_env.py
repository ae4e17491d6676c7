"""Environment throughput: honest-agent steps/s at 16, 64 and 256 nodes vs PettingZoo MPE.

Training configuration: one :class:`~envs.core.MeshCore` steps a batch of meshes (16 x 16 nodes,
4 x 64 nodes, 1 x 256 nodes by default: the same number of nodes per batch) and builds every
agent's observation each step, as ``envs.vector.MeshVecEnv`` does for PPO. Scenario: ``default``
with ``nodes`` set and ``streams = nodes / 4`` so the load per node stays the same. Actions are
random valid slots, precomputed, so the policy costs nothing. Reset (graph generation, shortest
paths) is timed separately and excluded from the rate.

Reference, in the same run: PettingZoo MPE ``simple_spread_v3`` (package ``mpe2``) parallel env
with random precomputed actions, agent-steps/s, resets excluded. Every rate is the median of
several timed repetitions, since the machine is shared and noisy. A fourth row (16 x 64 nodes)
shows how the rate grows with the batch; it is informational, the goal uses 4 x 64.

Goals (issue 3): env@64 / MPE >= 30 and per-agent cost at 256 nodes <= 2x that at 16.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from envs.core import MeshCore
from envs.scenario import load_scenario

#: (nodes, meshes per batch) measured.
CONFIGS: tuple[tuple[int, int], ...] = ((16, 16), (64, 4), (256, 1))
#: Extra row: 64 nodes with a larger batch, to show how throughput grows with the batch.
BIG_BATCH_64 = 16
GOAL_VS_MPE = 30.0
GOAL_SCALING = 2.0


def _core(nodes: int, meshes: int, seed: int) -> MeshCore:
    scenario = load_scenario("default").replace(nodes=nodes, traffic={"streams": max(4, nodes // 4)})
    return MeshCore(scenario, n_meshes=meshes, seed=seed)


def bench_core(nodes: int, meshes: int, steps: int, episodes: int, seed: int = 0) -> dict:
    """Agent-steps/s of ``meshes`` meshes of ``nodes`` nodes: the median over ``episodes`` timed episodes."""
    core = _core(nodes, meshes, seed)
    rates, step_times, reset_times = [], [], []
    rng = np.random.default_rng(seed)
    agents = 0
    for _ in range(episodes):
        t0 = time.perf_counter()
        core.reset()
        reset_times.append(time.perf_counter() - t0)
        degree = np.maximum(core.degree[core.agent_rows], 1)
        actions = (rng.random((steps, degree.size)) * degree).astype(np.int64)
        agents = int(core.agent_valid.sum())
        t0 = time.perf_counter()
        for t in range(steps):
            core.agent_observation()
            core.step(actions[t])
        elapsed = time.perf_counter() - t0
        step_times.append(elapsed / steps)
        rates.append(agents * steps / elapsed)
    rate = float(np.median(rates))
    return {
        "nodes": nodes,
        "meshes": meshes,
        "agents": agents,
        "agent_steps_per_s": rate,
        "agent_steps_per_s_all": rates,
        "step_ms": 1e3 * float(np.median(step_times)),
        "us_per_agent_step": 1e6 / rate,
        "reset_s": float(np.median(reset_times)),
    }


def bench_mpe(cycles: int, chunks: int, seed: int = 0) -> dict:
    """Agent-steps/s of MPE ``simple_spread_v3`` (3 agents, discrete actions), random actions.

    The median over ``chunks`` timed chunks of ``cycles`` parallel steps each; resets are not timed.
    """
    from mpe2 import simple_spread_v3

    env = simple_spread_v3.parallel_env(max_cycles=25)
    env.reset(seed=seed)
    n_actions = env.action_space(env.possible_agents[0]).n
    rng = np.random.default_rng(seed)
    rates = []
    for _ in range(chunks):
        drawn = rng.integers(n_actions, size=(cycles, len(env.possible_agents)))
        agent_steps = 0
        step_time = 0.0
        for t in range(cycles):
            if not env.agents:
                env.reset()
            actions = {a: int(drawn[t, i]) for i, a in enumerate(env.agents)}
            t0 = time.perf_counter()
            env.step(actions)
            step_time += time.perf_counter() - t0
            agent_steps += len(actions)
        rates.append(agent_steps / step_time)
    env.close()
    return {
        "agents": len(env.possible_agents),
        "agent_steps_per_s": float(np.median(rates)),
        "agent_steps_per_s_all": rates,
        "steps": cycles * chunks,
    }


def profile_core(nodes: int, meshes: int, steps: int, top: int = 18) -> str:
    """cProfile of ``steps`` steps (observation + step) of the training configuration, top entries.

    Two views: the project's functions by cumulative time (where a step goes), then every function
    by its own time (the numpy calls that dominate).
    """
    core = _core(nodes, meshes, 1)
    core.reset()
    degree = np.maximum(core.degree[core.agent_rows], 1)
    actions = (np.random.default_rng(1).random((steps, degree.size)) * degree).astype(np.int64)
    prof = cProfile.Profile()
    prof.enable()
    for t in range(steps):
        core.agent_observation()
        core.step(actions[t])
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    buf.write(f"== cProfile, {meshes} x {nodes} nodes, {steps} steps: project functions by cumulative time\n")
    stats.sort_stats("cumulative").print_stats(r"(envs|agents)/", top)
    buf.write("== all functions by own time\n")
    stats.sort_stats("tottime").print_stats(top // 2)
    return buf.getvalue()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m eval.bench env``."""
    parser.add_argument("--steps", type=int, default=200, help="steps per timed episode (default 200, one episode)")
    parser.add_argument(
        "--episodes", type=int, default=5, help="timed episodes per configuration; the median counts (default 5)"
    )
    parser.add_argument(
        "--mpe-steps", type=int, default=1000, help="MPE simple_spread parallel steps per timed chunk (default 1000)"
    )
    parser.add_argument("--mpe-chunks", type=int, default=5, help="MPE timed chunks; the median counts (default 5)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also print a cProfile of the 64-node configuration (the hot spots, by own time)",
    )


def run(args: argparse.Namespace) -> dict:
    """Measure every configuration and MPE; print a table; return the figures."""
    console = Console()
    results: dict = {"env": {}}
    for nodes, meshes in CONFIGS:
        console.print(f"env: {meshes} x {nodes} nodes ...", style="dim")
        results["env"][str(nodes)] = bench_core(nodes, meshes, args.steps, args.episodes)
    console.print(f"env: {BIG_BATCH_64} x 64 nodes ...", style="dim")
    results["env_64_big_batch"] = bench_core(64, BIG_BATCH_64, args.steps, args.episodes)
    console.print("mpe simple_spread_v3 ...", style="dim")
    results["mpe_simple_spread"] = bench_mpe(args.mpe_steps, args.mpe_chunks)
    env = results["env"]
    mpe_rate = results["mpe_simple_spread"]["agent_steps_per_s"]
    ratio = env["64"]["agent_steps_per_s"] / mpe_rate
    scaling = env["256"]["us_per_agent_step"] / env["16"]["us_per_agent_step"]
    results["ratio_64_vs_mpe"] = ratio
    results["ratio_64_big_batch_vs_mpe"] = results["env_64_big_batch"]["agent_steps_per_s"] / mpe_rate
    results["per_agent_cost_256_vs_16"] = scaling
    results["goals"] = {
        "ratio_64_vs_mpe": {"goal": f">= {GOAL_VS_MPE}", "met": ratio >= GOAL_VS_MPE},
        "per_agent_cost_256_vs_16": {"goal": f"<= {GOAL_SCALING}", "met": scaling <= GOAL_SCALING},
    }

    table = Table(title="environment throughput (training configuration, random valid actions)")
    for col in ("config", "agents", "agent-steps/s", "ms/step", "us/agent-step", "reset s"):
        table.add_column(col, justify="right")
    for r in [*env.values(), results["env_64_big_batch"]]:
        table.add_row(
            f"{r['meshes']} x {r['nodes']} nodes",
            str(r["agents"]),
            f"{r['agent_steps_per_s']:,.0f}",
            f"{r['step_ms']:.2f}",
            f"{r['us_per_agent_step']:.2f}",
            f"{r['reset_s']:.3f}",
        )
    m = results["mpe_simple_spread"]
    table.add_row("MPE spread", str(m["agents"]), f"{mpe_rate:,.0f}", "", f"{1e6 / mpe_rate:.2f}", "")
    console.print(table)
    verdict = {True: "[green]met[/]", False: "[red]missed[/]"}
    console.print(f"env@64 / MPE = {ratio:.1f}x (goal >= {GOAL_VS_MPE:.0f}x): {verdict[ratio >= GOAL_VS_MPE]}")
    console.print(
        f"per-agent cost 256 / 16 nodes = {scaling:.2f} (goal <= {GOAL_SCALING:.0f}): "
        f"{verdict[scaling <= GOAL_SCALING]}"
    )
    console.print(f"(informational) {BIG_BATCH_64} x 64 nodes / MPE = {results['ratio_64_big_batch_vs_mpe']:.1f}x")
    if getattr(args, "profile", False):
        print(profile_core(64, 4, args.steps), flush=True)
    return results
