"""Distributed PPO on Ray through RLlib: ``python -m training.rllib [options]`` (needs the ``[marl]`` extra).

Read top to bottom, a run:

1. reaches a Ray cluster: with ``--address`` an existing one (``auto``, ``HOST:PORT`` or
   ``ray://HOST:10001``); without, it starts a local head bound to 127.0.0.1 only (Ray would
   otherwise move loopback to the machine's interface) and checks with ``ss`` that none of the
   head's processes listens anywhere else, refusing to train if one does;
2. builds RLlib's PPO on the new API stack with the project's per-neighbour slot scorer,
   ``training.rllib_module.SlotScorerRLModule`` (masked categorical over slots), shared by every
   honest node. The environment (``--env-api``):

   * ``vector`` (default): each env runner steps ``--meshes`` meshes through the core at once,
     ``envs.gym_vector.MeshGymVectorEnv`` (a gymnasium vector env of agent slots, as
     ``MeshVecEnv`` is for SB3) sampled by RLlib's single-agent env runner;
   * ``pettingzoo``: ``envs.rllib`` (RLlib's ``ParallelPettingZooEnv`` over one
     ``MeshEconomyEnv`` per runner; a dict per agent per step), every agent mapped to one module.

   Each env runner plays different meshes (RLlib seeds runner ``i`` with ``seed + i x envs``);
3. for each count in ``--env-runners`` (e.g. ``1,2``) trains ``--iterations`` PPO iterations with
   that many env runners and reports mesh-steps/s and agent-steps/s (iterations after the first;
   the first pays for actor start-up), so one run compares runner counts on the same cluster;
4. optionally saves the last algorithm with ``--checkpoint DIR`` and writes the figures with ``--json``.

Sweeps over seeds or hyper-parameters go through ``python -m training.train -m`` with Hydra's Ray
launcher (docs/tutorials/first-policy.md); this entry trains one configuration on Ray's actors.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The one module every agent maps to (parameter sharing, as with SB3).
MODULE_ID = "shared"
#: Name the vectorised env creator is registered under.
VECTOR_ENV_NAME = "mesh_economy_vector"
ENV_APIS = ("vector", "pettingzoo")
LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|\[::1\]|\[::ffff:127\.\d+\.\d+\.\d+\])$")


class UserError(Exception):
    """A configuration mistake: reported in one line, exit status 2."""


# ---------------------------------------------------------------- cluster


def start_local_head(num_cpus: int, temp_dir: str | None = None) -> str:
    """Start a one-node Ray head on 127.0.0.1 only (no dashboard); returns its session folder.

    Ray replaces a loopback ``_node_ip_address`` by the machine's interface address unless
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (its single-machine mode) is set before ``ray`` is
    imported (this function also sets it on an already imported ``ray``); the autoscaler's metrics
    port is made ephemeral so that concurrent heads on one machine do not collide on its fixed default.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read by ray at import: the head's children
    os.environ.setdefault("AUTOSCALER_METRIC_PORT", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # the same switch, for a ray imported before the variable was set
    temp_dir = temp_dir or tempfile.mkdtemp(prefix="ray-")
    ray.init(
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        num_cpus=num_cpus,
        _temp_dir=temp_dir,
        log_to_driver=False,
        configure_logging=False,
    )
    return temp_dir


def _process_tree(root: int) -> set[int]:
    """``root`` and every descendant, from ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, []))
    return tree


@dataclass(frozen=True)
class Listener:
    """One listening TCP socket: its local address, port and owning process."""

    address: str
    port: int
    pid: int
    process: str

    @property
    def loopback(self) -> bool:
        return bool(LOOPBACK.match(self.address))


def listeners(root: int | None = None) -> list[Listener]:
    """Listening TCP sockets (``ss -ltnpH``) owned by ``root`` (default: this process) or its descendants."""
    tree = _process_tree(os.getpid() if root is None else root)
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True, timeout=30).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 6:
            continue
        address, _, port = fields[3].rpartition(":")
        for name, pid in re.findall(r'\("([^"]+)",pid=(\d+),', line):
            if int(pid) in tree:
                found.append(Listener(address, int(port), int(pid), name))
    return found


def check_loopback_only() -> list[Listener]:
    """Raise if a process of this Ray head listens on a non-loopback address; return the listeners."""
    found = listeners()
    exposed = [f"{s.process}(pid {s.pid}) on {s.address}:{s.port}" for s in found if not s.loopback]
    if exposed:
        raise RuntimeError("the local Ray head listens beyond 127.0.0.1: " + ", ".join(exposed))
    return found


# ---------------------------------------------------------------- algorithm


def ppo_config(
    scenario: str = "default",
    episode_steps: int | None = None,
    env_runners: int = 1,
    train_batch: int = 400,
    minibatch: int = 200,
    epochs: int = 2,
    lr: float = 3e-4,
    hidden: int = 64,
    depth: int = 2,
    seed: int | None = 0,
    env_api: str = "vector",
    meshes: int = 8,
) -> Any:
    """RLlib ``PPOConfig`` (new API stack) for the mesh with the shipped slot-scorer module.

    :param scenario: shipped scenario name or YAML path.
    :param episode_steps: episode length override (None keeps the scenario's).
    :param env_runners: remote env runners (0: sample in the driver).
    :param train_batch: env steps per training iteration (each env step is every honest node's step).
    :param minibatch: env steps per SGD minibatch.
    :param epochs: passes over each batch.
    :param lr: Adam learning rate.
    :param hidden: width of the scorer's layers.
    :param depth: layers of the per-slot trunk.
    :param seed: RLlib's seed (env runners and modules); None leaves them to fresh entropy.
    :param env_api: ``vector`` (a batch of meshes per runner through ``envs.gym_vector``) or
        ``pettingzoo`` (``envs.rllib``); see the module docstring.
    :param meshes: meshes each env runner steps together (``vector`` only). With ``vector`` the
        batch sizes still count env steps of one mesh (every honest node's step), so both APIs
        learn from the same number of agent-steps per iteration.
    """
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from envs.rllib import register
    from training.rllib_module import SlotScorerRLModule

    env_config = {"scenario": scenario, "episode_steps": episode_steps}
    module = RLModuleSpec(module_class=SlotScorerRLModule, model_config={"hidden": hidden, "depth": depth})
    if env_api == "vector":
        return _vector_config(env_config, module, env_runners, train_batch, minibatch, epochs, lr, seed, meshes)
    fragment = max(1, train_batch // max(env_runners, 1))
    config = (
        PPOConfig()
        .environment(register(), env_config=env_config)
        .multi_agent(policies={MODULE_ID}, policy_mapping_fn=lambda agent_id, *args, **kwargs: MODULE_ID)
        .rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs={MODULE_ID: module}))
        .env_runners(num_env_runners=env_runners, num_cpus_per_env_runner=1, rollout_fragment_length=fragment)
        .learners(num_learners=0)
        .training(train_batch_size_per_learner=train_batch, minibatch_size=minibatch, num_epochs=epochs, lr=lr)
        .reporting(metrics_num_episodes_for_smoothing=5)
    )
    if seed is not None:
        config = config.debugging(seed=seed)
    return config


def _vector_config(
    env_config: dict,
    module: Any,
    env_runners: int,
    train_batch: int,
    minibatch: int,
    epochs: int,
    lr: float,
    seed: int | None,
    meshes: int,
) -> Any:
    """The ``vector`` API's config: RLlib's single-agent env runner over ``envs.gym_vector``."""
    import gymnasium
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.tune.registry import register_env

    from envs.gym_vector import make_gym_vector_env
    from envs.scenario import as_scenario

    register_env(VECTOR_ENV_NAME, make_gym_vector_env)
    agents = as_scenario(env_config["scenario"]).honest_count()
    slots = meshes * agents
    batch = train_batch * agents  # agent-steps per iteration, as the PettingZoo path's env steps carry
    fragment = max(1, batch // (max(env_runners, 1) * slots))
    config = (
        PPOConfig()
        .environment(VECTOR_ENV_NAME, env_config=env_config)
        .rl_module(rl_module_spec=module)
        .env_runners(
            num_env_runners=env_runners,
            num_envs_per_env_runner=slots,
            gym_env_vectorize_mode=gymnasium.VectorizeMode.VECTOR_ENTRY_POINT,
            num_cpus_per_env_runner=1,
            rollout_fragment_length=fragment,
        )
        .learners(num_learners=0)
        .training(train_batch_size_per_learner=batch, minibatch_size=minibatch * agents, num_epochs=epochs, lr=lr)
        .reporting(metrics_num_episodes_for_smoothing=5 * slots)
    )
    config.mesh_agents = agents  # read back by train() to turn agent-steps into mesh-steps
    if seed is not None:
        config = config.debugging(seed=seed)
    return config


def _steps(value: Any) -> float:
    """RLlib reports some step counts per module as dicts: sum them."""
    if isinstance(value, dict):
        return float(sum(_steps(v) for v in value.values()))
    return float(value or 0.0)


def train(config: Any, iterations: int, progress: Any = None, label: str = "") -> dict:
    """Build the algorithm, run ``iterations`` ``train()`` calls, time them; returns the figures."""
    algo = config.build_algo()
    times, env_steps, agent_steps, returns = [], [], [], []
    try:
        for _ in range(iterations):
            t0 = time.perf_counter()
            result = algo.train()
            times.append(time.perf_counter() - t0)
            runners = result.get("env_runners", {})
            env_steps.append(_steps(runners.get("num_env_steps_sampled")))
            agent_steps.append(_steps(runners.get("num_agent_steps_sampled")))
            returns.append(float(runners.get("episode_return_mean", float("nan"))))
            if progress is not None:
                progress(label, len(times), iterations)
    except BaseException:
        algo.stop()
        raise
    timed = slice(1, None) if iterations > 1 else slice(None)  # the first iteration starts the actors
    seconds = sum(times[timed])
    agents = getattr(config, "mesh_agents", None)
    if agents:  # vector API: RLlib's env steps are agent slots' steps
        agent_steps = env_steps
        env_steps = [s / agents for s in env_steps]
    return {
        "env_runners": config.num_env_runners,
        "iterations": iterations,
        "seconds_per_iteration": times,
        "env_steps": sum(env_steps),
        "agent_steps": sum(agent_steps),
        "env_steps_per_s": sum(env_steps[timed]) / seconds if seconds else 0.0,
        "agent_steps_per_s": sum(agent_steps[timed]) / seconds if seconds else 0.0,
        "episode_return_mean": returns[-1] if returns else float("nan"),
        "_algo": algo,
    }


# ---------------------------------------------------------------- command line


def positive_int(text: str) -> int:
    """``argparse`` type: an integer of at least 1, with a one-line error otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def runner_counts(text: str) -> list[int]:
    """``argparse`` type: comma-separated env-runner counts, each >= 0 (``1,2``)."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected counts like 1,2, got '{text}'") from None
    if not counts or min(counts) < 0:
        raise argparse.ArgumentTypeError(f"expected counts >= 0 like 1,2, got '{text}'")
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.rllib",
        description="PPO on Ray through RLlib (new API stack) with the project's slot-scorer RLModule. "
        "Without --address it starts a local Ray head on 127.0.0.1 only.",
        epilog="Examples: python -m training.rllib --iterations 3 --env-runners 1,2   (compare runner counts)\n"
        "          python -m training.rllib --address auto --env-runners 8 --iterations 200   (a real cluster)\n"
        "Sweeps: python -m training.train -m hydra/launcher=ray ...\n"
        "        (Hydra's Ray launcher, see docs/tutorials/first-policy.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--scenario", default="default", help="shipped scenario name or YAML path (default: default)")
    add("--episode-steps", type=positive_int, default=None, help="episode length override (default: the scenario's)")
    add("--iterations", type=positive_int, default=3, help="PPO iterations per runner count (default 3)")
    add(
        "--env-runners",
        type=runner_counts,
        default=[1],
        help="remote env runners; a list like 1,2 trains once per count and reports each (default 1)",
    )
    add("--train-batch", type=positive_int, default=400, help="env steps per iteration (default 400)")
    add("--minibatch", type=positive_int, default=200, help="env steps per SGD minibatch (default 200)")
    add("--epochs", type=positive_int, default=2, help="passes over each batch (default 2)")
    add("--lr", type=float, default=3e-4, help="Adam learning rate (default 3e-4)")
    add("--hidden", type=positive_int, default=64, help="width of the scorer's layers (default 64)")
    add("--depth", type=positive_int, default=2, help="layers of the per-slot trunk (default 2)")
    add("--seed", type=int, default=0, help="RLlib seed of env runners and modules (default 0)")
    add(
        "--env-api",
        choices=ENV_APIS,
        default="vector",
        help="vector: each runner steps --meshes meshes through the core at once (default); "
        "pettingzoo: RLlib's ParallelPettingZooEnv, a dict per agent per step",
    )
    add("--meshes", type=positive_int, default=8, help="meshes per env runner with --env-api vector (default 8)")
    add(
        "--address",
        default=None,
        help="an existing Ray cluster: auto, HOST:PORT or ray://HOST:10001 (default: start a local head on 127.0.0.1)",
    )
    add("--num-cpus", type=positive_int, default=2, help="CPUs of the local head (default 2; ignored with --address)")
    add("--checkpoint", default=None, help="save the last algorithm to this folder")
    add("--json", default=None, help="write the figures to this JSON file")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Validate what argparse cannot (scenario, batch sizes)."""
    from envs.scenario import ScenarioError, as_scenario

    try:
        scenario = as_scenario(args.scenario)
    except ScenarioError as err:
        raise UserError(str(err)) from None
    if scenario.held_out:
        raise UserError(f"scenario '{args.scenario}' is marked held_out: it must never be trained on")
    if args.minibatch > args.train_batch:
        raise UserError(f"--minibatch ({args.minibatch}) must not exceed --train-batch ({args.train_batch})")
    if args.lr <= 0:
        raise UserError(f"--lr must be > 0, got {args.lr}")


def run(args: argparse.Namespace) -> dict:
    """Reach or start Ray, train once per runner count, print a table; returns the figures."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    check_args(args)
    console = Console()
    report: dict[str, Any] = {
        "address": args.address or "local head on 127.0.0.1",
        "env_api": args.env_api,
        "meshes_per_runner": args.meshes if args.env_api == "vector" else 1,
        "runs": [],
    }
    if args.address is None:
        report["ray_temp_dir"] = start_local_head(args.num_cpus)
        found = check_loopback_only()
        report["listeners"] = [f"{s.process}:{s.address}:{s.port}" for s in found]
        console.print(f"local Ray head: {len(found)} listening sockets, all on loopback")
    else:
        import ray

        ray.init(address=args.address, log_to_driver=False)
    import ray

    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("RLlib PPO", total=args.iterations * len(args.env_runners))

            def tick(label: str, done: int, total: int) -> None:
                progress.update(task, advance=1, description=f"RLlib PPO, {label}, iteration {done}/{total}")

            for count in args.env_runners:
                config = ppo_config(
                    args.scenario,
                    args.episode_steps,
                    count,
                    args.train_batch,
                    args.minibatch,
                    args.epochs,
                    args.lr,
                    args.hidden,
                    args.depth,
                    args.seed,
                    args.env_api,
                    args.meshes,
                )
                result = train(config, args.iterations, tick, f"{count} env runner(s)")
                algo = result.pop("_algo")
                if args.checkpoint and count == args.env_runners[-1]:
                    result["checkpoint"] = str(algo.save_to_path(str(Path(args.checkpoint).resolve())))
                algo.stop()
                report["runs"].append(result)
    finally:
        ray.shutdown()
    table = Table(title="RLlib PPO throughput (iterations after the first)")
    for col in ("env runners", "mesh-steps/s", "agent-steps/s", "s/iteration", "return (mean)"):
        table.add_column(col, justify="right")
    for r in report["runs"]:
        per_iter = r["seconds_per_iteration"][1:] or r["seconds_per_iteration"]
        table.add_row(
            str(r["env_runners"]),
            f"{r['env_steps_per_s']:,.1f}",
            f"{r['agent_steps_per_s']:,.0f}",
            f"{sum(per_iter) / len(per_iter):.2f}",
            f"{r['episode_return_mean']:.2f}",
        )
    console.print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
