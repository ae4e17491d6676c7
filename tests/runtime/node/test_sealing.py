"""Batched signatures (``runtime.node.sealing``): every sealed digest verifies, nothing else does."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.chain.anvil import DEV_PRIVATE_KEYS
from runtime.chain.vouchers import VoucherSignatureError, keccak256
from runtime.node.receipts import KeySigner
from runtime.node.sealing import MAX_BATCH, SealVerifier, merkle_proofs, seal
from runtime.node.wire import MAX_PROOF, ProtocolError, Receipt, decode_payload, encode

SIGNER = KeySigner(DEV_PRIVATE_KEYS[4])
PUBLIC = SIGNER._key.public_key.format(compressed=False)

digests = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=2 * MAX_BATCH + 3, unique=True)


def _signer_of(verifier: SealVerifier, digest: bytes, proof, signature: bytes) -> bytes | None:
    try:
        return verifier.public_key(digest, proof, signature)
    except VoucherSignatureError:
        return None


@settings(max_examples=40, deadline=None)
@given(digests)
def test_every_sealed_digest_recovers_to_the_signer_with_one_signature_per_batch(batch):
    signed = seal(batch, SIGNER.sign)
    assert len(signed) == len(batch)
    assert len({sig for sig, _ in signed}) == math.ceil(len(batch) / MAX_BATCH)
    verifier = SealVerifier()
    for digest, (sig, proof) in zip(batch, signed, strict=True):
        assert len(proof) <= MAX_PROOF
        assert verifier.public_key(digest, proof, sig) == PUBLIC


@settings(max_examples=40, deadline=None)
@given(digests, st.binary(min_size=32, max_size=32), st.data())
def test_no_other_digest_and_no_altered_proof_recovers_to_the_signer(batch, stranger, data):
    signed = seal(batch, SIGNER.sign)
    i = data.draw(st.integers(0, len(batch) - 1))
    sig, proof = signed[i]
    verifier = SealVerifier()
    if stranger not in batch:  # another digest under a member's signature and proof (a splice)
        assert _signer_of(verifier, stranger, proof, sig) != PUBLIC
    if proof:
        j = data.draw(st.integers(0, len(proof) - 1))
        bent = list(proof)
        bent[j] = keccak256(bent[j])
        assert _signer_of(verifier, batch[i], bent, sig) != PUBLIC
        assert _signer_of(verifier, batch[i], proof[:j] + proof[j + 1 :], sig) != PUBLIC  # a sibling left out


def test_a_batch_of_one_is_a_plain_signature_over_the_digest():
    digest = keccak256(b"one")
    [(sig, proof)] = seal([digest], SIGNER.sign)
    assert proof == () and sig == SIGNER.sign(digest)
    assert merkle_proofs([digest]) == (digest, [()])


def test_merkle_proofs_refuses_an_empty_batch():
    with pytest.raises(ValueError, match="no leaves"):
        merkle_proofs([])


def test_the_wire_refuses_a_proof_longer_than_a_full_batch_needs():
    digest = keccak256(b"x")
    ok = Receipt(1, "a", "b", digest, 1.0, bytes(65), tuple([digest] * MAX_PROOF))
    assert decode_payload(encode(ok)[4:]) == ok
    too_long = msgspec.msgpack.encode(
        {"t": "receipt", "piece_id": 1, "src": "a", "dst": "b", "payload_hash": digest, "size": 1.0,
         "signature": bytes(65), "proof": [digest] * (MAX_PROOF + 1)}
    )  # fmt: skip
    with pytest.raises(ProtocolError):
        decode_payload(too_long)
