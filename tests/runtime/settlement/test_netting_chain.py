"""Net-settlement roots end to end on a real anvil: Python builds the leaves, the tree and the
signatures; NetSettlement executes a correct root and voids a wrong one on a node's fraud proof."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from eth_account import Account
from web3 import Web3

from runtime.chain.anvil import DEV_PRIVATE_KEYS
from runtime.chain.client import ChallengeWindowOpen, RootIsVoided, SettlementAVSClient, StreamChannelsClient
from runtime.chain.netting import NetSettlementClient
from runtime.chain.vouchers import VoucherSigner, VoucherVerifier, sign_digest
from runtime.settlement.fraud import Verdict, channel_reader, check_and_challenge
from runtime.settlement.netting import (
    Entry,
    FraudKind,
    NetRoot,
    NodeLeaf,
    Rejection,
    build_root,
    from_leaves,
    leaf_fraud,
    net_root_digest,
    shortfall,
)

pytestmark = pytest.mark.chain

ETH = 10**18
WINDOW = 600
DEPLOYER, P1, P2, N1, N2 = DEV_PRIVATE_KEYS[:5]
OPS = DEV_PRIVATE_KEYS[5:8]


def _addr(key: str) -> str:
    return Account.from_key(key).address


def _mine(w3: Web3, blocks: int = 1, seconds: int = 0) -> None:
    if seconds:
        w3.provider.make_request("evm_increaseTime", [seconds])
    for _ in range(blocks):
        w3.provider.make_request("evm_mine", [])


@dataclass
class Mesh:
    w3: Web3
    channels: StreamChannelsClient
    avs: SettlementAVSClient
    net: NetSettlementClient
    verifier: VoucherVerifier
    signers: dict[str, VoucherSigner]
    ids: dict[str, int]  # "p1n1" -> channel id
    epoch: int

    def voucher(self, name: str, amount: int) -> Entry:
        payer = P1 if name.startswith("p1") else P2
        cid = self.ids[name]
        return Entry(cid, amount, self.signers[payer].sign(cid, amount))

    def sign_root(self, root: bytes, ops: tuple[str, ...] = OPS[:2]) -> dict[str, bytes]:
        digest = net_root_digest(self.w3.eth.chain_id, self.net.address, self.epoch, root)
        return {_addr(k): sign_digest(k, digest) for k in ops}

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])


@pytest.fixture
def mesh(w3: Web3) -> Mesh:
    channels = StreamChannelsClient.deploy(w3, DEPLOYER)
    avs = SettlementAVSClient.deploy(w3, DEPLOYER, epoch_blocks=2)
    net = NetSettlementClient.deploy_bound(w3, DEPLOYER, channels, avs, WINDOW)
    for key in OPS:
        avs.as_account(key).register(ETH)
    epoch = w3.eth.block_number // 2 + 1  # starts after every bond
    period = channels.min_challenge_period()
    ids = {
        "p1n1": channels.as_account(P1).open(_addr(N1), period, 5 * ETH),
        "p2n1": channels.as_account(P2).open(_addr(N1), period, 5 * ETH),
        "p1n2": channels.as_account(P1).open(_addr(N2), period, 5 * ETH),
    }
    while w3.eth.block_number < (epoch + 1) * 2:
        _mine(w3)
    chain_id = w3.eth.chain_id
    return Mesh(
        w3,
        channels,
        avs,
        net,
        VoucherVerifier(chain_id, channels.address),
        {k: VoucherSigner(k, chain_id, channels.address) for k in (P1, P2)},
        ids,
        epoch,
    )


def _honest(mesh: Mesh) -> NetRoot:
    handed = [
        (_addr(N1), mesh.voucher("p1n1", ETH)),
        (_addr(N1), mesh.voucher("p2n1", 2 * ETH)),
        (_addr(N2), mesh.voucher("p1n2", 3 * ETH)),
    ]
    root, rejected = build_root(mesh.epoch, handed, channel_reader(mesh.channels), mesh.verifier)
    assert rejected == []
    return root


def test_python_leaves_tree_and_digest_match_the_contract(mesh: Mesh) -> None:
    root = _honest(mesh)
    for leaf in root.leaves:
        assert mesh.net.leaf_hash(mesh.epoch, leaf) == leaf.hash(mesh.epoch)
    assert mesh.net.root_digest(mesh.epoch, root.root) == net_root_digest(
        mesh.w3.eth.chain_id, mesh.net.address, mesh.epoch, root.root
    )


def test_operators_verify_every_voucher_before_it_enters_a_root(mesh: Mesh) -> None:
    good = mesh.voucher("p1n1", ETH)
    handed = [
        (_addr(N1), good),
        (_addr(N1), Entry(good.channel_id, 2 * ETH, good.signature)),  # signature for 1 ETH
        (_addr(N2), mesh.voucher("p1n1", ETH)),  # not N2's channel
        (_addr(N1), mesh.voucher("p2n1", 6 * ETH)),  # above the 5 ETH deposit
        (_addr(N1), Entry(99, ETH, good.signature)),  # no such channel
    ]
    root, rejected = build_root(mesh.epoch, handed, channel_reader(mesh.channels), mesh.verifier)
    assert [r for _, _, r in rejected] == [
        Rejection.BAD_SIGNATURE,
        Rejection.WRONG_PAYEE,
        Rejection.ABOVE_DEPOSIT,
        Rejection.UNKNOWN_CHANNEL,
    ]
    assert [leaf.amount for leaf in root.leaves] == [ETH]


def test_correct_root_pays_each_node_once_after_the_window(mesh: Mesh) -> None:
    root = _honest(mesh)
    mesh.net.propose_root(mesh.epoch, root.root, mesh.sign_root(root.root))
    verdict = check_and_challenge(
        mesh.net.as_account(N2), root, channel_reader(mesh.channels), mesh.verifier, mesh.now()
    )
    assert verdict.verdict is Verdict.CORRECT
    relayer = mesh.net.as_account(DEPLOYER)  # a third party submits, so balances move by exactly the pay
    n1 = root.leaf(_addr(N1))
    assert n1 is not None
    with pytest.raises(ChallengeWindowOpen):
        relayer.claim_net(mesh.epoch, n1, root.proof(_addr(N1)))
    _mine(mesh.w3, seconds=WINDOW)
    before = mesh.w3.eth.get_balance(_addr(N1))
    relayer.claim_net(mesh.epoch, n1, root.proof(_addr(N1)))
    relayer.claim_net(mesh.epoch, n1, root.proof(_addr(N1)))  # a replay pays nothing
    assert mesh.w3.eth.get_balance(_addr(N1)) - before == 3 * ETH
    # The same voucher claimed directly pays nothing; a later one only the rest.
    direct = mesh.channels.as_account(DEPLOYER)
    v = mesh.voucher("p2n1", 2 * ETH)
    direct.claim(v.channel_id, v.cumulative_amount, v.signature)
    v = mesh.voucher("p2n1", 2 * ETH + 5)
    direct.claim(v.channel_id, v.cumulative_amount, v.signature)
    assert mesh.w3.eth.get_balance(_addr(N1)) - before == 3 * ETH + 5


def test_wrong_root_is_voided_by_a_nodes_proof_and_its_signers_slashed(mesh: Mesh) -> None:
    honest = _honest(mesh)
    n1 = honest.leaf(_addr(N1))
    assert n1 is not None
    # Two of three operators sign a root that overpays N1 by 1 ETH on P2's channel.
    forged = replace(n1.entries[1], cumulative_amount=3 * ETH)
    bad_leaf = NodeLeaf(n1.node, n1.amount + ETH, (n1.entries[0], forged))
    wrong = from_leaves(mesh.epoch, [bad_leaf, *(x for x in honest.leaves if x.node != n1.node)])
    mesh.net.propose_root(mesh.epoch, wrong.root, mesh.sign_root(wrong.root))
    assert leaf_fraud(bad_leaf, channel_reader(mesh.channels), mesh.verifier) is not None

    prover = mesh.net.as_account(N2)
    before = mesh.w3.eth.get_balance(_addr(N2))
    result = check_and_challenge(prover, wrong, channel_reader(mesh.channels), mesh.verifier, mesh.now())
    assert result.verdict is Verdict.VOIDED
    assert result.fraud is not None and result.fraud.kind is FraudKind.UNSUPPORTED_ENTRY
    receipt = prover.last_receipt
    assert receipt is not None
    gas_cost = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    bounty = 10**16  # SettlementAVS.SLASH_BOUNTY per slashed signer
    assert mesh.w3.eth.get_balance(_addr(N2)) - before == 2 * bounty - gas_cost
    assert [mesh.avs.stake_of(_addr(k)) for k in OPS] == [0, 0, ETH]
    assert mesh.net.roots_voided() == 1
    assert mesh.net.root_of(mesh.epoch).voided
    # A second check finds it voided; the root never pays.
    again = check_and_challenge(prover, wrong, channel_reader(mesh.channels), mesh.verifier, mesh.now())
    assert again.verdict is Verdict.ALREADY_VOIDED
    _mine(mesh.w3, seconds=WINDOW)
    with pytest.raises(RootIsVoided):
        mesh.net.as_account(DEPLOYER).claim_net(mesh.epoch, bad_leaf, wrong.proof(n1.node))
    # Liveness: N1 falls back to direct claims and ends with exactly what its vouchers say.
    missing = shortfall(None, {e.channel_id: e.cumulative_amount for e in n1.entries})
    start = mesh.w3.eth.get_balance(_addr(N1))
    direct = mesh.channels.as_account(DEPLOYER)
    for cid, amount in missing.items():
        e = next(x for x in n1.entries if x.channel_id == cid)
        direct.claim(cid, amount, e.signature)
    assert mesh.w3.eth.get_balance(_addr(N1)) - start == 3 * ETH


def test_wrong_sum_is_proven_malformed(mesh: Mesh) -> None:
    honest = _honest(mesh)
    n2 = honest.leaf(_addr(N2))
    assert n2 is not None
    inflated = replace(n2, amount=n2.amount + 1)
    wrong = from_leaves(mesh.epoch, [inflated, *(x for x in honest.leaves if x.node != n2.node)])
    mesh.net.propose_root(mesh.epoch, wrong.root, mesh.sign_root(wrong.root, OPS))
    result = check_and_challenge(
        mesh.net.as_account(N1), wrong, channel_reader(mesh.channels), mesh.verifier, mesh.now()
    )
    assert result.verdict is Verdict.VOIDED
    assert result.fraud is not None and result.fraud.kind is FraudKind.MALFORMED_LEAF
    assert [mesh.avs.stake_of(_addr(k)) for k in OPS] == [0, 0, 0]


def test_gas_of_a_root_against_direct_claims(mesh: Mesh) -> None:
    """Not a speed goal, a record: one root for both nodes vs each node's claimBatch (docs/notes/settlement-avs.md)."""
    root = _honest(mesh)
    propose = mesh.net.propose_root(mesh.epoch, root.root, mesh.sign_root(root.root))["gasUsed"]
    _mine(mesh.w3, seconds=WINDOW)
    relayer = mesh.net.as_account(DEPLOYER)
    claims = [relayer.claim_net(mesh.epoch, leaf, root.proof(leaf.node))["gasUsed"] for leaf in root.leaves]
    assert propose < 150_000
    assert all(c < 120_000 for c in claims)


def test_every_netsettlement_error_has_a_python_exception() -> None:
    from runtime.chain import client as chain
    from runtime.chain.client import load_artifact

    errors = {item["name"] for item in load_artifact("NetSettlement").abi if item["type"] == "error"}
    assert not errors - set(chain.ERRORS), errors - set(chain.ERRORS)


def test_stalled_operators_node_falls_back_to_direct_claims_within_the_channel_period(mesh: Mesh) -> None:
    """Liveness: no root ever comes (operators stalled); the payer starts closing; the node's rule
    (``direct_claim_due``) claims directly before ``closesAt``; a root signed later pays nothing more,
    and ``finalizeClose`` refunds exactly the rest. Clock moved with ``evm_increaseTime``."""
    from runtime.settlement.netting import NET_FALLBACK_MARGIN_S, direct_claim_due

    v1 = mesh.voucher("p1n1", ETH)
    v2 = mesh.voucher("p2n1", 2 * ETH)
    payer = mesh.channels.as_account(P1)
    payer.start_close(v1.channel_id)
    closes_at = mesh.channels.channel(v1.channel_id).closes_at
    assert not direct_claim_due(closes_at, mesh.now())  # an hour left: wait for a root
    _mine(mesh.w3, seconds=closes_at - mesh.now() - NET_FALLBACK_MARGIN_S + 1)
    assert direct_claim_due(closes_at, mesh.now())  # half an hour left and no root: claim directly
    assert not direct_claim_due(mesh.channels.channel(v2.channel_id).closes_at, mesh.now())  # not closing
    before = mesh.w3.eth.get_balance(_addr(N1))
    mesh.channels.as_account(DEPLOYER).claim_batch([v1.as_tuple()])
    assert mesh.w3.eth.get_balance(_addr(N1)) - before == ETH
    # The operators come back with a root holding the same voucher: it pays only P2's channel.
    late = mesh.w3.eth.block_number // 2 - 1
    root, rejected = build_root(late, [(_addr(N1), v1), (_addr(N1), v2)], channel_reader(mesh.channels), mesh.verifier)
    assert rejected == []
    digest = net_root_digest(mesh.w3.eth.chain_id, mesh.net.address, late, root.root)
    mesh.net.propose_root(late, root.root, {_addr(k): sign_digest(k, digest) for k in OPS[:2]})
    _mine(mesh.w3, seconds=WINDOW)
    leaf = root.leaf(_addr(N1))
    assert leaf is not None
    mesh.net.as_account(DEPLOYER).claim_net(late, leaf, root.proof(_addr(N1)))
    assert mesh.w3.eth.get_balance(_addr(N1)) - before == 3 * ETH  # nothing paid twice
    _mine(mesh.w3, seconds=NET_FALLBACK_MARGIN_S)
    p1_before = mesh.w3.eth.get_balance(_addr(P1))
    mesh.channels.as_account(DEPLOYER).finalize_close(v1.channel_id)
    assert mesh.w3.eth.get_balance(_addr(P1)) - p1_before == 4 * ETH  # deposit minus the voucher
    assert mesh.channels.channel(v1.channel_id).claimed == ETH
