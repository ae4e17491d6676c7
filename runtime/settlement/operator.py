"""Settlement operator: attest each epoch's net flows, never signing two roots for one epoch.

``python -m runtime.operator --config FILE`` runs one operator of the settlement service (the
local stand-in for an EigenLayer AVS operator). Its loop:

1. wait until epoch ``e`` (``epoch_blocks`` blocks) is ``confirmations`` blocks in the past;
2. read the channel contract's ``Claimed`` events of the epoch, compute the net flow of every
   pair of nodes and the Merkle root (``runtime.settlement.roots``);
3. **persist** ``(epoch, root)`` in its sqlite store (WAL, ``synchronous=FULL``), *then* sign
   ``attestationDigest(epoch, root)`` and store the signature;
4. send the signature to the aggregator, and serve the epoch's leaves and proofs over HTTP
   (``GET /epochs/E`` and ``GET /epochs/E/proof/ADDRESS``) so any node can check its own flow.

Restart safety: at start the operator resumes after the last epoch it persisted and resends
the signatures it holds. An epoch whose root was persisted but not yet signed (a crash between
steps 3a and 3b) is signed with *that* root, so a restarted operator never signs two roots for
one epoch — the offence ``SettlementAVS.slashEquivocation`` punishes.

``fault`` (test meshes only) makes an operator misbehave at one epoch: ``wrong-root`` signs a
wrong root instead of the true one, ``equivocate`` signs both.

Example config (YAML)::

    operator_id: op0
    rpc_url: http://127.0.0.1:8545
    channels: "0x..."          # StreamChannels address
    avs: "0x..."               # SettlementAVS address
    key_env: OPERATOR_KEY      # or key_file (mode 0600); never the key itself
    aggregator_url: http://127.0.0.1:9400
    store: runs/op0.sqlite
    serve: {host: 127.0.0.1, port: 9410}
    http: {request_deadline_s: 10}   # optional: runtime.http_server.HttpBounds
    epoch_blocks: 10

The proof server is a :class:`runtime.http_server.BoundedHttpServer` (whole-request deadline,
connection caps, no body accepted beyond 1 KiB; the config's ``http:`` section).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from aiohttp import web
from eth_utils import keccak, to_checksum_address
from web3 import Web3

from runtime.chain.vouchers import attestation_digest, sign_digest
from runtime.configfile import ConfigError, Listen, load_struct, read_key_from
from runtime.http_server import BoundedHttpServer, HttpBounds
from runtime.settlement.cli import start_service
from runtime.settlement.http_json import json_routes
from runtime.settlement.roots import FlowLeaf, Payment, merkle_proof, settlement_root

log = logging.getLogger("openstreaming.operator")

MAX_LOG_RANGE = 5_000


class Fault(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Deliberate misbehaviour of a test operator."""

    kind: Literal["none", "wrong-root", "equivocate"] = "none"
    epoch: Annotated[int, msgspec.Meta(ge=0)] = 1


class OperatorConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One operator's configuration file."""

    operator_id: str
    rpc_url: str
    channels: str
    avs: str
    key_env: str | None = None
    key_file: str | None = None
    aggregator_url: str
    store: str = "operator.sqlite"
    serve: Listen = msgspec.field(default_factory=Listen)
    http: HttpBounds = msgspec.field(default_factory=lambda: HttpBounds(max_body_bytes=1024, max_streams=0))
    epoch_blocks: Annotated[int, msgspec.Meta(ge=1)] = 10
    confirmations: Annotated[int, msgspec.Meta(ge=0)] = 1
    first_epoch: Annotated[int, msgspec.Meta(ge=0)] = 0
    poll_s: Annotated[float, msgspec.Meta(gt=0)] = 0.5
    fault: Fault = msgspec.field(default_factory=Fault)
    #: False in net settlement (``--settlement net``): payees do not claim, so there are no flows to
    #: attest; the epoch's attested record is the net root (``NetSettlement``), not a flow root.
    attest_flows: bool = True


class Attestation(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What an operator sends the aggregator (hex strings on the wire)."""

    operator: str
    epoch: Annotated[int, msgspec.Meta(ge=0)]
    root: Annotated[str, msgspec.Meta(pattern="^0x[0-9a-fA-F]{64}$")]
    signature: Annotated[str, msgspec.Meta(pattern="^0x[0-9a-fA-F]{130}$")]


def load_operator_config(path: str | Path) -> OperatorConfig:
    """Read and validate an operator config (YAML or JSON); one-line :class:`ConfigError` on problems."""
    cfg = load_struct(path, OperatorConfig)
    if bool(cfg.key_env) == bool(cfg.key_file):
        raise ConfigError("config: give exactly one of key_env or key_file")
    return cfg


# ---------------------------------------------------------------------------------------- store


class SignedEpochStore:
    """The epochs an operator has committed to, persisted before it signs anything."""

    def __init__(self, path: str | Path) -> None:
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS signed (epoch INTEGER NOT NULL, root BLOB NOT NULL, "
            "signature BLOB, PRIMARY KEY (epoch, root))"
        )
        self.lock = threading.Lock()

    def commit_root(self, epoch: int, root: bytes) -> None:
        """Durably record the intent to sign ``root`` for ``epoch`` (before signing)."""
        with self.lock:
            self.db.execute("INSERT OR IGNORE INTO signed (epoch, root) VALUES (?, ?)", (epoch, root))

    def store_signature(self, epoch: int, root: bytes, signature: bytes) -> None:
        with self.lock:
            self.db.execute("UPDATE signed SET signature = ? WHERE epoch = ? AND root = ?", (signature, epoch, root))

    def roots(self, epoch: int) -> list[tuple[bytes, bytes | None]]:
        """``(root, signature or None)`` committed for ``epoch``."""
        with self.lock:
            rows = self.db.execute("SELECT root, signature FROM signed WHERE epoch = ? ORDER BY root", (epoch,))
            return [(bytes(r), bytes(s) if s is not None else None) for r, s in rows]

    def last_epoch(self) -> int | None:
        with self.lock:
            (value,) = self.db.execute("SELECT MAX(epoch) FROM signed").fetchone()
        return value

    def close(self) -> None:
        self.db.close()


# ---------------------------------------------------------------------------------------- chain


class ClaimReader:
    """Payments (``Claimed`` events with their channel's payer) from a ``StreamChannels`` contract."""

    def __init__(self, w3: Web3, channels_address: str) -> None:
        from runtime.chain.client import load_artifact

        self.w3 = w3
        self.contract = w3.eth.contract(
            address=to_checksum_address(channels_address), abi=load_artifact("StreamChannels").abi
        )
        self._payers: dict[int, str] = {}

    def payer(self, channel_id: int) -> str:
        if channel_id not in self._payers:
            self._payers[channel_id] = to_checksum_address(self.contract.functions.channel(channel_id).call()[0])
        return self._payers[channel_id]

    def payments(self, from_block: int, to_block: int) -> list[Payment]:
        """Payments in blocks ``[from_block, to_block]``, in chain order."""
        out: list[Payment] = []
        start = from_block
        while start <= to_block:
            end = min(to_block, start + MAX_LOG_RANGE - 1)
            for ev in self.contract.events.Claimed.get_logs(from_block=start, to_block=end):
                a = ev["args"]
                out.append(Payment(ev["blockNumber"], self.payer(a["channelId"]), a["payee"], int(a["amount"])))
            start = end + 1
        return out


def wrong_root(root: bytes) -> bytes:
    """A root that differs from ``root`` (what a faulty operator signs)."""
    return keccak(root + b"wrong")


# ---------------------------------------------------------------------------------------- operator


class Operator:
    """The epoch loop of one operator (see the module docstring)."""

    def __init__(self, cfg: OperatorConfig, key: str, w3: Web3 | None = None) -> None:
        self.cfg = cfg
        self._key = key
        self.w3 = w3 or Web3(Web3.HTTPProvider(cfg.rpc_url, request_kwargs={"timeout": 10}))
        self.chain_id = self.w3.eth.chain_id
        from eth_account import Account

        self.address = Account.from_key(key).address
        self.reader = ClaimReader(self.w3, cfg.channels)
        self.store = SignedEpochStore(cfg.store)
        self.leaves: dict[int, list[FlowLeaf]] = {}
        last = self.store.last_epoch()
        if last is None:
            self.next_epoch = cfg.first_epoch
        else:
            # A half-done epoch (root persisted, not signed) is finished first, with that root.
            half_done = any(sig is None for _, sig in self.store.roots(last))
            self.next_epoch = max(cfg.first_epoch, last if half_done else last + 1)
        self.stop = threading.Event()

    def __repr__(self) -> str:  # never show the key
        return f"Operator({self.cfg.operator_id}, {self.address})"

    def digest(self, epoch: int, root: bytes) -> bytes:
        return attestation_digest(self.chain_id, self.cfg.avs, epoch, root)

    def roots_to_sign(self, epoch: int, true_root: bytes) -> list[bytes]:
        fault = self.cfg.fault
        if fault.kind == "none" or fault.epoch != epoch:
            return [true_root]
        if fault.kind == "wrong-root":
            return [wrong_root(true_root)]
        return [true_root, wrong_root(true_root)]

    def attest_epoch(self, epoch: int) -> list[Attestation]:
        """Compute, persist, sign and return the epoch's attestations (resumes a half-done epoch)."""
        first = epoch * self.cfg.epoch_blocks
        payments = self.reader.payments(first, first + self.cfg.epoch_blocks - 1)
        root, leaves = settlement_root(payments, epoch, self.cfg.epoch_blocks)
        self.leaves[epoch] = leaves
        committed = self.store.roots(epoch)
        roots = [r for r, _ in committed] if committed else self.roots_to_sign(epoch, root)
        out = []
        for r in roots:
            self.store.commit_root(epoch, r)
        for r in roots:
            sig = dict(committed).get(r) or sign_digest(self._key, self.digest(epoch, r))
            self.store.store_signature(epoch, r, sig)
            out.append(Attestation(self.address, epoch, "0x" + r.hex(), "0x" + sig.hex()))
        log.info("epoch %d: %d payments, %d leaves, root %s", epoch, len(payments), len(leaves), root.hex()[:16])
        return out

    def resend_committed(self) -> list[Attestation]:
        """Signatures already held (after a restart), to send again."""
        out = []
        last = self.store.last_epoch()
        if last is None:
            return out
        for r, sig in self.store.roots(last):
            if sig is not None:
                out.append(Attestation(self.address, last, "0x" + r.hex(), "0x" + sig.hex()))
        return out

    def send(self, attestations: list[Attestation]) -> None:
        for att in attestations:
            body = msgspec.json.encode(att)
            req = urllib.request.Request(
                self.cfg.aggregator_url.rstrip("/") + "/attestations",
                data=body,
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            for attempt in range(5):
                try:
                    with urllib.request.urlopen(req, timeout=5) as resp:
                        log.info("epoch %d root %s: aggregator says %s", att.epoch, att.root[:18], resp.read()[:80])
                    break
                except (urllib.error.URLError, OSError) as err:
                    log.warning("aggregator unreachable (%s), retry %d", err, attempt + 1)
                    time.sleep(0.5 * (attempt + 1))

    def run(self) -> None:
        """Attest epochs until :attr:`stop` is set (with ``attest_flows`` off: only serve, until stopped)."""
        if not self.cfg.attest_flows:
            self.stop.wait()
            return
        self.send(self.resend_committed())
        while not self.stop.is_set():
            head = self.w3.eth.block_number
            ready_until = (head - self.cfg.confirmations + 1) // self.cfg.epoch_blocks  # epochs fully past
            while self.next_epoch < ready_until and not self.stop.is_set():
                self.send(self.attest_epoch(self.next_epoch))
                self.next_epoch += 1
            self.stop.wait(self.cfg.poll_s)


# ---------------------------------------------------------------------------------------- HTTP


def proof_server(op: Operator, host: str, port: int, bounds: HttpBounds | None = None) -> BoundedHttpServer:
    """HTTP endpoint serving an epoch's leaves (``GET /epochs/E``) and one address's proofs
    (``GET /epochs/E/proof/ADDRESS``), JSON, on its own thread within ``bounds``."""
    usage = "use /epochs/E or /epochs/E/proof/ADDRESS"

    def answer(path: str) -> tuple[int, dict]:
        parts = [p for p in path.split("/") if p]
        if len(parts) < 2 or parts[0] != "epochs" or not parts[1].isdigit() or len(parts[1]) > 12:
            return 404, {"error": usage}
        epoch = int(parts[1])
        leaves = op.leaves.get(epoch)
        if leaves is None:
            return 404, {"error": f"epoch {epoch} not attested by this operator"}
        if len(parts) == 2:
            return 200, {"epoch": epoch, "leaves": [msgspec.to_builtins(x) for x in leaves]}
        if len(parts) == 4 and parts[2] == "proof":
            try:
                me = to_checksum_address(parts[3])
            except ValueError:
                return 400, {"error": "not an address"}
            proofs = [
                {"leaf": msgspec.to_builtins(leaf), "proof": ["0x" + h.hex() for h in merkle_proof(leaves, i)]}
                for i, leaf in enumerate(leaves)
                if me in (leaf.a, leaf.b)
            ]
            return 200, {"epoch": epoch, "proofs": proofs}
        return 404, {"error": "unknown path"}

    async def get(request: web.Request) -> web.Response:
        status, body = await asyncio.to_thread(answer, request.path)
        return web.json_response(body, status=status)

    return BoundedHttpServer(
        json_routes({}, usage, fallback=get),
        host=host,
        port=port,
        bounds=bounds or HttpBounds(max_body_bytes=1024, max_streams=0),
        name="proof-server",
    ).start()


def main(argv: list[str] | None = None, on_ready: Callable[[Operator], None] | None = None) -> int:
    def load(path: Path) -> tuple[OperatorConfig, str | None]:
        cfg = load_operator_config(path)
        return cfg, read_key_from(cfg.key_env, cfg.key_file)

    loaded = start_service(
        "python -m runtime.operator",
        "Run one settlement operator: attest each epoch's net-flow root to the aggregator.",
        argv,
        load,
    )
    if loaded is None:
        return 2
    cfg, key = loaded
    assert key is not None
    op = Operator(cfg, key)
    server = proof_server(op, cfg.serve.host, cfg.serve.port, cfg.http)
    log.info(
        "operator %s (%s) from epoch %d, proofs on port %d",
        cfg.operator_id,
        op.address,
        op.next_epoch,
        server.port,
    )
    signal.signal(signal.SIGTERM, lambda *_: op.stop.set())
    signal.signal(signal.SIGINT, lambda *_: op.stop.set())
    if on_ready:
        on_ready(op)
    try:
        op.run()
    finally:
        server.close()
        op.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
