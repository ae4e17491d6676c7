"""Signed custody: a hop's acceptance of a piece, the evidence of who held a lost piece last.

When a node takes a piece in, its hop ``ack`` carries its signature, with its node key, over::

    digest = keccak256("OpenStreaming custody v1\\x00" ‖ piece_id (u64 BE) ‖ keccak256(payload)
                       ‖ from ‖ 0x00 ‖ to ‖ 0x00 ‖ at (IEEE-754 f64 BE))

(``from``: the upstream that handed the piece over; ``to``: the signer, the node that took it;
``at``: the signer's clock when it took it.) The upstream keeps the signature with its custody
record of the piece (:class:`runtime.node.custody.Entry`) as evidence that it passed the piece on.

When the piece is lost, each node's loss report (``outcome``) carries the acceptance it holds from
its own downstream; the node above verifies it (:meth:`AcceptanceVerifier.check`) against its own
record (piece id, payload hash), the reporter as ``from`` and the holder's address as the node
knows it (a peer's, proven in the handshake, or the ``directory``). A valid one shows the reporter
passed the piece on: the loss was *beyond* it (``agents.memory``: ``own=False``); none, or one that
does not verify, leaves the reporter holding the piece last (``own=True``). A cheat cannot shift
the blame downstream without a signature it cannot forge (colluding pairs can: the environment's
clique ballot stuffers model them).

Signatures are checked lazily: only a lost piece's evidence is ever verified (once, by each hop),
so custody costs a piece one signature at the receiver and nothing more while pieces arrive.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

from runtime.chain.vouchers import VoucherSignatureError, keccak256
from runtime.node.receipts import KnownSigners
from runtime.node.sealing import SealVerifier

__all__ = ["CUSTODY_DOMAIN", "AcceptanceVerifier", "custody_digest", "sign_acceptance"]

CUSTODY_DOMAIN = b"OpenStreaming custody v1\x00"
_U64 = struct.Struct(">Q")
_F64 = struct.Struct(">d")


def custody_digest(piece_id: int, phash: bytes, sender: str, holder: str, at: float) -> bytes:
    """The 32-byte digest ``holder`` signs when it takes piece ``piece_id`` from ``sender`` at ``at``."""
    if len(phash) != 32:
        raise ValueError("payload hash must be 32 bytes")
    return keccak256(
        CUSTODY_DOMAIN
        + _U64.pack(piece_id)
        + phash
        + sender.encode()
        + b"\x00"
        + holder.encode()
        + b"\x00"
        + _F64.pack(at)
    )


def sign_acceptance(
    sign: Callable[[bytes], bytes], piece_id: int, phash: bytes, sender: str, holder: str, at: float
) -> bytes:
    """``holder``'s 65-byte acceptance of the piece (``sign``: its node key's digest signer)."""
    return sign(custody_digest(piece_id, phash, sender, holder, at))


class AcceptanceVerifier:
    """Checks custody acceptances; remembers the public keys of known signers (like receipts do).

    :param max_keys: public keys remembered (a known signer is compared key to key).
    """

    __slots__ = ("_seals", "_signers")

    def __init__(self, max_keys: int = 4096) -> None:
        self._signers = KnownSigners(max_keys)
        self._seals = SealVerifier()

    def check(
        self,
        piece_id: int,
        phash: bytes,
        sender: str,
        holder: str,
        at: float,
        signature: bytes,
        address: str,
        proof: Sequence[bytes] = (),
    ) -> str | None:
        """``None`` if ``signature`` is ``holder``'s (whose address is ``address``) acceptance of the
        piece from ``sender`` at ``at`` (over the acceptance's digest, or the root ``proof`` folds it
        into: ``runtime.node.sealing``); else a one-line reason starting ``forged custody:``."""
        if len(signature) != 65:
            return f"forged custody: piece {piece_id}: a signature of {len(signature)} bytes"
        digest = custody_digest(piece_id, phash, sender, holder, at)
        try:
            public_key = self._seals.public_key(digest, proof, bytes(signature))
        except VoucherSignatureError as exc:
            return f"forged custody: piece {piece_id}: {exc}"
        if not self._signers.signed_by(public_key, address):
            return f"forged custody: piece {piece_id}: the acceptance is not signed by {holder}'s key"
        return None
