"""The Python chain client against the real contracts on a real anvil."""

from __future__ import annotations

import os

import pytest
from eth_account import Account
from web3 import Web3

from runtime.chain import client as chain
from runtime.chain.anvil import DEV_PRIVATE_KEYS, Anvil
from runtime.chain.client import SettlementAVSClient, StreamChannelsClient, connect, load_artifact
from runtime.chain.vouchers import (
    SECP256K1_N,
    VoucherSigner,
    attestation_digest,
    keccak256,
    sign_digest,
    voucher_digest,
)

pytestmark = pytest.mark.chain

ETH = 10**18
PAYER, PAYEE, THIRD = DEV_PRIVATE_KEYS[0], DEV_PRIVATE_KEYS[1], DEV_PRIVATE_KEYS[2]
PAYEE_ADDR = Account.from_key(PAYEE).address
PAYER_ADDR = Account.from_key(PAYER).address


def _advance(w3: Web3, seconds: int) -> None:
    w3.provider.make_request("evm_increaseTime", [seconds])
    w3.provider.make_request("evm_mine", [])


def _deploy(w3: Web3) -> tuple[StreamChannelsClient, VoucherSigner]:
    channels = StreamChannelsClient.deploy(w3, PAYER)
    return channels, VoucherSigner(PAYER, w3.eth.chain_id, channels.address)


def test_python_signed_voucher_is_claimed_on_chain(w3: Web3) -> None:
    channels, signer = _deploy(w3)
    period = channels.min_challenge_period()
    cid = channels.open(PAYEE_ADDR, period, 2 * ETH)
    assert cid == 1
    before = w3.eth.get_balance(PAYEE_ADDR)
    # A third party submits, so the payee's balance moves by exactly the voucher's value.
    relayer = channels.as_account(THIRD)
    relayer.claim(cid, 3 * ETH // 10, signer.sign(cid, 3 * ETH // 10))
    relayer.claim(cid, ETH, signer.sign(cid, ETH))
    assert w3.eth.get_balance(PAYEE_ADDR) - before == ETH
    state = channels.channel(cid)
    assert (state.payer, state.payee, state.deposit, state.claimed, state.settled) == (
        PAYER_ADDR,
        PAYEE_ADDR,
        2 * ETH,
        ETH,
        False,
    )
    assert channels.balance() == ETH


def test_python_digest_equals_contract_voucher_digest(w3: Web3) -> None:
    channels, signer = _deploy(w3)
    for cid, amount in [(0, 0), (1, 1), (7, 123 * ETH), (2**255, 2**256 - 1), (2**64 + 3, 10**30)]:
        on_chain = channels.voucher_digest(cid, amount)
        assert signer.digest(cid, amount) == on_chain
        assert voucher_digest(w3.eth.chain_id, channels.address, cid, amount) == on_chain
    avs = SettlementAVSClient.deploy(w3, PAYER, epoch_blocks=5)
    assert avs.epoch_blocks() == 5
    root = keccak256(b"root")
    assert attestation_digest(w3.eth.chain_id, avs.address, 5, root) == avs.attestation_digest(5, root)


def test_voucher_does_not_replay_across_channels_between_same_parties(w3: Web3) -> None:
    channels, signer = _deploy(w3)
    period = channels.min_challenge_period()
    first = channels.open(PAYEE_ADDR, period, ETH)
    second = channels.open(PAYEE_ADDR, period, ETH)
    sig = signer.sign(first, ETH // 2)
    with pytest.raises(chain.SignerNotPayer) as err:
        channels.claim(second, ETH // 2, sig)
    assert err.value.error_name == "SignerNotPayer"
    assert err.value.error_args["channelId"] == second
    channels.claim(first, ETH // 2, sig)
    assert channels.channel(second).claimed == 0
    assert channels.channel(first).claimed == ETH // 2


def test_voucher_does_not_replay_across_contracts(w3: Web3) -> None:
    a, signer_a = _deploy(w3)
    b = StreamChannelsClient.deploy(w3, PAYER)
    assert a.address != b.address
    period = a.min_challenge_period()
    assert a.open(PAYEE_ADDR, period, ETH) == b.open(PAYEE_ADDR, period, ETH) == 1
    sig = signer_a.sign(1, ETH)
    with pytest.raises(chain.SignerNotPayer):
        b.claim(1, ETH, sig)
    a.claim(1, ETH, sig)
    assert b.channel(1).claimed == 0


def test_voucher_does_not_replay_across_chain_ids(w3: Web3) -> None:
    deployer = DEV_PRIVATE_KEYS[9]  # unused elsewhere: nonce 0 on both chains -> same address
    with Anvil(chain_id=w3.eth.chain_id + 1000) as other_node:
        other = connect(other_node.rpc_url)
        here = StreamChannelsClient.deploy(w3, deployer).as_account(PAYER)
        there = StreamChannelsClient.deploy(other, deployer).as_account(PAYER)
        assert here.address == there.address, "same deployer and nonce: only the chain id differs"
        period = here.min_challenge_period()
        assert here.open(PAYEE_ADDR, period, ETH) == there.open(PAYEE_ADDR, period, ETH) == 1
        sig = VoucherSigner(PAYER, w3.eth.chain_id, here.address).sign(1, ETH)
        with pytest.raises(chain.SignerNotPayer):
            there.claim(1, ETH, sig)
        here.claim(1, ETH, sig)
        assert there.channel(1).claimed == 0
        pid = other_node.pid
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_close_then_claim_in_challenge_period_pays_payee_and_refund_is_exact(w3: Web3) -> None:
    channels, signer = _deploy(w3)
    period = channels.min_challenge_period()
    deposit = 5 * ETH + 12345
    cid = channels.open(PAYEE_ADDR, period, deposit)
    channels.start_close(cid)
    closes_at = channels.channel(cid).closes_at
    _advance(w3, period - 60)  # still inside the challenge period
    assert w3.eth.get_block("latest")["timestamp"] < closes_at
    with pytest.raises(chain.ChallengePeriodActive):
        channels.finalize_close(cid)
    paid = 2 * ETH + 777
    payee_before = w3.eth.get_balance(PAYEE_ADDR)
    channels.as_account(THIRD).claim(cid, paid, signer.sign(cid, paid))
    assert w3.eth.get_balance(PAYEE_ADDR) - payee_before == paid
    _advance(w3, 120)
    payer_before = w3.eth.get_balance(PAYER_ADDR)
    with pytest.raises(chain.ClaimWindowClosed):  # from closes_at on only finalizeClose is valid
        channels.claim(cid, deposit, signer.sign(cid, deposit))
    channels.as_account(THIRD).finalize_close(cid)  # anyone may finalise; the payer pays no gas here
    assert w3.eth.get_balance(PAYER_ADDR) - payer_before == deposit - paid  # exact to the wei
    assert channels.channel(cid).settled
    assert channels.balance() == 0
    with pytest.raises(chain.ChannelAlreadySettled):
        channels.claim(cid, deposit, signer.sign(cid, deposit))


def test_reverts_raise_typed_exceptions_naming_the_error(w3: Web3) -> None:
    channels, signer = _deploy(w3)
    period = channels.min_challenge_period()
    with pytest.raises(chain.ChallengePeriodTooShort) as short:
        channels.open(PAYEE_ADDR, period - 1, ETH)
    assert short.value.error_args == {"challengePeriod": period - 1, "minimum": period}
    with pytest.raises(chain.InvalidPayee):
        channels.open("0x" + "00" * 20, period, ETH)
    cid = channels.open(PAYEE_ADDR, period, ETH)
    with pytest.raises(chain.AmountExceedsDeposit) as above:
        channels.claim(cid, ETH + 1, signer.sign(cid, ETH + 1))
    assert above.value.error_args["deposit"] == ETH
    sig = bytearray(signer.sign(cid, ETH))
    s = int.from_bytes(sig[32:64], "big")
    high_s = bytes(sig[:32]) + (SECP256K1_N - s).to_bytes(32, "big") + bytes((55 - sig[64],))
    with pytest.raises(chain.InvalidSignature):
        channels.claim(cid, ETH, high_s)
    with pytest.raises(chain.InvalidSignature):
        channels.claim(cid, ETH, bytes(sig[:64]))
    with pytest.raises(chain.NotPayer) as not_payer:
        channels.as_account(PAYEE).start_close(cid)
    assert not_payer.value.error_args["caller"] == PAYEE_ADDR
    with pytest.raises(chain.NotPayee):
        channels.release(cid)
    with pytest.raises(chain.NotClosing):
        channels.finalize_close(cid)
    with pytest.raises(chain.ChannelNotFound):
        channels.top_up(99, ETH)
    channels.as_account(PAYEE).release(cid)
    with pytest.raises(chain.ChannelAlreadySettled):
        channels.top_up(cid, ETH)


def test_revert_outside_the_client_decodes_too(w3: Web3) -> None:
    channels, _ = _deploy(w3)
    try:
        channels.contract.functions.claimBatch([1], [], []).estimate_gas({"from": PAYER_ADDR})
    except Exception as exc:
        data = chain._revert_data(exc)
        assert data is not None
        assert isinstance(chain.decode_revert(data), chain.LengthMismatch)
    else:
        pytest.fail("claimBatch with mismatched arrays did not revert")


def test_claim_batch_pays_each_channel_once(w3: Web3) -> None:
    channels, signer = _deploy(w3)
    period = channels.min_challenge_period()
    ids = [channels.open(PAYEE_ADDR, period, ETH) for _ in range(3)]
    vouchers = [(ids[0], ETH // 4), (ids[1], ETH // 2), (ids[0], ETH // 4), (ids[2], ETH), (ids[0], ETH // 8)]
    before = w3.eth.get_balance(PAYEE_ADDR)
    channels.as_account(THIRD).claim_batch([(c, a, signer.sign(c, a)) for c, a in vouchers])
    assert w3.eth.get_balance(PAYEE_ADDR) - before == ETH // 4 + ETH // 2 + ETH


def test_claim_batch_skips_settled_and_forged_vouchers_and_pays_the_rest(w3: Web3) -> None:
    channels, signer = _deploy(w3)
    period = channels.min_challenge_period()
    live, released, forged_on = (channels.open(PAYEE_ADDR, period, ETH) for _ in range(3))
    channels.as_account(PAYEE).release(released)  # the payee's release lands before the batch
    forged = VoucherSigner(THIRD, w3.eth.chain_id, channels.address)
    batch = [
        (live, ETH // 2, signer.sign(live, ETH // 2)),
        (released, ETH, signer.sign(released, ETH)),
        (forged_on, ETH, forged.sign(forged_on, ETH)),
    ]
    before = w3.eth.get_balance(PAYEE_ADDR)
    receipt = channels.as_account(THIRD).claim_batch(batch)
    outcome = channels.claim_outcome(receipt)
    assert w3.eth.get_balance(PAYEE_ADDR) - before == ETH // 2 == outcome.amount
    assert outcome.claimed == {live: ETH // 2}
    assert outcome.skipped == {released: "ChannelAlreadySettled", forged_on: "SignerNotPayer"}
    assert outcome.credited == {}
    assert channels.channel(forged_on).claimed == 0


def test_payee_that_rejects_eth_is_credited_and_withdraws(w3: Web3) -> None:
    channels, signer = _deploy(w3)
    period = channels.min_challenge_period()
    # A contract payee whose code is a bare REVERT: every push to it fails.
    rejecting = "0x" + "5e" * 20
    w3.provider.make_request("anvil_setCode", [rejecting, "0x60006000fd"])
    cid = channels.open(rejecting, period, ETH)
    receipt = channels.as_account(THIRD).claim_batch([(cid, ETH // 4, signer.sign(cid, ETH // 4))])
    outcome = channels.claim_outcome(receipt)
    assert outcome.credited == {Web3.to_checksum_address(rejecting): ETH // 4}
    assert channels.withdrawable(rejecting) == ETH // 4
    assert channels.balance() == ETH  # the credit is still held
    with pytest.raises(chain.NothingToWithdraw):
        channels.as_account(THIRD).withdraw()


def test_every_abi_error_has_a_python_exception() -> None:
    for name in ("StreamChannels", "SettlementAVS"):
        errors = {item["name"] for item in load_artifact(name).abi if item["type"] == "error"}
        missing = errors - set(chain.ERRORS)
        assert not missing, f"{name} errors without a Python class: {missing}"


def test_settlement_avs_attest_and_slash(w3: Web3) -> None:
    blocks = 4
    avs = SettlementAVSClient.deploy(w3, PAYER, epoch_blocks=blocks)
    operator_keys = DEV_PRIVATE_KEYS[3:6]
    for key in operator_keys:
        avs.as_account(key).register(2 * ETH)
    epoch = w3.eth.block_number // blocks + 1  # the first epoch that starts after every bond
    root = keccak256(b"epoch-1")
    digest = avs.attestation_digest(epoch, root)
    sigs = {Account.from_key(k).address: sign_digest(k, digest) for k in operator_keys[:1]}
    with pytest.raises(chain.EpochNotEnded):  # not before the epoch is over
        avs.attest(epoch, root, sigs)
    w3.provider.make_request("anvil_mine", [hex((epoch + 1) * blocks - w3.eth.block_number)])
    assert avs.epoch_stake(epoch) == 6 * ETH
    with pytest.raises(chain.QuorumNotReached):
        avs.attest(epoch, root, sigs)
    sigs = {Account.from_key(k).address: sign_digest(k, digest) for k in operator_keys[:2]}
    avs.attest(epoch, root, sigs)
    assert avs.finalized_root(epoch) == root
    with pytest.raises(chain.EpochAlreadyFinalized):
        avs.attest(epoch, root, sigs)
    cheat = Account.from_key(operator_keys[2]).address
    other_root = keccak256(b"epoch-1-forged")
    sig_a = sign_digest(operator_keys[2], avs.attestation_digest(epoch, root))
    sig_b = sign_digest(operator_keys[2], avs.attestation_digest(epoch, other_root))
    reporter = Account.from_key(THIRD).address
    before = w3.eth.get_balance(reporter)
    receipt = avs.as_account(THIRD).slash_equivocation(cheat, epoch, root, sig_a, other_root, sig_b)
    gas_cost = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    bounty = int(avs.contract.functions.SLASH_BOUNTY().call())
    assert w3.eth.get_balance(reporter) - before + gas_cost == bounty  # a fixed bounty, the rest burned
    assert avs.stake_of(cheat) == 0
    with pytest.raises(chain.OperatorSlashed):
        avs.as_account(operator_keys[2]).register(2 * ETH)


def test_gas_stays_within_the_targets(w3: Web3) -> None:
    """Receipt gasUsed against the issue's targets (eval/results/gas.md has the full report)."""
    channels, signer = _deploy(w3)
    payee = channels.as_account(PAYEE)
    period = channels.min_challenge_period()
    cid = channels.open(PAYEE_ADDR, period, 10 * ETH)
    assert channels.last_receipt is not None and channels.last_receipt["gasUsed"] <= 100_000
    assert payee.claim(cid, ETH, signer.sign(cid, ETH))["gasUsed"] <= 60_000
    assert channels.start_close(cid)["gasUsed"] <= 60_000
    _advance(w3, period)
    assert channels.finalize_close(cid)["gasUsed"] <= 60_000
    ids = [channels.open(PAYEE_ADDR, period, ETH) for _ in range(20)]
    receipt = payee.claim_batch([(c, ETH // 2, signer.sign(c, ETH // 2)) for c in ids])
    assert receipt["gasUsed"] <= 20 * 30_000
