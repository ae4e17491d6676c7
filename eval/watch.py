"""``python -m eval.watch``: watch policies play one environment episode, live, in the web dashboard.

Every ``--policy`` plays the *same* episode (graph, roles, traffic and noise fixed by ``--seed``, as in
``eval.evaluate``), one panel each, side by side, at ``--speed`` steps per second::

    python -m eval.watch --scenario blackholes --policy checkpoints/default --policy seed
    # open http://127.0.0.1:8766/  (--port P; the URL is printed)

Each panel shows the mesh (nodes coloured by kind, a ring for the share of honest neighbours whose
empathy check finds the node coherent, edges as wide as the pieces they carried, the pieces in
flight), per node the pieces it forwarded, delivered (as destination) and lost (pieces that ended
undelivered there: refused hand-overs at the sender, blackholed pieces at the blackhole, expired
ones where they expired), its balance and the policy's decision time (one batched call divided
among the nodes that decided), and the episode's delivery rate and dishonest share over time. The
environment pays on every hop, so there is no unpaid credit and there are no channels here:
``python -m runtime.mesh --dashboard`` shows those for a live mesh.

``--json OUT`` writes the episode's final metrics per policy (``envs.core.MeshCore.metrics``).
After the episode the page stays up for ``--hold`` seconds (default: until Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from agents.baselines import BASELINES, RoutingPolicy
from agents.policies import PolicyError, policy_label, resolve_policy
from envs.core import HONEST, KIND_NAMES, LIVE, MeshCore
from envs.render import trust_in
from envs.scenario import Scenario, ScenarioError, load_scenario, shipped_scenarios
from eval.cli import OneLineParser, positive_int, seed_arg
from runtime.dashboard import DashboardServer
from runtime.dashboard.frames import MAX_PANELS

__all__ = ["WatchedCore", "build_parser", "main", "panel", "play"]

DEFAULT_PORT = 8766
#: Pieces in flight drawn per panel (the rest are counted, not drawn).
MAX_PIECES = 400
#: Steps over which an edge's recent flow is measured.
FLOW_WINDOW = 10


class UsageError(ValueError):
    """A user mistake reported as one line with exit status 2."""


class WatchedCore(MeshCore):
    """A :class:`~envs.core.MeshCore` that also counts, per node, pieces delivered and lost there."""

    def _assemble(self) -> None:
        super()._assemble()
        self.node_delivered = np.zeros(self.n_nodes, dtype=np.int64)
        self.node_lost = np.zeros(self.n_nodes, dtype=np.int64)
        self.decision_s = np.zeros(self.n_nodes)
        self.decisions = np.zeros(self.n_nodes, dtype=np.int64)
        self.traffic_history: list[np.ndarray] = []

    def _deliver(self, pids: np.ndarray) -> None:
        np.add.at(self.node_delivered, self.p_dst[pids], 1)
        super()._deliver(pids)

    def _resolve(self, pids: np.ndarray, delivered: bool) -> None:
        if not delivered and pids.size:
            np.add.at(self.node_lost, self.p_node[pids], 1)
        super()._resolve(pids, delivered)


def panel(core: WatchedCore, label: str) -> dict:
    """The dashboard panel (``runtime.dashboard.frames``) of mesh 0 of ``core``."""
    m = core.meshes[0]
    n = m.scenario.nodes
    ids = [f"n{i}" for i in range(n)]
    pos = np.asarray(m.positions, dtype=float)
    lo, span = pos.min(axis=0), np.maximum(np.ptp(pos, axis=0), 1e-9)
    pos = (pos - lo) / span
    trust = trust_in(core)[:n]
    metrics = core.metrics()[0]
    nodes = [
        {
            "id": ids[i],
            "kind": KIND_NAMES[int(core.kind[i])],
            "x": float(pos[i, 0]),
            "y": float(pos[i, 1]),
            "trust": None if math.isnan(trust[i]) else float(trust[i]),
            "forwarded": int(core.traffic[i].sum()),
            "delivered": int(core.node_delivered[i]),
            "dropped": int(core.node_lost[i]),
            "queue": int(core.queue_len[i]),
            "earned": round(float(core.balance[i]), 4),
            "unpaid": None,
            "decision_us": (
                round(1e6 * core.decision_s[i] / core.decisions[i], 1)
                if core.kind[i] == HONEST and core.decisions[i]
                else None
            ),
        }
        for i in range(n)
    ]
    history = core.traffic_history
    recent = core.traffic - history[0] if history else core.traffic
    edges, flows = [], []
    for u in range(n):
        for k in np.flatnonzero(core.mask[u]):
            v = int(core.nbr[u, k])
            if u < v:
                back = np.flatnonzero(core.nbr[v] == u)
                kb = int(back[0]) if back.size else None
                ab, ba = float(recent[u, k]), float(recent[v, kb]) if kb is not None else 0.0
                total = float(core.traffic[u, k] + (core.traffic[v, kb] if kb is not None else 0.0))
                edges.append({"a": ids[u], "b": ids[v], "traffic": total, "ab": ab, "ba": ba})
                flows += [ab, ba]
    peak = max(flows, default=0.0) or 1.0
    for e in edges:
        e["ab"], e["ba"] = round(e["ab"] / peak, 3), round(e["ba"] / peak, 3)
    live = np.flatnonzero((core.p_status == LIVE) & (core.p_arrive > core.t) & (core.p_hops > 0))[:MAX_PIECES]
    pieces = []
    for pid in live:
        h = int(core.p_hops[pid]) - 1
        a, slot, b = int(core.p_path_node[pid, h]), int(core.p_path_slot[pid, h]), int(core.p_node[pid])
        lat = max(int(core.latency[a, slot]), 1)
        pieces.append({"a": ids[a], "b": ids[b], "f": round(1 - (int(core.p_arrive[pid]) - core.t) / lat, 3)})
    return {
        "label": label,
        "money": "units",
        "nodes": nodes,
        "edges": edges,
        "pieces": pieces,
        "totals": {
            "sent": int(metrics["generated"]),
            "delivered": int(metrics["delivered"]),
            "delivery_rate": metrics["delivery_rate"],
            "dishonest_share": metrics["dishonest_share"],
        },
        "channels": None,
        "settlement": None,
        "attacks": None,
        "point": {
            "t": float(core.t),
            "delivery_rate": metrics["delivery_rate"],
            "dishonest_share": metrics["dishonest_share"],
        },
    }


def play(
    scenario: Scenario,
    policies: dict[str, RoutingPolicy],
    seed: int,
    speed: float,
    publish: Callable[[dict], object],
    title: str,
) -> dict[str, dict[str, float]]:
    """Play one episode (seed ``seed``) with every policy, publishing a frame per step; final metrics per label.

    :param speed: steps per second (``inf``: as fast as the machine goes).
    """
    cores: dict[str, WatchedCore] = {}
    rngs = {}
    for label in policies:
        core = WatchedCore(scenario, n_meshes=1)
        core.reset(episode_seeds=[seed])
        cores[label] = core
        rngs[label] = np.random.default_rng(seed)
    steps = scenario.episode_steps

    def frame(status: str) -> dict:
        now = next(iter(cores.values())).t
        return {
            "feed": "watch",
            "title": title,
            "status": status,
            "clock": {"now": now, "end": steps, "unit": "step"},
            "panels": [panel(core, label) for label, core in cores.items()],
        }

    publish(frame("running"))
    start = time.monotonic()
    for t in range(steps):
        for label, core in cores.items():
            policy = policies[label]
            obs = core.agent_observation()
            active = core.agent_active()
            oracle = core.oracle_slots() if getattr(policy, "needs_oracle", False) else None
            t0 = time.perf_counter()
            actions = policy.act(obs.features, obs.action_mask, rng=rngs[label], oracle_actions=oracle)
            spent = time.perf_counter() - t0
            deciders = core.agent_rows[active]
            if deciders.size:
                core.decision_s[deciders] += spent / deciders.size
                core.decisions[deciders] += 1
            core.traffic_history.append(core.traffic.copy())
            del core.traffic_history[:-FLOW_WINDOW]
            core.step(actions)
        publish(frame("running" if t + 1 < steps else "finished"))
        if math.isfinite(speed):
            time.sleep(max(0.0, start + (t + 1) / speed - time.monotonic()))
    return {label: core.metrics()[0] for label, core in cores.items()}


# ---------------------------------------------------------------------------- CLI


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of steps per second, got '{text}'") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got '{text}'") from None
    if not 0 <= value < 65536:
        raise argparse.ArgumentTypeError(f"must be in 0..65535, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m eval.watch`` argument parser."""
    p = OneLineParser(
        prog="python -m eval.watch",
        description="Play one episode of a scenario with one or more routing policies (the same episode for "
        "each) and watch it live in the web dashboard on http://127.0.0.1:PORT/.",
    )
    p.add_argument(
        "--scenario",
        required=True,
        metavar="NAME_OR_PATH",
        help=f"shipped scenario name ({', '.join(shipped_scenarios())}) or a YAML file",
    )
    p.add_argument(
        "--policy",
        action="append",
        required=True,
        metavar="NAME_OR_DIR",
        help=f"a baseline ({', '.join(BASELINES)}) or an exported policy directory; repeat (up to {MAX_PANELS}) "
        "to watch several side by side on the same episode",
    )
    p.add_argument("--seed", type=seed_arg, default=None, help="episode seed (default: the scenario's own seed)")
    p.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"dashboard port on 127.0.0.1 (default {DEFAULT_PORT}; 0: any)"
    )
    p.add_argument("--speed", type=_speed, default=10.0, help="environment steps per second (default 10)")
    p.add_argument(
        "--steps", type=positive_int, default=None, metavar="N", help="play N steps (default: the scenario's episode)"
    )
    p.add_argument(
        "--hold",
        type=float,
        default=None,
        metavar="SECONDS",
        help="keep the page up this long after the episode (default: until Ctrl-C)",
    )
    p.add_argument("--json", type=Path, metavar="OUT", help="write the episode's final metrics per policy here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on a user mistake, with a one-line message)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    server = None
    played = False
    try:
        if len(args.policy) > MAX_PANELS:
            raise UsageError(f"at most {MAX_PANELS} policies side by side, got {len(args.policy)}")
        scenario = load_scenario(args.scenario)
        if args.steps is not None:
            scenario = scenario.replace(episode_steps=args.steps)
        policies: dict[str, RoutingPolicy] = {}
        for spec in args.policy:
            label = policy_label(spec)
            if label in policies:
                raise UsageError(f"policy '{label}' given twice")
            policies[label] = resolve_policy(spec, allow_prefix=True)
        seed = scenario.seed if args.seed is None else args.seed
        try:
            server = DashboardServer(port=args.port).start()
        except OSError as err:
            raise UsageError(f"--port: cannot listen on 127.0.0.1:{args.port} ({err.strerror or err})") from None
        print(f"dashboard: {server.url}", file=sys.stderr, flush=True)
        title = f"{args.scenario} · seed {seed} · {' vs '.join(policies)}"
        results = play(scenario, policies, seed, args.speed, server.publish, title)
        played = True
        if args.json:
            payload = {
                "scenario": args.scenario,
                "seed": seed,
                "steps": scenario.episode_steps,
                "results": [{"policy": label, "metrics": m} for label, m in results.items()],
            }
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(payload, indent=2) + "\n")
            print(f"wrote {args.json}", file=sys.stderr)
        for label, m in results.items():
            print(f"{label}: delivery_rate {m['delivery_rate']:.3f}, dishonest_share {m['dishonest_share']:.3f}, "
                  f"delivered {int(m['delivered'])}/{int(m['generated'])}")  # fmt: skip
        hold = math.inf if args.hold is None else args.hold
        if hold > 0:
            until = "until Ctrl-C" if math.isinf(hold) else f"for {hold:g} s"
            print(f"dashboard: episode over, still serving {server.url} {until}", file=sys.stderr, flush=True)
            deadline = time.monotonic() + hold
            while time.monotonic() < deadline:
                time.sleep(max(0.0, min(1.0, deadline - time.monotonic())))
    except (ScenarioError, PolicyError, UsageError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: stopped", file=sys.stderr)
        return 0 if played else 130
    finally:
        if server is not None:
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
