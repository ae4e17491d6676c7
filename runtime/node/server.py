"""``python -m runtime.node --config FILE``: one live node of the mesh.

The thin asyncio layer around :class:`runtime.node.protocol.NodeCore` (which holds all the logic and
never touches a socket). This module owns the sockets, the clock, the sqlite store, the chain and
the process's lifecycle:

* **TCP**: a listening server plus one dialler per configured peer (the node with the smaller id
  dials unless the config says otherwise); frames go through :class:`runtime.node.wire.FrameDecoder`
  (size limit, strict decoding); a protocol error closes that connection only. Link latency is
  emulated by delaying each connection's writes by the peer's configured ``latency_ms``.
* **Timers**: ``NodeCore.next_timer`` schedules the next ``poll``; handshakes and idle
  connections time out inside the core (timeouts on every read).
* **Durability**: the core's :class:`~runtime.node.protocol.Durable` actions of one event-loop turn are
  written in *one* sqlite transaction (WAL, ``synchronous=FULL``) before their frames (a voucher
  acknowledgement, a voucher) are sent: group commit.
* **Chain** (web3, imported after the node is listening, so startup stays well under a second):
  a channel per peer opened at start (or restored from the store), announced channels read on
  chain, vouchers claimed in batches every ``claim_interval_s`` and at shutdown, payer channels
  closed at shutdown; payer channels whose challenge period is over are finalised at the next start.
* **Signals**: SIGTERM/SIGINT drain gracefully (stop emitting, refuse new pieces, let acks and
  vouchers settle for ``drain_s``, say bye, claim, close); SIGUSR1 starts the node's streams.
* **Observability**: JSON-lines logs on stderr (``log_file`` too), a stats JSON file rewritten
  twice a second, and a Prometheus endpoint on ``metrics_port``.

User mistakes (bad config, missing key, chain id mismatch) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import math
import os
import signal
import sqlite3
import sys
import time
import urllib.request
from pathlib import Path

from runtime.node.config import ConfigError, NodeConfig, load_config, read_key
from runtime.node.protocol import (
    CheckChannel,
    Close,
    Durable,
    NodeCore,
    NodeSettings,
    PeerSpec,
    Send,
    SendSealed,
    StreamSpec,
)
from runtime.node.store import ChannelRecord, Store, VoucherRecord
from runtime.node.wire import Bye, FrameDecoder, ProtocolError, encode

__all__ = ["Node", "main"]

_T0 = time.perf_counter()
#: Bytes queued to a peer that does not read before its connection is dropped.
_MAX_UNSENT = 16 * 1024 * 1024
#: Seconds a drain waits for its cancelled tasks before it settles and exits without them.
TASK_CANCEL_TIMEOUT_S = 5.0


async def cancel_and_wait(tasks: list[asyncio.Task], timeout: float) -> list[asyncio.Task]:
    """Cancel ``tasks`` and wait up to ``timeout`` seconds for them to end; return those still running
    (a task that swallowed its cancel, as ``asyncio.wait_for`` can on Python 3.11)."""
    for t in tasks:
        t.cancel()
    if not tasks:
        return []
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    return list(pending)


def _seconds_since_process_start() -> float:
    """Seconds since this process was started (from /proc on Linux; else since this module loaded)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _T0


class UsageError(Exception):
    """A user mistake: printed as one line, exit status 2."""


class JsonLog:
    """Structured logs: one JSON object per line on stderr (and a file, if given)."""

    def __init__(self, node_id: str, path: str | None = None) -> None:
        self.node_id = node_id
        self._file = open(path, "a", buffering=1) if path else None  # noqa: SIM115

    def __call__(self, event: str, **fields) -> None:
        line = json.dumps({"ts": round(time.time(), 4), "node": self.node_id, "event": event, **fields}, default=str)
        print(line, file=sys.stderr, flush=True)
        if self._file is not None:
            self._file.write(line + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class _Conn(asyncio.Protocol):
    """One TCP connection: bytes in -> frames -> the node; frames out, delayed by the link latency."""

    def __init__(self, node: Node, outbound: bool, expected: str | None = None) -> None:
        self.node = node
        self.outbound = outbound
        self.expected = expected
        self.id = node.new_conn_id()
        self.decoder = FrameDecoder(node.cfg.behaviour.max_frame)
        self.transport: asyncio.Transport | None = None
        self.delay = 0.0
        self.closing = False
        self._out: list[bytes] = []
        if expected is not None:
            self.delay = node.link_delay.get(expected, 0.0)

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=4 * 1024 * 1024)
        self.node.conns[self.id] = self
        peername = transport.get_extra_info("peername")
        source = str(peername[0]) if isinstance(peername, tuple) and peername else None
        core = self.node.core
        self.node.apply(core.connection_made(self.id, self.outbound, time.time(), self.expected, source))

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        node = self.node
        try:
            msgs = self.decoder.feed(data)
        except ProtocolError as exc:
            node.apply(node.core.protocol_error(self.id, str(exc)))
            return
        core, now = node.core, time.time()
        for msg in msgs:
            if self.closing:
                break
            node.apply(core.frame_received(self.id, msg, now))
            if self.delay == 0.0 and self.expected is None:
                peer = core.conns.get(self.id)
                if peer is not None and peer.peer is not None:
                    self.expected = peer.peer
                    self.delay = node.link_delay.get(peer.peer, 0.0)
        node.wake()

    def connection_lost(self, exc) -> None:
        self.closing = True
        self.node.conns.pop(self.id, None)
        self.node.apply(self.node.core.connection_lost(self.id))

    def send(self, frame: bytes) -> None:
        """Queue a frame; the frames of one event-loop turn leave in one write (one syscall)."""
        if self.closing or self.transport is None:
            return
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush_out)
        self._out.append(frame)

    def _flush_out(self) -> None:
        data, self._out = b"".join(self._out), []
        if not data:
            return
        if self.delay > 0:
            asyncio.get_running_loop().call_later(self.delay, self._write, data)
        else:
            self._write(data)

    def _write(self, data: bytes) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        if t.get_write_buffer_size() > _MAX_UNSENT:
            self.node.apply(self.node.core.protocol_error(self.id, "peer not reading: send buffer full"))
            t.abort()
            return
        t.write(data)

    def close(self) -> None:
        if self.closing:
            return
        self._flush_out()
        self.closing = True
        if self.transport is not None:
            loop = asyncio.get_running_loop()
            # let delayed frames (the bye) go out first
            loop.call_later(self.delay + 0.01, self.transport.close)


class Node:
    """A running node: config, core, store, sockets, chain, metrics.

    :param cfg: the validated configuration.
    :param policy: the routing policy (``agents.policies.resolve_policy``).
    :param key: the node's private key (None: offline, cannot pay).
    :param deployment: ``chain_id:genesis_hash:contract`` (or ``offline:...``); the store must match it.
    :param attacker: the attacker policy of a ``learned`` node (``agents.attacker.load_attacker``).
    """

    def __init__(self, cfg: NodeConfig, policy, key: str | None, deployment: str = "", attacker=None) -> None:
        from runtime.chain.vouchers import VoucherSigner, VoucherVerifier

        self.cfg = cfg
        self._key = key  # held for the chain client only; never logged nor written
        self.log = JsonLog(cfg.node_id, cfg.log_file)
        b = cfg.behaviour
        ch = cfg.chain
        self.signer = VoucherSigner(key, ch.chain_id, ch.contract) if key else None
        self.verifier = VoucherVerifier(ch.chain_id, ch.contract)
        self.address = self.signer.address if self.signer else "0x" + "0" * 40
        self.store = Store(cfg.store)
        # A store belongs to one deployment (chain, genesis, contract): channel ids of another
        # deployment would mix with ours (a fresh anvil reuses the same contract address and ids).
        owner = self.store.get_meta("deployment")
        if owner is not None and owner != deployment:
            self.store.close()
            raise UsageError(f"store '{cfg.store}' belongs to another deployment ({owner}); use a new store path")
        self.store.set_meta("deployment", deployment)
        received = self.store.latest("received")
        settings = NodeSettings(
            node_id=cfg.node_id,
            address=self.address,
            kind=b.kind,
            capacity=b.capacity,
            claimed_bw=b.claimed_bw,
            base_cost=b.base_cost,
            price_factor=b.price_factor,
            step_s=b.step_ms / 1000.0,
            queue_limit=b.queue_limit,
            wei_per_unit=b.wei_per_unit,
            unpaid_limit_wei=b.unpaid_limit_wei,
            handshake_timeout_s=b.handshake_timeout_s,
            idle_timeout_s=b.idle_timeout_s,
            payment=cfg.payment,
            directory=dict(cfg.directory),
            hello_timeout_s=b.hello_timeout_s,
            max_pending_handshakes=b.max_pending_handshakes,
            max_pending_per_source=b.max_pending_per_source,
            min_piece_size=b.min_piece_size,
            max_piece_size=b.max_piece_size,
            price_ceiling=b.price_ceiling,
            max_quote_jump=b.max_quote_jump,
            quote_step_up=b.quote_step_up,
            chain_check_interval_s=b.chain_check_interval_s,
            late_receipt_window_s=b.late_receipt_window_s,
            max_inflight_per_peer=b.max_inflight_per_peer,
            reconcile_window_s=b.reconcile_window_s,
            drop_probability=b.drop_probability,
            honest_steps=b.honest_steps,
            attack_steps=b.attack_steps,
            value_threshold=math.inf if b.value_threshold is None else b.value_threshold,
            blame_wait_s=b.blame_wait_s,
            sign_custody=b.sign_custody,
            batch_signatures=b.batch_signatures,
            gossip=b.gossip,
            gossip_period_s=b.gossip_period_s,
            allies=tuple(b.allies),
            streams=[
                StreamSpec(
                    s.subscribers,
                    s.rate,
                    s.value,
                    s.deadline_slack,
                    s.payload_bytes,
                    s.deadline_factor,
                    s.route_steps,
                    s.emit_for_s,
                )
                for s in cfg.streams
            ],
            seed=cfg.seed,
        )
        peers = [PeerSpec(p.node_id, p.host, p.port, p.address, p.latency_ms) for p in cfg.peers]
        self.link_delay = {p.node_id: p.latency_ms / 1000.0 for p in cfg.peers}
        from runtime.node.receipts import KeySigner

        # one coincurve key for the handshake's auth and every receipt (never logged)
        sign = KeySigner(key).sign if key else None
        from runtime.node.attackers import ATTACK_KINDS, AttackerCore
        from runtime.node.learned import LEARNED_KIND, LearnedCore

        if b.kind in ATTACK_KINDS:  # a wire-level attacker for test meshes (runtime.node.attackers)
            self.core: NodeCore = AttackerCore(
                settings, peers, policy, self.signer, self.verifier, received, self._core_log, sign,
                attack_rate=b.attack_rate,
            )  # fmt: skip
        elif b.kind == LEARNED_KIND:  # played by an attacker policy (runtime.node.learned)
            if attacker is None:
                self.store.close()
                raise UsageError("behaviour.kind learned: no attacker policy given")
            self.core = LearnedCore(
                settings, peers, policy, self.signer, self.verifier, received, self._core_log, sign,
                attacker=attacker, allies=b.allies,
            )  # fmt: skip
        else:
            self.core = NodeCore(settings, peers, policy, self.signer, self.verifier, received, self._core_log, sign)
        #: the configured peers the core keeps (at most SLOTS, nearest first); others are ignored
        self.peers = [p for p in cfg.peers if p.node_id in self.core.peers]
        if len(self.peers) < len(cfg.peers):
            dropped = sorted({p.node_id for p in cfg.peers} - {p.node_id for p in self.peers})
            self.log("peers_ignored", peers=dropped, reason="more peers than neighbour slots")
        self.conns: dict[int, _Conn] = {}
        self._conn_seq = 0
        self._durable: list[Durable] = []
        self._flush_scheduled = False
        # The turn's sealed sends and, per connection, every frame queued behind one (in order)
        self._held: dict[int, list[Send | SendSealed]] = {}
        self._turn_end_scheduled = False
        self._commit_inflight = False
        self._db_thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._stopped = False
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()  # finished ones remove themselves
        self.server: asyncio.Server | None = None
        self.chain = None  # StreamChannelsClient once connected
        self._chain_lock = asyncio.Lock()
        self.gas_used = 0
        self.flow_checker = None  # runtime.settlement.flow_check.FlowChecker when cfg.settlement is set
        self.ready_s = 0.0
        self.port = cfg.listen.port

    # ------------------------------------------------------------------ plumbing

    def _core_log(self, event: str, **fields) -> None:
        if event != "no_route":
            self.log(event, **fields)

    @property
    def stopping(self) -> bool:
        """True once SIGTERM/SIGINT asked this node to drain; long-running loops end on it."""
        return self._stop.is_set()

    def _spawn(self, coro) -> asyncio.Task:
        """Run ``coro`` as a task kept until it finishes (then dropped: no unbounded task list)."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def new_conn_id(self) -> int:
        self._conn_seq += 1
        return self._conn_seq

    def apply(self, actions: list) -> None:
        """Carry out the core's actions (what is to be signed or paid waits for the turn's end)."""
        if self.core.payments_due:
            self.end_turn_soon()
        for act in actions:
            if isinstance(act, Send | SendSealed):
                held = self._held.get(act.conn)
                if held is not None or isinstance(act, SendSealed):
                    # behind a frame still to be sealed on this connection: keep the order
                    if held is None:
                        held = self._held[act.conn] = []
                        self.end_turn_soon()
                    held.append(act)
                else:
                    self._send(act)
            elif isinstance(act, Durable):
                self._durable.append(act)
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    asyncio.get_running_loop().call_soon(self._flush)
            elif isinstance(act, Close):
                if act.conn in self._held:  # what was queued before the close still goes out first
                    self._end_turn()
                conn = self.conns.get(act.conn)
                if conn is not None:
                    self.log("close", conn=act.conn, peer=conn.expected, reason=act.reason)
                    conn.close()
            elif isinstance(act, CheckChannel):
                self._spawn(self._check_channel(act))

    def _send(self, act: Send) -> None:
        conn = self.conns.get(act.conn)
        if conn is None:
            return
        try:
            frame = encode(act.msg)
        except ProtocolError as exc:  # never emit what a neighbour's decoder must reject
            self.core.rejections["unsendable"] = self.core.rejections.get("unsendable", 0) + 1
            self.log("unsendable", conn=act.conn, error=str(exc))
            return
        conn.send(frame)

    def end_turn_soon(self) -> None:
        """Have :meth:`_end_turn` run once, after the callbacks of this turn of the event loop."""
        if not self._turn_end_scheduled:
            self._turn_end_scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self._end_turn)
            except RuntimeError:  # no loop running (start-up, tear-down): the turn ends now
                self._end_turn()

    def _end_turn(self) -> None:
        """The turn's end: one voucher per peer paid this turn, then one signature over the turn's
        receipts and acceptances (``runtime.node.sealing``), whose frames leave in their place."""
        self._turn_end_scheduled = False
        self.apply(self.core.flush_payments())
        held, self._held = self._held, {}
        if not held:
            return
        sealed = iter(self.core.seal([a for acts in held.values() for a in acts if isinstance(a, SendSealed)]))
        for acts in held.values():
            for act in acts:
                self._send(next(sealed) if isinstance(act, SendSealed) else act)

    def _flush(self) -> None:
        """Group commit: every pending record in one transaction on the store's thread, then the
        frames that waited for it. While a commit is on disk the next batch gathers (the event loop
        never waits for an fsync)."""
        self._flush_scheduled = False
        if self._commit_inflight or not self._durable:
            return
        batch, self._durable = self._durable, []
        self._commit_inflight = True
        fut = asyncio.get_running_loop().run_in_executor(self._db_thread, self._commit, batch)
        fut.add_done_callback(lambda f: self._committed(batch, f))

    def _commit(self, batch: list[Durable]) -> None:
        for d in batch:
            for r in d.records:
                if isinstance(r, ChannelRecord):
                    self.store.save_channel(r)
        vouchers = [r for d in batch for r in d.records if isinstance(r, VoucherRecord)]
        if vouchers:
            self.store.record_vouchers(vouchers)

    def _committed(self, batch: list[Durable], fut: asyncio.Future) -> None:
        self._commit_inflight = False
        if fut.cancelled() or fut.exception() is not None:
            # Not durable, so never acknowledged: the peers will see no vack / voucher for these.
            self.log("store_error", error=str(fut.exception() if not fut.cancelled() else "cancelled")[:300])
        else:
            for d in batch:
                self.apply(d.then)
        if self._durable:
            self._flush()

    async def _db(self, fn, *args):
        """Run a store call on the store's own thread (all sqlite work happens there, in order)."""
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, fn, *args)

    async def _settle_commits(self) -> None:
        """Wait until every pending record is on disk (and its frames handed to the sockets)."""
        for _ in range(2000):
            if self._durable and not self._commit_inflight:
                self._flush()
            if not self._durable and not self._commit_inflight:
                return
            await asyncio.sleep(0.005)

    def wake(self) -> None:
        """Run the core's timers now if due, and schedule the next."""
        now = time.time()
        at = self.core.next_timer(now)
        if at <= now:
            self._on_timer()
            return
        if at < self._timer_at - 0.0005:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = at
            self._timer = asyncio.get_running_loop().call_later(max(0.0, at - now), self._on_timer)

    def _on_timer(self) -> None:
        # One timer chain only: a direct call from wake() replaces the pending handle.
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, float("inf")
        if self._stopped:
            return
        self.apply(self.core.poll(time.time()))
        now = time.time()
        at = max(self.core.next_timer(now), now + 0.0005)
        self._timer_at = at
        self._timer = asyncio.get_running_loop().call_later(at - now, self._on_timer)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        self.server = await loop.create_server(lambda: _Conn(self, False), cfg.listen.host, cfg.listen.port)
        self.port = self.server.sockets[0].getsockname()[1]
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGUSR1, self.start_streams)
        if cfg.metrics_port is not None:
            self._start_metrics(cfg.metrics_port)
        self.ready_s = _seconds_since_process_start()
        self.log(
            "ready",
            port=self.port,
            address=self.address,
            policy=cfg.policy,
            kind=cfg.behaviour.kind,
            attacker_policy=cfg.attacker_policy,
            startup_s=round(self.ready_s, 4),
            torch_imported="torch" in sys.modules,
            settlement_checks=self._flow_summary(),
        )
        self.wake()
        for p in self.peers:
            dial = p.dial if p.dial is not None else cfg.node_id < p.node_id
            if dial:
                self._spawn(self._dialler(p))
        self._spawn(self._stats_loop())
        if cfg.behaviour.kind == "handshake_flooder":
            from runtime.node.attackers import flood_handshakes

            self._spawn(flood_handshakes(self, cfg.behaviour.attack_rate))
        if cfg.chain.rpc_url:
            self._spawn(self._chain_start())
        else:
            self._offline_channels()
        if cfg.start_streams:
            self.start_streams()

    def start_streams(self) -> None:
        """Begin emitting this node's streams."""
        if not self.core.draining:
            self.core.start_streams(time.time())
            self.log("streams_started", streams=len(self.cfg.streams))
            self.wake()

    async def _dialler(self, p) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.1
        while not self._stop.is_set() and not self.core.draining:
            peer = self.core.peers.get(p.node_id)
            if (
                peer is not None
                and peer.conn is None
                and not any(c.expected == p.node_id and not c.closing for c in self.conns.values())
            ):
                try:
                    async with asyncio.timeout(2.0):  # not wait_for: it can swallow a cancel on 3.11
                        await loop.create_connection(lambda p=p: _Conn(self, True, p.node_id), p.host, p.port)
                    backoff = 0.1
                except (OSError, TimeoutError):
                    backoff = min(backoff * 2, 1.0)
            await asyncio.sleep(backoff)

    async def run(self) -> int:
        await self.start()
        await self._stop.wait()
        await self.drain()
        return 0

    async def drain(self) -> None:
        """Graceful shutdown: stop emitting, settle in-flight acks and vouchers, bye, claim, close."""
        self.log("draining")
        self.core.stop()
        await asyncio.sleep(self.cfg.behaviour.drain_s)
        if self.server is not None:
            self.server.close()
        for conn in list(self.conns.values()):
            conn.send(encode(Bye("shutting down")))
            conn.close()
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        await self._settle_commits()
        await asyncio.sleep(0.05)
        stuck = await cancel_and_wait(list(self._tasks), TASK_CANCEL_TIMEOUT_S)
        if stuck:  # a task that ignores its cancel must not hold the store and the claim hostage
            self.log("tasks_stuck", tasks=sorted(t.get_name() for t in stuck)[:20], count=len(stuck))
        await self._settle_commits()
        if self.cfg.chain.rpc_url:
            try:
                await self._ensure_chain()
                await self.claim()
                if self.cfg.chain.release_on_exit:
                    await self._release_payee_channels()
                if self.cfg.chain.close_on_exit:
                    await self._close_payer_channels()
            except Exception as exc:  # the chain being away must not lose the store: it is claimed at restart
                self.log("chain_error", during="shutdown", error=" ".join(str(exc).split())[:300])
        self._write_stats(final=True)
        await self._db(self.store.close)
        self._db_thread.shutdown(wait=True)
        self.log("stopped")
        self.log.close()

    # ------------------------------------------------------------------ chain

    async def _run_chain(self, fn, *args):
        async with self._chain_lock:
            return await asyncio.to_thread(fn, *args)

    async def _ensure_chain(self):
        if self.chain is None:

            def connect():
                from runtime.chain.client import StreamChannelsClient, connect

                w3 = connect(self.cfg.chain.rpc_url)
                return StreamChannelsClient(w3, self.cfg.chain.contract, self._key)

            self.chain = await self._run_chain(connect)
        return self.chain

    def _receipt_gas(self, receipt) -> None:
        if receipt is not None:
            self.gas_used += int(receipt["gasUsed"])

    async def _chain_start(self) -> None:
        """Claim what a previous life was owed, finalise expired channels, open or restore one channel
        per peer (retrying while the chain is away), then claim every ``claim_interval_s``."""
        delay = 1.0
        while True:
            try:
                await self._setup_channels()
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log("chain_error", during="start", error=" ".join(str(exc).split())[:300], retry_s=delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 30.0)
        while True:
            await asyncio.sleep(self.cfg.chain.claim_interval_s)
            try:
                await self.claim()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the chain is away for now: the vouchers wait in the store
                self.log("chain_error", during="claim", error=" ".join(str(exc).split())[:300])

    def _start_flow_check(self, chain) -> None:
        """Check every finalised settlement root against this node's own reading of the chain."""
        import logging

        from runtime.chain.client import SettlementAVSClient
        from runtime.settlement.flow_check import FlowChecker
        from runtime.settlement.operator import ClaimReader

        st = self.cfg.settlement
        node_log = self.log

        class _ToJsonLog(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                event = "settlement_mismatch" if record.levelno >= logging.ERROR else "settlement_check"
                node_log(event, message=record.getMessage()[:500])

        flow_log = logging.getLogger("openstreaming.flowcheck")
        flow_log.setLevel(logging.INFO)
        flow_log.addHandler(_ToJsonLog())
        reader = ClaimReader(chain.w3, self.cfg.chain.contract)
        avs = SettlementAVSClient(chain.w3, st.avs)
        first = chain.w3.eth.block_number // st.epoch_blocks
        self.flow_checker = FlowChecker(avs, reader, self.address, st.epoch_blocks, st.operator_urls, st.poll_s,
                                        next_epoch=first)  # fmt: skip
        self.flow_checker.start()

    async def _setup_channels(self) -> None:
        chain = await self._ensure_chain()
        if self.cfg.settlement is not None and self.flow_checker is None:
            self._start_flow_check(chain)
        await self.claim()
        await self._finalize_expired()
        stored = {c.peer: c for c in await self._db(self.store.channels, "payer") if not c.closing}
        sent = await self._db(self.store.latest, "sent")
        for p in self.peers:
            rec = stored.get(p.node_id)
            if rec is None and p.address:
                rec = await self._adopt_channel(chain, p)
            if rec is None and self.cfg.chain.deposit_wei > 0 and p.address:
                cid = await self._run_chain(
                    chain.open, p.address, self.cfg.chain.challenge_period_s, self.cfg.chain.deposit_wei
                )
                self._receipt_gas(chain.last_receipt)
                rec = ChannelRecord(cid, "payer", p.node_id, self.address, p.address, self.cfg.chain.deposit_wei)
                await self._db(self.store.save_channel, rec)
                self.log("channel_opened", peer=p.node_id, channel=cid, deposit=rec.deposit)
            peer = self.core.peers.get(p.node_id)
            if rec is not None and peer is not None and peer.pay_channel != rec.channel_id:
                cum = sent[rec.channel_id].cumulative if rec.channel_id in sent else 0
                self.apply(self.core.set_pay_channel(p.node_id, rec.channel_id, rec.deposit, cum))
        self.wake()

    async def _adopt_channel(self, chain, p) -> ChannelRecord | None:
        """A usable channel this key already opened to ``p`` on chain that the store does not know
        (the node died between the ``open`` transaction and writing it down): take it back."""

        def find():
            logs = chain.contract.events.ChannelOpened().get_logs(
                argument_filters={"payer": self.address, "payee": p.address}, from_block=self.cfg.chain.from_block
            )
            for log in sorted(logs, key=lambda e: e["args"]["channelId"], reverse=True):
                cid = int(log["args"]["channelId"])
                st = chain.channel(cid)
                if not st.settled and st.closes_at == 0:
                    return cid, int(st.deposit)
            return None

        try:
            found = await self._run_chain(find)
        except Exception as exc:  # a provider refusing log queries only costs a new channel
            self.log("chain_error", during="adopt_channel", error=" ".join(str(exc).split())[:200])
            return None
        if found is None:
            return None
        cid, deposit = found
        rec = ChannelRecord(cid, "payer", p.node_id, self.address, p.address, deposit)
        await self._db(self.store.save_channel, rec)
        self.log("channel_adopted", peer=p.node_id, channel=cid, deposit=deposit)
        return rec

    def _offline_channels(self) -> None:
        """No chain: channel ids derived from the pair; vouchers are signed, checked and stored only."""
        from runtime.chain.vouchers import keccak256

        sent = self.store.latest("sent")  # what this node signed in an earlier life is its ledger
        for p in self.peers:
            cid = int.from_bytes(keccak256(f"{self.cfg.node_id}->{p.node_id}".encode())[:7], "big")
            cum = sent[cid].cumulative if cid in sent else 0
            self.apply(self.core.set_pay_channel(p.node_id, cid, self.cfg.chain.deposit_wei, cum))

    async def _check_channel(self, act: CheckChannel) -> None:
        try:
            if not self.cfg.chain.rpc_url:
                peer = self.core.peers[act.peer]
                args = (peer.address, self.address, self.cfg.chain.deposit_wei, True)
            else:
                chain = await self._ensure_chain()
                st = await self._run_chain(chain.channel, act.channel_id)
                args = (st.payer, st.payee, st.deposit, not st.settled and st.closes_at == 0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.log("chain_error", during="check_channel", channel=act.channel_id, error=str(exc)[:200])
            self.core.channel_check_failed(act.peer, act.channel_id)
            return
        self.apply(self.core.channel_checked(act.conn, act.channel_id, *args))
        self.wake()

    async def claim(self) -> int:
        """Claim every stored voucher worth more than what was claimed; returns wei claimed."""
        todo = await self._db(self.store.unclaimed)
        if not todo or not self.cfg.chain.rpc_url:
            return 0
        chain = await self._ensure_chain()
        # The chain may already hold a claim the store missed (killed between tx and bookkeeping).
        states = {}
        for v in todo:
            states[v.channel_id] = await self._run_chain(chain.channel, v.channel_id)
        if self.cfg.chain.settlement == "net":  # vouchers go to the operators' root: claim only what is closing
            from runtime.settlement.netting import direct_claim_due

            now = int((await self._run_chain(chain.w3.eth.get_block, "latest"))["timestamp"])
            todo = [v for v in todo if direct_claim_due(states[v.channel_id].closes_at, now)]
        batch = [
            (v.channel_id, v.cumulative, v.signature)
            for v in todo
            if v.cumulative > states[v.channel_id].claimed and not states[v.channel_id].settled
        ]
        already = {v.channel_id: states[v.channel_id].claimed for v in todo if states[v.channel_id].claimed > v.claimed}
        if already:
            await self._db(self.store.mark_claimed, already)
        if not batch:
            return 0
        receipt = await self._run_chain(chain.claim_batch, batch)
        self._receipt_gas(receipt)
        # The batch skips (ClaimSkipped) a voucher whose channel settled or expired meanwhile: book
        # what the contract says it paid, and mark skipped ones done so they are not retried forever.
        outcome = chain.claim_outcome(receipt)
        amount = outcome.amount
        for cid, reason in outcome.skipped.items():
            self.log("claim_skipped", channel=cid, reason=reason)
        await self._db(
            self.store.mark_claimed,
            {i: outcome.claimed.get(i, c) for i, c, _ in batch},
            receipt["transactionHash"].to_0x_hex(),
            amount,
            int(receipt["gasUsed"]),
        )
        self.log("claimed", channels=len(batch), wei=amount, gas=int(receipt["gasUsed"]))
        return amount

    async def _close_payer_channels(self) -> None:
        chain = await self._ensure_chain()
        for rec in await self._db(self.store.channels, "payer"):
            if rec.closing:
                continue
            try:
                st = await self._run_chain(chain.channel, rec.channel_id)
                if not (st.settled or st.closes_at):
                    await self._run_chain(chain.start_close, rec.channel_id)
                    self._receipt_gas(chain.last_receipt)
                    self.log("close_started", channel=rec.channel_id, peer=rec.peer)
                await self._db(self.store.mark_closing, rec.channel_id)
            except Exception as exc:  # e.g. the payee released it meanwhile: the next channel still closes
                self.log("chain_error", during="close", channel=rec.channel_id, error=" ".join(str(exc).split())[:200])

    async def _release_payee_channels(self) -> None:
        """Payee, leaving for good: after the final claim, settle our incoming channels now, so the
        payers get their refunds at once instead of after the challenge period."""
        chain = await self._ensure_chain()
        for rec in await self._db(self.store.channels, "payee"):
            try:
                st = await self._run_chain(chain.channel, rec.channel_id)
                if st.settled:
                    continue
                await self._run_chain(chain.release, rec.channel_id)
                self._receipt_gas(chain.last_receipt)
                self.log("released", channel=rec.channel_id, peer=rec.peer, refund=st.deposit - st.claimed)
            except Exception as exc:
                self.log(
                    "chain_error", during="release", channel=rec.channel_id, error=" ".join(str(exc).split())[:200]
                )

    async def _finalize_expired(self) -> None:
        chain = self.chain
        for rec in await self._db(self.store.channels, "payer"):
            if not rec.closing:
                continue
            st = await self._run_chain(chain.channel, rec.channel_id)
            now = await self._run_chain(lambda: chain.w3.eth.get_block("latest")["timestamp"])
            if not st.settled and st.closes_at and now >= st.closes_at:
                await self._run_chain(chain.finalize_close, rec.channel_id)
                self._receipt_gas(chain.last_receipt)
                self.log("finalized", channel=rec.channel_id, refund=st.deposit - st.claimed)

    # ------------------------------------------------------------------ observability

    def snapshot(self) -> dict:
        snap = self.core.snapshot()
        snap.update(
            address=self.address,
            port=self.port,
            ready=True,
            startup_s=self.ready_s,
            gas_used=self.gas_used,
            emitting=self.core.emitting,
            torch_imported="torch" in sys.modules,
            settlement_checks=self._flow_summary(),
            time=time.time(),
        )
        lat = self.core.forward_latencies[-5000:]
        if lat:
            s = sorted(lat)
            snap["forward_latency_p50_s"] = s[len(s) // 2]
            snap["forward_latency_p99_s"] = s[min(len(s) - 1, int(len(s) * 0.99))]
        return snap

    def _flow_summary(self) -> dict | None:
        if self.flow_checker is None:
            return None
        results = list(self.flow_checker.results)
        return {
            "epochs_checked": len(results),
            "mismatches": sum(not r.ok for r in results),
            "mismatched_epochs": [r.epoch for r in results if not r.ok],
        }

    def _write_stats(self, final: bool = False) -> None:
        path = self.cfg.stats_file
        if not path:
            return
        snap = self.snapshot()
        snap["final"] = final
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(snap, f)
        os.replace(tmp, path)

    async def _stats_loop(self) -> None:
        while True:
            self._write_stats()
            await asyncio.sleep(0.5)

    def _start_metrics(self, port: int) -> None:
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

        node = self

        class Collector:
            def collect(self):
                s = node.core.stats
                for name, key, doc in (
                    ("pieces_forwarded", "forwarded", "pieces handed to a neighbour"),
                    ("pieces_delivered", "delivered", "pieces delivered here on time"),
                    ("pieces_received", "received", "pieces accepted from neighbours"),
                    ("pieces_dropped", "dropped", "pieces dropped here"),
                    ("vouchers_sent", "vouchers_sent", "vouchers signed and sent"),
                    ("vouchers_received", "vouchers_received", "vouchers verified and stored"),
                    ("rejections", "rejected", "protocol violations that closed a connection"),
                    ("receipts_signed", "receipts_signed", "delivery receipts signed as the destination"),
                    ("receipts_verified", "receipts_verified", "delivery receipts checked and believed"),
                    ("forged_receipts", "forged_receipts", "fake delivery claims rejected (or, by a forger, sent)"),
                ):
                    yield CounterMetricFamily(f"openstreaming_{name}", doc, value=s[key])
                unpaid = GaugeMetricFamily(
                    "openstreaming_unpaid_credit_wei", "owed beyond the last voucher", labels=["peer"]
                )
                score = GaugeMetricFamily("openstreaming_peer_score", "coherence score of a peer", labels=["peer"])
                for peer in node.core.peers:
                    unpaid.add_metric([peer], node.core.unpaid_wei(peer))
                for peer, v in node.core.peer_scores().items():
                    score.add_metric([peer], v)
                yield unpaid
                yield score
                yield SummaryMetricFamily(
                    "openstreaming_decision_seconds",
                    "routing decision time (observe + score), per piece",
                    count_value=s["decisions"],
                    sum_value=s["decision_seconds"],
                )

        registry = CollectorRegistry()
        registry.register(Collector())
        start_http_server(port, addr="127.0.0.1", registry=registry)


# ----------------------------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------------------------


def _rpc(rpc_url: str, method: str, params: list):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(rpc_url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5.0) as response:
            return json.loads(response.read())["result"]
    except Exception as exc:
        raise UsageError(f"chain: cannot reach {rpc_url} ({exc.__class__.__name__})") from None


def _chain_id(rpc_url: str) -> int:
    return int(_rpc(rpc_url, "eth_chainId", []), 16)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.node",
        description="Run one live OpenStreaming node: forward story-pieces over TCP with a routing policy, "
        "pay neighbours with EIP-712 vouchers on payment channels, claim on chain.",
        epilog="Signals: SIGTERM/SIGINT drain gracefully (stop emitting, settle acks and vouchers, claim, start "
        "closing payer channels); SIGUSR1 starts the config's streams. The private key comes from the config's "
        "key_env or key_file (mode 600), never from the config itself. Exit status 2: a configuration mistake.",
    )
    parser.add_argument(
        "--config",
        required=True,
        type=Path,
        help="node configuration file (YAML or JSON; every key is documented in runtime/node/config.py)",
    )
    parser.add_argument(
        "--policy",
        help="override the config's policy: a baseline name (seed, shortest, random) or an exported policy "
        "directory (the config's default is checkpoints/default)",
    )
    parser.add_argument("--rpc-url", help="override the config's chain RPC URL (anvil or a testnet)")
    parser.add_argument("--port", type=int, help="override the config's listen port")
    parser.add_argument("--store", help="override the config's sqlite store path")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this loopback port")
    return parser


async def _amain(node: Node) -> int:
    return await node.run()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config)
        if args.policy:
            cfg.policy = args.policy
        if args.rpc_url:
            cfg.chain.rpc_url = args.rpc_url
        if args.port is not None:
            cfg.listen.port = args.port
        if args.store:
            cfg.store = args.store
        if args.metrics_port is not None:
            cfg.metrics_port = args.metrics_port
        key = read_key(cfg)
        if cfg.chain.rpc_url:
            if key is None:
                raise UsageError("chain: a key is needed to pay and claim (set key_env or key_file)")
            got = _chain_id(cfg.chain.rpc_url)
            if got != cfg.chain.chain_id:
                raise UsageError(f"chain: {cfg.chain.rpc_url} is chain {got}, the config expects {cfg.chain.chain_id}")
            genesis = (_rpc(cfg.chain.rpc_url, "eth_getBlockByNumber", ["0x0", False]) or {}).get("hash", "?")
            deployment = f"{got}:{genesis}:{cfg.chain.contract.lower()}"
        else:
            deployment = f"offline:{cfg.chain.chain_id}:{cfg.chain.contract.lower()}"
        if cfg.policy == "oracle":
            raise UsageError("policy 'oracle' needs the simulator's privileged view; a live node cannot run it")
        from agents.policies import PolicyError, resolve_policy

        try:
            policy = resolve_policy(cfg.policy)
        except PolicyError as err:
            raise UsageError(str(err)) from None
        attacker = None
        if cfg.attacker_policy is not None:
            from agents.attacker import AttackerLoadError, load_attacker

            try:
                attacker = load_attacker(cfg.attacker_policy)
            except AttackerLoadError as err:
                raise UsageError(str(err)) from None
        node = Node(cfg, policy, key, deployment, attacker)
    except (ConfigError, UsageError) as err:
        print(f"runtime.node: error: {err}", file=sys.stderr)
        return 2
    except (sqlite3.Error, OSError) as err:
        print(f"runtime.node: error: store '{cfg.store}': {err}", file=sys.stderr)
        return 2
    # not asyncio.run: its cleanup waits on every task left, and one that swallowed its cancel would
    # hold the exit forever; the drain has already cancelled them and waited a bounded time
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_amain(node))
    except OSError as err:
        print(f"runtime.node: error: {err.strerror or err}", file=sys.stderr)
        return 2
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())  # the chain calls' to_thread workers
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
