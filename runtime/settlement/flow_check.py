"""A node's own check of each finalised settlement root against the chain.

For every epoch the settlement service finalises, a node:

1. computes its own net flow with each counterparty from the channel contract's ``Claimed``
   events of the epoch (its own reading of the chain, trusting no operator);
2. fetches the leaves that concern it, with their Merkle proofs, from an operator's proof server;
3. verifies each proof against the root finalised on ``SettlementAVS``, and compares the proven
   flows with its own.

Any difference is a *mismatch*, logged loudly at ERROR level: either an operator quorum
finalised a root that misstates this node's payments, or the proof server lies. Both are worth
waking someone up for.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from eth_utils import to_checksum_address

from runtime.settlement.operator import ClaimReader
from runtime.settlement.roots import FlowLeaf, net_flows, own_net_flow, verify_proof

log = logging.getLogger("openstreaming.flowcheck")

MAX_PROOF_BYTES = 256 * 1024


@dataclass
class EpochCheck:
    """Outcome of checking one epoch: ``ok`` unless the proven flows differ from the node's own."""

    epoch: int
    ok: bool
    own: dict[str, int]
    proven: dict[str, int]
    reason: str = ""


def fetch_proofs(
    operator_url: str, epoch: int, address: str, timeout: float = 5.0
) -> list[tuple[FlowLeaf, list[bytes]]]:
    """The leaves mentioning ``address`` and their proofs, from an operator's proof server."""
    url = f"{operator_url.rstrip('/')}/epochs/{epoch}/proof/{to_checksum_address(address)}"
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body = resp.read(MAX_PROOF_BYTES + 1)
    if len(body) > MAX_PROOF_BYTES:
        raise ValueError("proof response too large")
    data = json.loads(body)
    out = []
    for item in data["proofs"]:
        leaf = item["leaf"]
        out.append(
            (
                FlowLeaf(
                    int(leaf["epoch"]), to_checksum_address(leaf["a"]), to_checksum_address(leaf["b"]), int(leaf["net"])
                ),
                [bytes.fromhex(h[2:] if h.startswith("0x") else h) for h in item["proof"]],
            )
        )
    return out


def check_epoch(
    reader: ClaimReader, root: bytes, address: str, epoch: int, epoch_blocks: int, operator_url: str
) -> EpochCheck:
    """Check one finalised ``root`` for ``address`` (see the module docstring)."""
    first = epoch * epoch_blocks
    own = own_net_flow(net_flows(reader.payments(first, first + epoch_blocks - 1), epoch, epoch_blocks), address)
    try:
        proofs = fetch_proofs(operator_url, epoch, address)
    except (urllib.error.URLError, OSError, ValueError, KeyError) as err:
        return EpochCheck(epoch, own == {}, own, {}, f"no proofs from {operator_url}: {err}")
    proven_leaves = []
    for leaf, proof in proofs:
        if leaf.epoch != epoch or not verify_proof(leaf, proof, root):
            return EpochCheck(epoch, False, own, {}, f"a proof from {operator_url} does not match the final root")
        proven_leaves.append(leaf)
    proven = own_net_flow(proven_leaves, address)
    if proven != own:
        return EpochCheck(epoch, False, own, proven, "final root misstates this node's net flows")
    return EpochCheck(epoch, True, own, proven)


@dataclass
class FlowChecker:
    """Background thread: check every newly finalised epoch for one node.

    :param avs: a ``SettlementAVSClient`` (read-only use).
    :param reader: a :class:`~runtime.settlement.operator.ClaimReader` on the channel contract.
    """

    avs: object
    reader: ClaimReader
    address: str
    epoch_blocks: int
    operator_urls: list[str]
    poll_s: float = 1.0
    results: list[EpochCheck] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    next_epoch: int = 0

    def poll_once(self) -> None:
        """Check every epoch from :attr:`next_epoch` that is final; stop at the first that is not."""
        while True:
            root = self.avs.finalized_root(self.next_epoch)
            if root == bytes(32):
                head_epoch = self.reader.w3.eth.block_number // self.epoch_blocks
                if self.next_epoch + 3 < head_epoch:  # a stuck epoch (no quorum): look further
                    self.next_epoch += 1
                    continue
                return
            result = None
            for url in self.operator_urls:
                result = check_epoch(self.reader, root, self.address, self.next_epoch, self.epoch_blocks, url)
                if result.ok or "misstates" in result.reason:
                    break
            assert result is not None
            self.results.append(result)
            if result.ok:
                log.info("epoch %d: final root matches this node's net flows %s", result.epoch, result.own)
            else:
                log.error(
                    "SETTLEMENT MISMATCH epoch %d: %s (own %s, proven %s)",
                    result.epoch, result.reason, result.own, result.proven,
                )  # fmt: skip
            self.next_epoch += 1

    def run(self) -> None:
        while not self.stop.wait(self.poll_s):
            try:
                self.poll_once()
            except Exception as err:  # the chain or a server is away: log and retry later
                log.warning("flow check paused: %s", err)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="flow-check", daemon=True)
        thread.start()
        return thread
