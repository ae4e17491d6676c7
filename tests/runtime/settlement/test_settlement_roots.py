"""Settlement roots: net flows, Merkle proofs, determinism."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.settlement.roots import (
    FlowLeaf,
    Payment,
    merkle_proof,
    merkle_root,
    net_flows,
    own_net_flow,
    settlement_root,
    verify_proof,
)

ADDRESSES = [f"0x{i:040x}" for i in range(1, 7)]

payments = st.lists(
    st.builds(
        Payment,
        block=st.integers(0, 39),
        payer=st.sampled_from(ADDRESSES),
        payee=st.sampled_from(ADDRESSES),
        amount=st.integers(1, 10**18),
    ).filter(lambda p: p.payer != p.payee),
    max_size=40,
)


def test_net_flow_nets_both_directions_and_keeps_square_pairs() -> None:
    a, b, c = ADDRESSES[:3]
    pays = [Payment(0, a, b, 10), Payment(1, b, a, 4), Payment(2, a, c, 5), Payment(3, c, a, 5), Payment(12, a, b, 99)]
    leaves = net_flows(pays, epoch=0, epoch_blocks=10)
    assert [(leaf.a.lower(), leaf.b.lower(), leaf.net) for leaf in leaves] == [(a, b, 6), (a, c, 0)]
    assert own_net_flow(leaves, b) == {leaves[0].a: -6}


def test_empty_epoch_root_is_nonzero_and_epoch_specific() -> None:
    assert merkle_root([], 3) != bytes(32)
    assert merkle_root([], 3) != merkle_root([], 4)


@settings(max_examples=60, deadline=None)
@given(payments, st.randoms(use_true_random=False))
def test_every_leaf_proves_and_order_does_not_matter(pays: list[Payment], rnd) -> None:
    root, leaves = settlement_root(pays, epoch=1, epoch_blocks=20)
    shuffled = list(pays)
    rnd.shuffle(shuffled)
    assert settlement_root(shuffled, epoch=1, epoch_blocks=20)[0] == root
    for i, leaf in enumerate(leaves):
        proof = merkle_proof(leaves, i)
        assert verify_proof(leaf, proof, root)
        forged = dataclasses.replace(leaf, net=leaf.net + 1)
        assert not verify_proof(forged, proof, root)


@settings(max_examples=40, deadline=None)
@given(payments)
def test_total_net_flow_sums_to_zero(pays: list[Payment]) -> None:
    leaves = net_flows(pays, epoch=0, epoch_blocks=40)
    balance = {addr: 0 for addr in ADDRESSES}
    for leaf in leaves:
        balance[leaf.a.lower()] -= leaf.net
        balance[leaf.b.lower()] += leaf.net
    assert sum(balance.values()) == 0
    paid = {addr: 0 for addr in ADDRESSES}
    for p in pays:
        paid[p.payer] -= p.amount
        paid[p.payee] += p.amount
    assert balance == paid


def test_leaf_hash_depends_on_every_field() -> None:
    base = FlowLeaf(1, "0x" + "11" * 20, "0x" + "22" * 20, 5)
    variants = [
        dataclasses.replace(base, epoch=2),
        dataclasses.replace(base, a="0x" + "33" * 20),
        dataclasses.replace(base, b="0x" + "44" * 20),
        dataclasses.replace(base, net=-5),
    ]
    assert len({v.hash() for v in [base, *variants]}) == 5
