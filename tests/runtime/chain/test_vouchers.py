"""Voucher digests and signatures agree with eth_account's EIP-712 and reject what the contract rejects."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.chain import vouchers
from runtime.chain.anvil import DEV_PRIVATE_KEYS
from runtime.chain.vouchers import (
    SECP256K1_N,
    VoucherSignatureError,
    VoucherSigner,
    VoucherVerifier,
    keccak256,
    recover_voucher_signer,
    voucher_digest,
)

KEY = DEV_PRIVATE_KEYS[0]
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
UINT256 = st.integers(min_value=0, max_value=2**256 - 1)
VOUCHER_TYPES = {"Voucher": [{"name": "channelId", "type": "uint256"}, {"name": "cumulativeAmount", "type": "uint256"}]}


def _eth_account_sign(chain_id: int, channel_id: int, amount: int) -> tuple[bytes, bytes]:
    domain = {"name": "StreamChannels", "version": "1", "chainId": chain_id, "verifyingContract": CONTRACT}
    signed = Account.sign_typed_data(KEY, domain, VOUCHER_TYPES, {"channelId": channel_id, "cumulativeAmount": amount})
    return bytes(signed.message_hash), bytes(signed.signature)


def test_keccak_matches_known_vectors() -> None:
    assert keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert keccak256(b"abc").hex() == "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
    from eth_hash.auto import keccak as reference

    for size in (0, 1, 31, 32, 135, 136, 137, 500):
        data = bytes(range(256))[:size] * 2
        assert keccak256(data) == reference(data)


@settings(max_examples=60, deadline=None)
@given(chain_id=st.integers(min_value=1, max_value=2**64), channel_id=UINT256, amount=UINT256)
def test_digest_and_signature_equal_eth_account_typed_data(chain_id: int, channel_id: int, amount: int) -> None:
    expected_digest, expected_sig = _eth_account_sign(chain_id, channel_id, amount)
    signer = VoucherSigner(KEY, chain_id, CONTRACT)
    assert signer.digest(channel_id, amount) == expected_digest
    assert voucher_digest(chain_id, CONTRACT, channel_id, amount) == expected_digest
    # Both sides use RFC 6979 deterministic nonces and low s, so the signatures are identical.
    assert signer.sign(channel_id, amount) == expected_sig


def test_recover_and_verify_round_trip() -> None:
    signer = VoucherSigner(KEY, 31337, CONTRACT)
    verifier = VoucherVerifier(31337, CONTRACT)
    sig = signer.sign(3, 10**18)
    assert len(sig) == 65 and sig[64] in (27, 28)
    assert verifier.recover(3, 10**18, sig) == signer.address == Account.from_key(KEY).address
    assert recover_voucher_signer(31337, CONTRACT, 3, 10**18, sig) == signer.address
    assert verifier.verify(3, 10**18, sig, signer.address)
    assert verifier.verify(3, 10**18, sig, bytes.fromhex(signer.address[2:]))
    assert not verifier.verify(3, 10**18 + 1, sig, signer.address), "other amount"
    assert not verifier.verify(4, 10**18, sig, signer.address), "other channel"
    assert not VoucherVerifier(31338, CONTRACT).verify(3, 10**18, sig, signer.address), "other chain"
    other_contract = "0x" + "11" * 20
    assert not VoucherVerifier(31337, other_contract).verify(3, 10**18, sig, signer.address), "other contract"
    assert not verifier.verify(3, 10**18, sig, Account.from_key(DEV_PRIVATE_KEYS[1]).address), "other payer"


def test_rejects_what_the_contract_rejects() -> None:
    signer = VoucherSigner(KEY, 31337, CONTRACT)
    verifier = VoucherVerifier(31337, CONTRACT)
    sig = signer.sign(1, 5)
    s = int.from_bytes(sig[32:64], "big")
    high_s = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes((55 - sig[64],))
    bad_v = sig[:64] + b"\x1d"
    zero_r = bytes(32) + sig[32:]
    for bad in (high_s, bad_v, zero_r, sig[:64], sig + b"\x00", b""):
        with pytest.raises(VoucherSignatureError):
            verifier.recover(1, 5, bad)
        assert not verifier.verify(1, 5, bad, signer.address)


def test_out_of_range_values_are_rejected() -> None:
    signer = VoucherSigner(KEY, 31337, CONTRACT)
    for channel_id, amount in ((-1, 0), (0, -1), (2**256, 0), (0, 2**256)):
        with pytest.raises(ValueError):
            signer.sign(channel_id, amount)


def test_private_key_never_shows() -> None:
    signer = VoucherSigner(KEY, 31337, CONTRACT)
    raw = KEY.removeprefix("0x")
    assert raw not in repr(signer) and raw not in str(signer)
    assert signer.address in repr(signer)
    for form in (KEY, bytes.fromhex(raw), int(raw, 16)):
        assert VoucherSigner(form, 1, CONTRACT).address == signer.address


def test_fast_paths_are_active() -> None:
    """The ctypes keccak and the direct libsecp256k1 recovery load on this machine (speed matters)."""
    assert vouchers.keccak256.__module__ == "runtime.chain.vouchers"
    assert vouchers._recover_public_key is not vouchers._coincurve_recover


def test_sign_digest_matches_eth_account_for_attestations() -> None:
    digest = vouchers.attestation_digest(31337, CONTRACT, 9, keccak256(b"root"))
    message = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Attestation": [{"name": "epoch", "type": "uint256"}, {"name": "root", "type": "bytes32"}],
        },
        "primaryType": "Attestation",
        "domain": {"name": "SettlementAVS", "version": "1", "chainId": 31337, "verifyingContract": CONTRACT},
        "message": {"epoch": 9, "root": keccak256(b"root")},
    }
    signed = Account.sign_message(encode_typed_data(full_message=message), KEY)
    assert bytes(signed.message_hash) == digest
    assert vouchers.sign_digest(KEY, digest) == bytes(signed.signature)


def test_verify_with_a_remembered_payer_key_still_rejects_other_signers(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = VoucherVerifier(31337, CONTRACT)
    payer = VoucherSigner(KEY, 31337, CONTRACT)
    other = VoucherSigner(DEV_PRIVATE_KEYS[1], 31337, CONTRACT)
    assert verifier.verify(1, 10, payer.sign(1, 10), payer.address)  # first time: hashes the key, remembers it
    assert verifier.verify(1, 11, payer.sign(1, 11), payer.address)  # then: compares keys
    assert not verifier.verify(1, 12, other.sign(1, 12), payer.address)
    assert not verifier.verify(1, 13, payer.sign(1, 12), payer.address), "signature of another amount"
    assert verifier.verify(1, 12, other.sign(1, 12), other.address)
    monkeypatch.setattr(VoucherVerifier, "MAX_REMEMBERED_PAYERS", 1)  # the memory stays bounded
    bounded = VoucherVerifier(31337, CONTRACT)
    assert bounded.verify(2, 5, payer.sign(2, 5), payer.address)
    assert bounded.verify(2, 5, other.sign(2, 5), other.address)
    assert len(bounded._keys) == 1
    assert bounded.verify(2, 6, payer.sign(2, 6), payer.address)
