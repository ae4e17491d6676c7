"""Configuration file of one live node (YAML or JSON), strictly validated.

Every problem raises :class:`ConfigError` whose message is one line naming the key, fit to print
to a user as is. Example (YAML)::

    node_id: n0
    listen: {host: 127.0.0.1, port: 9100}
    peers:
      - {node_id: n1, port: 9101, address: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", latency_ms: 20}
    policy: checkpoints/default        # or seed / shortest / random
    # attacker_policy: DIR             # behaviour.kind learned only: an attacker export (training.attack)
    store: runs/n0.sqlite
    chain: {rpc_url: "http://127.0.0.1:8545", chain_id: 31337, contract: "0x5FbDB2315678afecb367f032d93F642f64180aa3"}
    key_env: OPENSTREAMING_NODE_KEY    # or key_file: path/to/key (mode 0600); never the key itself
    behaviour: {kind: honest, capacity: 0.9, base_cost: 0.02}
    streams: [{subscribers: [n3, n5], rate: 10}]
    payment: on_delivery               # pay a hop when the destination's receipt comes back; or per_hop
    directory: {n3: "0x90F79bf6EB2c4f870365E785982E1f101E93b906"}   # addresses of non-neighbours

A receipt is checked against the destination's address: a neighbour's comes from ``peers`` (and is
proven in the handshake), any other node's from ``directory`` (else from the piece itself). A source
needs the address of each of its streams' subscribers.

Private keys are never accepted inside a configuration file: a config is something people copy,
commit and paste into bug reports. A key comes from an environment variable or a file that only
its owner can read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from runtime.configfile import ConfigError, Listen, StrictStruct, load_struct, read_key_from

__all__ = [
    "ChainConfig",
    "ConfigError",
    "Listen",
    "NodeConfig",
    "load_config",
    "load_struct",
    "read_key",
    "read_key_from",
]

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


class Peer(StrictStruct):
    """A neighbour: its id, where to reach it, its payout address, the emulated link latency."""

    node_id: str
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    address: str = ""
    latency_ms: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    dial: bool | None = None  # None: the node with the smaller id dials


class ChainConfig(StrictStruct):
    """The chain and channel contract. ``rpc_url: null`` runs offline (vouchers are not claimable)."""

    rpc_url: str | None = None
    chain_id: int = 31337
    contract: str = "0x0000000000000000000000000000000000000001"
    deposit_wei: Annotated[int, msgspec.Meta(ge=0)] = 10**17
    challenge_period_s: Annotated[int, msgspec.Meta(ge=3600)] = 3600
    claim_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    close_on_exit: bool = True
    release_on_exit: bool = False  # payee leaving for good: release incoming channels after the last claim
    # "net": the payee hands its vouchers to the settlement operators instead of claiming them
    # (runtime.node.net_settlement executes the root); "direct": it claims with claimBatch itself.
    settlement: Literal["direct", "net"] = "direct"
    from_block: Annotated[int, msgspec.Meta(ge=0)] = 0  # where to look for channels the store lost


class Behaviour(StrictStruct):
    """How the node behaves: its kind (scripted dishonest kinds for test meshes) and economics."""

    kind: str = "honest"
    capacity: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    claimed_bw: Annotated[float, msgspec.Meta(ge=0)] | None = None
    base_cost: Annotated[float, msgspec.Meta(gt=0)] = 0.02
    price_factor: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    step_ms: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    queue_limit: Annotated[int, msgspec.Meta(ge=1)] = 20
    wei_per_unit: Annotated[int, msgspec.Meta(ge=1)] = 10**12
    unpaid_limit_wei: Annotated[int, msgspec.Meta(ge=0)] = 10**13
    max_frame: Annotated[int, msgspec.Meta(ge=1024)] = 64 * 1024
    handshake_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    idle_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    drain_s: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    # hardening (runtime.node.protocol.NodeSettings documents each)
    hello_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    max_pending_handshakes: Annotated[int, msgspec.Meta(ge=1)] = 16
    max_pending_per_source: Annotated[int, msgspec.Meta(ge=1)] = 8
    min_piece_size: Annotated[float, msgspec.Meta(gt=0)] = 0.01
    max_piece_size: Annotated[float, msgspec.Meta(gt=0, le=1e6)] = 4.0
    price_ceiling: Annotated[float, msgspec.Meta(ge=1)] = 10.0
    max_quote_jump: Annotated[float, msgspec.Meta(ge=1)] = 2.0
    quote_step_up: Annotated[float, msgspec.Meta(gt=1)] = 1.25
    chain_check_interval_s: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    late_receipt_window_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 10.0
    max_inflight_per_peer: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 256
    reconcile_window_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 1.0
    # adaptive dishonest kinds (runtime.node.protocol.NodeSettings documents each)
    drop_probability: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5
    honest_steps: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 40
    attack_steps: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 20
    value_threshold: Annotated[float, msgspec.Meta(ge=0)] | None = None
    # signed custody (runtime.node.acceptance): how long a timed-out piece waits for its downstream's
    # loss report before the downstream takes the loss
    blame_wait_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 1.0
    sign_custody: bool = True  # false: acks carry no custody acceptance (benchmarks only)
    # one signature per turn of the I/O loop over the turn's receipts and acceptances (a Merkle root,
    # runtime.node.sealing) and one voucher per peer per turn; false: a signature per frame and piece
    batch_signatures: bool = True
    # trust gossip (runtime.node.gossip): a signed rating frame to each peer every gossip_period_s;
    # gossip: false sends none and uses none (the network-view features stay at their prior)
    gossip: bool = True
    gossip_period_s: Annotated[float, msgspec.Meta(ge=0.01, le=3600)] = 0.25
    # wire-level attackers only (runtime.node.attackers): frames per second of the attack
    attack_rate: Annotated[float, msgspec.Meta(gt=0, le=10000)] = 20.0
    # learned attackers only (runtime.node.learned): the ids of its fellow attackers, if it is told
    allies: Annotated[list[str], msgspec.Meta(max_length=4096)] = msgspec.field(default_factory=list)


#: Steps of a route (``Stream.route_steps``), bounded like the node's routing tables.
RouteSteps = Annotated[float, msgspec.Meta(ge=0, le=1000)]


class Stream(StrictStruct):
    """A stream this node sources."""

    subscribers: list[str]
    rate: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    value: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    deadline_slack: Annotated[float, msgspec.Meta(ge=0)] = 12.0
    deadline_factor: Annotated[float, msgspec.Meta(gt=0, le=100)] = 2.0
    payload_bytes: Annotated[int, msgspec.Meta(ge=0, le=32768)] = 256
    emit_for_s: Annotated[float, msgspec.Meta(gt=0)] | None = None  # stop emitting this long after the start
    # subscriber -> steps of its true shortest path (the mesh launcher's scenario plan): the deadline's base
    route_steps: Annotated[dict[str, RouteSteps], msgspec.Meta(max_length=4096)] | None = None


class SettlementCheck(StrictStruct):
    """The settlement service whose finalised roots this node checks against its own flows."""

    avs: str
    epoch_blocks: Annotated[int, msgspec.Meta(ge=1)] = 5
    operator_urls: list[str] = msgspec.field(default_factory=list)
    poll_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0


class NodeConfig(StrictStruct):
    """One node's configuration file."""

    node_id: str
    listen: Listen = msgspec.field(default_factory=Listen)
    peers: list[Peer] = msgspec.field(default_factory=list)
    policy: str = "checkpoints/default"
    attacker_policy: str | None = None  # behaviour.kind learned: its attacker export (python -m training.attack)
    store: str = "node.sqlite"
    chain: ChainConfig = msgspec.field(default_factory=ChainConfig)
    key_env: str | None = None
    key_file: str | None = None
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] | None = None
    stats_file: str | None = None
    log_file: str | None = None
    behaviour: Behaviour = msgspec.field(default_factory=Behaviour)
    streams: list[Stream] = msgspec.field(default_factory=list)
    start_streams: bool = False  # emit at once (else on SIGUSR1, as the mesh launcher does)
    seed: int = 0
    payment: str = "on_delivery"  # on_delivery (a hop is paid on the destination's receipt) or per_hop
    directory: dict[str, str] = msgspec.field(default_factory=dict)  # node id -> address (non-neighbours)
    settlement: SettlementCheck | None = None  # check each finalised settlement root (runtime.settlement.flow_check)


def load_config(path: str | Path) -> NodeConfig:
    """Read and validate a node configuration file (YAML or JSON)."""
    cfg = load_struct(path, NodeConfig)
    from runtime.node.attackers import ATTACK_KINDS
    from runtime.node.learned import LEARNED_KIND
    from runtime.node.protocol import KINDS, PAYMENT_MODES

    known = (*KINDS, LEARNED_KIND, *ATTACK_KINDS)
    if cfg.behaviour.kind not in known:
        kind = cfg.behaviour.kind
        raise ConfigError(f"config key 'behaviour.kind': unknown kind '{kind}' (known: {', '.join(known)})")
    learned = cfg.behaviour.kind == LEARNED_KIND
    if learned and not cfg.attacker_policy:
        raise ConfigError(
            "config key 'attacker_policy': behaviour.kind learned needs an attacker export directory "
            "(python -m training.attack)"
        )
    if cfg.attacker_policy is not None and not learned:
        raise ConfigError("config key 'attacker_policy': only for behaviour.kind learned")
    if cfg.behaviour.allies and not learned and cfg.behaviour.kind not in ("slanderer", "ballot_stuffer"):
        raise ConfigError("config key 'behaviour.allies': only for behaviour.kind learned, slanderer, ballot_stuffer")
    if cfg.node_id in cfg.behaviour.allies:
        raise ConfigError("config key 'behaviour.allies': the node itself among its allies")
    if cfg.payment not in PAYMENT_MODES:
        raise ConfigError(f"config key 'payment': unknown mode '{cfg.payment}' (known: {', '.join(PAYMENT_MODES)})")
    for node_id, address in cfg.directory.items():
        if not _ADDRESS.match(address):
            raise ConfigError(f"config key 'directory.{node_id}': '{address}' is not a 0x-prefixed 20-byte address")
    if cfg.behaviour.min_piece_size > cfg.behaviour.max_piece_size:
        raise ConfigError("config key 'behaviour.min_piece_size': above behaviour.max_piece_size")
    ids = [p.node_id for p in cfg.peers]
    if len(set(ids)) != len(ids) or cfg.node_id in ids:
        raise ConfigError("config key 'peers': duplicate peer ids or the node itself among its peers")
    if cfg.key_env and cfg.key_file:
        raise ConfigError("config: give key_env or key_file, not both")
    return cfg


def read_key(cfg: NodeConfig) -> str | None:
    """The node's private key from its ``key_env`` or ``key_file`` (see :func:`read_key_from`)."""
    return read_key_from(cfg.key_env, cfg.key_file)
