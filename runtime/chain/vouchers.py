"""EIP-712 payment vouchers for ``StreamChannels``, signed and checked at coincurve speed.

A voucher is the payer's promise that a channel has paid ``cumulative_amount`` wei in total so far.
Its digest is exactly the contract's ``voucherDigest(channelId, cumulativeAmount)``::

    domain    = keccak(EIP712Domain_typehash ‖ keccak("StreamChannels") ‖ keccak("1") ‖ chainId ‖ contract)
    struct    = keccak(keccak("Voucher(uint256 channelId,uint256 cumulativeAmount)") ‖ channelId ‖ amount)
    digest    = keccak(0x1901 ‖ domain ‖ struct)

The domain separator is computed once per (chain, contract); each voucher then costs two keccaks and
one secp256k1 operation. Signatures are 65 bytes ``r ‖ s ‖ v`` with ``v`` in {27, 28} and low ``s``,
which is what OpenZeppelin's ECDSA accepts; :class:`VoucherVerifier` rejects everything the contract
rejects (wrong length, bad ``v``, high ``s``), so a voucher that passes here also passes on chain.

Typical use::

    signer = VoucherSigner(payer_key, chain_id, channels_address)
    sig = signer.sign(channel_id, 1_000)                  # payer side
    verifier = VoucherVerifier(chain_id, channels_address)
    assert verifier.verify(channel_id, 1_000, sig, signer.address)   # payee side

Private keys are held only inside :class:`VoucherSigner` (as a coincurve key) and never appear in its
``repr`` or in any message.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from coincurve import PrivateKey, PublicKey
from eth_utils import to_canonical_address, to_checksum_address

__all__ = [
    "ATTESTATION_TYPEHASH",
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "EIP712_DOMAIN_TYPEHASH",
    "SECP256K1_N",
    "VOUCHER_TYPEHASH",
    "VoucherSignatureError",
    "VoucherSigner",
    "VoucherVerifier",
    "attestation_digest",
    "domain_separator",
    "keccak256",
    "recover_digest_public_key",
    "recover_digest_signer",
    "recover_voucher_signer",
    "sign_digest",
    "voucher_digest",
]

# ----------------------------------------------------------------------------------------------------
# keccak-256
# ----------------------------------------------------------------------------------------------------


def _pycryptodome_raw_keccak() -> Callable[[bytes], bytes] | None:
    """A keccak-256 that calls pycryptodome's C core directly, reusing one state per thread.

    ``Crypto.Hash.keccak.new(...).digest()`` spends most of its ~5 µs building Python objects; the
    same C functions called through ctypes with fixed argument types take ~2 µs. Returns None when
    the shared library or its functions are not where pycryptodome keeps them (then the public API
    is used instead).
    """
    try:
        import Crypto.Hash

        candidates = glob.glob(os.path.join(os.path.dirname(Crypto.Hash.__file__), "_keccak*.so"))
        if not candidates:
            return None
        lib = ctypes.CDLL(candidates[0])
        lib.keccak_init.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_ubyte]
        lib.keccak_reset.argtypes = [ctypes.c_void_p]
        lib.keccak_absorb.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.keccak_digest.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_ubyte]
    except (ImportError, OSError, AttributeError):
        return None

    local = threading.local()
    init, reset, absorb, final = lib.keccak_init, lib.keccak_reset, lib.keccak_absorb, lib.keccak_digest

    def _state() -> tuple[ctypes.c_void_p, ctypes.Array[ctypes.c_char]]:
        state = ctypes.c_void_p()
        # capacity 64 bytes (keccak-256), 24 rounds; the state lives as long as the thread.
        if init(ctypes.byref(state), 64, 24) != 0:
            raise RuntimeError("keccak_init failed")
        local.state, local.out = state, ctypes.create_string_buffer(32)
        return local.state, local.out

    def keccak(data: bytes) -> bytes:
        try:
            state, out = local.state, local.out
        except AttributeError:
            state, out = _state()
        reset(state)
        absorb(state, data, len(data))
        final(state, out, 32, 0x01)  # 0x01: original Keccak padding (not SHA3's 0x06)
        return out.raw

    return keccak


def _fallback_keccak() -> Callable[[bytes], bytes]:
    from eth_hash.auto import keccak

    return keccak


def _pick_keccak() -> Callable[[bytes], bytes]:
    fast = _pycryptodome_raw_keccak()
    reference = _fallback_keccak()
    if fast is not None and fast(b"") == reference(b"") and fast(b"\x01" * 200) == reference(b"\x01" * 200):
        return fast
    return reference


keccak256: Callable[[bytes], bytes] = _pick_keccak()
"""keccak-256 of ``data`` (the fastest backend available, checked against eth_hash at import)."""

# ----------------------------------------------------------------------------------------------------
# EIP-712 constants and digests
# ----------------------------------------------------------------------------------------------------

DOMAIN_NAME = "StreamChannels"
DOMAIN_VERSION = "1"
EIP712_DOMAIN_TYPEHASH = keccak256(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
VOUCHER_TYPEHASH = keccak256(b"Voucher(uint256 channelId,uint256 cumulativeAmount)")
ATTESTATION_TYPEHASH = keccak256(b"Attestation(uint256 epoch,bytes32 root)")

#: secp256k1 group order; a valid signature has 0 < r, s < N and (for the contract) s <= N / 2.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N_BYTES = (SECP256K1_N // 2).to_bytes(32, "big")
_PREFIX = b"\x19\x01"


class VoucherSignatureError(ValueError):
    """A signature the contract would reject: wrong length, bad ``v``, high ``s`` or unrecoverable."""


def _uint(value: int, what: str) -> bytes:
    try:
        return value.to_bytes(32, "big")  # raises OverflowError for negatives and values >= 2**256
    except OverflowError:
        raise ValueError(f"{what} must be a uint256, got {value}") from None


def _voucher_struct_hash(channel_id: int, cumulative_amount: int) -> bytes:
    try:
        encoded = VOUCHER_TYPEHASH + channel_id.to_bytes(32, "big") + cumulative_amount.to_bytes(32, "big")
    except OverflowError:
        _uint(channel_id, "channel_id")
        _uint(cumulative_amount, "cumulative_amount")
        raise
    return keccak256(encoded)


@lru_cache(maxsize=4096)
def _canonical(address: str) -> bytes:
    return to_canonical_address(address)


@lru_cache(maxsize=256)
def domain_separator(
    chain_id: int, contract_address: str, name: str = DOMAIN_NAME, version: str = DOMAIN_VERSION
) -> bytes:
    """The EIP-712 domain separator of a contract (cached per chain, contract, name and version).

    :param chain_id: the chain's id (``block.chainid``).
    :param contract_address: the verifying contract, hex string.
    :param name: EIP-712 domain name (``StreamChannels`` or ``SettlementAVS``).
    :param version: EIP-712 domain version.
    """
    return keccak256(
        EIP712_DOMAIN_TYPEHASH
        + keccak256(name.encode())
        + keccak256(version.encode())
        + _uint(chain_id, "chain_id")
        + bytes(12)
        + to_canonical_address(contract_address)
    )


def voucher_digest(chain_id: int, contract_address: str, channel_id: int, cumulative_amount: int) -> bytes:
    """The 32-byte digest a payer signs; equal to the contract's ``voucherDigest``."""
    return keccak256(
        _PREFIX + domain_separator(chain_id, contract_address) + _voucher_struct_hash(channel_id, cumulative_amount)
    )


def attestation_digest(chain_id: int, contract_address: str, epoch: int, root: bytes) -> bytes:
    """The digest an operator signs for ``SettlementAVS.attest``; equal to ``attestationDigest``."""
    if len(root) != 32:
        raise ValueError("root must be 32 bytes")
    struct_hash = keccak256(ATTESTATION_TYPEHASH + _uint(epoch, "epoch") + root)
    separator = domain_separator(chain_id, contract_address, "SettlementAVS", "1")
    return keccak256(_PREFIX + separator + struct_hash)


# ----------------------------------------------------------------------------------------------------
# signing and recovery
# ----------------------------------------------------------------------------------------------------


def load_private_key(key: bytes | str | int) -> PrivateKey:
    """A coincurve key from 32 bytes, a hex string (``0x`` optional) or an int; ``ValueError`` otherwise."""
    if isinstance(key, int):
        raw = key.to_bytes(32, "big")
    elif isinstance(key, str):
        raw = bytes.fromhex(key.removeprefix("0x"))
    else:
        raw = bytes(key)
    if len(raw) != 32:
        raise ValueError("a private key is 32 bytes")
    return PrivateKey(raw)


def _address_of(public_key: PublicKey) -> bytes:
    return keccak256(public_key.format(compressed=False)[1:])[12:]


def _coincurve_recover(sig64: bytes, recid: int, digest: bytes) -> bytes:
    """Uncompressed public key (65 bytes) through coincurve's public API."""
    return PublicKey.from_signature_and_message(sig64 + bytes((recid,)), digest, hasher=None).format(False)


def _direct_recover() -> Callable[[bytes, int, bytes], bytes] | None:
    """The same recovery calling libsecp256k1 through coincurve's cffi binding directly.

    Skips coincurve's per-call object construction (~6 µs of a ~47 µs recovery). The cffi buffers
    are reused, one set per thread. Returns None if coincurve's internals moved.
    """
    try:
        from coincurve._libsecp256k1 import ffi, lib
        from coincurve.context import GLOBAL_CONTEXT

        ctx = GLOBAL_CONTEXT.ctx
        uncompressed = lib.SECP256K1_EC_UNCOMPRESSED
        parse = lib.secp256k1_ecdsa_recoverable_signature_parse_compact
        recover = lib.secp256k1_ecdsa_recover
        serialize = lib.secp256k1_ec_pubkey_serialize
    except (ImportError, AttributeError):
        return None

    local = threading.local()

    def _buffers() -> tuple[Any, Any, Any, Any]:
        local.buffers = (
            ffi.new("secp256k1_ecdsa_recoverable_signature *"),
            ffi.new("secp256k1_pubkey *"),
            ffi.new("unsigned char[65]"),
            ffi.new("size_t *"),
        )
        return local.buffers

    def recover_public_key(sig64: bytes, recid: int, digest: bytes) -> bytes:
        try:
            rsig, pub, out, size = local.buffers
        except AttributeError:
            rsig, pub, out, size = _buffers()
        if not parse(ctx, rsig, sig64, recid):
            raise ValueError("cannot parse signature (r or s >= group order)")
        if not recover(ctx, pub, rsig, digest):
            raise ValueError("cannot recover public key")
        size[0] = 65
        serialize(ctx, out, size, pub, uncompressed)
        return ffi.buffer(out, 65)[:]

    return recover_public_key


def _pick_recover() -> Callable[[bytes, int, bytes], bytes]:
    direct = _direct_recover()
    if direct is not None:
        key = PrivateKey(b"\x11" * 32)
        digest = b"\x22" * 32
        sig = key.sign_recoverable(digest, hasher=None)
        try:
            if direct(sig[:64], sig[64], digest) == key.public_key.format(False):
                return direct
        except Exception:  # a moved internal must never break signing: fall back
            pass
    return _coincurve_recover


_recover_public_key = _pick_recover()


def _sign(key: PrivateKey, digest: bytes) -> bytes:
    # libsecp256k1 signs deterministically (RFC 6979) and always returns low-s signatures.
    sig = key.sign_recoverable(digest, hasher=None)
    return sig[:64] + bytes((sig[64] + 27,))


def sign_digest(private_key: bytes | str | int, digest: bytes) -> bytes:
    """Signs a 32-byte digest: 65 bytes ``r ‖ s ‖ v`` with ``v`` in {27, 28} and low ``s``."""
    if len(digest) != 32:
        raise ValueError("digest must be 32 bytes")
    return _sign(load_private_key(private_key), digest)


def _recover_public(digest: bytes, signature: bytes) -> bytes:
    """The signer's uncompressed public key (65 bytes), after the contract's own checks."""
    if len(signature) != 65:
        raise VoucherSignatureError(f"signature must be 65 bytes, got {len(signature)}")
    v = signature[64]
    if v not in (27, 28):
        raise VoucherSignatureError(f"v must be 27 or 28, got {v}")
    # Equal-length big-endian bytes compare like the integers they encode. r >= N, r == 0 and s == 0
    # are rejected by libsecp256k1's parse/recover below.
    if signature[32:64] > _HALF_N_BYTES:
        raise VoucherSignatureError("high-s signature (malleable; the contract rejects it)")
    try:
        return _recover_public_key(signature[:64], v - 27, digest)
    except ValueError as exc:
        raise VoucherSignatureError(f"unrecoverable signature: {exc}") from None


def _recover(digest: bytes, signature: bytes) -> bytes:
    """The signer's 20-byte address."""
    return keccak256(_recover_public(digest, signature)[1:])[12:]


def recover_digest_public_key(digest: bytes, signature: bytes) -> bytes:
    """The uncompressed public key (65 bytes) that signed ``digest``, after the contract's checks
    (length, ``v``, low ``s``); raises :class:`VoucherSignatureError`. Its address is
    ``keccak256(key[1:])[12:]``; a caller that remembers a known signer's key compares keys directly."""
    return _recover_public(digest, signature)


def recover_digest_signer(digest: bytes, signature: bytes) -> str:
    """The checksummed address that signed ``digest``; raises :class:`VoucherSignatureError`."""
    return to_checksum_address(_recover(digest, signature))


def recover_voucher_signer(
    chain_id: int, contract_address: str, channel_id: int, cumulative_amount: int, signature: bytes
) -> str:
    """The checksummed address that signed a voucher; raises :class:`VoucherSignatureError`."""
    return recover_digest_signer(voucher_digest(chain_id, contract_address, channel_id, cumulative_amount), signature)


class VoucherSigner:
    """Signs vouchers for one payer on one ``StreamChannels`` deployment.

    :param private_key: the payer's key (32 bytes, hex string or int). It is never logged.
    :param chain_id: the chain's id.
    :param contract_address: the ``StreamChannels`` contract.
    """

    __slots__ = ("_address", "_key", "_prefix", "address", "chain_id", "contract_address")

    def __init__(self, private_key: bytes | str | int, chain_id: int, contract_address: str) -> None:
        self._key = load_private_key(private_key)
        self._address = _address_of(self._key.public_key)
        #: the payer's checksummed address
        self.address: str = to_checksum_address(self._address)
        self.chain_id = chain_id
        self.contract_address = to_checksum_address(contract_address)
        self._prefix = _PREFIX + domain_separator(chain_id, self.contract_address)

    def __repr__(self) -> str:
        return f"VoucherSigner(address={self.address}, chain_id={self.chain_id}, contract={self.contract_address})"

    def digest(self, channel_id: int, cumulative_amount: int) -> bytes:
        """The voucher's EIP-712 digest (the contract's ``voucherDigest``)."""
        return keccak256(self._prefix + _voucher_struct_hash(channel_id, cumulative_amount))

    def sign(self, channel_id: int, cumulative_amount: int) -> bytes:
        """A 65-byte signature of ``Voucher(channel_id, cumulative_amount)``, ready for ``claim``."""
        return _sign(self._key, self.digest(channel_id, cumulative_amount))


class VoucherVerifier:
    """Checks vouchers for one ``StreamChannels`` deployment (the payee's side).

    :param chain_id: the chain's id.
    :param contract_address: the ``StreamChannels`` contract.
    """

    __slots__ = ("_keys", "_prefix", "chain_id", "contract_address")

    #: payers whose public key is remembered (verify then skips hashing the key into an address)
    MAX_REMEMBERED_PAYERS = 4096

    def __init__(self, chain_id: int, contract_address: str) -> None:
        self.chain_id = chain_id
        self.contract_address = to_checksum_address(contract_address)
        self._prefix = _PREFIX + domain_separator(chain_id, self.contract_address)
        self._keys: dict[bytes, bytes] = {}

    def digest(self, channel_id: int, cumulative_amount: int) -> bytes:
        """The voucher's EIP-712 digest (the contract's ``voucherDigest``)."""
        return keccak256(self._prefix + _voucher_struct_hash(channel_id, cumulative_amount))

    def recover_bytes(self, channel_id: int, cumulative_amount: int, signature: bytes) -> bytes:
        """The signer's 20-byte address; raises :class:`VoucherSignatureError`."""
        return _recover(self.digest(channel_id, cumulative_amount), signature)

    def recover(self, channel_id: int, cumulative_amount: int, signature: bytes) -> str:
        """The signer's checksummed address; raises :class:`VoucherSignatureError`."""
        return to_checksum_address(self.recover_bytes(channel_id, cumulative_amount, signature))

    def verify(self, channel_id: int, cumulative_amount: int, signature: bytes, payer: str | bytes) -> bool:
        """Whether ``signature`` is a valid voucher by ``payer`` (False for any malformed signature).

        The signer's public key is recovered and compared with ``payer``'s. Once a payer's key has
        been seen, it is compared directly (the address is a hash of the key, so this is the same
        test without the hash).

        :param payer: the channel's payer, as hex string or 20 bytes.
        """
        expected = payer if isinstance(payer, bytes) else _canonical(payer)
        try:
            public_key = _recover_public(self.digest(channel_id, cumulative_amount), signature)
        except VoucherSignatureError:
            return False
        known = self._keys.get(expected)
        if known is not None:
            return public_key == known
        if keccak256(public_key[1:])[12:] != expected:
            return False
        if len(self._keys) >= self.MAX_REMEMBERED_PAYERS:
            self._keys.clear()
        self._keys[expected] = public_key
        return True
