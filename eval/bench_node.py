"""Benchmark: pieces per second one live node forwards on loopback, paid on delivery with signed receipts and custody.

One real ``python -m runtime.node`` process (``b``, offline chain, unlimited capacity, the ``seed``
policy) sits between two peers that this benchmark plays over loopback TCP:

* ``a`` sends pieces addressed to ``c`` (a window of outstanding pieces) and pays ``b`` with signed
  vouchers; ``b`` verifies each voucher and stores it in sqlite (WAL, ``synchronous=FULL``) before
  acknowledging it;
* ``c`` receives the pieces ``b`` forwards, charges for each and answers each with a signed receipt;
  ``b`` verifies each receipt (the destination's signature over the piece it forwarded), relays it to
  ``a``, and signs, stores and sends vouchers to ``c``; ``b`` signs a custody acceptance in the ack of
  each piece it takes in (``runtime.node.acceptance``).

The live default (``on_delivery``) signs in batches (``behaviour.batch_signatures``,
``runtime.node.sealing``): the receipts and acceptances of one turn of the event loop share one
signature over their Merkle root, each frame carrying its proof, and the charges paid to a peer in
one turn make one voucher; ``a`` and ``c`` do the same per read. Each mode runs on a fresh node in
the same invocation: ``on_delivery``; ``on_delivery_unbatched`` (a signature per receipt, per
acceptance and per paid piece, as before batching); ``on_delivery_without_custody`` (batched, no
acceptances); ``per_hop`` (paid at the hop's ack, batched). (``a`` pays on the frame's arrival without
checking the receipt itself: it stands for the rest of the mesh, the node under test is ``b``.) The
figure is pieces/s arriving at ``c``; latency is from ``a``'s send to ``c``'s arrival (p50, p99) at
full load (it includes the window's queueing) and unloaded (one piece at a time), plus the node's own
arrival-to-forward latency.

The reference, measured in the same run on the same sockets and frames, is a pass-through relay
in this process that forwards the pieces without any protocol, decision or payment: the ratio is
the cost of the node's work per piece. The goal is 10,000 pieces/s paid on delivery with receipts
and custody (at least 4,000).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONTRACT = "0x0000000000000000000000000000000000000001"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m eval.bench node``."""
    parser.add_argument(
        "--seconds", type=float, default=4.0, help="measurement window per payment mode in seconds (default 4)"
    )
    parser.add_argument(
        "--modes",
        default="on_delivery,per_hop",
        help="payment modes to measure, comma-separated, each on a fresh node (default on_delivery,per_hop)",
    )
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring (default 1)")
    parser.add_argument(
        "--no-compare-custody",
        dest="compare_custody",
        action="store_false",
        help="skip the on_delivery node without custody signatures (measured by default, in the same run)",
    )
    parser.add_argument(
        "--no-compare-unbatched",
        dest="compare_unbatched",
        action="store_false",
        help="skip the on_delivery node that signs every receipt, acceptance and voucher alone "
        "(batch_signatures: false; measured by default, in the same run)",
    )
    parser.add_argument("--window", type=int, default=256, help="pieces in flight from the sender (default 256)")
    parser.add_argument("--payload", type=int, default=256, help="payload bytes per piece (default 256)")
    parser.add_argument(
        "--idle-seconds", type=float, default=1.0, help="seconds of one-piece-at-a-time latency probing (default 1)"
    )


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


class _Peer:
    """Frames in/out on one asyncio stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from runtime.node.wire import FrameDecoder

        self.reader, self.writer = reader, writer
        self.dec = FrameDecoder(1 << 20)

    async def chunks(self):
        """The frames of each read, a list per read (a node's turn of its event loop)."""
        while True:
            data = await self.reader.read(1 << 16)
            if not data:
                return
            yield self.dec.feed(data)

    def send(self, msg) -> None:
        from runtime.node.wire import encode

        self.writer.write(encode(msg))


async def _drive(
    port_in: int, port_out: int, args, relay: bool, payment: str = "on_delivery", batch: bool = True
) -> dict:
    """Play ``a`` (connect to port_in) and ``c`` (connect to port_out); measure. ``batch``: ``a`` and
    ``c`` speak as a node with ``batch_signatures`` does (one voucher per read, one signature over the
    receipts of a read: ``runtime.node.sealing``), else a signature per piece."""
    from runtime.chain.anvil import DEV_PRIVATE_KEYS
    from runtime.chain.vouchers import VoucherSigner, sign_digest
    from runtime.node.receipts import KeySigner, make_receipt, payload_hash, receipt_digest
    from runtime.node.sealing import seal
    from runtime.node.wire import Ack, Auth, ChannelInfo, Hello, Piece, Receipt, Voucher, VoucherAck, auth_digest

    signer_a = VoucherSigner(DEV_PRIVATE_KEYS[0], 31337, CONTRACT)
    signer_c = VoucherSigner(DEV_PRIVATE_KEYS[2], 31337, CONTRACT)
    receipts_c = KeySigner(DEV_PRIVATE_KEYS[2])
    on_delivery = payment == "on_delivery"
    charges: dict[int, int] = {}  # a's acked charges awaiting their receipt (on_delivery)
    a = _Peer(*await asyncio.open_connection("127.0.0.1", port_in))
    c = _Peer(*await asyncio.open_connection("127.0.0.1", port_out))
    a.send(Hello(version=1, node_id="a", address=signer_a.address, claimed_bw=1.0, quote_wei=10**9, nonce=b"a" * 16))
    c.send(Hello(version=1, node_id="c", address=signer_c.address, claimed_bw=1.0, quote_wei=10**9, nonce=b"c" * 16))

    def auth(key: str, node_id: str, address: str, hello) -> Auth:
        return Auth(sign_digest(key, auth_digest(hello.nonce, node_id, address)))

    cid_a = 4242
    sent_at: dict[int, float] = {}
    lat: list[float] = []
    arrived = 0
    measuring = {"on": False, "count": 0}
    ready = asyncio.Event()
    window = asyncio.Semaphore(args.window)
    cumulative = 0
    payload = bytes(args.payload)
    phash = payload_hash(payload)

    def pay(charge: int) -> None:
        nonlocal cumulative
        cumulative += charge
        a.send(Voucher(cid_a, cumulative, signer_a.sign(cid_a, cumulative)))

    async def a_loop():
        async for chunk in a.chunks():
            due = 0
            for m in chunk:
                if isinstance(m, Hello):
                    a.send(auth(DEV_PRIVATE_KEYS[0], "a", signer_a.address, m))
                    a.send(ChannelInfo(cid_a))
                elif isinstance(m, VoucherAck) and m.channel_id == cid_a:
                    ready.set()
                elif isinstance(m, Ack) and m.accepted and m.charge_wei:
                    if on_delivery:
                        charges[m.piece_id] = m.charge_wei
                    else:
                        due += m.charge_wei
                elif isinstance(m, Receipt) and on_delivery and m.piece_id in charges:
                    due += charges.pop(m.piece_id)
                if due and not batch:
                    pay(due)
                    due = 0
            if due:
                pay(due)

    async def c_loop():
        nonlocal arrived
        async for chunk in c.chunks():
            delivered = []
            for m in chunk:
                if isinstance(m, Hello):
                    c.send(auth(DEV_PRIVATE_KEYS[2], "c", signer_c.address, m))
                elif isinstance(m, Piece):
                    t = sent_at.pop(m.piece_id, None)
                    if t is not None:
                        arrived += 1
                        window.release()
                        if measuring["on"]:
                            measuring["count"] += 1
                            lat.append(time.perf_counter() - t)
                    if not relay:
                        c.send(Ack(m.piece_id, True, 10**9))
                        if batch:
                            delivered.append(m)
                        else:
                            c.send(make_receipt(receipts_c.sign, m.piece_id, m.src, m.dst, phash, m.size))
                elif isinstance(m, ChannelInfo):
                    c.send(VoucherAck(m.channel_id, 0))
                elif isinstance(m, Voucher):
                    c.send(VoucherAck(m.channel_id, m.cumulative_wei))
            if delivered:
                digests = [receipt_digest(m.piece_id, m.src, m.dst, phash, m.size) for m in delivered]
                for m, (sig, proof) in zip(delivered, seal(digests, receipts_c.sign), strict=True):
                    c.send(Receipt(m.piece_id, m.src, m.dst, phash, m.size, sig, proof))

    tasks = [asyncio.create_task(a_loop()), asyncio.create_task(c_loop())]
    if relay:
        ready.set()
    await asyncio.wait_for(ready.wait(), 30)
    await asyncio.sleep(0.3)  # b's channel to c confirmed
    stop_at = time.perf_counter() + args.warmup + args.seconds
    t_measure = time.perf_counter() + args.warmup
    pid = 1
    started = None
    while time.perf_counter() < stop_at:
        await window.acquire()
        now = time.perf_counter()
        if not measuring["on"] and now >= t_measure:
            measuring["on"], started = True, now
        sent_at[pid] = now
        a.send(Piece(pid, "a", "c", time.time(), time.time() + 600, 1.0, 1.0, 0, payload, signer_c.address))
        pid += 1
        if pid % 64 == 0:
            await a.writer.drain()
    elapsed = time.perf_counter() - (started or stop_at)
    measuring["on"] = False
    # Phase 2: one piece at a time, for the forwarding latency of an unloaded node.
    end = time.perf_counter() + 10
    while sent_at and time.perf_counter() < end:
        await asyncio.sleep(0.01)
    idle_lat: list[float] = []
    stop_idle = time.perf_counter() + args.idle_seconds
    while time.perf_counter() < stop_idle:
        await window.acquire()
        t = time.perf_counter()
        sent_at[pid] = t
        a.send(Piece(pid, "a", "c", time.time(), time.time() + 600, 1.0, 1.0, 0, payload, signer_c.address))
        await a.writer.drain()
        while pid in sent_at and time.perf_counter() < t + 5:
            await asyncio.sleep(0)
        idle_lat.append(time.perf_counter() - t)
        pid += 1
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for p in (a, c):
        p.writer.close()
    return {
        "pieces_per_s": measuring["count"] / elapsed if elapsed > 0 else 0.0,
        "pieces": measuring["count"],
        "latency_p50_ms": _pct(lat, 0.5) * 1e3,
        "latency_p99_ms": _pct(lat, 0.99) * 1e3,
        "idle_latency_p50_ms": _pct(idle_lat, 0.5) * 1e3,
        "idle_latency_p99_ms": _pct(idle_lat, 0.99) * 1e3,
    }


async def _relay_server() -> tuple[asyncio.AbstractServer, asyncio.AbstractServer, int, int]:
    """The reference: a byte-level pass-through from the 'a' socket to the 'c' socket."""
    out_writers: list[asyncio.StreamWriter] = []
    pending: list[bytes] = []

    async def on_c(reader, writer):
        out_writers.append(writer)
        for chunk in pending:
            writer.write(chunk)
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await reader.read()  # c's frames are dropped

    async def on_a(reader, writer):
        from runtime.node.wire import FrameDecoder, Piece, encode

        dec = FrameDecoder(1 << 20)
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            while data := await reader.read(1 << 16):
                for m in dec.feed(data):
                    if isinstance(m, Piece):
                        frame = encode(m)
                        if out_writers:
                            out_writers[0].write(frame)
                        else:
                            pending.append(frame)

    sa = await asyncio.start_server(on_a, "127.0.0.1", 0)
    sc = await asyncio.start_server(on_c, "127.0.0.1", 0)
    return sa, sc, sa.sockets[0].getsockname()[1], sc.sockets[0].getsockname()[1]


async def _reference(args) -> dict:
    sa, sc, pa, pc = await _relay_server()
    try:
        return await _drive(pa, pc, args, relay=True)
    finally:
        sa.close()
        sc.close()


def _start_node(tmp: Path, port_b: int, payment: str, custody: bool = True, batch: bool = True) -> subprocess.Popen:
    from runtime.chain.anvil import DEV_PRIVATE_KEYS
    from runtime.chain.vouchers import VoucherSigner

    addr = {i: VoucherSigner(DEV_PRIVATE_KEYS[i], 31337, CONTRACT).address for i in (0, 2)}
    cfg = {
        "node_id": "b",
        "listen": {"port": port_b},
        "peers": [
            {"node_id": "a", "address": addr[0], "latency_ms": 0, "dial": False},
            {"node_id": "c", "address": addr[2], "latency_ms": 0, "dial": False},
        ],
        "policy": "seed",
        "store": str(tmp / "b.sqlite"),
        "key_env": "OPENSTREAMING_NODE_KEY",
        "stats_file": str(tmp / "b.stats.json"),
        "chain": {"contract": CONTRACT, "deposit_wei": 10**18},
        "payment": payment,
        "behaviour": {
            "capacity": 0,
            "queue_limit": 100_000,
            "unpaid_limit_wei": 10**17,
            "idle_timeout_s": 120,
            "drain_s": 0.2,
            "max_frame": 1 << 20,
            "sign_custody": custody,
            "batch_signatures": batch,
        },
    }
    path = tmp / "b.json"
    path.write_text(json.dumps(cfg))
    env = {**os.environ, "OPENSTREAMING_NODE_KEY": DEV_PRIVATE_KEYS[1]}
    profile = ["-m", "cProfile", "-o", os.environ["BENCH_NODE_PROFILE"]] if os.environ.get("BENCH_NODE_PROFILE") else []
    return subprocess.Popen(
        [sys.executable, *profile, "-m", "runtime.node", "--config", str(path)],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "b.stderr", "wb"),
    )


def _measure_node(args: argparse.Namespace, payment: str, custody: bool = True, batch: bool = True) -> dict:
    """One fresh node in ``payment`` mode, driven at full load then one piece at a time (``custody``:
    it signs a custody acceptance in each hop ack, ``runtime.node.acceptance``; ``batch``: its
    ``batch_signatures``, and the peers' as well)."""
    import socket

    tmp = Path(tempfile.mkdtemp(prefix=f"bench-node-{payment}-"))
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = _start_node(tmp, port, payment, custody, batch)
    try:
        deadline = time.monotonic() + 30
        while not (tmp / "b.stats.json").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node did not start: {(tmp / 'b.stderr').read_text()[-500:]}")
            time.sleep(0.05)
        node = asyncio.run(_drive(port, port, args, relay=False, payment=payment, batch=batch))
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        stats = json.loads((tmp / "b.stats.json").read_text())
        from runtime.node.store import Store

        store = Store(tmp / "b.sqlite")
        stored = store.latest("received")
        signed = store.latest("sent")
        store.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    st = stats["stats"]
    return {
        "pieces_per_s": round(node["pieces_per_s"], 1),
        "latency_p50_ms": round(node["latency_p50_ms"], 3),
        "latency_p99_ms": round(node["latency_p99_ms"], 3),
        "unloaded_latency_p50_ms": round(node["idle_latency_p50_ms"], 3),
        "unloaded_latency_p99_ms": round(node["idle_latency_p99_ms"], 3),
        "internal_forward_p50_ms": round(stats.get("forward_latency_p50_s", float("nan")) * 1e3, 3),
        "internal_forward_p99_ms": round(stats.get("forward_latency_p99_s", float("nan")) * 1e3, 3),
        "receipts_verified_and_relayed": int(st.get("receipts_verified", 0)),
        "custody_acceptances_signed": int(st.get("custody_signed", 0)),
        "signatures_over_sealed_batches": int(st.get("seals_signed", 0)),
        "vouchers_verified_and_stored": int(st["vouchers_received"]),
        "vouchers_signed_and_stored": int(st["vouchers_sent"]),
        "paid_wei": int(st["paid_wei"]),
        "pieces_forwarded": int(st["forwarded"]),
        "rejected": int(st["rejected"]),
        "stored_channels": {"received": len(stored), "sent": len(signed)},
        "decision_us_per_piece": round(st["decision_seconds"] / max(st["decisions"], 1) * 1e6, 1),
    }


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark (each payment mode, then the reference relay); returns the figures and prints them."""
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in ("on_delivery", "per_hop")]
    if bad or not modes:
        raise SystemExit(f"eval.bench node: error: --modes: unknown mode {bad[0] if bad else '(none)'}")
    by_mode = {m: _measure_node(args, m) for m in modes}
    if args.compare_unbatched and "on_delivery" in modes:  # a signature per frame and piece, same run
        by_mode["on_delivery_unbatched"] = _measure_node(args, "on_delivery", batch=False)
    if args.compare_custody and "on_delivery" in modes:  # the node without signed custody, same run
        by_mode["on_delivery_without_custody"] = _measure_node(args, "on_delivery", custody=False)
    reference = asyncio.run(_reference(args))
    ref = reference["pieces_per_s"]
    for figures in by_mode.values():
        figures["ratio_vs_relay"] = round(figures["pieces_per_s"] / ref, 3) if ref else None
    main = by_mode.get("on_delivery") or next(iter(by_mode.values()))
    result = {
        # the live default (a signed receipt and a voucher per piece, paid on delivery) first
        "node_pieces_per_s": main["pieces_per_s"],
        "modes": by_mode,
        "reference_relay_pieces_per_s": round(ref, 1),
        "reference_latency_p50_ms": round(reference["latency_p50_ms"], 3),
        "reference_unloaded_latency_p50_ms": round(reference["idle_latency_p50_ms"], 3),
        "goal_pieces_per_s": 4000,
        "moonshot_pieces_per_s": 10000,
        "window": args.window,
        "seconds": args.seconds,
    }
    for k, v in result.items():
        if k != "modes":
            print(f"  {k}: {v}")
    for mode, figures in by_mode.items():
        print(f"  [{mode}] " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    print(json.dumps(run(p.parse_args()), indent=2))
