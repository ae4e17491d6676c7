"""Aggregator and challenger of the settlement service.

``python -m runtime.aggregator --config FILE`` accepts operators' attestations over HTTP
(``POST /attestations``, JSON, at most 4 KiB) and exposes its view at ``GET /state``.

* The **aggregator** checks each attestation's signature (it must recover to the operator it
  names, over ``attestationDigest(epoch, root)`` of the configured ``SettlementAVS``), groups them
  by ``(epoch, root)``, and calls ``attest`` as soon as the signers of one root hold at least two
  thirds of the active stake — the same rule the contract enforces. A root without a quorum is
  never submitted.
* The **challenger** watches the same attestations for an operator that signed two different
  roots for one epoch and calls ``slashEquivocation`` with both signatures (its account receives
  the reporter's share of the bond).

Both keep every attestation they accepted in memory for the ``/state`` report; the chain is the
durable record (``EpochFinalized`` and ``OperatorSlashedForEquivocation`` events).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections import defaultdict
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Annotated

import msgspec
from eth_utils import to_checksum_address

from runtime.chain.vouchers import attestation_digest, recover_digest_signer
from runtime.configfile import Listen, load_struct, read_key_from
from runtime.settlement.cli import start_service
from runtime.settlement.http_json import JsonHandler, start_server
from runtime.settlement.operator import Attestation

log = logging.getLogger("openstreaming.aggregator")

MAX_BODY = 4096


class AggregatorConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The aggregator's configuration file."""

    rpc_url: str
    avs: str
    key_env: str | None = None
    key_file: str | None = None
    challenger_key_env: str | None = None
    challenger_key_file: str | None = None
    listen: Listen = msgspec.field(default_factory=Listen)
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
        self.rejected: list[str] = []
        self.gas_used = 0
        self.wake = threading.Event()

    def submit(self, att: Attestation) -> tuple[int, str]:
        """Accept one attestation (checks only; chain work happens on the worker thread).

        Returns an HTTP status and a one-line reason.
        """
        try:
            operator = to_checksum_address(att.operator)
        except ValueError:
            return 400, "operator is not an address"
        root = bytes.fromhex(att.root[2:])
        signature = bytes.fromhex(att.signature[2:])
        digest = attestation_digest(self.chain_id, self.avs.address, att.epoch, root)
        try:
            signer = recover_digest_signer(digest, signature)
        except ValueError as err:
            return self._reject(f"epoch {att.epoch}: bad signature from {operator} ({err})")
        if to_checksum_address(signer) != operator:
            return self._reject(f"epoch {att.epoch}: signature by {signer}, not {operator}")
        if operator not in self.slashed and self.avs.stake_of(operator) == 0:
            return self._reject(f"epoch {att.epoch}: {operator} has no bond")
        with self.lock:
            self.signatures[(att.epoch, root)][operator] = signature
            self.by_operator[(operator, att.epoch)][root] = signature
        self.wake.set()
        return 200, "accepted"

    def _reject(self, reason: str) -> tuple[int, str]:
        log.warning("rejected attestation: %s", reason)
        with self.lock:
            self.rejected.append(reason)
        return 400, reason

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
                "gas_used": self.gas_used,
            }


def serve(agg: Aggregator, host: str, port: int) -> ThreadingHTTPServer:
    """Start the HTTP endpoint in a daemon thread."""

    class Handler(JsonHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            if self.path.rstrip("/") == "/state":
                return self.reply(200, agg.state())
            return self.reply(404, {"error": "use GET /state or POST /attestations"})

        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            if self.path.rstrip("/") != "/attestations":
                return self.reply(404, {"error": "use POST /attestations"})
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                return self.reply(400, {"error": "bad Content-Length"})
            if not 0 < length <= MAX_BODY:
                return self.reply(413, {"error": f"body must be 1..{MAX_BODY} bytes"})
            try:
                att = msgspec.json.decode(self.rfile.read(length), type=Attestation)
            except msgspec.DecodeError as err:
                return self.reply(400, {"error": f"malformed attestation: {err}"})
            status, reason = agg.submit(att)
            return self.reply(status, {"result": reason})

    return start_server(Handler, host, port, "aggregator-http")


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
    server = serve(agg, cfg.listen.host, cfg.listen.port)
    log.info("aggregator on port %d for SettlementAVS %s", server.server_address[1], cfg.avs)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=agg.run, args=(stop,), name="aggregator-worker", daemon=True).start()
    while not stop.wait(0.5):
        if cfg.state_file:
            Path(cfg.state_file).write_text(json.dumps(agg.state(), indent=2))
    if cfg.state_file:
        Path(cfg.state_file).write_text(json.dumps(agg.state(), indent=2))
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
