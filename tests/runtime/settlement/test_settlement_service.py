"""The settlement service on a real anvil: operators attest epochs, the aggregator finalises
roots with a two-thirds quorum, the challenger slashes equivocation, and a restarted operator
never signs two roots for one epoch."""

from __future__ import annotations

import pytest
from eth_account import Account
from web3 import Web3

from runtime.chain.client import SettlementAVSClient, StreamChannelsClient
from runtime.chain.vouchers import VoucherSigner
from runtime.settlement.aggregator import Aggregator, serve
from runtime.settlement.operator import Fault, Operator, OperatorConfig, SignedEpochStore, proof_server, wrong_root
from runtime.settlement.roots import settlement_root, verify_proof

pytestmark = pytest.mark.chain

EPOCH_BLOCKS = 6
STAKE = 10**18


def mine(w3: Web3, blocks: int) -> None:
    w3.provider.make_request("anvil_mine", [hex(blocks)])


def setup_contracts(w3: Web3, keys: tuple[str, ...]):
    channels = StreamChannelsClient.deploy(w3, keys[0])
    avs = SettlementAVSClient.deploy(w3, keys[0], epoch_blocks=EPOCH_BLOCKS)
    for k in keys[1:4]:
        avs.as_account(k).register(STAKE)
    return channels, avs


def pay_in_epochs(w3: Web3, channels: StreamChannelsClient, keys: tuple[str, ...], epochs: int) -> list[int]:
    """Three nodes pay each other in a ring, one round of claims at the start of each of ``epochs``
    consecutive epochs; returns those epochs (all fully past when this returns)."""
    nodes = [Account.from_key(k) for k in keys[4:7]]
    owed: dict[int, int] = {}
    ring = []
    for i, payer in enumerate(nodes):
        payee = nodes[(i + 1) % 3]
        cid = channels.as_account(payer.key).open(payee.address, 3600, 10**17)
        ring.append((cid, payer, payee))
    used = []
    for round_ in range(epochs):
        head = w3.eth.block_number
        start = (head // EPOCH_BLOCKS + 1) * EPOCH_BLOCKS  # first block of the next epoch
        mine(w3, start - head - 1)  # the next transaction lands in block `start`
        used.append(start // EPOCH_BLOCKS)
        for j, (cid, payer, payee) in enumerate(ring):
            owed[cid] = owed.get(cid, 0) + 1000 * (round_ + 1) * (j + 1)
            sig = VoucherSigner(payer.key, w3.eth.chain_id, channels.address).sign(cid, owed[cid])
            channels.as_account(payee.key).claim(cid, owed[cid], sig)
    mine(w3, 2 * EPOCH_BLOCKS)
    return used


def run_service(w3, rpc_url, channels, avs, keys, tmp_path, faults: dict[int, Fault], epochs: list[int]):
    agg = Aggregator(avs.as_account(keys[0]), avs.as_account(keys[8]))
    server = serve(agg, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    operators = []
    for i, k in enumerate(keys[1:4]):
        cfg = OperatorConfig(
            operator_id=f"op{i}",
            rpc_url=rpc_url,
            channels=channels.address,
            avs=avs.address,
            key_env="UNUSED",
            aggregator_url=url,
            store=str(tmp_path / f"op{i}.sqlite"),
            epoch_blocks=EPOCH_BLOCKS,
            confirmations=1,
            fault=faults.get(i, Fault()),
        )
        operators.append(Operator(cfg, k, w3=Web3(Web3.HTTPProvider(rpc_url))))
    for op in operators:
        for epoch in epochs:
            op.send(op.attest_epoch(epoch))
    agg.process()
    server.shutdown()
    return agg, operators


def payments_of(w3, channels) -> list:
    from runtime.settlement.operator import ClaimReader

    return ClaimReader(w3, channels.address).payments(0, w3.eth.block_number)


def test_honest_operators_finalise_every_epoch_with_the_recomputed_root(w3, keys, anvil_node, tmp_path):
    channels, avs = setup_contracts(w3, keys)
    used = pay_in_epochs(w3, channels, keys, epochs=3)
    agg, _ = run_service(w3, anvil_node.rpc_url, channels, avs, keys, tmp_path, {}, used)
    payments = payments_of(w3, channels)
    assert len(payments) == 9
    for epoch in used:
        root, leaves = settlement_root(payments, epoch, EPOCH_BLOCKS)
        assert len(leaves) == 3
        assert avs.finalized_root(epoch) == root
        assert all(verify_proof(leaf, p, root) for leaf, p in zip(leaves, _proofs(leaves), strict=True))
    assert not agg.slashed and not agg.rejected


def _proofs(leaves):
    from runtime.settlement.roots import merkle_proof

    return [merkle_proof(leaves, i) for i in range(len(leaves))]


def test_equivocating_operator_is_slashed_and_the_epoch_still_finalises(w3, keys, anvil_node, tmp_path):
    channels, avs = setup_contracts(w3, keys)
    epoch = pay_in_epochs(w3, channels, keys, epochs=2)[-1]
    reporter = Account.from_key(keys[8]).address
    before = w3.eth.get_balance(reporter)
    agg, ops = run_service(
        w3, anvil_node.rpc_url, channels, avs, keys, tmp_path, {0: Fault(kind="equivocate", epoch=epoch)}, [epoch]
    )
    cheat = ops[0].address
    assert cheat in agg.slashed
    assert avs.stake_of(cheat) == 0
    for honest in ops[1:]:
        assert avs.stake_of(honest.address) == STAKE
    gas = agg.gas_used  # only the slash is sent from the reporter's account
    bounty = int(avs.contract.functions.SLASH_BOUNTY().call())
    assert w3.eth.get_balance(reporter) > before + bounty - 10**15  # the bounty, less the slash's gas
    assert gas > 0
    root, _ = settlement_root(payments_of(w3, channels), epoch, EPOCH_BLOCKS)
    assert avs.finalized_root(epoch) == root


def test_a_wrong_root_never_finalises(w3, keys, anvil_node, tmp_path):
    channels, avs = setup_contracts(w3, keys)
    epoch = pay_in_epochs(w3, channels, keys, epochs=2)[-1]
    agg, _ = run_service(
        w3, anvil_node.rpc_url, channels, avs, keys, tmp_path, {2: Fault(kind="wrong-root", epoch=epoch)}, [epoch]
    )
    root, _ = settlement_root(payments_of(w3, channels), epoch, EPOCH_BLOCKS)
    assert avs.finalized_root(epoch) == root != wrong_root(root)
    assert not agg.slashed


def lone_operator_config(anvil_node, channels, avs, tmp_path, **changes) -> OperatorConfig:
    """An operator config whose aggregator is unreachable (the test drives the operator itself)."""
    return OperatorConfig(
        operator_id="op0",
        rpc_url=anvil_node.rpc_url,
        channels=channels.address,
        avs=avs.address,
        key_env="UNUSED",
        aggregator_url="http://127.0.0.1:9",
        store=str(tmp_path / "op.sqlite"),
        epoch_blocks=EPOCH_BLOCKS,
        **changes,
    )


def test_restarted_operator_resumes_and_never_signs_a_second_root(w3, keys, anvil_node, tmp_path):
    channels, avs = setup_contracts(w3, keys)
    last = pay_in_epochs(w3, channels, keys, epochs=2)[-1]
    cfg = lone_operator_config(anvil_node, channels, avs, tmp_path, first_epoch=last - 1)
    op = Operator(cfg, keys[1], w3=w3)
    signed = op.attest_epoch(last - 1)
    # Crash after persisting a (different) root for the next epoch but before signing it.
    op.store.commit_root(last, b"\x42" * 32)
    op.store.close()

    again = Operator(cfg, keys[1], w3=w3)
    assert again.next_epoch == last  # resumes at the half-done epoch, not after it
    resent = again.resend_committed()
    assert resent == []  # the crashed epoch holds no signature yet
    atts = again.attest_epoch(last)
    assert [a.root for a in atts] == ["0x" + "42" * 32]  # signs what it committed, nothing else
    assert {r for r, _ in SignedEpochStore(cfg.store).roots(last)} == {b"\x42" * 32}
    assert signed[0].epoch == last - 1


def test_proof_server_serves_leaves_and_proofs(w3, keys, anvil_node, tmp_path):
    import json
    import urllib.request

    channels, avs = setup_contracts(w3, keys)
    epoch = pay_in_epochs(w3, channels, keys, epochs=1)[-1]
    cfg = lone_operator_config(anvil_node, channels, avs, tmp_path)
    op = Operator(cfg, keys[1], w3=w3)
    op.attest_epoch(epoch)
    server = proof_server(op, "127.0.0.1", 0)
    try:
        port = server.server_address[1]
        me = Account.from_key(keys[4]).address
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/epochs/{epoch}/proof/{me}", timeout=5) as r:
            body = json.loads(r.read())
        assert len(body["proofs"]) == 2  # node 4 pays node 5 and is paid by node 6
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/epochs/99999/proof/{me}", timeout=5)
    finally:
        server.shutdown()


def test_proof_server_is_bounded(w3, keys, anvil_node, tmp_path):
    from runtime.http_server import HttpBounds, Refusal
    from tests.runtime.http_clients import closed_by_server, connect, get_json, request, still_open

    channels, avs = setup_contracts(w3, keys)
    epoch = pay_in_epochs(w3, channels, keys, epochs=1)[-1]
    op = Operator(lone_operator_config(anvil_node, channels, avs, tmp_path), keys[1], w3=w3)
    op.attest_epoch(epoch)
    bounds = HttpBounds(request_deadline_s=2.0, max_connections_per_client=2, max_body_bytes=1024, max_streams=0)
    server = proof_server(op, "127.0.0.1", 0, bounds)
    try:
        held = [connect(server.port, source="127.0.0.2") for _ in range(3)]
        for sock in held:
            sock.sendall(b"GET /epochs/")  # never finished
        assert request(server.port, "GET", f"/epochs/{epoch}", source="127.0.0.2")[0] == 503
        assert len(get_json(server.port, f"/epochs/{epoch}")["leaves"]) == 3  # another client is served
        assert sum(still_open(s) for s in held) == 2
        assert all(closed_by_server(s, 15) for s in held)
        assert server.refusals[Refusal.DEADLINE] == 2 and server.refusals[Refusal.CLIENT_CONNECTIONS] == 2
        assert request(server.port, "POST", "/epochs/1", b"x" * 10)[0] == 404  # GET only; no body is read
        for sock in held:
            sock.close()
    finally:
        server.close()


def test_nodes_check_their_own_flows_and_flag_a_wrong_final_root(w3, keys, anvil_node, tmp_path, caplog):
    from runtime.settlement.flow_check import FlowChecker
    from runtime.settlement.operator import ClaimReader

    channels, avs = setup_contracts(w3, keys)
    good, bad = pay_in_epochs(w3, channels, keys, epochs=2)
    # Every operator signs a wrong root for `bad`: the quorum finalises a root that misstates flows.
    faults = {i: Fault(kind="wrong-root", epoch=bad) for i in range(3)}
    _, ops = run_service(w3, anvil_node.rpc_url, channels, avs, keys, tmp_path, faults, [good, bad])
    assert avs.finalized_root(bad) != bytes(32)
    server = proof_server(ops[0], "127.0.0.1", 0)
    try:
        me = Account.from_key(keys[4]).address
        checker = FlowChecker(
            avs, ClaimReader(w3, channels.address), me, EPOCH_BLOCKS,
            [f"http://127.0.0.1:{server.server_address[1]}"], next_epoch=good,
        )  # fmt: skip
        with caplog.at_level("ERROR", logger="openstreaming.flowcheck"):
            checker.poll_once()
    finally:
        server.shutdown()
    by_epoch = {r.epoch: r for r in checker.results}
    assert by_epoch[good].ok and len(by_epoch[good].own) == 2
    assert not by_epoch[bad].ok
    assert "SETTLEMENT MISMATCH" in caplog.text
