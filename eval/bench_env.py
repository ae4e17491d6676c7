"""Environment throughput: agent-steps/s at 16, 64 and 256 nodes vs PettingZoo MPE; one 4,096-node mesh.

Training configuration: one :class:`~envs.core.MeshCore` steps a batch of meshes (16 x 16 nodes,
4 x 64 nodes, 1 x 256 nodes by default: the same number of nodes per batch) and builds every
agent's observation each step, as ``envs.vector.MeshVecEnv`` does for PPO. Scenario: ``default``
with ``nodes`` set and ``streams = nodes / 4`` so the load per node stays the same. Actions are
random valid slots, precomputed, so the policy costs nothing. Reset (graph generation, shortest
paths) is timed separately and excluded from the rate.

Reference, in the same run: PettingZoo MPE ``simple_spread_v3`` (package ``mpe2``) parallel env
with random precomputed actions, agent-steps/s, resets excluded. The run goes in rounds, each
timing one episode of every configuration and one MPE chunk; rates are medians over rounds and
ratios are medians of per-round ratios, so figures compared were taken seconds apart on a noisy,
shared machine. A fourth row, 16 x 64 nodes, is the training configuration proper: the batch of
mesh copies PPO steps (``n_envs: 16`` in ``conf/train.yaml``); the goal's ratio uses it. The
4 x 64 row (equal nodes per batch across the three sizes, a quarter of the batching) is reported
beside it.

Scale row (issue 16): one mesh of ``--scale-nodes`` nodes (default 4,096; 16,384 is the largest a
scenario allows), same scenario recipe, timed in the first ``--scale-rounds`` rounds beside the
others. Its per-agent cost is compared with the 16 x 16 batch's in the same rounds. Memory: the
routing tables' bytes (``MeshCore.routing_state_bytes``) against the documented bound
``12 x nodes x min(streams x subscribers, honest)`` (``envs.core``), every numpy array the core and
its meshes hold after reset, the ``tracemalloc`` peak of the first reset (graph generation and
routing tables, the peak of an episode) and the process's peak RSS.

Goals (issue 3): env@64 in the training configuration / MPE >= 30 and per-agent cost at 256 nodes
<= 2x that at 16; (issue 16) per-agent cost at 4,096 nodes <= 2x that at 16.

Public API row (issue 16): one 64-node mesh stepped through the PettingZoo ``ParallelEnv``
(``envs.parallel.MeshEconomyEnv``: action dicts in, observation / reward / info dicts out), as an
external library sees it, against the same MPE chunks of each round; only ``step()`` is timed, as
for MPE (the action dicts are built outside the timer for both). Goal: >= 10x MPE (moonshot 30x).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import resource
import time
import tracemalloc

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from envs.core import MeshCore
from envs.scenario import MAX_NODES, load_scenario
from eval.cli import positive_int

#: (nodes, meshes per batch) measured.
CONFIGS: tuple[tuple[int, int], ...] = ((16, 16), (64, 4), (256, 1))
#: Extra row: 64-node meshes in the batch PPO uses (``n_envs: 16`` mesh copies in conf/train.yaml).
BIG_BATCH_64 = 16
GOAL_VS_MPE = 30.0
GOAL_SCALING = 2.0
#: Nodes of the scale row's single mesh (issue 16).
SCALE_NODES = 4096
MIB = 2**20
#: Nodes of the mesh stepped through the public parallel API, and its goal against MPE.
PARALLEL_NODES = 64
GOAL_PARALLEL_VS_MPE = 10.0


def _core(nodes: int, meshes: int, seed: int) -> MeshCore:
    scenario = load_scenario("default").replace(nodes=nodes, traffic={"streams": max(4, nodes // 4)})
    return MeshCore(scenario, n_meshes=meshes, seed=seed)


class CoreBench:
    """Times episodes of ``meshes`` meshes of ``nodes`` nodes (observation + step each step)."""

    def __init__(self, nodes: int, meshes: int, steps: int, seed: int = 0) -> None:
        self.nodes, self.meshes, self.steps = nodes, meshes, steps
        self.core = _core(nodes, meshes, seed)
        self.rng = np.random.default_rng(seed)
        self.rates: list[float] = []
        self.step_times: list[float] = []
        self.reset_times: list[float] = []
        self.agents = 0
        self.memory: dict = {}

    def episode(self, trace_memory: bool = False) -> float:
        """Time one episode (reset timed apart); returns its agent-steps/s.

        :param trace_memory: trace the reset with ``tracemalloc`` and record the memory figures in
            ``self.memory``; that reset's time (slowed by tracing) goes to ``reset_traced_s``, not ``reset_s``.
        """
        core = self.core
        t0 = time.perf_counter()
        if trace_memory:
            tracemalloc.start()
            core.reset()
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            self.memory = {**memory_figures(core, peak), "reset_traced_s": time.perf_counter() - t0}
        else:
            core.reset()
            self.reset_times.append(time.perf_counter() - t0)
        degree = np.maximum(core.degree[core.agent_rows], 1)
        actions = (self.rng.random((self.steps, degree.size)) * degree).astype(np.int64)
        self.agents = int(core.agent_valid.sum())
        t0 = time.perf_counter()
        for t in range(self.steps):
            core.agent_observation()
            core.step(actions[t])
        elapsed = time.perf_counter() - t0
        self.step_times.append(elapsed / self.steps)
        self.rates.append(self.agents * self.steps / elapsed)
        return self.rates[-1]

    def summary(self) -> dict:
        """Medians over the timed episodes."""
        rate = float(np.median(self.rates))
        # Only a traced reset (a scale row timed in one round): report its time, marked as traced,
        # rather than nan.
        traced = not self.reset_times and "reset_traced_s" in self.memory
        if self.reset_times:
            reset_s = float(np.median(self.reset_times))
        else:
            reset_s = float(self.memory.get("reset_traced_s", float("nan")))
        return {
            "nodes": self.nodes,
            "meshes": self.meshes,
            "agents": self.agents,
            "agent_steps_per_s": rate,
            "agent_steps_per_s_all": self.rates,
            "step_ms": 1e3 * float(np.median(self.step_times)),
            "us_per_agent_step": 1e6 / rate,
            "reset_s": reset_s,
            "reset_s_traced": traced,
            **self.memory,
        }


def _array_bytes(*objects: object) -> int:
    """Bytes of the numpy arrays among the attributes of ``objects`` (and of their dict values),
    each buffer counted once however many views share it."""
    owners: dict[int, int] = {}
    for obj in objects:
        for value in vars(obj).values():
            for item in value.values() if isinstance(value, dict) else (value,):
                if isinstance(item, np.ndarray):
                    while isinstance(item.base, np.ndarray):
                        item = item.base
                    owners[id(item)] = item.nbytes
    return sum(owners.values())


def memory_figures(core: MeshCore, traced_peak: int) -> dict:
    """Memory of a freshly reset ``core``, in MiB: routing tables vs their bound, all arrays, peaks."""
    bound = sum(
        12 * m.scenario.nodes * min(m.scenario.traffic.streams * m.stream_subs.shape[1], len(m.agents))
        for m in core.meshes
    )
    return {
        "destinations": int(sum(m.dests.size for m in core.meshes)),
        "routing_mib": core.routing_state_bytes() / MIB,
        "routing_bound_mib": bound / MIB,
        "arrays_mib": _array_bytes(core, core.memory, *core.meshes) / MIB,
        "reset_peak_traced_mib": traced_peak / MIB,
        "process_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


class ParallelApiBench:
    """Times episodes of one ``nodes``-node :class:`~envs.parallel.MeshEconomyEnv` through its public API."""

    def __init__(self, nodes: int, steps: int, seed: int = 0) -> None:
        from envs.parallel import MeshEconomyEnv

        scenario = load_scenario("default").replace(
            nodes=nodes, traffic={"streams": max(4, nodes // 4)}, episode_steps=steps
        )
        self.nodes, self.steps, self.seed = nodes, steps, seed
        self.env = MeshEconomyEnv(scenario)
        self.rng = np.random.default_rng(seed)
        self.rates: list[float] = []
        self.agents = len(self.env.possible_agents)

    def episode(self) -> float:
        """Time the ``step()`` calls of one episode (reset and action dicts not timed); agent-steps/s."""
        env = self.env
        obs, _ = env.reset(seed=self.seed + len(self.rates))
        agent_steps, step_time = 0, 0.0
        while env.agents:
            actions = {a: int(self.rng.choice(np.flatnonzero(o["action_mask"]))) for a, o in obs.items()}
            t0 = time.perf_counter()
            obs, *_ = env.step(actions)
            step_time += time.perf_counter() - t0
            agent_steps += len(actions)
        self.rates.append(agent_steps / step_time)
        return self.rates[-1]

    def summary(self) -> dict:
        """Median over the timed episodes."""
        rate = float(np.median(self.rates))
        return {
            "nodes": self.nodes,
            "agents": self.agents,
            "agent_steps_per_s": rate,
            "agent_steps_per_s_all": self.rates,
            "us_per_agent_step": 1e6 / rate,
        }


class MpeBench:
    """Times chunks of MPE ``simple_spread_v3`` (3 agents, discrete actions) with random actions."""

    def __init__(self, cycles: int, seed: int = 0) -> None:
        from mpe2 import simple_spread_v3

        self.cycles = cycles
        self.env = simple_spread_v3.parallel_env(max_cycles=25)
        self.env.reset(seed=seed)
        self.n_actions = self.env.action_space(self.env.possible_agents[0]).n
        self.rng = np.random.default_rng(seed)
        self.rates: list[float] = []

    def chunk(self) -> float:
        """Time ``cycles`` parallel steps (resets not timed); returns agent-steps/s."""
        env = self.env
        drawn = self.rng.integers(self.n_actions, size=(self.cycles, len(env.possible_agents)))
        agent_steps = 0
        step_time = 0.0
        for t in range(self.cycles):
            if not env.agents:
                env.reset()
            actions = {a: int(drawn[t, i]) for i, a in enumerate(env.agents)}
            t0 = time.perf_counter()
            env.step(actions)
            step_time += time.perf_counter() - t0
            agent_steps += len(actions)
        self.rates.append(agent_steps / step_time)
        return self.rates[-1]

    def summary(self) -> dict:
        """Median over the timed chunks."""
        return {
            "agents": len(self.env.possible_agents),
            "agent_steps_per_s": float(np.median(self.rates)),
            "agent_steps_per_s_all": self.rates,
            "steps": self.cycles * len(self.rates),
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


def _scale_nodes(text: str) -> int:
    """``--scale-nodes``: 0 (skip the row) or a node count a scenario allows."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value != 0 and not 4 <= value <= MAX_NODES:
        raise argparse.ArgumentTypeError(f"must be 0 (skip) or in [4, {MAX_NODES}], got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m eval.bench env``."""
    parser.add_argument(
        "--steps", type=positive_int, default=200, help="steps per timed episode (default 200, one episode)"
    )
    parser.add_argument(
        "--episodes",
        type=positive_int,
        default=5,
        help="rounds: each times one episode of every configuration and one MPE chunk; medians count (default 5)",
    )
    parser.add_argument(
        "--mpe-steps",
        type=positive_int,
        default=1000,
        help="MPE simple_spread parallel steps per timed chunk (default 1000)",
    )
    parser.add_argument(
        "--scale-nodes",
        type=_scale_nodes,
        default=SCALE_NODES,
        help=f"nodes of the scale row's single mesh (default {SCALE_NODES}; at most {MAX_NODES}; 0 skips the row)",
    )
    parser.add_argument(
        "--scale-rounds",
        type=positive_int,
        default=3,
        help="rounds (the first ones) that also time the scale row; its first reset is traced for memory (default 3)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also print a cProfile of the 64-node configuration (project functions by cumulative time, "
        "then every function by own time)",
    )


def run(args: argparse.Namespace) -> dict:
    """Measure every configuration and MPE in interleaved rounds; print a table; return the figures.

    Each round times one episode of every configuration and one MPE chunk, so the per-round
    ratios compare figures taken seconds apart; the reported ratios are medians over rounds.
    """
    console = Console()
    configs = [*CONFIGS, (64, BIG_BATCH_64)]
    benches = [CoreBench(nodes, meshes, args.steps) for nodes, meshes in configs]
    parallel = ParallelApiBench(PARALLEL_NODES, args.steps)
    mpe = MpeBench(args.mpe_steps)
    rounds = max(args.episodes, 1)
    scale_nodes = getattr(args, "scale_nodes", SCALE_NODES)
    scale = CoreBench(scale_nodes, 1, args.steps) if scale_nodes else None
    scale_rounds = min(getattr(args, "scale_rounds", 3), rounds)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("env benchmark rounds", total=rounds)
        for r in range(rounds):
            for bench in benches:
                bench.episode()
            if scale is not None and r < scale_rounds:
                # The first reset is traced for memory; its rate still counts, its reset time does not.
                scale.episode(trace_memory=r == 0)
            parallel.episode()
            mpe.chunk()
            progress.advance(task)
    mpe.env.close()
    *main_benches, big = benches
    by_nodes = {b.nodes: b for b in main_benches}
    results: dict = {
        "env": {str(b.nodes): b.summary() for b in main_benches},
        "env_64_big_batch": big.summary(),
        "parallel_api_64": parallel.summary(),
        "mpe_simple_spread": mpe.summary(),
    }
    env = results["env"]
    mpe_rate = results["mpe_simple_spread"]["agent_steps_per_s"]
    ratio = float(np.median(np.array(big.rates) / np.array(mpe.rates)))
    scaling = float(np.median(np.array(by_nodes[16].rates) / np.array(by_nodes[256].rates)))
    results["ratio_64_vs_mpe"] = ratio
    results["ratio_64_small_batch_vs_mpe"] = float(np.median(np.array(by_nodes[64].rates) / np.array(mpe.rates)))
    results["per_agent_cost_256_vs_16"] = scaling
    parallel_ratio = float(np.median(np.array(parallel.rates) / np.array(mpe.rates)))
    results["ratio_parallel_api_64_vs_mpe"] = parallel_ratio
    results["rounds"] = rounds
    results["goals"] = {
        "ratio_64_vs_mpe": {"goal": f">= {GOAL_VS_MPE}", "met": ratio >= GOAL_VS_MPE},
        "per_agent_cost_256_vs_16": {"goal": f"<= {GOAL_SCALING}", "met": scaling <= GOAL_SCALING},
        "ratio_parallel_api_64_vs_mpe": {
            "goal": f">= {GOAL_PARALLEL_VS_MPE}",
            "met": parallel_ratio >= GOAL_PARALLEL_VS_MPE,
        },
    }
    if scale is not None:
        paired = np.array(by_nodes[16].rates[: len(scale.rates)]) / np.array(scale.rates)
        scale_ratio = float(np.median(paired))
        results["env_scale"] = scale.summary()
        results["env_scale"]["process_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results["per_agent_cost_scale_vs_16"] = scale_ratio
        results["goals"]["per_agent_cost_scale_vs_16"] = {
            "goal": f"<= {GOAL_SCALING}",
            "met": scale_ratio <= GOAL_SCALING,
            "nodes": scale_nodes,
        }

    table = Table(title="environment throughput (training configuration, random valid actions)")
    for col in ("config", "agents", "agent-steps/s", "ms/step", "us/agent-step", "reset s"):
        table.add_column(col, justify="right")
    for r in [*env.values(), results["env_64_big_batch"], *([results["env_scale"]] if scale else [])]:
        table.add_row(
            f"{r['meshes']} x {r['nodes']} nodes",
            str(r["agents"]),
            f"{r['agent_steps_per_s']:,.0f}",
            f"{r['step_ms']:.2f}",
            f"{r['us_per_agent_step']:.2f}",
            f"{r['reset_s']:.3f}" + (" (traced)" if r.get("reset_s_traced") else ""),
        )
    p = results["parallel_api_64"]
    table.add_row(
        f"ParallelEnv, 1 x {p['nodes']} nodes",
        str(p["agents"]),
        f"{p['agent_steps_per_s']:,.0f}",
        "",
        f"{p['us_per_agent_step']:.2f}",
        "",
    )
    m = results["mpe_simple_spread"]
    table.add_row("MPE spread", str(m["agents"]), f"{mpe_rate:,.0f}", "", f"{1e6 / mpe_rate:.2f}", "")
    console.print(table)
    verdict = {True: "[green]met[/]", False: "[red]missed[/]"}
    console.print(
        f"env@64, training batch ({BIG_BATCH_64} x 64 nodes) / MPE = {ratio:.1f}x (goal >= {GOAL_VS_MPE:.0f}x): "
        f"{verdict[ratio >= GOAL_VS_MPE]}"
    )
    console.print(
        f"per-agent cost 256 / 16 nodes = {scaling:.2f} (goal <= {GOAL_SCALING:.0f}): "
        f"{verdict[scaling <= GOAL_SCALING]}"
    )
    console.print(
        f"public ParallelEnv API, 1 x {PARALLEL_NODES} nodes / MPE = {parallel_ratio:.1f}x "
        f"(goal >= {GOAL_PARALLEL_VS_MPE:.0f}x, moonshot 30x): {verdict[parallel_ratio >= GOAL_PARALLEL_VS_MPE]}"
    )
    console.print(
        f"4 x 64 nodes (a quarter of the training batch) / MPE = {results['ratio_64_small_batch_vs_mpe']:.1f}x"
    )
    if scale is not None:
        r = results["env_scale"]
        console.print(
            f"per-agent cost {scale_nodes} / 16 nodes = {scale_ratio:.2f} over {len(scale.rates)} rounds "
            f"(goal <= {GOAL_SCALING:.0f}): {verdict[scale_ratio <= GOAL_SCALING]}"
        )
        console.print(
            f"memory at {scale_nodes} nodes: routing tables {r['routing_mib']:.1f} MiB towards "
            f"{r['destinations']} subscribed destinations (true + advertised; the oracle's table adds half again; "
            f"bound with it {r['routing_bound_mib']:.1f} MiB; all-pairs "
            f"float64 would be {3 * 8 * scale_nodes**2 / MIB:,.0f} MiB), arrays {r['arrays_mib']:.1f} MiB, "
            f"reset peak {r['reset_peak_traced_mib']:.1f} MiB (tracemalloc), process peak RSS "
            f"{r['process_peak_rss_mib']:.0f} MiB"
        )
    if getattr(args, "profile", False):
        print(profile_core(64, 4, args.steps), flush=True)
    return results
