"""The settlement service as real processes beside a block-producing anvil: an equivocating
operator is slashed within an epoch while every epoch still finalises with the honest quorum."""

from __future__ import annotations

import socket
import time

import pytest
from eth_account import Account

from runtime.chain.anvil import DEV_PRIVATE_KEYS, Anvil
from runtime.chain.client import StreamChannelsClient, connect
from runtime.chain.vouchers import VoucherSigner
from runtime.settlement.service import SettlementService

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
            deadline, i = time.monotonic() + 90, 0
            while service.head_epoch() < service.first_epoch + 5 and time.monotonic() < deadline:
                i += 1
                channels.as_account(payee.key).claim(cid, 1000 * i, signer.sign(cid, 1000 * i))
                time.sleep(1.0)
            service.wait_settled(30)
            report = service.report()
        finally:
            service.stop()
    assert report["epochs_finalised"] >= 3
    assert report["roots_match_recomputed"] is True
    assert report["slashed_operators"] == [Account.from_key(DEV_PRIVATE_KEYS[3]).address]
    assert report["slashed_wei"] == 10**18 and report["reporter_reward_wei"] == 10**16  # SLASH_BOUNTY
    assert report["slashed_within_epochs"] <= 1
    assert report["honest_operators_kept_bond"] is True
    assert report["fault_epoch_finalised"] is True


def test_operator_killed_and_restarted_resumes_without_signing_twice(tmp_path) -> None:
    import sqlite3

    def signed_epochs(path) -> dict[int, int]:
        with sqlite3.connect(path) as db:
            return dict(db.execute("SELECT epoch, COUNT(*) FROM signed GROUP BY epoch").fetchall())

    with Anvil(extra_args=("--block-time", "1")) as node:
        w3 = connect(node.rpc_url)
        channels = StreamChannelsClient.deploy(w3, DEV_PRIVATE_KEYS[0])
        service = SettlementService(
            w3, node.rpc_url, channels.address, DEV_PRIVATE_KEYS[0], tmp_path,
            list(DEV_PRIVATE_KEYS[1:4]), DEV_PRIVATE_KEYS[8], epoch_blocks=2,
        )  # fmt: skip
        store = tmp_path / "op0.sqlite"
        try:
            service.start(free_ports)
            deadline = time.monotonic() + 60
            while (not store.exists() or len(signed_epochs(store)) < 2) and time.monotonic() < deadline:
                time.sleep(0.3)
            before = signed_epochs(store)
            service.kill_and_restart("op0")
            while len(signed_epochs(store)) < len(before) + 3 and time.monotonic() < deadline:
                time.sleep(0.3)
            service.wait_settled(20)
            report = service.report()
        finally:
            service.stop()
    after = signed_epochs(store)
    assert len(before) >= 2 and len(after) >= len(before) + 3
    assert all(count == 1 for count in after.values())  # never two roots for one epoch
    epochs = sorted(after)
    assert epochs == list(range(epochs[0], epochs[-1] + 1))  # resumed at the next epoch, no gap
    assert report["slashed_operators"] == [] and report["roots_match_recomputed"] is True
