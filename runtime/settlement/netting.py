"""Net-settlement roots: the leaves, the tree and the checks ``NetSettlement`` executes and judges.

Pure functions and value types, no I/O, so the operators that build a root, the aggregator that
submits it and every node that checks it compute the same bytes (``contracts/src/NetSettlement.sol``
is the reference; ``tests/runtime/settlement/test_netting_chain.py`` checks the two agree on a real
anvil).

* A **node leaf** is ``(node, amount, entries)``: ``entries`` are the node's incoming channels, each
  ``(channel_id, cumulative_amount, signature)`` with the payer's own voucher for exactly that
  amount, strictly ascending by channel id, at most :data:`MAX_ENTRIES`; ``amount`` is their sum.
* Its hash is ``keccak256(keccak256(abi.encode(epoch, node, amount, entries)))``; leaves are sorted
  by node address; inner nodes hash their two children in sorted order (OpenZeppelin's
  ``MerkleProof``); an odd node is carried up unchanged.
* Operators sign ``NetRoot(epoch, root)`` in the ``NetSettlement`` EIP-712 domain
  (:func:`net_root_digest`).

Checks (:func:`leaf_fraud`) are the contract's fraud proofs, run off chain: an entry that no payer
signature supports, or a leaf that is not the sum of its entries. An entry *below* a voucher the
payee holds is not fraud; the payee claims the rest directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from runtime.chain.vouchers import VoucherVerifier, domain_separator

#: Most entries in one node leaf (``NetSettlement.MAX_ENTRIES``).
MAX_ENTRIES = 64
#: ``keccak256("NetRoot(uint256 epoch,bytes32 root)")``
NET_ROOT_TYPEHASH = keccak(b"NetRoot(uint256 epoch,bytes32 root)")
_LEAF_TYPES = ["uint256", "address", "uint256", "(uint256,uint256,bytes)[]"]


@dataclass(frozen=True)
class Entry:
    """One incoming channel of a node leaf: the payer's voucher for ``cumulative_amount``."""

    channel_id: int
    cumulative_amount: int
    signature: bytes

    def as_tuple(self) -> tuple[int, int, bytes]:
        """The ABI tuple ``(channelId, cumulativeAmount, signature)``."""
        return (self.channel_id, self.cumulative_amount, self.signature)


@dataclass(frozen=True)
class NodeLeaf:
    """What one node is paid by a root: its entries and their sum."""

    node: str
    amount: int
    entries: tuple[Entry, ...]

    def hash(self, epoch: int) -> bytes:
        """The leaf's double keccak (``NetSettlement.leafHash``)."""
        encoded = encode(_LEAF_TYPES, [epoch, self.node, self.amount, [e.as_tuple() for e in self.entries]])
        return keccak(keccak(encoded))

    def entry_tuples(self) -> list[tuple[int, int, bytes]]:
        """The entries as ABI tuples, for contract calls."""
        return [e.as_tuple() for e in self.entries]


@dataclass(frozen=True)
class ChannelView:
    """What a check needs to know about a channel from the chain."""

    payer: str
    payee: str
    deposit: int


class Rejection(Enum):
    """Why an operator leaves a handed-in voucher out of a root (a fixed set)."""

    UNKNOWN_CHANNEL = "unknown channel"
    WRONG_PAYEE = "channel's payee is not the node that handed it in"
    ABOVE_DEPOSIT = "amount above the channel's deposit"
    BAD_SIGNATURE = "not the payer's valid voucher"
    TOO_MANY_CHANNELS = "node already has MAX_ENTRIES channels in this root"


class FraudKind(Enum):
    """The two fraud proofs ``NetSettlement`` accepts."""

    UNSUPPORTED_ENTRY = "unsupported entry"
    MALFORMED_LEAF = "malformed leaf"


@dataclass(frozen=True)
class Fraud:
    """A provable fault in a leaf: which proof to submit and, for an entry, which one."""

    kind: FraudKind
    node: str
    index: int = 0


@dataclass(frozen=True)
class NetRoot:
    """A root with its leaves (sorted by node) and their proofs."""

    epoch: int
    root: bytes
    leaves: tuple[NodeLeaf, ...]

    def proof(self, node: str) -> list[bytes]:
        """The Merkle proof of ``node``'s leaf; ``KeyError`` if it has none."""
        me = to_checksum_address(node)
        for i, leaf in enumerate(self.leaves):
            if leaf.node == me:
                return tree_proof([x.hash(self.epoch) for x in self.leaves], i)
        raise KeyError(me)

    def leaf(self, node: str) -> NodeLeaf | None:
        """``node``'s leaf, or None."""
        me = to_checksum_address(node)
        return next((leaf for leaf in self.leaves if leaf.node == me), None)


# ----------------------------------------------------------------------------------------------------
# tree
# ----------------------------------------------------------------------------------------------------


def _pair(x: bytes, y: bytes) -> bytes:
    return keccak(x + y) if x < y else keccak(y + x)


def _up(level: list[bytes]) -> list[bytes]:
    nxt = [_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        nxt.append(level[-1])
    return nxt


def tree_root(hashes: list[bytes]) -> bytes:
    """Root over leaf hashes (sorted pairs, odd node carried up); ``ValueError`` when empty."""
    if not hashes:
        raise ValueError("a root needs at least one leaf")
    level = list(hashes)
    while len(level) > 1:
        level = _up(level)
    return level[0]


def tree_proof(hashes: list[bytes], index: int) -> list[bytes]:
    """Sibling hashes from leaf ``index`` up to the root."""
    if not 0 <= index < len(hashes):
        raise IndexError(f"leaf index {index} out of range for {len(hashes)} leaves")
    level = list(hashes)
    proof: list[bytes] = []
    while len(level) > 1:
        if index ^ 1 < len(level):
            proof.append(level[index ^ 1])
        level = _up(level)
        index //= 2
    return proof


def net_root_digest(chain_id: int, netting_address: str, epoch: int, root: bytes) -> bytes:
    """The digest an operator signs for ``(epoch, root)`` (``NetSettlement.rootDigest``)."""
    if len(root) != 32:
        raise ValueError("root must be 32 bytes")
    struct_hash = keccak(NET_ROOT_TYPEHASH + epoch.to_bytes(32, "big") + root)
    return keccak(b"\x19\x01" + domain_separator(chain_id, netting_address, "NetSettlement", "1") + struct_hash)


# ----------------------------------------------------------------------------------------------------
# building (operators) and checking (nodes)
# ----------------------------------------------------------------------------------------------------


def entry_rejection(
    node: str, entry: Entry, channel: ChannelView | None, verifier: VoucherVerifier
) -> Rejection | None:
    """Why ``entry`` cannot be in ``node``'s leaf, or None when the payer's signature supports it."""
    if channel is None or int(channel.payer, 16) == 0:
        return Rejection.UNKNOWN_CHANNEL
    if to_checksum_address(channel.payee) != to_checksum_address(node):
        return Rejection.WRONG_PAYEE
    if entry.cumulative_amount > channel.deposit:
        return Rejection.ABOVE_DEPOSIT
    if not verifier.verify(entry.channel_id, entry.cumulative_amount, entry.signature, channel.payer):
        return Rejection.BAD_SIGNATURE
    return None


def build_root(
    epoch: int,
    handed_in: Iterable[tuple[str, Entry]],
    channel_of: Callable[[int], ChannelView | None],
    verifier: VoucherVerifier,
) -> tuple[NetRoot, list[tuple[str, Entry, Rejection]]]:
    """An operator's root from the vouchers nodes handed in, each verified first.

    :param handed_in: ``(node, entry)`` pairs; for a channel handed in more than once the highest
        supported amount is kept.
    :param channel_of: the channel's on-chain view (None when it does not exist).
    :return: the root, and every ``(node, entry, reason)`` left out.
    """
    best: dict[str, dict[int, Entry]] = {}
    rejected: list[tuple[str, Entry, Rejection]] = []
    for node, entry in handed_in:
        me = to_checksum_address(node)
        reason = entry_rejection(me, entry, channel_of(entry.channel_id), verifier)
        if reason is not None:
            rejected.append((me, entry, reason))
            continue
        mine = best.setdefault(me, {})
        old = mine.get(entry.channel_id)
        if old is None and len(mine) >= MAX_ENTRIES:
            rejected.append((me, entry, Rejection.TOO_MANY_CHANNELS))
            continue
        if old is None or entry.cumulative_amount > old.cumulative_amount:
            mine[entry.channel_id] = entry
    leaves = []
    for node in sorted(best, key=lambda a: int(a, 16)):
        entries = tuple(best[node][cid] for cid in sorted(best[node]))
        leaves.append(NodeLeaf(node, sum(e.cumulative_amount for e in entries), entries))
    return from_leaves(epoch, leaves), rejected


def from_leaves(epoch: int, leaves: Iterable[NodeLeaf]) -> NetRoot:
    """The root over ``leaves`` (sorted by node here)."""
    ordered = tuple(sorted(leaves, key=lambda leaf: int(leaf.node, 16)))
    return NetRoot(epoch, tree_root([leaf.hash(epoch) for leaf in ordered]), ordered)


def leaf_fraud(
    leaf: NodeLeaf, channel_of: Callable[[int], ChannelView | None], verifier: VoucherVerifier
) -> Fraud | None:
    """The fraud proof ``leaf`` admits, if any (malformed first: it needs no chain reads)."""
    entries = leaf.entries
    ids = [e.channel_id for e in entries]
    if (
        len(entries) > MAX_ENTRIES
        or any(b <= a for a, b in zip([0, *ids], ids, strict=False))
        or sum(e.cumulative_amount for e in entries) != leaf.amount
    ):
        return Fraud(FraudKind.MALFORMED_LEAF, leaf.node)
    for i, entry in enumerate(entries):
        if entry_rejection(leaf.node, entry, channel_of(entry.channel_id), verifier) is not None:
            return Fraud(FraudKind.UNSUPPORTED_ENTRY, leaf.node, i)
    return None


def shortfall(leaf: NodeLeaf | None, vouchers: Mapping[int, int]) -> dict[int, int]:
    """Channels where the payee holds a voucher above what ``leaf`` pays it: channel -> voucher
    amount. Not fraud (the voucher may never have been handed in); the payee claims these directly."""
    in_root = {e.channel_id: e.cumulative_amount for e in leaf.entries} if leaf is not None else {}
    return {cid: amount for cid, amount in vouchers.items() if amount > in_root.get(cid, 0)}
