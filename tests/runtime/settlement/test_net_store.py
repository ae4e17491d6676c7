"""An operator persists a net root before signing it and never signs two roots for one epoch."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_account import Account

from runtime.chain.anvil import DEV_PRIVATE_KEYS
from runtime.chain.vouchers import VoucherSigner, recover_digest_signer
from runtime.settlement.net_store import NetRootSigner, RootConflictError
from runtime.settlement.netting import Entry, NodeLeaf, from_leaves, net_root_digest

CHAIN, NET = 31337, "0x00000000000000000000000000000000000000Ab"
OP = DEV_PRIVATE_KEYS[5]
PAYER = VoucherSigner(DEV_PRIVATE_KEYS[1], CHAIN, "0x00000000000000000000000000000000000000C4")
NODE = Account.from_key(DEV_PRIVATE_KEYS[2]).address


def _root(epoch: int, amount: int):
    entry = Entry(1, amount, PAYER.sign(1, amount))
    return from_leaves(epoch, [NodeLeaf(NODE, amount, (entry,))])


def test_persists_then_signs_and_survives_a_restart(tmp_path):
    path = tmp_path / "op.sqlite"
    root = _root(7, 1000)
    signer = NetRootSigner(path, OP, CHAIN, NET)
    sig = signer.sign(root)
    signer.close()
    digest = net_root_digest(CHAIN, NET, 7, root.root)
    assert recover_digest_signer(digest, sig) == Account.from_key(OP).address
    again = NetRootSigner(path, OP, CHAIN, NET)  # a restarted operator
    assert again.published(7) == root  # leaves, amounts and signatures round-trip
    assert again.sign(root) == sig  # the same root may be signed again (deterministic signature)
    again.close()


def test_never_signs_a_second_root_for_an_epoch(tmp_path):
    signer = NetRootSigner(tmp_path / "op.sqlite", OP, CHAIN, NET)
    signer.sign(_root(7, 1000))
    with pytest.raises(RootConflictError, match="epoch 7"):
        signer.sign(_root(7, 1001))
    other = signer.sign(replace(_root(8, 1001)))  # another epoch is fine
    assert len(other) == 65
    assert signer.published(9) is None
    signer.close()
