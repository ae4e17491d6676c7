"""Configuration file of one live node (YAML or JSON), strictly validated.

Every problem raises :class:`ConfigError` whose message is one line naming the key, fit to print
to a user as is. Example (YAML)::

    node_id: n0
    listen: {host: 127.0.0.1, port: 9100}
    peers:
      - {node_id: n1, port: 9101, address: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", latency_ms: 20}
    policy: checkpoints/default        # or seed / shortest / random
    store: runs/n0.sqlite
    chain: {rpc_url: "http://127.0.0.1:8545", chain_id: 31337, contract: "0x5FbDB2315678afecb367f032d93F642f64180aa3"}
    key_env: OPENSTREAMING_NODE_KEY    # or key_file: path/to/key (mode 0600); never the key itself
    behaviour: {kind: honest, capacity: 0.9, base_cost: 0.02}
    streams: [{subscribers: [n3, n5], rate: 10}]

Private keys are never accepted inside a configuration file: a config is something people copy,
commit and paste into bug reports. A key comes from an environment variable or a file that only
its owner can read.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Annotated, TypeVar

import msgspec
import yaml

__all__ = ["ChainConfig", "ConfigError", "NodeConfig", "load_config", "load_struct", "read_key", "read_key_from"]

T = TypeVar("T")

_KEY_RE = re.compile(r"(0x)?[0-9a-fA-F]{64}")


class ConfigError(ValueError):
    """A configuration or key problem; ``str(err)`` is one line."""


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class Listen(_Strict):
    """Where the node accepts peers."""

    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0


class Peer(_Strict):
    """A neighbour: its id, where to reach it, its payout address, the emulated link latency."""

    node_id: str
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    address: str = ""
    latency_ms: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    dial: bool | None = None  # None: the node with the smaller id dials


class ChainConfig(_Strict):
    """The chain and channel contract. ``rpc_url: null`` runs offline (vouchers are not claimable)."""

    rpc_url: str | None = None
    chain_id: int = 31337
    contract: str = "0x0000000000000000000000000000000000000001"
    deposit_wei: Annotated[int, msgspec.Meta(ge=0)] = 10**17
    challenge_period_s: Annotated[int, msgspec.Meta(ge=3600)] = 3600
    claim_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    close_on_exit: bool = True
    release_on_exit: bool = False  # payee leaving for good: release incoming channels after the last claim
    from_block: Annotated[int, msgspec.Meta(ge=0)] = 0  # where to look for channels the store lost


class Behaviour(_Strict):
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


class Stream(_Strict):
    """A stream this node sources."""

    subscribers: list[str]
    rate: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    value: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    deadline_slack: Annotated[float, msgspec.Meta(ge=0)] = 12.0
    payload_bytes: Annotated[int, msgspec.Meta(ge=0, le=32768)] = 256


class SettlementCheck(_Strict):
    """The settlement service whose finalised roots this node checks against its own flows."""

    avs: str
    epoch_blocks: Annotated[int, msgspec.Meta(ge=1)] = 5
    operator_urls: list[str] = msgspec.field(default_factory=list)
    poll_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0


class NodeConfig(_Strict):
    """One node's configuration file."""

    node_id: str
    listen: Listen = msgspec.field(default_factory=Listen)
    peers: list[Peer] = msgspec.field(default_factory=list)
    policy: str = "checkpoints/default"
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
    settlement: SettlementCheck | None = None  # check each finalised settlement root (runtime.flow_check)


_PATH_RE = re.compile(r" - at `\$\.?([^`]*)`")


def _refuse_inline_keys(obj, where: str = "") -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if str(k).lower() in {"private_key", "key", "secret", "privkey"}:
                raise ConfigError(
                    f"config key '{where}{k}': private keys are refused in config files; use key_env or key_file"
                )
            _refuse_inline_keys(v, f"{where}{k}.")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _refuse_inline_keys(v, f"{where}{i}.")
    elif isinstance(obj, str) and _KEY_RE.fullmatch(obj.strip()):
        raise ConfigError(
            f"config key '{where.rstrip('.')}': looks like a private key; keys are refused in config files"
        )


def load_struct(path: str | Path, kind: type[T]) -> T:
    """Read a YAML/JSON file into the msgspec struct ``kind``, refusing inline private keys.

    Every problem raises :class:`ConfigError` with one line naming the file or the key.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"config '{path}': cannot read ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config '{path}': not YAML/JSON ({' '.join(str(err).split())[:120]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config '{path}': expected a mapping at the top level")
    _refuse_inline_keys(raw)
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as err:
        text = str(err)
        m = _PATH_RE.search(text)
        key = m.group(1) if m else ""
        reason = _PATH_RE.sub("", text)
        raise ConfigError(f"config key '{key}': {reason}" if key else f"config '{path}': {reason}") from None


def load_config(path: str | Path) -> NodeConfig:
    """Read and validate a node configuration file (YAML or JSON)."""
    cfg = load_struct(path, NodeConfig)
    from runtime.protocol import KINDS

    if cfg.behaviour.kind not in KINDS:
        raise ConfigError(
            f"config key 'behaviour.kind': unknown kind '{cfg.behaviour.kind}' (known: {', '.join(KINDS)})"
        )
    ids = [p.node_id for p in cfg.peers]
    if len(set(ids)) != len(ids) or cfg.node_id in ids:
        raise ConfigError("config key 'peers': duplicate peer ids or the node itself among its peers")
    if cfg.key_env and cfg.key_file:
        raise ConfigError("config: give key_env or key_file, not both")
    return cfg


def read_key(cfg: NodeConfig) -> str | None:
    """The node's private key from its ``key_env`` or ``key_file`` (see :func:`read_key_from`)."""
    return read_key_from(cfg.key_env, cfg.key_file)


def read_key_from(key_env: str | None, key_file: str | None) -> str | None:
    """A private key from the environment variable ``key_env`` or the file ``key_file`` (None if neither).

    A key file readable by group or others is refused (like ssh does), as is anything that is not a
    32-byte hex key. The key is returned to the caller only; nothing here logs or writes it.
    """
    if key_env:
        value = os.environ.get(key_env)
        if not value:
            raise ConfigError(f"key_env: environment variable {key_env} is not set")
        source = f"environment variable {key_env}"
    elif key_file:
        p = Path(key_file)
        try:
            mode = p.stat().st_mode
            value = p.read_text()
        except OSError as err:
            raise ConfigError(f"key_file '{p}': cannot read ({err.strerror or err})") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"key_file '{p}': readable by others (mode {stat.S_IMODE(mode):o}); chmod 600 it")
        source = f"key_file '{p}'"
    else:
        return None
    value = value.strip()
    if not _KEY_RE.fullmatch(value):
        raise ConfigError(f"{source}: not a 32-byte hex private key")
    return value if value.startswith("0x") else "0x" + value
