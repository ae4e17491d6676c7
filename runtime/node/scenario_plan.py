"""The live mesh's plan from an environment scenario: one scenario, two worlds.

:func:`plan_from_scenario` draws the mesh with the environment's own generator
(``envs.core.build_mesh(scenario, seed)``, the very call the environment makes for an episode of
that seed) and turns it into what the launcher (:mod:`runtime.node.mesh`) gives each node process:

=====================  ==========================================================================
environment            live node
=====================  ==========================================================================
graph, link latency    the same links; a latency of L steps is ``L x step_ms`` of emulated delay
roles                  the same node ids ``n0..`` get the same kinds (``behaviour.kind``)
capacity, claimed      ``behaviour.capacity`` (size units per step), ``behaviour.claimed_bw``
base cost              ``behaviour.base_cost``
streams, subscribers   the same sources and subscribers, round-robin as in the environment
offered load           ``rate = load x 0.5 / step_s`` pieces/s (Poisson per step -> Poisson process)
piece value and size   value ``traffic.value x U[0.5, 1.5]``, size ``U[0.5, 1.5]`` (as the env)
deadline               ``2 x shortest-path latency + deadline_slack`` steps, the shortest path
                       measured on the true graph like the environment's (``route_steps``), not
                       on the routing tables a blackhole lies to
queue limit            ``behaviour.queue_limit``
adversary parameters   overprice factor, grey hole's drop probability, on-off cycle, selective
                       threshold ``traffic.value x (0.5 + value_quantile)``
payment                ``economy.payment``
episode                ``episode_steps x step_ms`` of streaming
=====================  ==========================================================================

What the live mesh cannot play is refused with a one-line :class:`ScenarioPlanError`: a
whitewasher (it needs a fresh on-chain identity), ``dynamics`` (churn, turning, load shifts),
unsigned receipts (a live destination always signs) and more nodes than :data:`MAX_LIVE_NODES`.

The node-count limit of one machine: every node is a Python process (about 80-100 MB resident
with numpy, web3 and the sqlite store) holding one TCP connection and one payment channel per
neighbour, and it must service its timers within a step of ``step_ms``. Memory allows a few
hundred on a large machine; the CPU does not: with ``C`` cores and the default 50 ms step, the
mesh keeps its emulated clock (see each node's ``clock_lag_*`` stats) up to roughly ``12 x C``
nodes at the shipped scenarios' load. :data:`MAX_LIVE_NODES` is the hard ceiling.
"""

from __future__ import annotations

__all__ = [
    "MAX_LIVE_NODES",
    "ScenarioPlanError",
    "live_duration_s",
    "plan_from_scenario",
    "scenario_from_flags",
    "stream_rate",
    "structure",
]

#: Most node processes one launcher starts (ports, processes and the CPU of one machine).
MAX_LIVE_NODES = 64


class ScenarioPlanError(ValueError):
    """The scenario cannot be played live (one line, for the user)."""


def stream_rate(load: float, step_ms: float) -> float:
    """Pieces per second a stream emits live for the environment's offered ``load``."""
    from envs.core import STREAM_RATE_AT_FULL_LOAD

    return load * STREAM_RATE_AT_FULL_LOAD / (step_ms / 1000.0)


def live_duration_s(scenario, step_ms: float) -> float:
    """Seconds of streaming that play one episode of ``scenario`` (``episode_steps x step_ms``)."""
    return scenario.episode_steps * step_ms / 1000.0


def tail_s(scenario, mesh, step_ms: float) -> float:
    """Seconds after the last emission by which every piece is delivered or past its deadline: the
    longest deadline (``2 x`` the longest stream's shortest path ``+ deadline_slack`` steps) plus a step."""
    import numpy as np

    longest = 0.0
    for s, src in enumerate(mesh.stream_src):
        for x in mesh.stream_subs[s]:
            if x >= 0:
                row = int(np.searchsorted(mesh.dests, x))
                longest = max(longest, float(mesh.dist[row, int(src)]))
    return (2 * longest + scenario.traffic.deadline_slack + 1) * step_ms / 1000.0


def scenario_from_flags(nodes: int, adversaries: dict[str, int], seed: int, rate: float, step_ms: float):
    """The scenario the old flags (``--nodes --adversaries --rate --step-ms``) stand for.

    ``adversaries`` holds counts of the environment's placed kinds (a forger already folded into
    the blackholes by the caller); ``rate`` pieces/s becomes the load that emits it.
    """
    from envs.core import STREAM_RATE_AT_FULL_LOAD
    from envs.scenario import as_scenario

    load = min(4.0, max(1e-6, rate * (step_ms / 1000.0) / STREAM_RATE_AT_FULL_LOAD))
    return as_scenario(
        {
            "name": f"flags-{nodes}",
            "nodes": nodes,
            "topology": {"kind": "random_geometric", "mean_degree": 4},
            "traffic": {"streams": max(2, nodes // 2), "subscribers": 2, "load": load},
            "adversaries": {k: v / nodes for k, v in adversaries.items()},
            "seed": seed,
        }
    )


def _check_live(scenario) -> None:
    if scenario.nodes > MAX_LIVE_NODES:
        raise ScenarioPlanError(
            f"scenario '{scenario.name}': {scenario.nodes} nodes, more than one machine hosts as processes "
            f"(at most {MAX_LIVE_NODES}; pass --nodes N to play it smaller)"
        )
    counts = scenario.adversary_counts()
    if counts.get("whitewasher", 0):
        raise ScenarioPlanError(
            f"scenario '{scenario.name}': whitewashers need a fresh on-chain identity and are not played live"
        )
    d = scenario.dynamics
    if d.churn is not None or d.turn_dishonest is not None or d.load_shift is not None:
        raise ScenarioPlanError(
            f"scenario '{scenario.name}': dynamics (churn, turn_dishonest, load_shift) are not played live"
        )
    if scenario.economy.receipts != "signed":
        raise ScenarioPlanError(
            f"scenario '{scenario.name}': live destinations always sign receipts (receipts: signed)"
        )


def plan_from_scenario(scenario, seed: int, step_ms: float, rate: float | None = None) -> dict:
    """The live mesh of ``scenario``'s episode ``seed``: ids, kinds, capacities, links, streams.

    :param step_ms: wall-clock milliseconds of one environment step.
    :param rate: pieces/s of every stream instead of the scenario's load (the ``--rate`` shortcut).
    :raises ScenarioPlanError: a scenario the live mesh cannot play (see the module docstring).
    """
    from envs.core import KIND_NAMES, build_mesh

    _check_live(scenario)
    mesh = build_mesh(scenario, seed)
    n = scenario.nodes
    ids = [f"n{i}" for i in range(n)]
    links = []
    for u in range(n):
        for k in range(mesh.mask.shape[1]):
            if mesh.mask[u, k]:
                v = int(mesh.nbr[u, k])
                if u < v:
                    links.append((ids[u], ids[v], float(mesh.latency[u, k]) * step_ms))
    tr = scenario.traffic
    per_second = stream_rate(tr.load, step_ms) if rate is None else rate
    dest_row = {int(d): r for r, d in enumerate(mesh.dests)}
    streams: dict[str, list[dict]] = {i: [] for i in ids}
    for s, src in enumerate(mesh.stream_src):
        subs = [int(x) for x in mesh.stream_subs[s] if x >= 0]
        streams[ids[int(src)]].append(
            {
                "subscribers": [ids[x] for x in subs],
                "rate": per_second,
                "value": float(tr.value),
                # the environment's deadline uses the true shortest path (envs.core._emit)
                "route_steps": {ids[x]: float(mesh.dist[dest_row[x], int(src)]) for x in subs},
                # one episode of emission, then its tail (tail_s) lets the last pieces arrive or expire
                "emit_for_s": live_duration_s(scenario, step_ms),
            }
        )
    kinds = [KIND_NAMES[int(k)] for k in mesh.kind]
    return {
        "scenario": scenario.name,
        "seed": seed,
        "step_ms": step_ms,
        "ids": ids,
        "kinds": kinds,
        "capacity": [float(c) for c in mesh.capacity],
        "claimed": [float(c) for c in mesh.claimed],
        "base_cost": [float(c) for c in mesh.base_cost],
        "links": links,
        "streams": streams,
        "queue_limit": scenario.economy.queue_limit,
        "deadline_slack": tr.deadline_slack,
        "overprice_factor": scenario.economy.overprice_factor,
        "payment": scenario.economy.payment,
        "duration_s": live_duration_s(scenario, step_ms),
        "tail_s": tail_s(scenario, mesh, step_ms),
        "attack_params": {
            "drop_probability": scenario.adversary("grey_hole").drop_probability,
            "honest_steps": scenario.adversary("on_off").honest_steps,
            "attack_steps": scenario.adversary("on_off").attack_steps,
            # piece values are uniform in [0.5, 1.5] x traffic.value (envs.core._emit)
            "value_threshold": tr.value * (0.5 + scenario.adversary("selective").value_quantile),
        },
        "positions": [[float(x), float(y)] for x, y in mesh.positions],
    }


def structure(plan: dict) -> dict:
    """The structural part of a plan (graph, roles, streams), for comparing two worlds."""
    return {
        "kinds": dict(zip(plan["ids"], plan["kinds"], strict=True)),
        "links": sorted((a, b, round(lat, 6)) for a, b, lat in plan["links"]),
        "streams": {n: [sorted(s["subscribers"]) for s in ss] for n, ss in plan["streams"].items() if ss},
    }
