"""Node-side root checking: a wrong net-settlement root becomes a fraud-proof transaction.

A node that sees a root it is in (or any root: anyone may prove) checks every leaf with
:func:`runtime.settlement.netting.leaf_fraud`; on the first fault it submits the matching proof to
``NetSettlement`` within the challenge window, which voids the root and slashes its signers (the
bounty goes to the node). Where "SETTLEMENT MISMATCH" used to be a log line, it is now this.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from runtime.chain.client import ChainError, StreamChannelsClient
from runtime.chain.netting import NetSettlementClient
from runtime.chain.vouchers import VoucherVerifier
from runtime.settlement.netting import ChannelView, Fraud, FraudKind, NetRoot, leaf_fraud

log = logging.getLogger("openstreaming.settlement.fraud")


class Verdict(Enum):
    """What checking one root came to (a fixed set)."""

    CORRECT = "correct"
    VOIDED = "voided by our proof"
    ALREADY_VOIDED = "already voided"
    NOT_ON_CHAIN = "published leaves do not match the root on chain"
    WINDOW_CLOSED = "challenge window over"


@dataclass(frozen=True)
class CheckResult:
    """A root check's verdict and, when a proof was found, the fault."""

    verdict: Verdict
    fraud: Fraud | None = None
    tx_hash: str | None = None


def channel_reader(channels: StreamChannelsClient) -> Callable[[int], ChannelView | None]:
    """``channel_of`` for the checks, read from the chain (None for a channel never opened)."""

    def channel_of(channel_id: int) -> ChannelView | None:
        state = channels.channel(channel_id)
        if int(state.payer, 16) == 0:
            return None
        return ChannelView(state.payer, state.payee, state.deposit)

    return channel_of


def find_fraud(
    root: NetRoot, channel_of: Callable[[int], ChannelView | None], verifier: VoucherVerifier
) -> Fraud | None:
    """The first provable fault in any leaf of ``root``, or None."""
    for leaf in root.leaves:
        fraud = leaf_fraud(leaf, channel_of, verifier)
        if fraud is not None:
            return fraud
    return None


def check_and_challenge(
    client: NetSettlementClient,
    root: NetRoot,
    channel_of: Callable[[int], ChannelView | None],
    verifier: VoucherVerifier,
    now: int,
) -> CheckResult:
    """Checks ``root`` (as published by the operators) against the chain and, if a leaf is wrong,
    proves it. ``now`` is the chain's latest block timestamp."""
    record = client.root_of(root.epoch)
    if record.voided:
        return CheckResult(Verdict.ALREADY_VOIDED)
    if record.root != root.root:
        return CheckResult(Verdict.NOT_ON_CHAIN)
    fraud = find_fraud(root, channel_of, verifier)
    if fraud is None:
        return CheckResult(Verdict.CORRECT)
    if now >= record.executable_at:
        log.error("wrong root for epoch %d found after its window: %s", root.epoch, fraud)
        return CheckResult(Verdict.WINDOW_CLOSED, fraud)
    leaf = root.leaf(fraud.node)
    assert leaf is not None  # find_fraud only names nodes with a leaf
    proof = root.proof(fraud.node)
    signers = client.signers_of(root.epoch)
    try:
        if fraud.kind is FraudKind.UNSUPPORTED_ENTRY:
            receipt = client.prove_unsupported_entry(root.epoch, leaf, proof, fraud.index, signers)
        else:
            receipt = client.prove_malformed_leaf(root.epoch, leaf, proof, signers)
    except ChainError as exc:
        if client.root_of(root.epoch).voided:  # another node proved it first
            return CheckResult(Verdict.ALREADY_VOIDED, fraud)
        raise exc
    log.warning("SETTLEMENT MISMATCH in epoch %d (%s, node %s): root voided", root.epoch, fraud.kind.value, fraud.node)
    return CheckResult(Verdict.VOIDED, fraud, receipt["transactionHash"].to_0x_hex())
