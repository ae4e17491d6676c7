"""The aggregator's memory stays bounded against bonded operators too (real anvil, real signatures)."""

from __future__ import annotations

import pytest
from eth_account import Account

from runtime.chain.client import SettlementAVSClient
from runtime.chain.vouchers import attestation_digest, sign_digest
from runtime.settlement import aggregator as agg_module
from runtime.settlement.aggregator import Aggregator, Rejection
from runtime.settlement.operator import Attestation

pytestmark = pytest.mark.chain


def _att(avs: SettlementAVSClient, key: str, epoch: int, root: bytes) -> Attestation:
    sig = sign_digest(key, attestation_digest(avs.chain_id, avs.address, epoch, root))
    return Attestation(Account.from_key(key).address, epoch, "0x" + root.hex(), "0x" + sig.hex())


@pytest.fixture
def bonded(w3, keys):
    avs = SettlementAVSClient.deploy(w3, keys[0], epoch_blocks=5)
    for k in keys[1:3]:
        avs.as_account(k).register(10**18)
    return avs, Aggregator(avs.as_account(keys[0]))


def test_an_operator_cannot_fill_the_aggregator(bonded, keys, monkeypatch):
    avs, agg = bonded
    monkeypatch.setattr(agg_module, "MAX_EPOCHS_PER_OPERATOR", 5)
    cheat, honest = keys[1], keys[2]
    # two roots for one epoch are kept (the equivocation proof); a third is refused
    assert agg.submit(_att(avs, cheat, 1, b"\x01" * 32))[0] == 200
    assert agg.submit(_att(avs, cheat, 1, b"\x02" * 32))[0] == 200
    assert agg.submit(_att(avs, cheat, 1, b"\x03" * 32)) == (400, Rejection.TOO_MANY.value)
    # far-future epochs: at most MAX_EPOCHS_PER_OPERATOR open at once from one operator
    results = [agg.submit(_att(avs, cheat, 10**6 + i, b"\x04" * 32))[0] for i in range(10)]
    assert results == [200] * 4 + [400] * 6
    # the honest operator is not affected
    assert agg.submit(_att(avs, honest, 2, b"\x05" * 32))[0] == 200
    assert agg.state()["rejections"] == {Rejection.TOO_MANY.value: 7}


def test_a_full_aggregator_forgets_the_oldest_finalised_epochs(bonded, keys, monkeypatch):
    avs, agg = bonded
    monkeypatch.setattr(agg_module, "MAX_PENDING_ROOTS", 4)
    for epoch in range(4):
        assert agg.submit(_att(avs, keys[1], epoch, b"\x06" * 32))[0] == 200
    # nothing finalised: a fifth epoch has no room
    assert agg.submit(_att(avs, keys[1], 4, b"\x06" * 32)) == (400, Rejection.FULL.value)
    agg.finalized.update({0: "0x" + "06" * 32, 1: "0x" + "06" * 32})  # as process() records it
    assert agg.submit(_att(avs, keys[1], 4, b"\x06" * 32))[0] == 200
    assert {e for e, _ in agg.signatures} == {1, 2, 3, 4}  # only epoch 0, the oldest, was forgotten
    assert len(agg.signatures) <= 4 and len(agg.by_operator) <= 4
