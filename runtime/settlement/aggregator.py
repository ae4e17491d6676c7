"""Aggregator and challenger of the settlement service.

``python -m runtime.aggregator --config FILE`` accepts operators' attestations over HTTP
(``POST /attestations``, JSON, at most 4 KiB) and exposes its view at ``GET /state``. The HTTP
server is a :class:`runtime.http_server.BoundedHttpServer` (whole-request deadline, connection caps,
body limit; the config's ``http:`` section, :class:`~runtime.http_server.HttpBounds`); its
handlers only decode and hand over to :class:`Aggregator`.

* The **aggregator** checks each attestation's signature (it must recover to the operator it
  names, over ``attestationDigest(epoch, root)`` of the configured ``SettlementAVS``), groups them
  by ``(epoch, root)``, and calls ``attest`` as soon as the signers of one root hold at least two
  thirds of the active stake — the same rule the contract enforces. A root without a quorum is
  never submitted.
* The **challenger** watches the same attestations for an operator that signed two different
  roots for one epoch and calls ``slashEquivocation`` with both signatures (its account receives
  the reporter's share of the bond).

Both keep the attestations they accepted in memory for the ``/state`` report; the chain is the
durable record (``EpochFinalized`` and ``OperatorSlashedForEquivocation`` events). What a client
can grow is bounded: a rejection is counted under a reason of the fixed set :class:`Rejection` and
only the last :data:`MAX_REJECTIONS` are kept (reason, epoch, operator); accepted attestations
are only those signed by a bonded operator, at most :data:`MAX_PENDING_ROOTS` ``(epoch, root)``
pairs and as many ``(operator, epoch)`` pairs (beyond: refused as ``aggregator full``); at most
:data:`LOG_BURST` rejection lines are logged per :data:`LOG_WINDOW_S` seconds.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import json
import logging
import signal
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Annotated

import msgspec
from aiohttp import web
from eth_utils import to_checksum_address

from runtime.chain.vouchers import attestation_digest, recover_digest_signer
from runtime.configfile import Listen, load_struct, read_key_from
from runtime.http_server import BoundedHttpServer, HttpBounds, json_error
from runtime.settlement.cli import start_service
from runtime.settlement.http_json import json_routes
from runtime.settlement.operator import Attestation

log = logging.getLogger("openstreaming.aggregator")

#: Largest attestation body accepted (an attestation is about 300 bytes of JSON).
MAX_BODY = 4096
#: Rejections kept for ``/state`` (the last ones; older ones are only counted).
MAX_REJECTIONS = 100
#: ``(epoch, root)`` pairs with signatures held at once, and as many ``(operator, epoch)`` pairs.
MAX_PENDING_ROOTS = 4096
#: Rejection log lines per window; the rest of the window's rejections are only counted.
LOG_BURST = 20
LOG_WINDOW_S = 10.0


class Rejection(enum.StrEnum):
    """Why an attestation was refused (the fixed set of the ``rejections`` counts)."""

    MALFORMED = "malformed attestation"
    TOO_LARGE = "body too large"
    BAD_ADDRESS = "operator is not an address"
    BAD_SIGNATURE = "bad signature"
    WRONG_SIGNER = "signature by another account"
    NO_BOND = "operator has no bond"
    FULL = "aggregator full"


class AggregatorConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The aggregator's configuration file."""

    rpc_url: str
    avs: str
    key_env: str | None = None
    key_file: str | None = None
    challenger_key_env: str | None = None
    challenger_key_file: str | None = None
    listen: Listen = msgspec.field(default_factory=Listen)
    http: HttpBounds = msgspec.field(default_factory=lambda: HttpBounds(max_body_bytes=MAX_BODY, max_streams=0))
    state_file: str | None = None
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0


class Aggregator:
    """Quorum collection and equivocation watching over one ``SettlementAVS`` (see module doc).

    :param avs: a ``SettlementAVSClient`` sending from the aggregator's account.
    :param challenger: a ``SettlementAVSClient`` sending from the challenger's account (may be ``avs``).
    """

    def __init__(self, avs, challenger=None) -> None:
        self.avs = avs
        self.challenger = challenger or avs
        self.chain_id = avs.chain_id
        self.lock = threading.Lock()
        self.signatures: dict[tuple[int, bytes], dict[str, bytes]] = defaultdict(dict)
        self.by_operator: dict[tuple[str, int], dict[bytes, bytes]] = defaultdict(dict)
        self.finalized: dict[int, str] = {}
        self.slashed: dict[str, dict] = {}
        self.rejected: collections.deque[dict] = collections.deque(maxlen=MAX_REJECTIONS)
        self.rejections: Counter[Rejection] = Counter()
        self._log_window = (0.0, 0)  # (window start, lines logged in it)
        self.gas_used = 0
        self.wake = threading.Event()

    def submit(self, att: Attestation) -> tuple[int, str]:
        """Accept one attestation (checks only; chain work happens on the worker thread).

        Returns an HTTP status and a one-line reason (``accepted`` or a :class:`Rejection`).
        Blocks on one chain read (the operator's bond): call it off the event loop.
        """
        try:
            operator = to_checksum_address(att.operator)
        except ValueError:
            return self.reject(Rejection.BAD_ADDRESS, att.epoch, None)
        root = bytes.fromhex(att.root[2:])
        signature = bytes.fromhex(att.signature[2:])
        digest = attestation_digest(self.chain_id, self.avs.address, att.epoch, root)
        try:
            signer = recover_digest_signer(digest, signature)
        except ValueError as err:
            return self.reject(Rejection.BAD_SIGNATURE, att.epoch, operator, str(err))
        if to_checksum_address(signer) != operator:
            return self.reject(Rejection.WRONG_SIGNER, att.epoch, operator, f"signed by {signer}")
        if operator not in self.slashed and self.avs.stake_of(operator) == 0:
            return self.reject(Rejection.NO_BOND, att.epoch, operator)
        with self.lock:
            key, mine = (att.epoch, root), (operator, att.epoch)
            if (key not in self.signatures and len(self.signatures) >= MAX_PENDING_ROOTS) or (
                mine not in self.by_operator and len(self.by_operator) >= MAX_PENDING_ROOTS
            ):
                full = True
            else:
                full = False
                self.signatures[key][operator] = signature
                self.by_operator[mine][root] = signature
        if full:
            return self.reject(Rejection.FULL, att.epoch, operator)
        self.wake.set()
        return 200, "accepted"

    def reject(self, reason: Rejection, epoch: int | None, operator: str | None, detail: str = "") -> tuple[int, str]:
        """Count and remember (boundedly) one refused attestation; ``(400, reason)``."""
        now = time.monotonic()
        with self.lock:
            self.rejections[reason] += 1
            self.rejected.append({"reason": reason.value, "epoch": epoch, "operator": operator})
            start, lines = self._log_window
            if now - start >= LOG_WINDOW_S:
                start, lines = now, 0
            loud = lines < LOG_BURST
            self._log_window = (start, lines + loud)
        if loud:
            log.warning("rejected attestation: %s (epoch %s, %s) %s", reason.value, epoch, operator, detail[:200])
        return 400, reason.value

    def process(self) -> None:
        """Slash every new equivocation, then finalise every root that reached the quorum.

        Runs on one thread only, so the aggregator's transactions never race for a nonce, and a
        failed transaction is simply retried on the next pass.
        """
        with self.lock:
            cheats = [
                (op, epoch, dict(roots))
                for (op, epoch), roots in self.by_operator.items()
                if len(roots) > 1 and op not in self.slashed
            ]
        for operator, epoch, roots in cheats:
            self._slash(operator, epoch, roots)
        with self.lock:
            pending = [
                (epoch, root, dict(signers))
                for (epoch, root), signers in self.signatures.items()
                if epoch not in self.finalized and signers
            ]
        if not pending:
            return
        for epoch, root, signers in sorted(pending, key=lambda p: p[0]):
            if epoch in self.finalized:
                continue
            # The contract counts each epoch against its own stake snapshot (signers bonded, unchanged,
            # since before the epoch began); ask it, so a signature that would not count is left out.
            total = self.avs.epoch_stake(epoch)
            stakes = {op: self.avs.signing_stake(op, epoch) for op in signers}
            signers = {op: sig for op, sig in signers.items() if stakes[op] > 0}
            signed = sum(stakes[op] for op in signers)
            if total == 0 or signed * 3 < total * 2:
                continue
            on_chain = self.avs.finalized_root(epoch)
            if on_chain != bytes(32):
                with self.lock:
                    self.finalized[epoch] = "0x" + on_chain.hex()
                continue
            try:
                receipt = self.avs.attest(epoch, root, signers)
            except Exception as err:  # the next pass retries
                log.warning("attest epoch %d failed: %s", epoch, err)
                continue
            self.gas_used += int(receipt["gasUsed"])
            with self.lock:
                self.finalized[epoch] = "0x" + root.hex()
            log.info("epoch %d finalised with %d signers (%d/%d wei)", epoch, len(signers), signed, total)

    def _slash(self, operator: str, epoch: int, seen: dict[bytes, bytes]) -> None:
        (root_a, sig_a), (root_b, sig_b) = list(seen.items())[:2]
        before = self.avs.stake_of(operator)
        try:
            receipt = self.challenger.slash_equivocation(operator, epoch, root_a, sig_a, root_b, sig_b)
        except Exception as err:  # the next pass retries
            log.error("slashing %s for epoch %d failed: %s", operator, epoch, err)
            return
        self.gas_used += int(receipt["gasUsed"])
        with self.lock:
            self.slashed[operator] = {"epoch": epoch, "stake_wei": before, "tx": receipt["transactionHash"].hex()}
        log.error("EQUIVOCATION: operator %s signed two roots for epoch %d; slashed %d wei", operator, epoch, before)

    def run(self, stop: threading.Event) -> None:
        """Worker loop: :meth:`process` on every new attestation and every half second."""
        while not stop.is_set():
            self.wake.wait(0.5)
            self.wake.clear()
            try:
                self.process()
            except Exception as err:  # the chain is away: keep the service up, retry
                log.warning("aggregator pass failed: %s", err)

    def state(self) -> dict:
        """A JSON-able snapshot: finalised roots, slashed operators, rejections, gas."""
        with self.lock:
            return {
                "finalized": {str(k): v for k, v in sorted(self.finalized.items())},
                "slashed": dict(self.slashed),
                "rejected": list(self.rejected),
                "rejections": {r.value: n for r, n in sorted(self.rejections.items())},
                "pending_roots": len(self.signatures),
                "gas_used": self.gas_used,
            }


def serve(agg: Aggregator, host: str, port: int, bounds: HttpBounds | None = None) -> BoundedHttpServer:
    """Start the HTTP endpoint (``GET /state``, ``POST /attestations``) on its own thread."""

    async def state(request: web.Request) -> web.Response:
        return web.json_response({**agg.state(), "http_refusals": BoundedHttpServer.of(request).refusal_counts()})

    async def attestations(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            _, reason = agg.reject(Rejection.TOO_LARGE, None, None)
            return json_error(413, f"{reason}: at most {MAX_BODY} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            _, reason = agg.reject(Rejection.TOO_LARGE, None, None)
            return json_error(413, f"{reason}: at most {MAX_BODY} bytes")
        try:
            att = msgspec.json.decode(body, type=Attestation)
        except msgspec.DecodeError as err:
            _, reason = agg.reject(Rejection.MALFORMED, None, None, str(err))
            return json_error(400, f"{reason}: {str(err)[:200]}")
        status, reason = await asyncio.to_thread(agg.submit, att)
        return web.json_response({"result": reason}, status=status)

    routes = {
        "/state": {"GET": state},
        "/attestations": {"POST": attestations},
    }
    bounds = bounds or HttpBounds(max_body_bytes=MAX_BODY, max_streams=0)
    return BoundedHttpServer(
        json_routes(routes, "use GET /state or POST /attestations"),
        host=host,
        port=port,
        bounds=bounds,
        name="aggregator-http",
    ).start()


def load_aggregator_config(path: str | Path) -> AggregatorConfig:
    """Read and validate the aggregator config; one-line :class:`ConfigError` on problems."""
    return load_struct(path, AggregatorConfig)


def main(argv: list[str] | None = None) -> int:
    def load(path: Path) -> tuple[AggregatorConfig, str | None, str | None]:
        cfg = load_aggregator_config(path)
        key = read_key_from(cfg.key_env, cfg.key_file)
        return cfg, key, read_key_from(cfg.challenger_key_env, cfg.challenger_key_file)

    loaded = start_service(
        "python -m runtime.aggregator",
        "Collect operators' attestations, finalise roots with a 2/3 stake quorum, slash equivocation.",
        argv,
        load,
    )
    if loaded is None:
        return 2
    cfg, key, challenger_key = loaded
    if key is None:
        print("error: config: give key_env or key_file for the aggregator's account", file=sys.stderr)
        return 2
    from runtime.chain.client import SettlementAVSClient, connect

    w3 = connect(cfg.rpc_url)
    avs = SettlementAVSClient(w3, cfg.avs, key)
    agg = Aggregator(avs, avs.as_account(challenger_key) if challenger_key else None)
    server = serve(agg, cfg.listen.host, cfg.listen.port, cfg.http)
    log.info("aggregator on port %d for SettlementAVS %s", server.port, cfg.avs)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=agg.run, args=(stop,), name="aggregator-worker", daemon=True).start()
    while not stop.wait(0.5):
        if cfg.state_file:
            Path(cfg.state_file).write_text(json.dumps(agg.state(), indent=2))
    if cfg.state_file:
        Path(cfg.state_file).write_text(json.dumps(agg.state(), indent=2))
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
