"""Net settlement of a finished mesh run (``python -m runtime.mesh --settlement net``).

After the nodes stopped, each payee hands its latest voucher per incoming channel (read from its own
sqlite store, exactly what it would hand in) to the operators; the operators verify every voucher
(:func:`runtime.settlement.netting.build_root`), two thirds of them sign the root, the aggregator
proposes it on ``NetSettlement``, every node checks the published root and proves it wrong if it
is (:func:`runtime.settlement.fraud.check_and_challenge`, sent with the node's own key), and after
the challenge window each node claims its leaf with its own key. If the root was voided, every node
falls back to direct ``claimBatch`` of its vouchers (its channels' challenge periods are still open).

``faulty="wrong-root"``: the last operator and the first sign a root that overpays one node by
10 % of one of its channels (the payer never signed that amount); the first node to check proves it,
the root is voided and both signers are slashed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from eth_account import Account
from web3 import Web3

from runtime.chain.client import SettlementAVSClient, StreamChannelsClient
from runtime.chain.netting import NetSettlementClient
from runtime.chain.vouchers import VoucherVerifier
from runtime.node.store import Store
from runtime.settlement.fraud import Verdict, channel_reader, check_and_challenge
from runtime.settlement.net_store import NetRootSigner
from runtime.settlement.netting import Entry, NetRoot, NodeLeaf, build_root, from_leaves

log = logging.getLogger("openstreaming.node.net_settlement")

#: seconds a net root can be challenged in a mesh run (anvil's clock is advanced past it)
MESH_CHALLENGE_WINDOW = 600

T = TypeVar("T")


@dataclass
class NetOutcome:
    """What net settlement did on chain."""

    roots_executed: int = 0
    roots_voided: int = 0
    net_claims: int = 0
    direct_claims: int = 0
    slashed_wei: int = 0
    prover: str | None = None
    rejected_vouchers: int = 0
    tx_hashes: list[str] = field(default_factory=list)

    def as_report(self) -> dict[str, Any]:
        """The mesh report's fields."""
        return {
            "roots_executed": self.roots_executed,
            "roots_voided": self.roots_voided,
            "net_claims": self.net_claims,
            "net_fallback_direct_claims": self.direct_claims,
            "net_slashed_wei": self.slashed_wei,
            "net_fraud_prover": self.prover,
            "net_rejected_vouchers": self.rejected_vouchers,
        }


def _hash(receipt: Any) -> str:
    return receipt["transactionHash"].to_0x_hex()


def handed_in(stores: Sequence[Path], addresses: Sequence[str]) -> list[tuple[str, Entry]]:
    """Every payee's latest voucher per incoming channel, as ``(payee, entry)``."""
    out: list[tuple[str, Entry]] = []
    for path, address in zip(stores, addresses, strict=True):
        if not path.exists():
            continue
        store = Store(path)
        try:
            for cid, v in sorted(store.latest("received").items()):
                if v.cumulative > 0:
                    out.append((address, Entry(cid, v.cumulative, bytes(v.signature))))
        finally:
            store.close()
    return out


def _overpay(root: NetRoot) -> NetRoot:
    """The same root with one node's first entry raised by 10 % (at least 1 wei) above its voucher."""
    victim = next(leaf for leaf in root.leaves if leaf.entries)
    first = victim.entries[0]
    bump = max(1, first.cumulative_amount // 10)
    raised = replace(first, cumulative_amount=first.cumulative_amount + bump)
    bad = NodeLeaf(victim.node, victim.amount + bump, (raised, *victim.entries[1:]))
    return from_leaves(root.epoch, [bad, *(x for x in root.leaves if x.node != victim.node)])


def settle_net(
    w3: Web3,
    channels: StreamChannelsClient,
    avs: SettlementAVSClient,
    funder_key: str,
    operator_keys: Sequence[str],
    node_keys: Sequence[str],
    stores: Sequence[Path],
    store_dir: Path,
    faulty: str | None = None,
    retry: Callable[[Callable[[], T]], T] | None = None,
) -> NetOutcome:
    """Runs net settlement for a finished mesh (see the module docstring); anvil only (it advances
    the clock past the challenge window). Each signing operator persists the root and its leaves in
    ``store_dir/net-opI.sqlite`` before it signs (:class:`NetRootSigner`), and the nodes check the
    leaves the first signer publishes. ``retry`` wraps a funder transaction that may race the
    aggregator's nonce."""
    again: Callable[[Callable[[], T]], T] = retry or (lambda send: send())
    outcome = NetOutcome()
    net = again(lambda: NetSettlementClient.deploy_bound(w3, funder_key, channels, avs, MESH_CHALLENGE_WINDOW))
    addresses = [Account.from_key(k).address for k in node_keys]
    verifier = VoucherVerifier(w3.eth.chain_id, channels.address)
    read_channel = channel_reader(channels)
    epoch = w3.eth.block_number // avs.epoch_blocks() - 1
    honest, rejected = build_root(epoch, handed_in(stores, addresses), read_channel, verifier)
    outcome.rejected_vouchers = len(rejected)
    for node, entry, reason in rejected:
        log.warning("voucher of channel %d handed in by %s left out: %s", entry.channel_id, node, reason.value)
    published = _overpay(honest) if faulty == "wrong-root" and honest.leaves else honest
    signing = [0, len(operator_keys) - 1] if published is not honest else list(range(len(operator_keys)))
    store_dir.mkdir(parents=True, exist_ok=True)
    sigs: dict[str, bytes] = {}
    for i in signing:
        signer = NetRootSigner(store_dir / f"net-op{i}.sqlite", operator_keys[i], w3.eth.chain_id, net.address)
        try:
            sigs[Account.from_key(operator_keys[i]).address] = signer.sign(published)  # persists, then signs
            if i == signing[0]:
                served = signer.published(epoch)
                assert served is not None
                published = served  # the nodes check what the operators publish
        finally:
            signer.close()
    outcome.tx_hashes.append(_hash(again(lambda: net.propose_root(epoch, published.root, sigs))))

    # Every node checks the root (each one it is in; here: all of them) and proves a wrong one.
    for key in node_keys:
        now = int(w3.eth.get_block("latest")["timestamp"])
        result = check_and_challenge(net.as_account(key), published, read_channel, verifier, now)
        if result.verdict is Verdict.VOIDED:
            outcome.prover = Account.from_key(key).address
            assert result.tx_hash is not None
            outcome.tx_hashes.append(result.tx_hash)
            break
    w3.provider.make_request("evm_increaseTime", [MESH_CHALLENGE_WINDOW + 1])
    w3.provider.make_request("evm_mine", [])
    record = net.root_of(epoch)
    if record.voided:
        outcome.roots_voided = 1
        events = avs.contract.events.OperatorSlashedForWrongRoot.get_logs(from_block=0)
        outcome.slashed_wei = sum(int(ev["args"]["amount"]) for ev in events)
        # Liveness: every node claims its vouchers directly, within its channels' challenge periods.
        by_node: dict[str, list[tuple[int, int, bytes]]] = {}
        for node, entry in handed_in(stores, addresses):
            by_node.setdefault(node, []).append(entry.as_tuple())
        for key, address in zip(node_keys, addresses, strict=True):
            if by_node.get(address):
                receipt = channels.as_account(key).claim_batch(by_node[address])
                outcome.tx_hashes.append(_hash(receipt))
                outcome.direct_claims += 1
        return outcome
    outcome.roots_executed = 1
    for key, address in zip(node_keys, addresses, strict=True):
        leaf = published.leaf(address)
        if leaf is None:
            continue
        receipt = net.as_account(key).claim_net(epoch, leaf, published.proof(address))
        outcome.tx_hashes.append(_hash(receipt))
        outcome.net_claims += 1
    return outcome
