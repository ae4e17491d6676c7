"""An operator's record of the net-settlement roots it signs: persist first, then sign, never two.

:class:`NetRootSigner` keeps ``(epoch, root, leaves)`` in sqlite (WAL, ``synchronous=FULL``) and signs
``NetRoot(epoch, root)`` only after the row is durable. Asked to sign a different root for an epoch it
already persisted (a restart that recomputed something else, a bug, a compromised aggregator), it
refuses and returns the signature of the persisted root instead, so an operator never signs two
roots for one epoch. The leaves are kept so the operator can publish them (every node checks the
root it is in from them).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from runtime.chain.vouchers import sign_digest
from runtime.settlement.netting import Entry, NetRoot, NodeLeaf, from_leaves, net_root_digest


class RootConflictError(Exception):
    """A different root was asked for an epoch this operator already signed."""


def _leaves_json(root: NetRoot) -> str:
    return json.dumps(
        [
            [
                leaf.node,
                str(leaf.amount),
                [[e.channel_id, str(e.cumulative_amount), e.signature.hex()] for e in leaf.entries],
            ]
            for leaf in root.leaves
        ]
    )


def _leaves_from_json(epoch: int, text: str) -> NetRoot:
    leaves = [
        NodeLeaf(node, int(amount), tuple(Entry(int(c), int(a), bytes.fromhex(s)) for c, a, s in entries))
        for node, amount, entries in json.loads(text)
    ]
    return from_leaves(epoch, leaves)


class NetRootSigner:
    """One operator's persisted, signed net roots.

    :param path: the sqlite file.
    :param key: the operator's private key (never logged or stored).
    :param chain_id: the chain's id.
    :param netting_address: the ``NetSettlement`` contract.
    """

    def __init__(self, path: Path, key: str, chain_id: int, netting_address: str) -> None:
        self._key = key
        self.chain_id = chain_id
        self.netting_address = netting_address
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS net_roots (epoch INTEGER PRIMARY KEY, root BLOB NOT NULL, leaves TEXT NOT NULL)"
        )

    def sign(self, root: NetRoot) -> bytes:
        """Persists ``root`` for its epoch (if the epoch is new), then signs it. Raises
        :class:`RootConflictError` if a different root was persisted for that epoch."""
        row = self.db.execute("SELECT root FROM net_roots WHERE epoch = ?", (root.epoch,)).fetchone()
        if row is None:
            self.db.execute(
                "INSERT INTO net_roots (epoch, root, leaves) VALUES (?, ?, ?)",
                (root.epoch, root.root, _leaves_json(root)),
            )
        elif bytes(row[0]) != root.root:
            raise RootConflictError(f"epoch {root.epoch}: already signed root 0x{bytes(row[0]).hex()}")
        return sign_digest(self._key, net_root_digest(self.chain_id, self.netting_address, root.epoch, root.root))

    def published(self, epoch: int) -> NetRoot | None:
        """The root and leaves this operator persisted for ``epoch`` (what it publishes), or None."""
        row = self.db.execute("SELECT leaves FROM net_roots WHERE epoch = ?", (epoch,)).fetchone()
        return None if row is None else _leaves_from_json(epoch, row[0])

    def close(self) -> None:
        """Closes the store."""
        self.db.close()
