"""``python -m runtime.mesh``: run a small live mesh of node processes that pay each other on chain.

Steps: start anvil (unless ``--rpc-url``), deploy ``StreamChannels``, draw a mesh from the
environment's own generator (``envs.core.build_mesh``: graph, link latencies, roles, capacities,
claimed bandwidths, costs, streams), fund one fresh key per node, start one
``python -m runtime.node`` process per node (scripted dishonest ones among them), wait until every
channel is open and confirmed, start the streams (SIGUSR1), show a live table for ``--duration``
seconds, stop every node gracefully (SIGTERM: drain, claim, start closing), then settle on chain
(advance anvil's clock past the challenge period and ``finalizeClose`` every channel) and write JSON:

=========================  ==========================================================================
key                        meaning
=========================  ==========================================================================
pieces_sent                pieces the sources emitted
pieces_delivered           pieces delivered to their subscriber before the deadline
delivery_rate              pieces_delivered / pieces_sent
dishonest_share            share of hops (pieces accepted by a node) handled by dishonest nodes
vouchers                   vouchers verified and stored by payees
claimed_onchain_wei        sum of every channel's ``claimed`` on chain after settlement
owed_by_vouchers_wei       sum of the last voucher each payee holds, per channel (from its store)
refunded_wei               deposits minus claims returned to payers by ``finalizeClose``
deposits_wei               sum of channel deposits
gas_used                   gas of every transaction of the run (deploy, open, claim, close, finalise)
settled_exactly            claimed == owed and deposits == claimed + refunded, to the wei
settlement                 ``direct`` (payees claim) or ``net`` (an operators' root pays, ``--settlement``)
settlement_gas_used        gas of the transactions that paid payees: claims, or roots, net claims,
                           fraud proofs and fallback claims
gas_per_node_epoch         settlement_gas_used / (nodes * epochs of the run)
gas_per_settled_wei        settlement_gas_used / claimed_onchain_wei
gas_breakdown              per category (``runtime.chain.gas.CATEGORIES``: deploy, funding, open_deposit,
                           claims, net_roots, net_claims, fraud_proofs, flow_attestations, ...):
                           ``{"gas", "txs"}``
roots_executed             net roots that paid (``net``), roots_voided: net roots voided by a proof
payment                    ``on_delivery`` (a hop is paid on the destination's receipt) or ``per_hop``
receipts_verified          receipts honest hops verified (signed by the destination, matching the piece)
forged_receipts_rejected   fake delivery claims honest nodes rejected (bad signer or unsigned)
earned_wei_by_kind         per node kind, the vouchers its payees' stores hold (what they can claim)
success_estimates_of_...   per dishonest node, each honest neighbour's final success estimate of it
                           and the number of resolved pieces behind it (``[estimate, n]``)
honest_delivery_rate       on-time deliveries / pieces sent, over streams between two honest nodes
honest_alive               every honest node ran to the end and exited 0
attacks                    per wire-level attacker kind: ``frames_sent`` (its attack frames or
                           connections), ``rejected`` (what its honest neighbours refused from it,
                           ``rejected_reasons`` by reason), ``attacker_earned_wei`` (claimed on
                           chain by it), ``attacker_served_wei`` (the charges its honest payers
                           checked and accepted) and ``earned_within_served``
delivered_last_fifth_...   share of on-time deliveries made in the last fifth of the piece's deadline
                           (how tight ``--deadline-slack`` makes them)
honest_cutoffs_by_reason   links between two honest nodes closed for a protocol violation, by reason
                           class (both lives of a restarted node counted)
honest_ledgers             per honest payer -> payee channel at the end: ``pairs``, ``agreeing`` (the
                           payee holds exactly the payer's last signed voucher and books nothing more
                           as owed) and the ``disagreeing`` ones with both figures
restarts                   the ``--kill-restarts`` done: ``[node, seconds into the run]``
learned                    per learned node: its attacker's ``decisions``, ``forwarded``,
                           ``dropped``, ``held``, pieces ``received``, ``earned_wei`` (vouchers held),
                           its ``last`` announcements (``{}`` without learned nodes)
=========================  ==========================================================================

Adversaries: the environment's scripted kinds (``blackhole``, ``overpricer``, ``bandwidth_liar``,
``forger``, and the adaptive ``grey_hole``, ``on_off`` and ``selective`` with the scenario's default
parameters, drawn by ``envs.core.build_mesh``; a whitewasher needs a fresh on-chain identity and is
not offered live), ``learned`` nodes played by the exported attacker of ``--attacker-policy``
(:mod:`runtime.node.learned`; placed like the environment places them, told who their fellow
attackers are, forwarding along the shortest path) and the wire-level attackers of :mod:`runtime.node.attackers`
(``vack_forger``, ``piece_bomber``, ``route_poisoner``, ``handshake_flooder``, ``info_flooder``,
``price_gouger``, ``id_reuser``, ``rating_flooder``, ``proof_splicer``), which take the place of honest nodes chosen
from the seed (nodes that neither source nor receive a stream first). ``slanderer`` and
``ballot_stuffer`` lie in trust gossip (:mod:`runtime.node.gossip`); ``--no-gossip`` runs the same
mesh without it, and the report's ``detection_s`` and ``false_accusations``
(:mod:`runtime.node.trust_report`) compare the two.

Keys: node keys are derived from ``--seed`` for a local anvil (throwaway) or generated at random
for a remote chain; each reaches its node through an environment variable, never a file or a log.
With ``--rpc-url`` the funding key comes from ``$OPENSTREAMING_FUNDER_KEY``, and what the random
node keys still hold at the end (refunds, unused gas money) is swept back to it (``swept_back_wei``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runtime.node.protocol import DROPPING_KINDS
from runtime.node.scenario_plan import MAX_LIVE_NODES, ScenarioPlanError, plan_from_scenario, scenario_from_flags
from runtime.node.trust_report import TrustTracker

__all__ = ["main", "run_mesh"]

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_ADVERSARY_KINDS = (
    "blackhole", "overpricer", "bandwidth_liar", "forger", "grey_hole", "on_off", "selective", "learned",
    "slanderer", "ballot_stuffer",
)  # fmt: skip
#: Kinds that lie in trust gossip and are told who their fellow cheats are (behaviour.allies).
GOSSIP_LIARS = ("slanderer", "ballot_stuffer", "learned")
#: runtime.node.learned.LEARNED_KIND: nodes played by the attacker policy of --attacker-policy
LEARNED = "learned"
#: runtime.node.attackers.ATTACK_KINDS (spelled out so that --help needs no import of the node)
WIRE_ATTACK_KINDS = (
    "vack_forger", "piece_bomber", "route_poisoner", "handshake_flooder", "info_flooder", "price_gouger", "id_reuser",
    "rating_flooder", "proof_splicer",
)  # fmt: skip
ADVERSARY_KINDS = ENV_ADVERSARY_KINDS + WIRE_ATTACK_KINDS
# envs.core codes (4, the forger, is placed as a blackhole here: see plan_mesh)
KIND_CODES = {
    0: "honest",
    1: "bandwidth_liar",
    2: "blackhole",
    3: "overpricer",
    5: "grey_hole",
    6: "on_off",
    7: "selective",
    9: "slanderer",
    10: "ballot_stuffer",
    11: LEARNED,
}
OVERPRICE_FACTOR = 4.0
BLACKHOLE_UNDERCUT = 0.85


class UsageError(Exception):
    """A user mistake: one line, exit status 2."""


def parse_adversaries(text: str | None) -> dict[str, int]:
    """``blackhole=1,overpricer=1`` -> counts; raises :class:`UsageError` on anything else."""
    counts = dict.fromkeys(ADVERSARY_KINDS, 0)
    if not text:
        return counts
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or name not in counts:
            raise UsageError(f"--adversaries: '{part}' is not KIND=COUNT with KIND in {', '.join(ADVERSARY_KINDS)}")
        try:
            counts[name] = int(value)
        except ValueError:
            raise UsageError(f"--adversaries: count '{value}' for {name} is not an integer") from None
        if counts[name] < 0:
            raise UsageError(f"--adversaries: count for {name} must be >= 0")
    return counts


def _derive_key(seed: int, index: int) -> str:
    from runtime.chain.vouchers import SECP256K1_N, keccak256

    raw = int.from_bytes(keccak256(f"openstreaming-mesh-dev-key/{seed}/{index}".encode()), "big") % SECP256K1_N
    return "0x" + max(raw, 1).to_bytes(32, "big").hex()


def plan_mesh(nodes: int, adversaries: dict[str, int], seed: int, rate: float, step_ms: float) -> dict:
    """Draw the mesh with ``envs.core.build_mesh`` and return a plain plan (roles, links, streams)."""
    total = sum(adversaries.values())
    # A forger is a blackhole that also forges delivery claims: placed as the environment places
    # blackholes, then the best-connected of them become the forgers.
    placed = {k: v for k, v in adversaries.items() if k != "forger"}
    placed["blackhole"] = placed.get("blackhole", 0) + adversaries.get("forger", 0)
    if nodes < 4:
        raise UsageError(f"--nodes must be at least 4, got {nodes}")
    if nodes - total < 2:
        raise UsageError(f"--adversaries: {total} dishonest nodes leave fewer than 2 honest of {nodes}")
    # the old flags are a shortcut that builds a scenario (runtime.node.scenario_plan)
    placed = {k: v for k, v in placed.items() if k in ENV_ADVERSARY_KINDS}
    scenario = scenario_from_flags(nodes, placed, seed, rate, step_ms)
    plan = plan_from_scenario(scenario, seed, step_ms, rate=rate)
    ids, kinds, links, streams = plan["ids"], plan["kinds"], plan["links"], plan["streams"]
    for stream in (s for ss in streams.values() for s in ss):
        stream.pop("emit_for_s")  # the flags' streams emit for all of --duration, not for one episode
    # the best-connected of the placed blackholes forge (a leaf would see no traffic to lie about)
    degree = {i: 0 for i in ids}
    for a, b, _ in links:
        degree[a] += 1
        degree[b] += 1
    holes = sorted((i for i, k in enumerate(kinds) if k == "blackhole"), key=lambda i: (-degree[ids[i]], i))
    for i in holes[: adversaries.get("forger", 0)]:
        kinds[i] = "forger"
    _place_attackers(kinds, ids, streams, adversaries, seed, links)
    return plan


def plan_scenario(spec: str, nodes: int | None, adversaries: dict[str, int], seed: int, step_ms: float) -> dict:
    """The plan of scenario ``spec`` (a shipped name or a YAML file; ``nodes`` resizes it) for episode
    ``seed``, with the wire-level attackers of ``adversaries`` placed on top (see
    :mod:`runtime.node.scenario_plan`)."""
    from envs.scenario import ScenarioError, load_scenario

    env_kinds = [k for k in ENV_ADVERSARY_KINDS if adversaries.get(k)]
    if env_kinds:
        raise UsageError(
            f"--adversaries: with --scenario the scenario places {', '.join(env_kinds)}; name only wire-level attackers"
        )
    try:
        scenario = load_scenario(spec)
        if nodes is not None:
            scenario = scenario.replace(nodes=nodes)
        plan = plan_from_scenario(scenario, seed, step_ms)
    except (ScenarioError, ScenarioPlanError) as err:
        raise UsageError(f"--scenario: {err}") from None
    _place_attackers(plan["kinds"], plan["ids"], plan["streams"], adversaries, seed, plan["links"])
    return plan


def _place_attackers(
    kinds: list[str], ids: list[str], streams: dict, adversaries: dict[str, int], seed: int, links: list
) -> None:
    """Turn honest nodes into the wire-level attackers asked for, drawn from ``seed``: nodes that
    neither source nor receive a stream first (so the honest traffic stays comparable), and, where
    the graph allows it, never a node whose loss splits the honest nodes (so honest delivery
    measures the honest nodes' defence, not whether an attacker on the only path relays)."""
    import numpy as np

    wanted = [k for k in WIRE_ATTACK_KINDS for _ in range(adversaries.get(k, 0))]
    if not wanted:
        return
    sources = {n for n, s in streams.items() if s}
    subscribers = {x for s in streams.values() for st in s for x in st["subscribers"]}
    rng = np.random.default_rng([seed, 11])
    honest = [i for i, k in enumerate(kinds) if k == "honest"]
    order = sorted(honest, key=lambda i: ((ids[i] in sources) + (ids[i] in subscribers), rng.random()))
    if len(order) - len(wanted) < 2:
        raise UsageError(f"--adversaries: {len(wanted)} attackers leave fewer than 2 honest nodes")
    adj: dict[str, set[str]] = {n: set() for n in ids}
    for a, b, _ in links:
        adj[a].add(b)
        adj[b].add(a)

    def honest_connected(taken: set[int]) -> bool:
        rest = {ids[i] for i in honest if i not in taken}
        if not rest:
            return False
        seen, todo = set(), [next(iter(rest))]
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(adj[n] & rest)
        return seen == rest

    chosen: list[int] = []
    for i in order:  # preferred nodes first, skipping those that would split the honest nodes
        if len(chosen) < len(wanted) and honest_connected({*chosen, i}):
            chosen.append(i)
    chosen += [i for i in order if i not in chosen][: len(wanted) - len(chosen)]
    for i, kind in zip(chosen, wanted, strict=True):
        kinds[i] = kind


def _term_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the node gets SIGTERM (a graceful drain) if the launcher dies, instead of leaking."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn_node(workdir: Path, nid: str, env: dict[str, str], log_mode: str) -> subprocess.Popen:
    """Starts node ``nid`` from ``workdir/nid.json`` with ``env`` (its key included), stderr to ``nid.stderr``."""
    with open(workdir / f"{nid}.stderr", log_mode) as err:
        return subprocess.Popen(
            [sys.executable, "-m", "runtime.node", "--config", str(workdir / f"{nid}.json")],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            preexec_fn=_term_with_parent if sys.platform.startswith("linux") else None,
        )


def _free_ports(n: int) -> list[int]:
    import socket

    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class _Table:
    """The live rich table (or nothing when stdout is not a terminal and quiet is asked)."""

    def __init__(self, enabled: bool) -> None:
        self.live = None
        if enabled:
            from rich.console import Console
            from rich.live import Live

            console = Console(stderr=True)
            if not console.is_terminal:
                console = Console(stderr=True, width=120)
            self.live = Live(console=console, refresh_per_second=2, transient=False)
            self.live.start()

    def update(self, snaps: dict[str, dict], kinds: dict[str, str], elapsed: float, duration: float) -> None:
        if self.live is None:
            return
        from rich.table import Table

        t = Table(title=f"OpenStreaming live mesh - {elapsed:4.1f}/{duration:g} s")
        for col in ("node", "kind", "sent", "recv", "fwd", "deliv", "drop", "vouch in", "earned", "unpaid", "rejects"):
            t.add_column(col, justify="right")
        for nid, snap in snaps.items():
            st = snap.get("stats", {})
            unpaid = sum(p.get("unpaid_wei", 0) for p in snap.get("peers", {}).values())
            t.add_row(
                nid,
                kinds[nid],
                str(int(st.get("generated", 0))),
                str(int(st.get("received", 0))),
                str(int(st.get("forwarded", 0))),
                str(int(st.get("delivered", 0))),
                str(int(st.get("dropped", 0))),
                str(int(st.get("vouchers_received", 0))),
                f"{st.get('earned_wei', 0) / 1e12:.1f}µ",
                f"{unpaid / 1e12:.2f}µ",
                str(int(st.get("rejected", 0))),
            )
        self.live.update(t)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def run_mesh(args: argparse.Namespace, feed=None) -> dict:
    """Run the mesh described by ``args`` (see :func:`build_parser`) and return the report.

    :param feed: a :class:`runtime.node.dashboard_feed.MeshFeed` to publish the run to (``--dashboard``).
    """
    from runtime.chain.anvil import DEV_PRIVATE_KEYS, Anvil
    from runtime.chain.client import StreamChannelsClient, connect

    adversaries = parse_adversaries(args.adversaries)
    step_ms = args.step_ms
    if getattr(args, "scenario", None):
        plan = plan_scenario(args.scenario, args.nodes, adversaries, args.seed, step_ms)
        if args.duration is None:  # one episode of emission, then the tail its last pieces need
            args.duration = plan["duration_s"] + plan["tail_s"]
    else:
        plan = plan_mesh(args.nodes, adversaries, args.seed, args.rate, step_ms)
    ids, kinds = plan["ids"], plan["kinds"]
    if feed is not None:
        feed.plan(plan, args.policy, args.duration)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="mesh-", dir=_runs_dir()))
    workdir.mkdir(parents=True, exist_ok=True)
    if any(workdir.glob("*.sqlite")):
        raise UsageError(f"--workdir {workdir} holds node stores of another run; give an empty directory")
    anvil = None
    service = None
    procs: dict[str, subprocess.Popen] = {}
    table = _Table(not args.quiet)
    try:
        if args.rpc_url:
            rpc_url = args.rpc_url
            funder = os.environ.get("OPENSTREAMING_FUNDER_KEY")
            if not funder:
                raise UsageError("--rpc-url needs a funding key in $OPENSTREAMING_FUNDER_KEY")
            node_keys = ["0x" + os.urandom(32).hex() for _ in ids]
        else:
            # The settlement service's epochs are counted in blocks: with operators, blocks come
            # every second whether or not there are transactions.
            block_time = ("--block-time", "1") if args.operators else ()
            anvil = Anvil(chain_id=args.chain_id, accounts=2, extra_args=block_time).start()
            rpc_url = anvil.rpc_url
            funder = DEV_PRIVATE_KEYS[0]
            node_keys = [_derive_key(args.seed, i) for i in range(len(ids))]
        w3 = connect(rpc_url)
        chain_id = w3.eth.chain_id
        if chain_id != args.chain_id and not args.rpc_url:
            raise UsageError(f"anvil answered chain id {chain_id}, expected {args.chain_id}")
        first_block = w3.eth.block_number + 1
        channels = StreamChannelsClient.deploy(w3, funder)
        from eth_account import Account

        addresses = [Account.from_key(k).address for k in node_keys]
        funder_acct = Account.from_key(funder)
        degree = {i: 0 for i in ids}
        for a, b, _ in plan["links"]:
            degree[a] += 1
            degree[b] += 1
        nonce = w3.eth.get_transaction_count(funder_acct.address, "pending")
        hashes = []
        for i, addr in enumerate(addresses):
            amount = args.deposit_wei * degree[ids[i]] + 10**17  # deposits + gas
            tx = {
                "to": addr,
                "value": amount,
                "gas": 21000,
                "gasPrice": w3.eth.gas_price,
                "nonce": nonce + i,
                "chainId": chain_id,
            }
            hashes.append(w3.eth.send_raw_transaction(funder_acct.sign_transaction(tx).raw_transaction))
        for h in hashes:
            w3.eth.wait_for_transaction_receipt(h)

        if args.operators:
            from runtime.settlement.service import SettlementService

            random_keys = bool(args.rpc_url)
            op_keys = [
                "0x" + os.urandom(32).hex() if random_keys else _derive_key(args.seed, 1000 + i)
                for i in range(args.operators)
            ]
            reporter = "0x" + os.urandom(32).hex() if random_keys else _derive_key(args.seed, 2000)
            service = SettlementService(
                w3, rpc_url, channels.address, funder, workdir / "settlement", op_keys, reporter,
                epoch_blocks=args.epoch_blocks, faulty=args.faulty_operator,
                attest_flows=args.settlement != "net",  # net: the net root is the attested record
            )  # fmt: skip
            service.start(_free_ports)
        if feed is not None:
            feed.attach_chain(rpc_url, channels.address, addresses, service)
        ports = _free_ports(len(ids))
        peers: dict[str, list[dict]] = {i: [] for i in ids}
        for a, b, lat in plan["links"]:
            ia, ib = ids.index(a), ids.index(b)
            peers[a].append({"node_id": b, "port": ports[ib], "address": addresses[ib], "latency_ms": lat})
            peers[b].append({"node_id": a, "port": ports[ia], "address": addresses[ia], "latency_ms": lat})
        learned_ids = [nid for nid, kind in zip(ids, kinds, strict=True) if kind == LEARNED]
        slack = plan["deadline_slack"] if args.deadline_slack is None else args.deadline_slack
        deadline = {"deadline_slack": slack, "deadline_factor": args.deadline_factor}
        for i, nid in enumerate(ids):
            kind = kinds[i]
            cfg = {
                "node_id": nid,
                "listen": {"port": ports[i]},
                "peers": peers[nid],
                # a learned node forwards along the greedy shortest path, as in the environment
                "policy": "shortest" if kind == LEARNED else args.policy,
                "store": str(workdir / f"{nid}.sqlite"),
                "chain": {
                    "rpc_url": rpc_url,
                    "chain_id": chain_id,
                    "contract": channels.address,
                    "deposit_wei": args.deposit_wei,
                    "claim_interval_s": args.claim_interval,
                    "settlement": args.settlement,
                    # a real chain cannot skip the challenge period: payees release at exit instead
                    "release_on_exit": bool(args.rpc_url),
                },
                "key_env": "OPENSTREAMING_NODE_KEY",
                "stats_file": str(workdir / f"{nid}.stats.json"),
                "log_file": str(workdir / f"{nid}.log"),
                "behaviour": {
                    "kind": "honest" if args.disarm and kind in WIRE_ATTACK_KINDS else kind,
                    "capacity": plan["capacity"][i],
                    "claimed_bw": plan["claimed"][i],
                    "base_cost": plan["base_cost"][i],
                    "price_factor": plan.get("overprice_factor", OVERPRICE_FACTOR)
                    if kind == "overpricer"
                    else BLACKHOLE_UNDERCUT
                    if kind in DROPPING_KINDS
                    else 1.0,
                    "step_ms": step_ms,
                    "drain_s": args.drain_s,
                    "queue_limit": plan["queue_limit"],
                    **plan["attack_params"],
                    # the mesh tells each learned node who its fellow attackers are
                    **({"allies": [o for o in learned_ids if o != nid]} if kind == LEARNED else {}),
                    **(
                        {"allies": [o for o, k in zip(ids, kinds, strict=True) if k != "honest" and o != nid]}
                        if kind in GOSSIP_LIARS and kind != LEARNED
                        else {}
                    ),
                    "gossip": not getattr(args, "no_gossip", False),
                },
                **({"attacker_policy": str(Path(args.attacker_policy).resolve())} if kind == LEARNED else {}),
                "streams": [{**s, **deadline} for s in plan["streams"][nid]],
                "payment": args.payment,
                # every node knows every other's address, so each hop checks each receipt itself
                "directory": {other: addresses[j] for j, other in enumerate(ids) if other != nid},
                "settlement": (
                    {
                        "avs": service.avs.address,
                        "epoch_blocks": args.epoch_blocks,
                        "operator_urls": service.proof_urls(),
                    }
                    if service is not None
                    else None
                ),
                "seed": args.seed * 1000 + i,
            }
            (workdir / f"{nid}.json").write_text(json.dumps(cfg, indent=1))
        env_base = {k: v for k, v in os.environ.items() if k != "OPENSTREAMING_NODE_KEY"}
        for i, nid in enumerate(ids):
            procs[nid] = spawn_node(workdir, nid, {**env_base, "OPENSTREAMING_NODE_KEY": node_keys[i]}, "wb")
        # wait until every node is up and every channel confirmed both ways
        stats_paths = {nid: workdir / f"{nid}.stats.json" for nid in ids}
        deadline = time.monotonic() + args.startup_timeout
        while True:
            snaps = {nid: _read(p) for nid, p in stats_paths.items()}
            dead = [nid for nid, p in procs.items() if p.poll() is not None]
            if dead:
                tail = (workdir / f"{dead[0]}.stderr").read_text(errors="replace")[-600:]
                raise RuntimeError(f"node {dead[0]} exited during startup: {tail}")
            ok = all(
                s.get("ready") and all(p.get("pay_confirmed") and p.get("recv_channel") for p in s["peers"].values())
                for s in snaps.values()
            )
            if ok:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"mesh not ready after {args.startup_timeout:g} s (see {workdir})")
            time.sleep(0.2)
        startup = {nid: s.get("startup_s") for nid, s in snaps.items()}
        for p in procs.values():
            p.send_signal(signal.SIGUSR1)
        t0 = time.monotonic()
        restarter = _Restarter(args, ids, kinds, workdir, node_keys, env_base, procs)
        trust = TrustTracker(ids, kinds, plan["links"])
        while (elapsed := time.monotonic() - t0) < args.duration:
            snaps = {nid: _read(p) for nid, p in stats_paths.items()}
            trust.check(snaps, elapsed)
            table.update(snaps, dict(zip(ids, kinds, strict=True)), elapsed, args.duration)
            if feed is not None:
                feed.update(snaps, elapsed)
            restarter.tick(elapsed, snaps)
            dead = [nid for nid, p in procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"node {dead[0]} died during the run (see {workdir})")
            time.sleep(0.5)
        restarter.finish()
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        codes = {nid: p.returncode for nid, p in procs.items()}
        snaps = {nid: _read(p) for nid, p in stats_paths.items()}
        table.update(snaps, dict(zip(ids, kinds, strict=True)), args.duration, args.duration)
        table.stop()
        if feed is not None:
            feed.update(snaps, args.duration, "settling")
        net_outcome = None
        if args.settlement == "net":
            from runtime.node.net_settlement import settle_net

            net_outcome = settle_net(
                w3, channels, service.avs, funder, op_keys, node_keys, [workdir / f"{nid}.sqlite" for nid in ids],
                store_dir=workdir / "settlement", faulty=args.faulty_operator, retry=_retry_nonce_race,
            )  # fmt: skip
        settlement = settle(w3, channels, [workdir / f"{nid}.sqlite" for nid in ids], funder)
        if service is not None:
            service.wait_settled(timeout=30.0)
            attestation = service.report()
            checks = [s.get("settlement_checks") or {} for s in snaps.values()]
            attestation["node_epochs_checked"] = sum(c.get("epochs_checked", 0) for c in checks)
            attestation["node_flow_mismatches"] = sum(c.get("mismatches", 0) for c in checks)
        last_block = w3.eth.block_number
        gas_used = 0
        settlement_gas = 0  # claims, roots, fraud proofs: the gas that moves money to payees
        for n in range(first_block, last_block + 1):
            for tx in w3.eth.get_block(n)["transactions"]:
                used = int(w3.eth.get_transaction_receipt(tx)["gasUsed"])
                gas_used += used
                if _is_settlement_tx(w3.eth.get_transaction(tx), channels.address, net_outcome):
                    settlement_gas += used
        from runtime.chain.gas import gas_breakdown

        breakdown = gas_breakdown(w3, range(first_block, last_block + 1))
        swept = _sweep(w3, node_keys, funder_acct.address, chain_id) if args.rpc_url else 0
        report = summarize(snaps, ids, kinds)
        held = _held_by_channel([workdir / f"{nid}.sqlite" for nid in ids])
        report.update(honest_links_report(snaps, restarter.earlier_lives(), ids, kinds, held))
        report["restarts"] = restarter.done
        report["gossip"] = not getattr(args, "no_gossip", False)
        report.update(trust.report(snaps, args.duration))
        report.update(earnings(ids, kinds, [workdir / f"{nid}.sqlite" for nid in ids]))
        by_pair = settlement.pop("claimed_by_pair", {})
        report.update(settlement)
        report.update(attack_report(snaps, ids, kinds, addresses, by_pair, codes))
        report["learned"] = learned_report(snaps, ids, kinds, report["earned_wei_by_node"], args.attacker_policy)
        if service is not None:
            report.update(attestation)
        report["swept_back_wei"] = swept
        epochs = max(1, (last_block - first_block + 1) // args.epoch_blocks)
        report.update(
            settlement=args.settlement,
            settlement_gas_used=settlement_gas,
            gas_per_node_epoch=settlement_gas / (len(ids) * epochs),
            gas_per_settled_wei=settlement_gas / max(1, report["claimed_onchain_wei"]),
            **(net_outcome.as_report() if net_outcome is not None else {"roots_executed": 0, "roots_voided": 0}),
            gas_breakdown=breakdown,
        )
        report.update(
            gas_used=gas_used,
            nodes=len(ids),
            scenario=getattr(args, "scenario", None),
            step_ms=step_ms,
            duration_s=args.duration,
            policy=args.policy,
            payment=args.payment,
            seed=args.seed,
            adversaries=adversaries,
            disarmed=bool(args.disarm),
            kinds=dict(zip(ids, kinds, strict=True)),
            exit_codes=codes,
            startup_s=startup,
            chain_id=chain_id,
            contract=channels.address,
            workdir=str(workdir),
        )
        if feed is not None:
            feed.finish(snaps, report)
        return report
    finally:
        table.stop()
        if feed is not None:
            feed.stop()
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=5)
        if service is not None:
            service.stop()
        if anvil is not None:
            anvil.stop()


class _Restarter:
    """``--kill-restarts N``: N times, evenly spread over the run, kill -9 the busiest honest node
    (most pieces taken in, not yet restarted) and start it again ``--restart-delay`` seconds later
    from the same config and store; its streams restart once it is ready again."""

    def __init__(self, args, ids, kinds, workdir: Path, keys, env_base, procs) -> None:
        self.n, self.delay, self.duration = args.kill_restarts, args.restart_delay, args.duration
        self.ids, self.kinds, self.workdir, self.keys, self.env_base, self.procs = (
            ids, kinds, workdir, keys, env_base, procs,
        )  # fmt: skip
        self.done: list[list] = []
        self._waiting: str | None = None  # restarted, streams to start once ready
        self._lives: dict[str, list[dict]] = {}

    def tick(self, elapsed: float, snaps: dict[str, dict]) -> None:
        if self._waiting is not None:
            snap = _read(self.workdir / f"{self._waiting}.stats.json")
            if snap.get("ready"):
                self.procs[self._waiting].send_signal(signal.SIGUSR1)
                self._waiting = None
            return
        k = len(self.done)
        if k >= self.n or elapsed < self.duration * (k + 1) / (self.n + 1):
            return
        restarted = {nid for nid, _ in self.done}
        busy = [
            (snaps.get(nid, {}).get("stats", {}).get("received", 0), nid)
            for nid, kind in zip(self.ids, self.kinds, strict=True)
            if kind == "honest" and nid not in restarted
        ]
        if not busy:
            return
        _, nid = max(busy)
        proc = self.procs[nid]
        proc.kill()
        proc.wait(timeout=10)
        stats = self.workdir / f"{nid}.stats.json"
        self._lives.setdefault(nid, []).append(_read(stats))  # what the killed life last reported
        stats.unlink(missing_ok=True)
        time.sleep(self.delay)
        env = {**self.env_base, "OPENSTREAMING_NODE_KEY": self.keys[self.ids.index(nid)]}
        self.procs[nid] = spawn_node(self.workdir, nid, env, "ab")  # its second life appends to the same log
        self._waiting = nid
        self.done.append([nid, round(elapsed, 1)])

    def finish(self) -> None:
        """The run ends: a node restarted too late to be ready still gets its SIGUSR1 (harmless)."""
        if self._waiting is not None and self.procs[self._waiting].poll() is None:
            self.procs[self._waiting].send_signal(signal.SIGUSR1)

    def earlier_lives(self) -> dict[str, list[dict]]:
        """Node id -> the last stats of each of its killed lives."""
        return self._lives


def _held_by_channel(stores: list[Path]) -> dict[int, int]:
    """Channel id -> the highest voucher its payee's store holds (what it can claim, in any life)."""
    from runtime.node.store import Store

    held: dict[int, int] = {}
    for path in stores:
        if path.exists():
            store = Store(path)
            for cid, v in store.latest("received").items():
                held[cid] = max(held.get(cid, 0), v.cumulative)
            store.close()
    return held


def honest_links_report(
    snaps: dict[str, dict],
    lives: dict[str, list[dict]],
    ids: list[str],
    kinds: list[str],
    held_by_channel: dict[int, int] | None = None,
) -> dict:
    """Cut-offs between honest nodes by reason, honest ledgers at the end, how tight deadlines were.

    A payer's ledger is what it signed (its snapshot, restored from its store after a restart); the
    payee's is the voucher its store holds (``held_by_channel``; else its snapshot) and what it still
    books as owed beyond it."""
    kind_of = dict(zip(ids, kinds, strict=True))
    honest = {n for n in ids if kind_of[n] == "honest"}
    cutoffs: dict[str, int] = {}
    for n in honest:
        for snap in [snaps.get(n, {}), *lives.get(n, [])]:
            for peer, reasons in snap.get("cutoffs_by_peer", {}).items():
                if peer in honest:
                    for reason, count in reasons.items():
                        cutoffs[reason] = cutoffs.get(reason, 0) + int(count)
    pairs = agreeing = 0
    disagreeing = []
    for a in sorted(honest):
        for b, pa in snaps.get(a, {}).get("peers", {}).items():
            if b not in honest or pa.get("pay_channel") is None:
                continue
            pb = snaps.get(b, {}).get("peers", {}).get(a, {})
            pairs += 1
            signed, held, unpaid = pa.get("pay_cumulative", 0), pb.get("recv_paid", 0), pb.get("unpaid_wei", 0)
            if held_by_channel is not None:
                held = held_by_channel.get(pa["pay_channel"], 0)
            if signed == held and unpaid == 0:
                agreeing += 1
            else:
                disagreeing.append({"payer": a, "payee": b, "signed": signed, "held": held, "unpaid_wei": unpaid})
    st = [snaps.get(n, {}).get("stats", {}) for n in ids]
    delivered = sum(s.get("delivered", 0) for s in st)
    last_fifth = sum(s.get("delivered_last_fifth", 0) for s in st)
    return {
        "honest_cutoffs_by_reason": cutoffs,
        "honest_ledgers": {"pairs": pairs, "agreeing": agreeing, "disagreeing": disagreeing},
        "delivered_last_fifth_share": last_fifth / delivered if delivered else 0.0,
    }


def _sweep(w3, keys: list[str], to: str, chain_id: int) -> int:
    """Send what the run's throwaway node keys still hold (refunds, unused gas) back to the funder."""
    from eth_account import Account

    total = 0
    price = w3.eth.gas_price
    hashes = []
    for key in keys:
        acct = Account.from_key(key)
        value = w3.eth.get_balance(acct.address) - 21000 * price
        if value <= 0:
            continue
        tx = {"to": to, "value": value, "gas": 21000, "gasPrice": price, "chainId": chain_id,
              "nonce": w3.eth.get_transaction_count(acct.address, "pending")}  # fmt: skip
        hashes.append(w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction))
        total += value
    for h in hashes:
        w3.eth.wait_for_transaction_receipt(h)
    return total


def _runs_dir() -> str:
    d = REPO_ROOT / "runs"
    d.mkdir(exist_ok=True)
    return str(d)


def summarize(snaps: dict[str, dict], ids: list[str], kinds: list[str]) -> dict:
    """Traffic figures from the nodes' final stats."""
    st = {nid: snaps.get(nid, {}).get("stats", {}) for nid in ids}
    sent = sum(s.get("generated", 0) for s in st.values())
    delivered = sum(s.get("delivered", 0) for s in st.values())
    hops = sum(s.get("received", 0) for s in st.values())
    dishonest_hops = sum(st[n].get("received", 0) for n, k in zip(ids, kinds, strict=True) if k != "honest")
    return {
        "pieces_sent": int(sent),
        "pieces_delivered": int(delivered),
        "delivery_rate": delivered / sent if sent else 0.0,
        "hops": int(hops),
        "dishonest_hops": int(dishonest_hops),
        "dishonest_share": dishonest_hops / hops if hops else 0.0,
        "hops_by_kind": {
            kind: int(sum(st[n].get("received", 0) for n, k in zip(ids, kinds, strict=True) if k == kind))
            for kind in sorted(set(kinds))
        },
        # steps from a piece's birth to its on-time delivery (the environment's mean_latency)
        "mean_latency_steps": sum(s.get("delivered_latency_steps", 0) for s in st.values()) / delivered
        if delivered
        else 0.0,
        # ingests the CPU served more than a step after their emulated time (a loaded machine)
        "clock_lag": {
            "ingests": int(sum(s.get("ingest_served", 0) for s in st.values())),
            "late_by_over_a_step": int(sum(s.get("clock_lag_events", 0) for s in st.values())),
            "mean_s": sum(s.get("clock_lag_sum_s", 0) for s in st.values())
            / max(1, sum(s.get("ingest_served", 0) for s in st.values())),
            "max_s": max((s.get("clock_lag_max_s", 0) for s in st.values()), default=0.0),
        },
        "vouchers": int(sum(s.get("vouchers_received", 0) for s in st.values())),
        "vouchers_sent": int(sum(s.get("vouchers_sent", 0) for s in st.values())),
        "rejections": int(sum(s.get("rejected", 0) for s in st.values())),
        # pieces refused because the node already held them: loops (the environment lets a piece revisit)
        "duplicate_pieces": int(sum(s.get("duplicate_pieces", 0) for s in st.values())),
        "delivered_late": int(sum(s.get("delivered_late", 0) for s in st.values())),
        "receipts_signed": int(sum(s.get("receipts_signed", 0) for s in st.values())),
        "receipts_verified": int(sum(s.get("receipts_verified", 0) for s in st.values())),
        "forged_receipts_rejected": int(
            sum(st[n].get("forged_receipts", 0) for n, k in zip(ids, kinds, strict=True) if k != "forger")
        ),
        "forged_claims_sent": int(
            sum(st[n].get("forged_receipts", 0) for n, k in zip(ids, kinds, strict=True) if k == "forger")
        ),
        "late_receipts": int(sum(s.get("late_receipts", 0) for s in st.values())),
        "unpaid_for_lack_of_receipt_wei": int(sum(s.get("unpaid_for_lack_of_receipt_wei", 0) for s in st.values())),
        "success_estimates_of_dishonest": _estimates_of_dishonest(snaps, ids, kinds),
        "paid_wei_by_nodes": int(sum(s.get("paid_wei", 0) for s in st.values())),
        "decision_us_per_piece": round(
            1e6
            * sum(s.get("decision_seconds", 0) for s in st.values())
            / max(1, sum(s.get("decisions", 0) for s in st.values())),
            1,
        ),
        "per_node": {
            n: {
                k: st[n].get(k, 0)
                for k in ("generated", "received", "forwarded", "delivered", "dropped", "vouchers_received")
            }
            for n in ids
        },
    }


def earnings(ids: list[str], kinds: list[str], stores: list[Path]) -> dict:
    """What each node can claim, from the vouchers its own store holds (verified money, not its word)."""
    from runtime.node.store import Store

    per_node: dict[str, int] = {}
    for nid, path in zip(ids, stores, strict=True):
        total = 0
        if path.exists():
            store = Store(path)
            total = sum(v.cumulative for v in store.latest("received").values())
            store.close()
        per_node[nid] = int(total)
    by_kind = {kind: 0 for kind in sorted(set(kinds))}
    for nid, kind in zip(ids, kinds, strict=True):
        by_kind[kind] += per_node[nid]
    return {"earned_wei_by_kind": by_kind, "earned_wei_by_node": per_node}


def _estimates_of_dishonest(snaps: dict[str, dict], ids: list[str], kinds: list[str]) -> dict:
    """Each honest neighbour's final success estimate of each dishonest node (memory's ``success``),
    with the number of resolved pieces behind it: ``{node: {"kind", "by": {honest: [estimate, n]}, "max"}}``."""
    kind_of = dict(zip(ids, kinds, strict=True))
    out: dict[str, dict] = {}
    for bad, kind in kind_of.items():
        if kind == "honest":
            continue
        by = {}
        for nid, snap in snaps.items():
            peer = snap.get("peers", {}).get(bad)
            if kind_of.get(nid) == "honest" and peer is not None:
                by[nid] = [peer.get("success"), peer.get("success_count", 0)]
        known = [v[0] for v in by.values() if v[0] is not None and v[1] > 0]
        out[bad] = {"kind": kind, "by": by, "max_with_evidence": max(known) if known else None}
    return out


def _retry_nonce_race(send, attempts: int = 5):
    """The settlement service's aggregator signs with the funder key too: a transaction sent at the
    same moment takes the same nonce and one is refused ("underpriced" / "nonce too low"); resend."""
    for i in range(attempts):
        try:
            return send()
        except Exception as exc:
            text = str(exc).lower()
            if i == attempts - 1 or not ("underpriced" in text or "nonce" in text):
                raise
            time.sleep(0.3 * (i + 1))
    return None


#: selectors of the channel contract's claims (``claim``, ``claimBatch``)
_CLAIM_SELECTORS = ("0x5eddd157", "0x74b426bb")


def _is_settlement_tx(tx, channels_address: str, net_outcome) -> bool:
    """Whether ``tx`` moved money to payees: a direct claim, or a root, net claim or fraud proof."""
    if net_outcome is not None and tx["hash"].to_0x_hex() in net_outcome.tx_hashes:
        return True
    data = tx["input"].to_0x_hex() if hasattr(tx["input"], "to_0x_hex") else str(tx["input"])
    return (tx.get("to") or "").lower() == channels_address.lower() and data[:10] in _CLAIM_SELECTORS


def settle(w3, channels, stores: list[Path], funder: str) -> dict:
    """After the nodes stopped: compare chain and stores, fast-forward, finalise, sum the money."""
    from runtime.node.store import Store

    owed: dict[int, int] = {}
    for path in stores:
        if not path.exists():
            continue
        store = Store(path)
        for cid, v in store.latest("received").items():
            owed[cid] = max(owed.get(cid, 0), v.cumulative)
        store.close()
    n = channels.next_channel_id()
    states = {cid: channels.channel(cid) for cid in range(1, n)}
    claimed_before_finalize = sum(s.claimed for s in states.values())
    max_period = max((channels.contract.functions.challengePeriodOf(c).call() for c in states), default=0)
    # A dev chain (anvil) can skip the challenge period; a real chain cannot: its channels are then
    # left closing, to be finalised by their payers' next start (or anyone) after closes_at.
    answer = w3.provider.make_request("evm_increaseTime", [int(max_period) + 1])
    can_warp = "error" not in answer
    if can_warp:
        w3.provider.make_request("evm_mine", [])
    unclosed = 0
    pending = 0
    for cid, s in states.items():
        if s.settled:
            continue
        if s.closes_at == 0:
            unclosed += 1
            continue
        if not can_warp:
            pending += 1
            continue
        _retry_nonce_race(lambda cid=cid: channels.finalize_close(cid))
    final = {cid: channels.channel(cid) for cid in states}
    # a settled channel paid deposit - claimed back to its payer (by finalizeClose or the payee's release)
    refunded = sum(s.deposit - s.claimed for s in final.values() if s.settled)
    claimed_by_pair: dict[tuple[str, str], int] = {}  # (payer, payee) -> claimed on chain
    for s in final.values():
        pair = (s.payer.lower(), s.payee.lower())
        claimed_by_pair[pair] = claimed_by_pair.get(pair, 0) + s.claimed
    deposits = sum(s.deposit for s in final.values())
    claimed = sum(s.claimed for s in final.values())
    owed_total = sum(owed.values())
    per_channel_equal = all(final[c].claimed == owed.get(c, 0) for c in final)
    return {
        "channels": len(final),
        "deposits_wei": deposits,
        "claimed_onchain_wei": claimed,
        "owed_by_vouchers_wei": owed_total,
        "refunded_wei": refunded,
        "unclosed_channels": unclosed,
        "channels_awaiting_finalize": pending,
        "claimed_before_finalize_wei": claimed_before_finalize,
        "per_channel_claimed_equals_last_voucher": per_channel_equal,
        "settled_exactly": per_channel_equal
        and claimed == owed_total
        and deposits == claimed + refunded
        and unclosed == 0,
        "contract_balance_after_wei": channels.balance(),
        "claimed_by_pair": claimed_by_pair,
    }


def attack_report(
    snaps: dict[str, dict], ids: list[str], kinds: list[str], addresses: list[str], claimed_by_pair: dict, codes: dict
) -> dict:
    """``honest_delivery_rate``, ``honest_alive`` and, per wire-level attacker kind, what it sent,
    what honest nodes rejected from it and what it earned on chain from honest payers against what
    they accepted to pay it for (what it served)."""
    kind_of = dict(zip(ids, kinds, strict=True))
    honest = [n for n in ids if kind_of[n] == "honest"]
    sent = sum(snaps.get(n, {}).get("generated_to", {}).get(d, 0) for n in honest for d in honest)
    got = sum(snaps.get(n, {}).get("delivered_from", {}).get(s, 0) for n in honest for s in honest)
    attacks: dict[str, dict] = {}
    for i, n in enumerate(ids):
        kind = kind_of[n]
        if kind not in WIRE_ATTACK_KINDS:
            continue
        a = attacks.setdefault(kind, {"nodes": [], "frames_sent": 0, "rejected": 0, "rejected_reasons": {},
                                      "attacker_earned_wei": 0, "attacker_served_wei": 0})  # fmt: skip
        a["nodes"].append(n)
        a["frames_sent"] += int(snaps.get(n, {}).get("stats", {}).get("attack_frames", 0))
        neighbours = [h for h in honest if n in snaps.get(h, {}).get("peers", {})]
        for h in neighbours:
            a["attacker_earned_wei"] += int(
                claimed_by_pair.get((addresses[ids.index(h)].lower(), addresses[i].lower()), 0)
            )
            snap = snaps.get(h, {})
            a["attacker_served_wei"] += int(snap["peers"][n].get("accepted_wei", 0))
            by_peer = snap.get("rejections_by_peer", {})
            # a flooder never authenticates: its neighbours' refusals of unauthenticated sockets are its
            whose = [n, "unauthenticated"] if kind == "handshake_flooder" else [n]
            for who in whose:
                for reason, count in by_peer.get(who, {}).items():
                    a["rejected"] += count
                    a["rejected_reasons"][reason] = a["rejected_reasons"].get(reason, 0) + count
    for a in attacks.values():
        a["earned_within_served"] = a["attacker_earned_wei"] <= a["attacker_served_wei"]
    return {
        "honest_pieces_sent": int(sent),
        "honest_pieces_delivered": int(got),
        "honest_delivery_rate": got / sent if sent else 0.0,
        "honest_alive": all(codes.get(n) == 0 for n in honest),
        "attacks": attacks,
    }


def learned_report(
    snaps: dict[str, dict], ids: list[str], kinds: list[str], earned: dict[str, int], policy: str | None
) -> dict:
    """Per learned node, what its attacker did (decisions, forwarded, dropped, held), what it was
    handed, what it can claim (vouchers held) and its last announcements; ``{}`` without learned nodes."""
    nodes = {}
    for nid, kind in zip(ids, kinds, strict=True):
        if kind != LEARNED:
            continue
        snap = snaps.get(nid, {})
        st = snap.get("stats", {})
        nodes[nid] = {
            **{k: int(st.get(f"attacker_{k}", 0)) for k in ("decisions", "forwarded", "dropped", "held")},
            "received": int(st.get("received", 0)),
            "earned_wei": int(earned.get(nid, 0)),
            "torch_imported": snap.get("torch_imported"),
            "last": snap.get("attacker", {}),
        }
    if not nodes:
        return {}
    return {"attacker_policy": policy, "nodes": nodes}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.mesh",
        description="Run a local mesh of live nodes that route story-pieces with a policy and pay each other "
        "through payment channels on anvil (or --rpc-url), then settle and write a JSON report.",
    )
    parser.add_argument(
        "--scenario",
        metavar="NAME_OR_FILE",
        help="build the mesh from this environment scenario (a shipped name such as default, blackholes, honest, or a "
        "YAML file): the graph, roles, streams, piece values and sizes, deadlines, capacities, claimed bandwidths, "
        "link latencies (one step = --step-ms), adversaries and their parameters of the environment's episode "
        "--seed; --duration defaults to one episode (episode_steps x --step-ms) and the report puts the "
        "simulation of the same seed beside the live figures. Without it the flags below build a scenario "
        f"(at most {MAX_LIVE_NODES} nodes: one process each, see runtime.node.scenario_plan)",
    )
    parser.add_argument(
        "--nodes",
        type=int,
        help="number of node processes (>= 4; default 8, or the scenario's; with --scenario it resizes the scenario)",
    )
    parser.add_argument(
        "--duration", type=float, help="seconds of streaming (default 30, or one episode of --scenario)"
    )
    parser.add_argument(
        "--policy",
        default="checkpoints/default",
        help="routing policy of every node: a baseline name (seed, shortest, random) or an exported policy "
        "directory (default checkpoints/default)",
    )
    parser.add_argument("--json", type=Path, help="write the report to this JSON file")
    parser.add_argument(
        "--payment",
        choices=("on_delivery", "per_hop"),
        help="when a hop is paid: on_delivery (when the destination's signed receipt comes back; default, or the "
        "scenario's economy.payment) or per_hop (when the hop acknowledges the piece)",
    )
    parser.add_argument(
        "--adversaries",
        help="dishonest nodes as KIND=COUNT,... with KIND one of the environment's scripted kinds (blackhole, "
        "overpricer, bandwidth_liar, forger: a blackhole that also fakes delivery receipts; grey_hole, on_off, "
        "selective: the adaptive kinds with the environment's default parameters; slanderer: forwards honestly, "
        "gossips that its honest neighbours drop everything; ballot_stuffer: a blackhole that gossips that its "
        "fellow cheats deliver everything; learned: played by the attacker "
        "policy of --attacker-policy, its gossip included) or a wire-level "
        "attacker of runtime.node.attackers (vack_forger, piece_bomber, route_poisoner, handshake_flooder, "
        "info_flooder, price_gouger, id_reuser, rating_flooder, proof_splicer); the report's 'attacks' says what "
        "each attacker sent, what was "
        "rejected and what it earned (default: blackhole=1,overpricer=1,bandwidth_liar=1; empty string: none; with "
        "--scenario the scenario places its own kinds and only wire-level attackers may be added)",
    )
    parser.add_argument(
        "--attacker-policy",
        metavar="DIR",
        help="attacker export (python -m training.attack; numpy only on the nodes) that plays every learned node "
        "of --adversaries learned=N: per piece forward, drop or hold, and its quote, claimed bandwidth and route "
        "discount; required with learned=N>0 (the report's 'learned' says what each did)",
    )
    parser.add_argument(
        "--no-gossip",
        action="store_true",
        help="run every node without trust gossip (no rating frames; the network view stays at its prior): the "
        "same mesh, seed and traffic as with gossip, to compare detection_s and false_accusations",
    )
    parser.add_argument(
        "--disarm",
        action="store_true",
        help="place the wire-level attackers as --adversaries says but run those nodes honest: the same run "
        "without attackers, whose honest_delivery_rate (over the same honest pairs) an attacked run is compared with",
    )
    parser.add_argument(
        "--rpc-url", help="use this chain instead of starting anvil (funding key in $OPENSTREAMING_FUNDER_KEY)"
    )
    parser.add_argument("--chain-id", type=int, default=31337, help="chain id of the local anvil (default 31337)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mesh (graph, roles, traffic, dev keys)")
    parser.add_argument(
        "--operators",
        type=int,
        default=3,
        help="settlement operators attesting each epoch's net flows on SettlementAVS, with an aggregator and a "
        "challenger (default 3; 0: no settlement service)",
    )
    parser.add_argument(
        "--faulty-operator",
        choices=("equivocate", "wrong-root"),
        help="make the last operator misbehave at the service's third epoch: sign two roots (and be slashed) "
        "or sign a wrong root (which never gathers a quorum)",
    )
    parser.add_argument(
        "--settlement",
        choices=("direct", "net"),
        default="direct",
        help="direct: payees claim their channels themselves (claimBatch every --claim-interval and at exit); "
        "net: payees hand their vouchers to the operators, whose attested root (NetSettlement) pays each node "
        "with one claim after a challenge window, any node proving a wrong root voids it and slashes its signers "
        "(needs --operators >= 3; with --faulty-operator wrong-root two operators sign a root overpaying one node)",
    )
    parser.add_argument(
        "--epoch-blocks", type=int, default=5, help="blocks per settlement epoch (anvil mines one a second; default 5)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        help="pieces per second each stream emits (default 6; with --scenario: traffic.load x 0.5 per step)",
    )
    parser.add_argument(
        "--step-ms",
        type=float,
        default=50.0,
        help="milliseconds per environment step: link latencies, capacities and deadlines scale with it (default 50)",
    )
    parser.add_argument(
        "--deposit-wei", type=int, default=10**17, help="deposit of each payment channel (default 1e17)"
    )
    parser.add_argument(
        "--claim-interval", type=float, default=10.0, help="seconds between payees' batch claims (default 10)"
    )
    parser.add_argument(
        "--startup-timeout", type=float, default=90.0, help="seconds to wait for every channel (default 90)"
    )
    parser.add_argument(
        "--deadline-slack",
        type=float,
        metavar="STEPS",
        help="steps a piece may take beyond twice its estimated route latency (default: the scenario's, 12); "
        "small values make tight deadlines (the report's delivered_last_fifth_share says how tight)",
    )
    parser.add_argument(
        "--deadline-factor",
        type=float,
        default=2.0,
        metavar="F",
        help="a piece's deadline is F times its estimated route latency plus --deadline-slack steps (default 2); "
        "--deadline-factor 1.2 --deadline-slack 2 puts most deliveries in the last fifth of their deadline",
    )
    parser.add_argument(
        "--kill-restarts",
        type=int,
        default=0,
        metavar="N",
        help="N times, evenly spread over the run, kill -9 the busiest honest node and restart it from its store "
        "(default 0; the report's restarts lists them)",
    )
    parser.add_argument("--restart-delay", type=float, default=2.0, help="seconds a killed node stays down (default 2)")
    parser.add_argument(
        "--drain-s",
        type=float,
        default=2.0,
        help="seconds each node lets acks, receipts and vouchers settle when the run stops (default 2)",
    )
    parser.add_argument("--workdir", help="directory for configs, stores, logs, stats (default: a new one under runs/)")
    parser.add_argument("--quiet", action="store_true", help="no live table")
    parser.add_argument(
        "--dashboard",
        nargs="?",
        type=int,
        const=8765,
        metavar="PORT",
        help="serve a live web dashboard of the run on http://127.0.0.1:PORT/ (default port 8765; 0: any free)",
    )
    parser.add_argument(
        "--dashboard-hold",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep the dashboard up this long after the report is written (default 0)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    from runtime.node.dashboard_feed import MeshFeed, wait_hold

    parser = build_parser()
    args = parser.parse_args(argv)
    server = None
    try:
        _resolve_defaults(args)
        if args.nodes is not None and args.nodes < 4:
            raise UsageError(f"--nodes must be at least 4, got {args.nodes}")
        if args.operators < 0 or args.epoch_blocks < 1:
            raise UsageError("--operators must be >= 0 and --epoch-blocks >= 1")
        if args.settlement == "net" and (args.operators < 3 or args.rpc_url):
            raise UsageError("--settlement net needs --operators >= 3 and a local anvil (it advances the clock)")
        if args.faulty_operator and args.operators < 3:
            raise UsageError("--faulty-operator needs at least 3 operators (an honest two-thirds quorum)")
        if args.duration is not None and args.duration <= 0:
            raise UsageError("--duration must be > 0")
        if args.kill_restarts < 0 or args.restart_delay < 0 or args.drain_s < 0:
            raise UsageError("--kill-restarts, --restart-delay and --drain-s must be >= 0")
        if args.deadline_factor <= 0:
            raise UsageError(f"--deadline-factor must be > 0, got {args.deadline_factor:g}")
        if args.deadline_slack is not None and args.deadline_slack < 0:
            raise UsageError(f"--deadline-slack must be >= 0, got {args.deadline_slack:g}")
        counts = parse_adversaries(args.adversaries)
        if not args.scenario and args.nodes - sum(counts.values()) < 2:
            raise UsageError(
                f"--adversaries: {sum(counts.values())} dishonest nodes leave fewer than 2 honest of {args.nodes}"
            )
        _check_attacker_policy(args.attacker_policy, counts[LEARNED])
        if args.policy == "oracle":
            raise UsageError("--policy oracle needs the simulator's privileged view; a live node cannot run it")
        from agents.policies import PolicyError, resolve_policy

        try:
            resolve_policy(args.policy)
        except PolicyError as err:
            raise UsageError(str(err)) from None
        server = _dashboard(args)
        report = run_mesh(args, MeshFeed(server, summarize) if server else None)
    except UsageError as err:
        _close(server)
        print(f"runtime.mesh: error: {err}", file=sys.stderr)
        return 2
    except BaseException:
        _close(server)
        raise
    text = json.dumps(report, indent=2, sort_keys=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    keys = ("pieces_sent", "pieces_delivered", "delivery_rate", "honest_delivery_rate", "honest_alive",
            "dishonest_share", "vouchers", "forged_receipts_rejected", "earned_wei_by_kind", "claimed_onchain_wei",
            "owed_by_vouchers_wei", "refunded_wei", "gas_used", "settled_exactly", "settlement",
            "settlement_gas_used", "gas_per_node_epoch", "gas_per_settled_wei", "roots_executed",
            "roots_voided", "honest_cutoffs_by_reason", "delivered_last_fifth_share", "restarts")  # fmt: skip
    summary = {k: report[k] for k in keys}
    if report["learned"]:
        summary["learned"] = {n: {k: v[k] for k in ("decisions", "forwarded", "dropped", "held", "earned_wei")}
                              for n, v in report["learned"]["nodes"].items()}  # fmt: skip
    if report["attacks"]:
        summary["attacks"] = {k: {f: v[f] for f in ("frames_sent", "rejected", "attacker_earned_wei")}
                              for k, v in report["attacks"].items()}  # fmt: skip
    print(json.dumps(summary, indent=2))
    if args.scenario and args.json:
        # runtime never imports eval: the simulation beside this run is eval.sim2real's to print
        print(
            f"the environment's episode beside it: python -m eval.sim2real --beside {args.json} "
            f"--scenario {args.scenario} --seed-base {args.seed} --policy {args.policy}"
            + (f" --nodes {args.nodes}" if args.nodes else "")
        )
    if args.json:
        print(f"wrote {args.json}")
    if server is not None:
        wait_hold(server, args.dashboard_hold, lambda text: print(text, file=sys.stderr))
        _close(server)
    return 0


def _resolve_defaults(args: argparse.Namespace) -> None:
    """Fill the options left unset: the old defaults, or with ``--scenario`` the scenario's own."""
    if args.scenario:
        if args.rate is not None:
            raise UsageError("--rate: with --scenario the rate is the scenario's traffic.load (edit the scenario)")
        from envs.scenario import ScenarioError, load_scenario

        try:
            scenario = load_scenario(args.scenario)
        except ScenarioError as err:
            raise UsageError(f"--scenario: {err}") from None
        args.payment = args.payment or scenario.economy.payment
        args.adversaries = args.adversaries or ""
        if args.step_ms <= 0:
            raise UsageError(f"--step-ms must be > 0, got {args.step_ms:g}")
        return
    args.nodes = 8 if args.nodes is None else args.nodes
    args.duration = 30.0 if args.duration is None else args.duration
    args.rate = 6.0 if args.rate is None else args.rate
    args.payment = args.payment or "on_delivery"
    if args.adversaries is None:
        args.adversaries = "blackhole=1,overpricer=1,bandwidth_liar=1"


def _check_attacker_policy(directory: str | None, learned: int) -> None:
    """``--attacker-policy`` is given exactly when there are learned nodes, and loads."""
    if learned and not directory:
        raise UsageError(
            f"--attacker-policy: required with --adversaries learned={learned} (an attacker export directory, "
            "python -m training.attack)"
        )
    if directory and not learned:
        raise UsageError("--attacker-policy: given, but --adversaries places no learned node (learned=N)")
    if directory:
        from agents.attacker import AttackerLoadError, load_attacker

        try:
            load_attacker(directory)
        except AttackerLoadError as err:
            raise UsageError(f"--attacker-policy: {err}") from None


def _dashboard(args: argparse.Namespace):
    """The dashboard server of ``--dashboard`` (started, URL printed), or None."""
    if args.dashboard is None:
        return None
    from runtime.node.dashboard_feed import start_server

    if not 0 <= args.dashboard < 65536:
        raise UsageError(f"--dashboard: port {args.dashboard} is not in 0..65535")
    try:
        server = start_server(args.dashboard)
    except OSError as err:
        raise UsageError(f"--dashboard: cannot listen on 127.0.0.1:{args.dashboard} ({err.strerror or err})") from None
    print(f"dashboard: {server.url}", file=sys.stderr, flush=True)
    return server


def _close(server) -> None:
    if server is not None:
        server.close()


if __name__ == "__main__":
    sys.exit(main())
