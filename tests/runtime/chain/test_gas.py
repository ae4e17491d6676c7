"""``runtime.chain.gas``: every transaction of a real anvil chain lands in the right category."""

from __future__ import annotations

import pytest
from eth_account import Account
from web3 import Web3

from runtime.chain.anvil import DEV_PRIVATE_KEYS
from runtime.chain.client import StreamChannelsClient
from runtime.chain.gas import CATEGORIES, gas_breakdown
from runtime.chain.vouchers import VoucherSigner

pytestmark = pytest.mark.chain


def test_breakdown_names_deploy_open_claim_and_close_and_sums_to_the_chain(w3: Web3) -> None:
    payer, payee = DEV_PRIVATE_KEYS[0], DEV_PRIVATE_KEYS[1]
    first = w3.eth.block_number + 1
    channels = StreamChannelsClient.deploy(w3, payer)
    cid = channels.open(Account.from_key(payee).address, channels.min_challenge_period(), 10**18)
    signer = VoucherSigner(payer, w3.eth.chain_id, channels.address)
    channels.as_account(payee).claim_batch([(cid, 1000, signer.sign(cid, 1000))])
    channels.start_close(cid)
    blocks = range(first, w3.eth.block_number + 1)
    b = gas_breakdown(w3, blocks)
    assert list(b) == list(CATEGORIES)
    assert {k: v["txs"] for k, v in b.items() if v["txs"]} == {
        "deploy": 1,
        "open_deposit": 1,
        "claims": 1,
        "close_finalize": 1,
    }
    total = sum(
        int(w3.eth.get_transaction_receipt(h)["gasUsed"]) for n in blocks for h in w3.eth.get_block(n)["transactions"]
    )
    assert sum(v["gas"] for v in b.values()) == total
