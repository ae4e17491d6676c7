"""Properties of the net-settlement leaves and tree (no chain): an honest root never admits a fraud
proof, a root with any one wrong leaf always does, and every leaf's proof leads to its root."""

from __future__ import annotations

from dataclasses import replace

from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.chain.anvil import DEV_PRIVATE_KEYS
from runtime.chain.vouchers import VoucherSigner, VoucherVerifier
from runtime.settlement.netting import (
    MAX_ENTRIES,
    ChannelView,
    Entry,
    FraudKind,
    NodeLeaf,
    _pair,
    build_root,
    leaf_fraud,
)

CHAIN, CONTRACT = 31337, "0x00000000000000000000000000000000000000C4"
PAYERS = [VoucherSigner(k, CHAIN, CONTRACT) for k in DEV_PRIVATE_KEYS[:3]]
NODES = [Account.from_key(k).address for k in DEV_PRIVATE_KEYS[3:7]]
VERIFIER = VoucherVerifier(CHAIN, CONTRACT)
DEPOSIT = 10**18

# channel id -> (payer index, node index), a fixed little mesh of 10 channels
CHANNELS = {cid: (cid % 3, (cid * 7) % 4) for cid in range(1, 11)}


def channel_of(cid: int) -> ChannelView | None:
    if cid not in CHANNELS:
        return None
    p, n = CHANNELS[cid]
    return ChannelView(PAYERS[p].address, NODES[n], DEPOSIT)


vouchers = st.dictionaries(st.sampled_from(sorted(CHANNELS)), st.integers(0, DEPOSIT), min_size=1, max_size=10)


def _root(amounts: dict[int, int]):
    handed = [
        (NODES[CHANNELS[c][1]], Entry(c, a, PAYERS[CHANNELS[c][0]].sign(c, a))) for c, a in sorted(amounts.items())
    ]
    return build_root(5, handed, channel_of, VERIFIER)


def _verify(leaf_hash: bytes, proof: list[bytes], root: bytes) -> bool:
    node = leaf_hash
    for sibling in proof:
        node = _pair(node, sibling)
    return node == root


@settings(max_examples=40, deadline=None)
@given(vouchers)
def test_honest_roots_admit_no_fraud_and_every_proof_verifies(amounts):
    root, rejected = _root(amounts)
    assert rejected == []
    assert sum(leaf.amount for leaf in root.leaves) == sum(amounts.values())
    for leaf in root.leaves:
        assert leaf_fraud(leaf, channel_of, VERIFIER) is None
        assert len(leaf.entries) <= MAX_ENTRIES
        assert _verify(leaf.hash(root.epoch), root.proof(leaf.node), root.root)


@settings(max_examples=40, deadline=None)
@given(vouchers, st.integers(0, 2), st.integers(1, DEPOSIT), st.data())
def test_any_single_wrong_leaf_is_provable(amounts, how, bump, data):
    root, _ = _root(amounts)
    leaf = data.draw(st.sampled_from(root.leaves))
    i = data.draw(st.integers(0, len(leaf.entries) - 1))
    entries = list(leaf.entries)
    if how == 0:  # an entry above what its payer signed
        entries[i] = replace(entries[i], cumulative_amount=entries[i].cumulative_amount + bump)
        bad = NodeLeaf(leaf.node, leaf.amount + bump, tuple(entries))
        expected = FraudKind.UNSUPPORTED_ENTRY
    elif how == 1:  # a node amount that is not the sum of its entries
        bad = replace(leaf, amount=leaf.amount + bump)
        expected = FraudKind.MALFORMED_LEAF
    else:  # a channel listed twice
        bad = NodeLeaf(leaf.node, leaf.amount + entries[i].cumulative_amount, (*entries, entries[i]))
        expected = FraudKind.MALFORMED_LEAF
    fraud = leaf_fraud(bad, channel_of, VERIFIER)
    assert fraud is not None and fraud.kind is expected
    if how == 0:
        assert fraud.index == i


def test_entry_on_another_nodes_channel_is_unsupported():
    root, _ = _root({1: 5, 2: 7})
    leaf = root.leaves[0]
    other = next(c for c, (_, n) in CHANNELS.items() if NODES[n] != leaf.node)
    p = CHANNELS[other][0]
    foreign = Entry(other, 1, PAYERS[p].sign(other, 1))
    entries = tuple(sorted((*leaf.entries, foreign), key=lambda e: e.channel_id))
    fraud = leaf_fraud(NodeLeaf(leaf.node, leaf.amount + 1, entries), channel_of, VERIFIER)
    assert fraud is not None and fraud.kind is FraudKind.UNSUPPORTED_ENTRY


def test_a_net_payee_claims_directly_only_a_channel_about_to_close():
    from runtime.settlement.netting import NET_FALLBACK_MARGIN_S, direct_claim_due

    assert not direct_claim_due(0, 10**9)  # not closing: the root pays it
    assert not direct_claim_due(10**9 + NET_FALLBACK_MARGIN_S + 1, 10**9)  # closing, time left for a root
    assert direct_claim_due(10**9 + NET_FALLBACK_MARGIN_S, 10**9)  # closing soon: claim now
    assert direct_claim_due(10**9 - 1, 10**9)  # past (the contract will skip it; nothing lost by trying)
