"""Proof of delivery: the destination signs a receipt for each piece; every hop checks it on the way back.

A receipt is the destination's signature, with its node key (the key behind the payout address it
proves in the handshake), over::

    digest = keccak256("OpenStreaming receipt v1\\x00" ‖ piece_id (u64 BE) ‖ src ‖ 0x00 ‖ dst ‖ 0x00
                       ‖ keccak256(payload) ‖ size (IEEE-754 f64 BE))

65 bytes ``r ‖ s ‖ v`` (low ``s``, ``v`` in {27, 28}), as vouchers are signed. The domain tag keeps a
receipt from ever being mistaken for a hello ``auth`` or an EIP-712 voucher of the same key. A
loaded destination signs, instead of each digest, the Merkle root of the digests of one turn of its
event loop, and each receipt carries its ``proof`` to that root (``runtime.node.sealing``).

A hop believes a receipt only if (:meth:`ReceiptVerifier.check`) it names exactly the piece the
hop forwarded — id, source, the destination it forwarded to, the payload's hash and size, all
taken from the hop's own record, never from the frame — and its signer recovers to the
destination's address the hop knows: from its own configuration (a peer's address, proven in the
handshake, or the ``directory``) or, failing that, from the piece it was handed (whoever put a false
address there is the first to pay for it: its upstream, who knows better, refuses the receipt).
A forwarder therefore cannot claim a delivery it did not make: it would need the destination's key.

Typical use::

    signer = KeySigner(node_key)
    r = make_receipt(signer.sign, piece_id, "n0", "n3", payload_hash(payload), size)   # at the destination
    reason = ReceiptVerifier().check(r, Expected(piece_id, "n0", "n3", dst_address, phash, size))
    assert reason is None                                                             # at each hop
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from eth_utils import to_canonical_address, to_checksum_address

from runtime.chain.vouchers import VoucherSignatureError, keccak256, load_private_key
from runtime.node.sealing import SealVerifier
from runtime.node.wire import Receipt

__all__ = [
    "RECEIPT_DOMAIN",
    "Expected",
    "KeySigner",
    "ReceiptVerifier",
    "make_receipt",
    "payload_hash",
    "receipt_digest",
]

RECEIPT_DOMAIN = b"OpenStreaming receipt v1\x00"
_U64 = struct.Struct(">Q")
_F64 = struct.Struct(">d")


def payload_hash(payload: bytes) -> bytes:
    """keccak-256 of a piece's payload (what a receipt commits to)."""
    return keccak256(payload)


def receipt_digest(piece_id: int, src: str, dst: str, phash: bytes, size: float) -> bytes:
    """The 32-byte digest the destination signs for a piece (see the module docstring)."""
    if len(phash) != 32:
        raise ValueError("payload hash must be 32 bytes")
    return keccak256(
        RECEIPT_DOMAIN + _U64.pack(piece_id) + src.encode() + b"\x00" + dst.encode() + b"\x00" + phash + _F64.pack(size)
    )


class KnownSigners:
    """Does a recovered public key belong to an address? Remembers up to ``max_keys`` verified
    keys (a known signer is then compared key to key, skipping the keccak); past the bound it
    forgets them all rather than grow."""

    __slots__ = ("_keys", "max_keys")

    def __init__(self, max_keys: int = 4096) -> None:
        self.max_keys = max_keys
        self._keys: dict[str, bytes] = {}

    def signed_by(self, public_key: bytes, address: str) -> bool:
        """True when ``public_key`` (65 bytes, uncompressed) is the key of ``address``."""
        key = address.lower()
        known = self._keys.get(key)
        if known is not None:
            return public_key == known
        if keccak256(public_key[1:])[12:] != to_canonical_address(key):
            return False
        if len(self._keys) >= self.max_keys:
            self._keys.clear()
        self._keys[key] = public_key
        return True


class KeySigner:
    """Signs 32-byte digests with a node key held as a coincurve key (never in ``repr`` or logs).

    :param private_key: 32 bytes, a hex string or an int.
    """

    __slots__ = ("_key", "address")

    def __init__(self, private_key: bytes | str | int) -> None:
        self._key = load_private_key(private_key)
        #: the key's checksummed address
        self.address: str = to_checksum_address(keccak256(self._key.public_key.format(compressed=False)[1:])[12:])

    def __repr__(self) -> str:
        return f"KeySigner(address={self.address})"

    def sign(self, digest: bytes) -> bytes:
        """65-byte ``r ‖ s ‖ v`` signature of ``digest`` (RFC 6979, low ``s``, ``v`` in {27, 28})."""
        sig = self._key.sign_recoverable(digest, hasher=None)
        return sig[:64] + bytes((sig[64] + 27,))


def make_receipt(
    sign: Callable[[bytes], bytes], piece_id: int, src: str, dst: str, phash: bytes, size: float
) -> Receipt:
    """The destination's receipt for a piece, signed with ``sign`` (its node key)."""
    return Receipt(piece_id, src, dst, phash, size, sign(receipt_digest(piece_id, src, dst, phash, size)))


@dataclass(slots=True, frozen=True)
class Expected:
    """What a hop recorded when it forwarded a piece: the receipt must match it field by field."""

    piece_id: int
    src: str
    dst: str
    dst_address: str  # hex address whose key must have signed
    payload_hash: bytes
    size: float


class ReceiptVerifier:
    """Checks receipts against a hop's own record of the piece; remembers signers' public keys.

    :param max_keys: public keys remembered (a known signer is then compared key to key, skipping
        the hash of the recovered key into an address).
    """

    __slots__ = ("_seals", "_signers")

    def __init__(self, max_keys: int = 4096) -> None:
        self._signers = KnownSigners(max_keys)
        self._seals = SealVerifier()

    def check(self, receipt: Receipt, expected: Expected) -> str | None:
        """``None`` if ``receipt`` proves delivery of ``expected``; else a one-line reason whose first
        word before ``:`` names the class (``forged receipt``, ``receipt mismatch``)."""
        if receipt.piece_id != expected.piece_id:
            return f"receipt mismatch: piece {receipt.piece_id}, expected {expected.piece_id}"
        if receipt.dst != expected.dst:
            return f"receipt mismatch: names destination {receipt.dst}, the piece went to {expected.dst}"
        if receipt.src != expected.src:
            return f"receipt mismatch: names source {receipt.src}, the piece came from {expected.src}"
        if receipt.payload_hash != expected.payload_hash:
            return f"receipt mismatch: another payload for piece {receipt.piece_id}"
        if receipt.size != expected.size:
            return f"receipt mismatch: size {receipt.size:g}, the piece had {expected.size:g}"
        digest = receipt_digest(receipt.piece_id, receipt.src, receipt.dst, receipt.payload_hash, receipt.size)
        try:
            public_key = self._seals.public_key(digest, receipt.proof, bytes(receipt.signature))
        except VoucherSignatureError as exc:
            return f"forged receipt: piece {receipt.piece_id}: {exc}"
        if not self._signers.signed_by(public_key, expected.dst_address):
            signer = to_checksum_address(keccak256(public_key[1:])[12:])
            return (
                f"forged receipt: piece {receipt.piece_id} signed by {signer}, "
                f"not {expected.dst}'s {expected.dst_address}"
            )
        return None
