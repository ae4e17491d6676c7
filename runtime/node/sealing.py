"""Batched signatures: one signature of the node key covers every receipt and custody acceptance
the node issues in one turn of its event loop (issue 22: signatures that do not cost a piece each).

A receipt (``runtime.node.receipts``) and a custody acceptance (``runtime.node.acceptance``) are each
a signature over a 32-byte, domain-separated digest. Under load a node issues dozens of them per
turn of its event loop; signing each costs about 40 µs and verifying each about 50 µs. Instead the
node *seals* the digests of one turn (at most :data:`MAX_BATCH`): it builds a Merkle tree over them,
signs the root once, and sends each frame with that one signature and its own proof (the sibling
hashes from its digest up to the root)::

    node(a, b) = keccak256(0x01 ‖ min(a, b) ‖ max(a, b))      (sorted pairs: a proof needs no index)
    root       = the digest itself for a batch of one          (so an idle node's frame carries a
                                                                plain signature and an empty proof)

A verifier recomputes the digest from its *own* record of the piece, folds the proof into a root
and recovers the signer of ``(root, signature)``, which it remembers (:class:`SealVerifier`): the
other frames of the same batch then cost a few keccaks each, not a public-key recovery.

**Why this is as strong as a signature per frame.** A signer commits to exactly the digests of its
batch: a proof for any other digest would need a keccak collision (or a second preimage). Leaves are
digests that the verifier computes itself, and internal nodes carry the ``0x01`` prefix that no
digest of the protocol starts its preimage with, so an internal node cannot pass as a leaf. A
frame's evidence is still standalone: a relay passes one receipt upstream, proof and all, and the
node above checks it without the rest of the batch.

**What it costs.** Nothing waits for a batch: the node seals what one turn produced, right after that
turn, so an idle node signs each frame as before and a loaded one signs once for many. A proof is at
most :data:`MAX_PROOF` hashes (32 bytes each) per frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from runtime.chain.vouchers import keccak256, recover_digest_public_key
from runtime.node.wire import MAX_PROOF

__all__ = ["MAX_BATCH", "MAX_PROOF", "SealVerifier", "merkle_proofs", "root_of", "seal"]

#: Most digests one signature covers (a batch is split beyond it): a tree of depth MAX_PROOF.
MAX_BATCH = 2**MAX_PROOF
_NODE = b"\x01"


def _parent(a: bytes, b: bytes) -> bytes:
    return keccak256(_NODE + a + b) if a <= b else keccak256(_NODE + b + a)


def merkle_proofs(leaves: Sequence[bytes]) -> tuple[bytes, list[tuple[bytes, ...]]]:
    """The root of ``leaves`` (32-byte digests, at least one) and each leaf's proof, in order.

    A level with an odd count carries its last node up unchanged (it gets no sibling at that level).
    """
    if not leaves:
        raise ValueError("no leaves to seal")
    proofs: list[list[bytes]] = [[] for _ in leaves]
    level = list(leaves)
    members = [[i] for i in range(len(leaves))]  # the leaves under each node of the level
    while len(level) > 1:
        nxt, nxt_members = [], []
        for j in range(0, len(level) - 1, 2):
            a, b = level[j], level[j + 1]
            for i in members[j]:
                proofs[i].append(b)
            for i in members[j + 1]:
                proofs[i].append(a)
            nxt.append(_parent(a, b))
            nxt_members.append(members[j] + members[j + 1])
        if len(level) % 2:
            nxt.append(level[-1])
            nxt_members.append(members[-1])
        level, members = nxt, nxt_members
    return level[0], [tuple(p) for p in proofs]


def root_of(digest: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` folds ``digest`` into (``digest`` itself for an empty proof)."""
    node = digest
    for sibling in proof:
        node = _parent(node, sibling)
    return node


def seal(digests: Sequence[bytes], sign: Callable[[bytes], bytes]) -> list[tuple[bytes, tuple[bytes, ...]]]:
    """``(signature, proof)`` for each digest, in order: one ``sign`` call per :data:`MAX_BATCH` digests."""
    out: list[tuple[bytes, tuple[bytes, ...]]] = []
    for start in range(0, len(digests), MAX_BATCH):
        chunk = digests[start : start + MAX_BATCH]
        root, proofs = merkle_proofs(chunk)
        signature = sign(root)
        out.extend((signature, proof) for proof in proofs)
    return out


class SealVerifier:
    """Recovers the signer of a sealed digest; remembers the signers of the last ``max_roots`` roots.

    Past the bound it forgets them all rather than grow (a peer sending fresh roots only makes
    itself pay one recovery each, as an unbatched signature would).

    :raises runtime.chain.vouchers.VoucherSignatureError: from :meth:`public_key`, on a malformed
        signature.
    """

    __slots__ = ("_roots", "max_roots")

    def __init__(self, max_roots: int = 1024) -> None:
        self.max_roots = max_roots
        self._roots: dict[bytes, bytes] = {}

    def public_key(self, digest: bytes, proof: Sequence[bytes], signature: bytes) -> bytes:
        """The 65-byte public key that signed the root ``proof`` folds ``digest`` into."""
        root = root_of(digest, proof)
        key = root + signature
        known = self._roots.get(key)
        if known is not None:
            return known
        public_key = recover_digest_public_key(root, signature)
        if len(self._roots) >= self.max_roots:
            self._roots.clear()
        self._roots[key] = public_key
        return public_key
