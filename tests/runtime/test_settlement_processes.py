"""The settlement service as real processes beside a block-producing anvil: an equivocating
operator is slashed within an epoch while every epoch still finalises with the honest quorum."""

from __future__ import annotations

import socket
import time

import pytest
from eth_account import Account

from runtime.anvil import DEV_PRIVATE_KEYS, Anvil
from runtime.chain import StreamChannelsClient, connect
from runtime.settlement_service import SettlementService
from runtime.vouchers import VoucherSigner

pytestmark = [pytest.mark.chain, pytest.mark.slow]


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_equivocating_operator_process_is_slashed_and_epochs_finalise(tmp_path) -> None:
    with Anvil(extra_args=("--block-time", "1")) as node:
        w3 = connect(node.rpc_url)
        channels = StreamChannelsClient.deploy(w3, DEV_PRIVATE_KEYS[0])
        service = SettlementService(
            w3, node.rpc_url, channels.address, DEV_PRIVATE_KEYS[0], tmp_path,
            list(DEV_PRIVATE_KEYS[1:4]), DEV_PRIVATE_KEYS[8], epoch_blocks=3, faulty="equivocate",
        )  # fmt: skip
        try:
            service.start(free_ports)
            payer, payee = Account.from_key(DEV_PRIVATE_KEYS[4]), Account.from_key(DEV_PRIVATE_KEYS[5])
            cid = channels.as_account(payer.key).open(payee.address, 3600, 10**17)
            signer = VoucherSigner(payer.key, w3.eth.chain_id, channels.address)
            for i in range(1, 7):
                channels.as_account(payee.key).claim(cid, 1000 * i, signer.sign(cid, 1000 * i))
                time.sleep(1.2)
            service.wait_settled(30)
            report = service.report()
        finally:
            service.stop()
    assert report["epochs_finalised"] >= 3
    assert report["roots_match_recomputed"] is True
    assert report["slashed_operators"] == [Account.from_key(DEV_PRIVATE_KEYS[3]).address]
    assert report["slashed_wei"] == 10**18 and report["reporter_reward_wei"] == 10**18 // 2
    assert report["slashed_within_epochs"] <= 1
    assert report["honest_operators_kept_bond"] is True
    assert report["fault_epoch_finalised"] is True
