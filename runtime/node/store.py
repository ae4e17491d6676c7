"""Durable node state in sqlite: channels, the latest voucher of each channel, claims.

The database runs in WAL mode with ``synchronous=FULL``: a transaction that returned is on disk
and survives a ``kill -9`` or a power cut. The node writes a voucher here *before* it acknowledges
it (payee) or sends it (payer); :meth:`Store.record_vouchers` takes a whole batch in one
transaction (group commit), so the cost of the fsync is shared by every voucher of an event-loop turn.

Only the highest cumulative voucher of each (channel, role) is kept: a voucher is cumulative, so
an older one is worth nothing once a higher one is held. A lower or equal voucher never overwrites
a higher one, even if the caller asks (the write is a conditional upsert).

Restart recovery: :meth:`Store.channels` and :meth:`Store.latest` give back everything a node
needs to resume: its payer channels (to keep counting from the last cumulative amount it signed)
and the vouchers it holds as payee (to claim what it is owed).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ChannelRecord", "Store", "VoucherRecord"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS channels (
    channel_id  TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('payer', 'payee')),
    peer        TEXT NOT NULL,
    payer       TEXT NOT NULL,
    payee       TEXT NOT NULL,
    deposit     TEXT NOT NULL,
    closing     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (channel_id, role)
);
CREATE TABLE IF NOT EXISTS vouchers (
    channel_id  TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('sent', 'received')),
    cumulative  TEXT NOT NULL,
    signature   BLOB NOT NULL,
    count       INTEGER NOT NULL DEFAULT 1,
    updated     REAL NOT NULL,
    claimed     TEXT NOT NULL DEFAULT '0',
    PRIMARY KEY (channel_id, role)
);
CREATE TABLE IF NOT EXISTS meta (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tx_hash     TEXT NOT NULL,
    channels    INTEGER NOT NULL,
    amount      TEXT NOT NULL,
    gas_used    INTEGER NOT NULL,
    at          REAL NOT NULL
);
"""
# Amounts are uint256: stored as decimal TEXT (sqlite integers stop at 2**63) and compared as
# integers in Python, never in SQL.


@dataclass(frozen=True)
class VoucherRecord:
    """A voucher as stored: ``role`` is ``sent`` (we are the payer) or ``received`` (payee)."""

    channel_id: int
    role: str
    cumulative: int
    signature: bytes
    claimed: int = 0
    count: int = 1


@dataclass(frozen=True)
class ChannelRecord:
    """A channel this node pays through (``payer``) or is paid through (``payee``)."""

    channel_id: int
    role: str
    peer: str
    payer: str
    payee: str
    deposit: int
    closing: bool = False


class Store:
    """The node's sqlite database (WAL, ``synchronous=FULL``).

    :param path: database file; ``":memory:"`` for tests that need no durability.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        #: in-memory mirror of the latest cumulative per (channel, role), for conditional upserts
        self._latest: dict[tuple[int, str], int] = {
            (int(cid), role): int(cum)
            for cid, role, cum in self._db.execute("SELECT channel_id, role, cumulative FROM vouchers")
        }

    def close(self) -> None:
        """Close the database (a checkpoint folds the WAL back into the main file)."""
        self._db.close()

    @property
    def journal_mode(self) -> str:
        """The journal mode sqlite actually uses (``wal`` for a file database)."""
        return self._db.execute("PRAGMA journal_mode").fetchone()[0]

    @property
    def synchronous(self) -> int:
        """sqlite's ``synchronous`` level (2 = FULL)."""
        return self._db.execute("PRAGMA synchronous").fetchone()[0]

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        """A stored setting (e.g. the deployment this store belongs to), None if unset."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Store a setting durably."""
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------------ vouchers

    def record_vouchers(self, records: Iterable[VoucherRecord]) -> int:
        """Durably store vouchers in one transaction; returns how many raised a stored amount.

        A voucher at or below the stored cumulative amount of its (channel, role) is ignored.
        """
        now = time.time()
        changed = 0
        rows = []
        best: dict[tuple[int, str], VoucherRecord] = {}
        for r in records:
            key = (r.channel_id, r.role)
            if r.cumulative > self._latest.get(key, -1) and (key not in best or r.cumulative > best[key].cumulative):
                best[key] = r
        for r in best.values():
            rows.append((str(r.channel_id), r.role, str(r.cumulative), bytes(r.signature), now))
            changed += 1
        if not rows:
            return 0
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO vouchers (channel_id, role, cumulative, signature, updated) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (channel_id, role) DO UPDATE SET cumulative = excluded.cumulative, "
                "signature = excluded.signature, updated = excluded.updated, count = count + 1",
                rows,
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        for key, r in best.items():
            self._latest[key] = r.cumulative
        return changed

    def latest(self, role: str) -> dict[int, VoucherRecord]:
        """The stored voucher of every channel for ``role`` (``sent`` or ``received``)."""
        out = {}
        for cid, cum, sig, claimed, count in self._db.execute(
            "SELECT channel_id, cumulative, signature, claimed, count FROM vouchers WHERE role = ?", (role,)
        ):
            out[int(cid)] = VoucherRecord(int(cid), role, int(cum), bytes(sig), int(claimed), int(count))
        return out

    def unclaimed(self) -> list[VoucherRecord]:
        """Received vouchers worth more than what was claimed on chain for them."""
        return [v for v in self.latest("received").values() if v.cumulative > v.claimed]

    def mark_claimed(self, claims: dict[int, int], tx_hash: str = "", amount: int = 0, gas_used: int = 0) -> None:
        """Record that ``claims[channel_id]`` (a cumulative amount) is claimed on chain."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for cid, cum in claims.items():
                row = db.execute(
                    "SELECT claimed FROM vouchers WHERE channel_id = ? AND role = 'received'", (str(cid),)
                ).fetchone()
                if row is not None and cum > int(row[0]):
                    db.execute(
                        "UPDATE vouchers SET claimed = ? WHERE channel_id = ? AND role = 'received'",
                        (str(cum), str(cid)),
                    )
            if tx_hash:
                db.execute(
                    "INSERT INTO claims (tx_hash, channels, amount, gas_used, at) VALUES (?, ?, ?, ?, ?)",
                    (tx_hash, len(claims), str(amount), gas_used, time.time()),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def claims(self) -> list[tuple[str, int, int, int]]:
        """Claim transactions: ``(tx_hash, channels, amount_wei, gas_used)``."""
        return [
            (h, n, int(a), g)
            for h, n, a, g in self._db.execute("SELECT tx_hash, channels, amount, gas_used FROM claims")
        ]

    # ------------------------------------------------------------------ channels

    def save_channel(self, ch: ChannelRecord) -> None:
        """Insert or replace a channel (durably)."""
        self._db.execute(
            "INSERT OR REPLACE INTO channels (channel_id, role, peer, payer, payee, deposit, closing) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (str(ch.channel_id), ch.role, ch.peer, ch.payer, ch.payee, str(ch.deposit), int(ch.closing)),
        )

    def mark_closing(self, channel_id: int, role: str = "payer") -> None:
        """Record that the payer started closing a channel."""
        self._db.execute("UPDATE channels SET closing = 1 WHERE channel_id = ? AND role = ?", (str(channel_id), role))

    def channels(self, role: str | None = None) -> list[ChannelRecord]:
        """Stored channels, optionally only those of one role."""
        query = "SELECT channel_id, role, peer, payer, payee, deposit, closing FROM channels"
        args: tuple = ()
        if role is not None:
            query += " WHERE role = ?"
            args = (role,)
        return [
            ChannelRecord(int(c), r, p, a, b, int(d), bool(cl))
            for c, r, p, a, b, d, cl in self._db.execute(query, args)
        ]
