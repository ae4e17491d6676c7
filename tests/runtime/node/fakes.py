"""In-memory fakes that drive ``runtime.node.protocol.NodeCore`` instances against each other.

:class:`Fabric` plays the I/O layer: it carries every :class:`Send` through the real wire
encoder and :class:`FrameDecoder`, writes every :class:`Durable` to a real (in-memory) sqlite
:class:`Store` before doing its sends, answers :class:`CheckChannel` from a dict standing in for
the chain, and keeps a fake clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import ClassVar

from agents.baselines import get_baseline
from runtime.chain.anvil import DEV_PRIVATE_KEYS
from runtime.chain.vouchers import VoucherSigner, VoucherVerifier, sign_digest
from runtime.node.protocol import CheckChannel, Close, Durable, NodeCore, NodeSettings, PeerSpec, Send, SendSealed
from runtime.node.store import ChannelRecord, Store
from runtime.node.wire import FrameDecoder, encode

CHAIN_ID = 31337
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
DEPOSIT = 10**18


@dataclass
class FakeChain:
    """channel id -> (payer, payee, deposit, usable)."""

    channels: dict[int, tuple[str, str, int, bool]] = field(default_factory=dict)
    next_id: int = 1

    def open(self, payer: str, payee: str, deposit: int = DEPOSIT) -> int:
        cid = self.next_id
        self.next_id += 1
        self.channels[cid] = (payer, payee, deposit, True)
        return cid


class Fabric:
    """A handful of cores, wired by in-memory pipes carrying real frames."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.cores: dict[str, NodeCore] = {}
        self.stores: dict[str, Store] = {}
        self.logs: dict[str, list[tuple[str, dict]]] = {}
        self.chain = FakeChain()
        self.links: dict[tuple[str, int], tuple[str, int]] = {}  # (node, conn) -> (node, conn)
        self.decoders: dict[tuple[str, int], FrameDecoder] = {}
        self.closed: list[tuple[str, int, str]] = []
        self._next_conn = 1
        self.queue: deque = deque()
        self._pumping = False
        self.mute: set[str] = set()  # nodes whose incoming frames are dropped (hand-driven attackers)
        self.verifier = VoucherVerifier(CHAIN_ID, CONTRACT)

    def add(
        self,
        node_id: str,
        key_index: int,
        peers: list[str],
        core: type[NodeCore] = NodeCore,
        core_kwargs: dict | None = None,
        **settings,
    ) -> NodeCore:
        """A node; ``core`` and ``core_kwargs``: another core class (a learned attacker's) and its own arguments."""
        signer = VoucherSigner(DEV_PRIVATE_KEYS[key_index], CHAIN_ID, CONTRACT)
        addresses = {n: VoucherSigner(DEV_PRIVATE_KEYS[i], CHAIN_ID, CONTRACT).address for n, i in self._keys.items()}
        specs = [PeerSpec(p, latency_ms=10.0, address=addresses.get(p, "")) for p in peers]
        settings.setdefault("directory", {n: a for n, a in addresses.items() if n != node_id})
        log: list = []
        self.logs[node_id] = log
        core = core(
            NodeSettings(node_id=node_id, address=signer.address, **settings),
            specs,
            get_baseline("seed"),
            signer=signer,
            verifier=self.verifier,
            log=lambda event, **f: log.append((event, f)),
            sign_digest=lambda d, k=DEV_PRIVATE_KEYS[key_index]: sign_digest(k, d),
            **(core_kwargs or {}),
        )
        self.cores[node_id] = core
        self.stores[node_id] = Store(":memory:")
        return core

    _keys: ClassVar[dict[str, int]] = {}

    def connect(self, a: str, b: str) -> tuple[int, int]:
        ca, cb = self._next_conn, self._next_conn + 1
        self._next_conn += 2
        self.links[(a, ca)] = (b, cb)
        self.links[(b, cb)] = (a, ca)
        self.decoders[(a, ca)] = FrameDecoder()
        self.decoders[(b, cb)] = FrameDecoder()
        acts_a = self.cores[a].connection_made(ca, True, self.now, expected=b)
        acts_b = self.cores[b].connection_made(cb, False, self.now)
        self._do(a, acts_a)
        self._do(b, acts_b)
        self.run(a, [])
        return ca, cb

    def open_channel(self, payer: str, payee: str, deposit: int = DEPOSIT) -> int:
        cp, ce = self.cores[payer], self.cores[payee]
        cid = self.chain.open(cp.s.address, ce.s.address, deposit)
        self.run(payer, cp.set_pay_channel(payee, cid, deposit))
        return cid

    def inject(self, node: str, conn: int, data: bytes) -> None:
        """Raw bytes arriving at ``node`` on ``conn`` (decoded like the I/O layer does)."""
        from runtime.node.wire import ProtocolError

        core = self.cores[node]
        try:
            msgs = self.decoders[(node, conn)].feed(data)
        except ProtocolError as exc:
            self.run(node, core.protocol_error(conn, str(exc)))
            return
        for msg in msgs:
            self.run(node, core.frame_received(conn, msg, self.now))
        self.run(node, core.flush_payments())  # the end of the I/O layer's turn

    def run(self, node: str, actions: list) -> None:
        """Carry out actions; frames travel through a FIFO, in order, like TCP."""
        self._do(node, actions)
        if self._pumping:
            return
        self._pumping = True
        try:
            while self.queue:
                dest, conn, data = self.queue.popleft()
                while self.queue and self.queue[0][:2] == (dest, conn):  # one read takes what arrived together
                    data += self.queue.popleft()[2]
                if (dest, conn) in self.links and dest not in self.mute:
                    self.inject(dest, conn, data)
        finally:
            self._pumping = False

    def _do(self, node: str, actions: list) -> None:
        pending = [a for a in actions if isinstance(a, SendSealed)]
        if pending:  # the list's sealed sends under one signature, each in its place
            sealed = iter(self.cores[node].seal(pending))
            actions = [next(sealed) if isinstance(a, SendSealed) else a for a in actions]
        for act in actions:
            if isinstance(act, Send):
                dest = self.links.get((node, act.conn))
                if dest is not None:
                    self.queue.append((dest[0], dest[1], encode(act.msg)))
            elif isinstance(act, Durable):
                store = self.stores[node]
                vouchers = [r for r in act.records if not isinstance(r, ChannelRecord)]
                for r in act.records:
                    if isinstance(r, ChannelRecord):
                        store.save_channel(r)
                store.record_vouchers(vouchers)
                self.run(node, act.then)
            elif isinstance(act, CheckChannel):
                payer, payee, deposit, usable = self.chain.channels.get(act.channel_id, ("0x" + "0" * 40, "", 0, False))
                self.run(
                    node, self.cores[node].channel_checked(act.conn, act.channel_id, payer, payee, deposit, usable)
                )
            elif isinstance(act, Close):
                self.closed.append((node, act.conn, act.reason))
                other = self.links.pop((node, act.conn), None)
                self.run(node, self.cores[node].connection_lost(act.conn))
                if other is not None and other[0] in self.cores:
                    self.links.pop(other, None)
                    self.run(other[0], self.cores[other[0]].connection_lost(other[1]))

    def advance(self, seconds: float, step: float = 0.005) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            for name, core in list(self.cores.items()):
                self.run(name, core.poll(self.now))
                self.run(name, core.flush_payments())

    def reasons(self, node: str) -> list[str]:
        return [f["reason"] for e, f in self.logs[node] if e == "reject"]


def line(n: int = 3, learned: dict | None = None, **settings) -> Fabric:
    """Nodes n0 - n1 - ... in a line, all connected, channels both ways, routes exchanged.

    :param learned: node id -> attacker policy: those nodes are ``runtime.node.learned`` cores.
    """
    from runtime.node.learned import LEARNED_KIND, LearnedCore

    fab = Fabric()
    names = [f"n{i}" for i in range(n)]
    Fabric._keys = {name: i for i, name in enumerate(names)}
    for i, name in enumerate(names):
        peers = [names[j] for j in (i - 1, i + 1) if 0 <= j < n]
        if learned and name in learned:
            kw = {**settings, "kind": LEARNED_KIND}
            fab.add(name, i, peers, core=LearnedCore, core_kwargs={"attacker": learned[name]}, **kw)
        else:
            fab.add(name, i, peers, **settings)
    for i in range(n - 1):
        fab.connect(names[i], names[i + 1])
    for i in range(n - 1):
        fab.open_channel(names[i], names[i + 1])
        fab.open_channel(names[i + 1], names[i])
    fab.advance(0.6)
    return fab
