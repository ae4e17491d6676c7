"""``runtime.http_server.BoundedHttpServer`` over real sockets on loopback.

A hypothesis state machine opens, finishes and drops connections and event streams from several
source addresses, and checks after every step that the server admits exactly what the caps allow
and gives every slot back when its connection ends.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from aiohttp import web
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from runtime.http_server import BoundedHttpServer, HttpBounds, Refusal
from tests.runtime.http_clients import connect, read_to_close, request

CLIENTS = ("127.0.0.2", "127.0.0.3")
BOUNDS = HttpBounds(
    request_deadline_s=120.0,  # no deadline passes during a run: only the caps are exercised
    max_connections=5,
    max_connections_per_client=3,
    max_streams=3,
    max_streams_per_client=2,
)


def _routes(app: web.Application) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello\n")

    async def stream(request: web.Request) -> web.StreamResponse:
        refusal = BoundedHttpServer.of(request).open_stream(request)
        if refusal is not None:
            return web.Response(status=503, text=f"{refusal.value}\n")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b": open\n\n")
        await asyncio.Event().wait()  # until the client goes (the handler is then cancelled)
        return resp

    app.router.add_get("/hello", hello)
    app.router.add_get("/stream", stream)


def _wait(predicate, what: str, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


class Conn:
    """One client socket and what the model expects of it."""

    def __init__(self, sock: socket.socket, client: str, stream: bool) -> None:
        self.sock, self.client, self.stream = sock, client, stream


class ServerCaps(RuleBasedStateMachine):
    """Model: which connections and streams the server holds, per client and in all."""

    held = Bundle("held")

    def __init__(self) -> None:
        super().__init__()
        self.server = BoundedHttpServer(_routes, bounds=BOUNDS, name="caps-test").start()
        self.conns: list[Conn] = []
        self.refused = 0

    def _count(self, client: str | None = None, stream: bool | None = None) -> int:
        return sum(
            1 for c in self.conns if (client is None or c.client == client) and (stream is None or c.stream == stream)
        )

    def _settle(self) -> None:
        _wait(lambda: self.server.connections() == len(self.conns), "the server's connection count")
        _wait(lambda: self.server.stream_count() == self._count(stream=True), "the server's stream count")

    @rule(target=held, client=st.sampled_from(CLIENTS), half=st.sampled_from([b"", b"GET /hel"]))
    def open_half_sent(self, client: str, half: bytes):
        """A connection that sends part of a request (or nothing) and waits."""
        admit = len(self.conns) < BOUNDS.max_connections and self._count(client) < BOUNDS.max_connections_per_client
        before = sum(self.server.refusals.values())
        sock = connect(self.server.port, source=client)
        if half:
            sock.sendall(half)
        _wait(
            lambda: self.server.connections() + sum(self.server.refusals.values()) == len(self.conns) + before + 1,
            "the server to admit or refuse",
        )
        admitted = self.server.connections() == len(self.conns) + 1
        assert admitted == admit, f"admitted {admitted}, caps say {admit}"
        if not admitted:
            assert read_to_close(sock, 5.0).startswith(b"HTTP/1.1 503"), "beyond a cap: 503 and closed"
            sock.close()
            self.refused += 1
            return None
        conn = Conn(sock, client, stream=False)
        self.conns.append(conn)
        return conn

    @rule(target=held, client=st.sampled_from(CLIENTS))
    def open_stream(self, client: str):
        """A connection that asks for an event stream and keeps it if granted."""
        admit = len(self.conns) < BOUNDS.max_connections and self._count(client) < BOUNDS.max_connections_per_client
        granted = (
            admit
            and self._count(stream=True) < BOUNDS.max_streams
            and self._count(client, stream=True) < BOUNDS.max_streams_per_client
        )
        sock = connect(self.server.port, source=client)
        sock.sendall(f"GET /stream HTTP/1.1\r\nHost: 127.0.0.1:{self.server.port}\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            assert chunk, "an answer before the close"
            data += chunk
        assert data.startswith(b"HTTP/1.1 200" if granted else b"HTTP/1.1 503"), (granted, data[:40])
        if not granted:
            sock.close()
            self._settle()
            return None
        while b": open" not in data:
            chunk = sock.recv(4096)
            assert chunk, "a granted stream stays open"
            data += chunk
        conn = Conn(sock, client, stream=True)
        self.conns.append(conn)
        return conn

    @rule(conn=consumes(held))
    def client_leaves(self, conn: Conn | None):
        """The client closes its connection: its slots come back."""
        if conn is None:
            return
        conn.sock.close()
        self.conns.remove(conn)

    @rule(client=st.sampled_from(CLIENTS))
    def whole_request(self, client: str):
        """A complete request is answered whenever its client and the server have room."""
        admit = len(self.conns) < BOUNDS.max_connections and self._count(client) < BOUNDS.max_connections_per_client
        status, body = request(self.server.port, "GET", "/hello", source=client)
        assert (status, body) == ((200, b"hello\n") if admit else (503, b"too many connections\n"))

    @invariant()
    def server_agrees_with_the_model(self) -> None:
        self._settle()
        assert self.server.connections() <= BOUNDS.max_connections
        assert self.server.stream_count() <= BOUNDS.max_streams

    def teardown(self) -> None:
        for c in self.conns:
            c.sock.close()
        self.conns.clear()
        try:  # every slot comes back once its clients are gone
            _wait(lambda: self.server.connections() == 0 and self.server.stream_count() == 0, "every slot back")
        finally:
            self.server.close()


ServerCaps.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
    # no shrinking: a failing step sequence is already short, and each shrink try starts a server
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
test_server_caps = ServerCaps.TestCase


@pytest.mark.parametrize("half", [b"", b"GET /hello HTTP/1.1\r\nHost: x\r\n"])
def test_a_request_not_finished_in_time_is_cut_and_counted(half: bytes) -> None:
    with BoundedHttpServer(_routes, bounds=HttpBounds(request_deadline_s=0.5)) as server:
        sock = connect(server.port)
        sock.sendall(half)
        assert read_to_close(sock, 10.0) == b""  # closed without an answer
        sock.close()
        _wait(lambda: server.connections() == 0, "the slot to come back")
        assert server.refusals == {Refusal.DEADLINE: 1}
        assert request(server.port, "GET", "/hello") == (200, b"hello\n")


def test_a_client_that_closes_without_a_byte_frees_its_slot_at_once() -> None:
    """A port probe (connect, close) must not hold a connection slot until the request deadline."""
    with BoundedHttpServer(_routes, bounds=HttpBounds(request_deadline_s=60.0, max_connections=1)) as server:
        for _ in range(3):
            probe = connect(server.port)
            _wait(lambda: server.connections() == 1, "the probe to be admitted")
            probe.close()
            _wait(lambda: server.connections() == 0, "the probe's slot to come back", timeout=5.0)
        assert request(server.port, "GET", "/hello") == (200, b"hello\n")  # the one slot is free
        assert server.refusals == {}


def test_a_taken_port_is_an_oserror() -> None:
    with BoundedHttpServer(_routes) as first, pytest.raises(OSError):
        BoundedHttpServer(_routes, port=first.port).start()


def test_a_stream_reader_that_stops_reading_is_dropped_at_the_write_deadline() -> None:
    def routes(app: web.Application) -> None:
        async def firehose(request: web.Request) -> web.StreamResponse:
            server = BoundedHttpServer.of(request)
            assert server.open_stream(request) is None
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            chunk = b"data: " + b"x" * 65536 + b"\n\n"
            while await server.write_stream(request, resp, chunk):  # until the reader is dropped
                pass
            return resp

        app.router.add_get("/firehose", firehose)

    bounds = HttpBounds(stream_write_timeout_s=0.5, request_deadline_s=0.2)  # the stream outlives the deadline
    with BoundedHttpServer(routes, bounds=bounds) as server:
        sock = connect(server.port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET /firehose HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        # the client never reads: the server's writes fill the buffers, one blocks and is given up on
        _wait(lambda: server.refusals[Refusal.STREAM_WRITE] == 1, "the stream to be dropped", timeout=30)
        _wait(lambda: server.connections() == 0 and server.stream_count() == 0, "the slot to come back")
        assert Refusal.DEADLINE not in server.refusals  # the stream was exempt from the request deadline
        sock.close()
