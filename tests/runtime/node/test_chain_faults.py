"""Real node processes paying on a real anvil: kill -9 a payee or a payer, and nobody loses a wei."""

from __future__ import annotations

import pytest

from runtime.node.store import Store
from tests.runtime.node.procs import Cluster, address, free_ports

pytestmark = pytest.mark.chain


def pair(cluster: Cluster, rpc_url: str, contract: str) -> None:
    """n0 (key 1) streams to its subscriber n1 (key 2); n0 pays n1 per piece; claims only at start/stop."""
    ports = free_ports(2)
    chain = {"rpc_url": rpc_url, "chain_id": 31337, "contract": contract, "claim_interval_s": 1000.0,
             "deposit_wei": 10**16}  # fmt: skip
    cluster.config("n0", 1, ports[0], [{"node_id": "n1", "port": ports[1], "address": address(2), "latency_ms": 5}],
                   chain=chain, streams=[{"subscribers": ["n1"], "rate": 50}], start_streams=True)  # fmt: skip
    cluster.config("n1", 2, ports[1], [{"node_id": "n0", "port": ports[0], "address": address(1), "latency_ms": 5}],
                   chain=chain)  # fmt: skip
    cluster.start("n0")
    cluster.start("n1")


def held(cluster: Cluster, node: str) -> dict[int, int]:
    store = Store(cluster.tmp / f"{node}.sqlite")
    try:
        return {cid: v.cumulative for cid, v in store.latest("received").items()}
    finally:
        store.close()


def vouchers_in(cluster: Cluster, node: str) -> int:
    return cluster.stats(node).get("stats", {}).get("vouchers_received", 0)


def test_kill9_payee_restarts_from_its_store_and_claims_everything_it_was_owed(cluster, chain):
    rpc_url, client = chain
    pair(cluster, rpc_url, client.address)
    cluster.wait_for(lambda: vouchers_in(cluster, "n1") > 30, what="vouchers at the payee")
    cluster.kill9("n1")
    owed = held(cluster, "n1")
    assert owed and all(v > 0 for v in owed.values())
    assert all(client.channel(cid).claimed == 0 for cid in owed)  # nothing claimed before the crash
    cluster.start("n1")  # same config, same store
    cluster.wait_for(lambda: any(e["event"] == "claimed" for e in cluster.logs("n1")), what="claim after restart")
    for cid, amount in owed.items():
        assert client.channel(cid).claimed >= amount
    # and it goes on being paid: a graceful stop claims the rest, to the wei of its last voucher
    cluster.wait_for(lambda: vouchers_in(cluster, "n1") > 10, what="payments after restart")
    assert cluster.terminate("n0") == 0
    assert cluster.terminate("n1") == 0
    final = held(cluster, "n1")
    for cid, amount in final.items():
        state = client.channel(cid)
        assert state.claimed == amount
        assert amount >= owed.get(cid, 0)
    payer_channels = [cid for cid in final if client.channel(cid).payer == address(1)]
    assert payer_channels and all(client.channel(cid).closes_at > 0 for cid in payer_channels)  # payer closed


def test_kill9_payer_and_its_payee_still_claims_its_last_voucher(cluster, chain):
    rpc_url, client = chain
    pair(cluster, rpc_url, client.address)
    cluster.wait_for(lambda: vouchers_in(cluster, "n1") > 30, what="vouchers at the payee")
    cluster.kill9("n0")
    assert cluster.terminate("n1") == 0
    final = held(cluster, "n1")
    paid_by_n0 = {cid: amount for cid, amount in final.items() if client.channel(cid).payer == address(1)}
    assert paid_by_n0 and all(amount > 0 for amount in paid_by_n0.values())
    for cid, amount in paid_by_n0.items():
        assert client.channel(cid).claimed == amount
        assert client.channel(cid).payee == address(2)


def test_kill9_payer_restarts_and_keeps_paying_on_the_same_channel(cluster, chain):
    rpc_url, client = chain
    pair(cluster, rpc_url, client.address)
    cluster.wait_for(lambda: vouchers_in(cluster, "n1") > 20, what="vouchers at the payee")
    cluster.kill9("n0")
    at_kill = held(cluster, "n1")
    channels_before = client.next_channel_id()
    cluster.start("n0")  # same config and store: resumes its channel and its cumulative amount
    base = vouchers_in(cluster, "n1")
    cluster.wait_for(lambda: vouchers_in(cluster, "n1") > base + 20, what="payments after the payer's restart")
    assert cluster.terminate("n0") == 0
    assert cluster.terminate("n1") == 0
    final = held(cluster, "n1")
    assert client.next_channel_id() == channels_before  # no new channel was opened
    for cid, amount in final.items():
        assert client.channel(cid).claimed == amount
    paid_by_n0 = [cid for cid in final if client.channel(cid).payer == address(1)]
    assert paid_by_n0 and all(final[cid] > at_kill.get(cid, 0) for cid in paid_by_n0)
    assert not [r for r in cluster.reasons("n1") if r.startswith("replayed")]  # it never went backwards


def test_a_channel_opened_but_never_stored_is_adopted_not_duplicated(cluster, chain):
    from runtime.chain.anvil import DEV_PRIVATE_KEYS

    rpc_url, client = chain
    # what a payer leaves behind when it dies between its `open` transaction and its store write
    lost = client.as_account(DEV_PRIVATE_KEYS[1]).open(address(2), 3600, 10**16)
    pair(cluster, rpc_url, client.address)
    cluster.wait_for(lambda: vouchers_in(cluster, "n1") > 10, what="payments")
    adopted = [e for e in cluster.logs("n0") if e["event"] == "channel_adopted"]
    assert [e["channel"] for e in adopted] == [lost]
    assert client.next_channel_id() == lost + 2  # only n1's channel to n0 was opened besides
    assert cluster.terminate("n0") == 0
    assert cluster.terminate("n1") == 0
    assert client.channel(lost).claimed == held(cluster, "n1")[lost] > 0
