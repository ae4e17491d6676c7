"""Settlement roots: net flows between nodes per epoch, as a Merkle tree operators attest.

Pure functions, no I/O, so the operator, the aggregator's recomputation, the challenger and
every node compute the same bytes from the same chain events.

* An **epoch** is a fixed range of blocks: epoch ``e`` holds blocks ``[e * epoch_blocks,
  (e + 1) * epoch_blocks)``.
* A **payment** is one ``Claimed`` event of the channel contract: ``amount`` wei moved from the
  channel's payer to its payee in that block.
* The **net flow** of an unordered pair ``a < b`` (addresses compared as 20-byte integers) is what
  ``a`` paid ``b`` minus what ``b`` paid ``a`` in the epoch (a signed integer). Pairs whose net
  flow is zero but that exchanged money keep a leaf, so a node can prove "we are square".
* A **leaf** is ``keccak256(keccak256(abi.encode(uint256 epoch, address a, address b, int256 net)))``
  (double hashing, as OpenZeppelin's ``MerkleProof`` expects, so a leaf can never be confused
  with an inner node); leaves are sorted by ``(a, b)``; inner nodes hash their two children in
  sorted order (OpenZeppelin's commutative pair hash); an odd node is carried up unchanged.
* The **root** of an epoch without payments is ``keccak256(abi.encode(uint256 epoch))`` —
  never zero, never a valid leaf set's root, and different for every epoch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from eth_abi import encode
from eth_utils import keccak, to_checksum_address


@dataclass(frozen=True)
class Payment:
    """``amount`` wei paid from ``payer`` to ``payee`` in ``block`` (one ``Claimed`` event)."""

    block: int
    payer: str
    payee: str
    amount: int


@dataclass(frozen=True)
class FlowLeaf:
    """Net flow of the pair ``a < b`` in one epoch: positive when ``a`` paid ``b`` on balance."""

    epoch: int
    a: str
    b: str
    net: int

    def hash(self) -> bytes:
        """The leaf's double keccak of its ABI encoding."""
        return keccak(
            keccak(encode(["uint256", "address", "address", "int256"], [self.epoch, self.a, self.b, self.net]))
        )


def epoch_of(block: int, epoch_blocks: int) -> int:
    """Epoch that holds ``block``."""
    return block // epoch_blocks


def _key(address: str) -> int:
    return int(address, 16)


def net_flows(payments: Iterable[Payment], epoch: int, epoch_blocks: int) -> list[FlowLeaf]:
    """Sorted leaves of every pair that exchanged money in ``epoch``."""
    net: dict[tuple[str, str], int] = defaultdict(int)
    for p in payments:
        if epoch_of(p.block, epoch_blocks) != epoch or p.amount == 0:
            continue
        payer, payee = to_checksum_address(p.payer), to_checksum_address(p.payee)
        if _key(payer) < _key(payee):
            net[(payer, payee)] += p.amount
        else:
            net[(payee, payer)] -= p.amount
    return [
        FlowLeaf(epoch, a, b, v) for (a, b), v in sorted(net.items(), key=lambda kv: (_key(kv[0][0]), _key(kv[0][1])))
    ]


def _pair(x: bytes, y: bytes) -> bytes:
    return keccak(x + y) if x < y else keccak(y + x)


def merkle_root(leaves: list[FlowLeaf], epoch: int) -> bytes:
    """Root over the leaves (see the module docstring); the empty-epoch root when there are none."""
    if not leaves:
        return keccak(encode(["uint256"], [epoch]))
    level = [leaf.hash() for leaf in leaves]
    while len(level) > 1:
        nxt = [_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_proof(leaves: list[FlowLeaf], index: int) -> list[bytes]:
    """Sibling hashes from leaf ``index`` up to the root."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf index {index} out of range for {len(leaves)} leaves")
    level = [leaf.hash() for leaf in leaves]
    proof: list[bytes] = []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        nxt = [_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        index //= 2
    return proof


def verify_proof(leaf: FlowLeaf, proof: list[bytes], root: bytes) -> bool:
    """Whether ``proof`` links ``leaf`` to ``root`` (OpenZeppelin ``MerkleProof.verify`` semantics)."""
    node = leaf.hash()
    for sibling in proof:
        node = _pair(node, sibling)
    return node == root


def settlement_root(payments: Iterable[Payment], epoch: int, epoch_blocks: int) -> tuple[bytes, list[FlowLeaf]]:
    """The epoch's root and its leaves, from all known payments."""
    leaves = net_flows(payments, epoch, epoch_blocks)
    return merkle_root(leaves, epoch), leaves


def own_net_flow(leaves: list[FlowLeaf], address: str) -> dict[str, int]:
    """What ``address`` paid each counterparty on balance (positive: it paid), from the leaves."""
    me = to_checksum_address(address)
    out: dict[str, int] = {}
    for leaf in leaves:
        if leaf.a == me:
            out[leaf.b] = leaf.net
        elif leaf.b == me:
            out[leaf.a] = -leaf.net
    return out
