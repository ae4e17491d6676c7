"""A bounded aiohttp server on its own event-loop thread, for the processes' small HTTP surfaces.

The settlement operators (proofs), the aggregator (attestations) and the dashboard (page and event
stream) each serve one :class:`BoundedHttpServer`. Their callers are synchronous (worker threads,
signal handlers in the main thread), so the server runs its asyncio loop on a daemon thread and
offers a blocking :meth:`~BoundedHttpServer.start` / :meth:`~BoundedHttpServer.close`.

What a client can cost the server is bounded by :class:`HttpBounds` (defaults in brackets):

* **the whole request** [``request_deadline_s`` = 10 s]: a connection must have sent its request
  *and* received the whole answer within the deadline from its accept, or it is aborted. This is a
  deadline on the request, not on each read: a client that trickles one byte a second is cut at the
  deadline all the same. Only an event stream, once its handler has accepted it, is exempt (it then
  has a per-write deadline, ``stream_write_timeout_s``). One request per connection: every answer
  carries ``Connection: close``, so the deadline of a connection is the deadline of its request.
* **connections** [``max_connections`` = 64 at once, ``max_connections_per_client`` = 8]: a
  connection beyond either cap is answered ``503`` and closed before anything of it is read. A
  *client* is a peer IP address (on loopback, a source address in 127.0.0.0/8).
* **event streams** [``max_streams`` = 16, ``max_streams_per_client`` = 4]: see :meth:`open_stream`.
* **bodies** [``max_body_bytes`` = 4 KiB] and **headers** (:data:`MAX_LINE_BYTES` per request line
  or header field, :data:`MAX_HEADERS` fields).

Every refusal is counted under a reason of the fixed set :class:`Refusal` (:attr:`refusals`), so no
client can grow the counters. The server binds ``127.0.0.1`` unless told otherwise.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import logging
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated

import msgspec
from aiohttp import web

__all__ = ["BoundedHttpServer", "HttpBounds", "Refusal", "host_check", "json_error"]

log = logging.getLogger("openstreaming.http")

#: Longest request line or header field accepted (bytes); aiohttp answers 400 beyond it.
MAX_LINE_BYTES = 4096
#: Most header fields a request may carry.
MAX_HEADERS = 32
#: Seconds :meth:`BoundedHttpServer.close` waits for handlers still running before it aborts them.
SHUTDOWN_GRACE_S = 2.0

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n"
)


class Refusal(enum.StrEnum):
    """Why the server refused or cut a connection (the fixed set of :attr:`BoundedHttpServer.refusals`)."""

    CONNECTIONS = "too many connections"
    CLIENT_CONNECTIONS = "too many connections from this client"
    DEADLINE = "request deadline passed"
    STREAMS = "too many event streams"
    CLIENT_STREAMS = "too many event streams from this client"
    STREAM_WRITE = "event stream write timed out"
    HOST = "wrong Host header"


class HttpBounds(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """The bounds of one :class:`BoundedHttpServer` (a config file's ``http:`` section)."""

    request_deadline_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 10.0
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 64
    max_connections_per_client: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 8
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1, le=64 * 1024 * 1024)] = 4096
    max_streams: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 16
    max_streams_per_client: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 4
    stream_write_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 10.0


def json_error(status: int, reason: str) -> web.Response:
    """``{"error": reason}`` with ``status`` (the settlement endpoints' error shape)."""
    return web.json_response({"error": reason}, status=status)


def host_check(allowed: Callable[[], Iterable[str]]) -> Callable:
    """Middleware refusing (403) a request whose ``Host`` header is not one of ``allowed()``.

    A page of another site that resolves its own name to 127.0.0.1 (DNS rebinding) sends its own
    name as ``Host``, so it cannot read a loopback server that checks it.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        if request.headers.get("Host", "") not in set(allowed()):
            server: BoundedHttpServer | None = request.app.get(_SERVER_KEY)
            if server is not None:
                server.count(Refusal.HOST)
            return web.Response(status=403, text="wrong Host header\n")
        return await handler(request)

    return middleware


_SERVER_KEY: web.AppKey[BoundedHttpServer] = web.AppKey("bounded_http_server")


@web.middleware
async def _one_request_per_connection(request: web.Request, handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as err:  # aiohttp's own 404/405/413 ...
        response = err
    if not response.prepared:
        response.force_close()
    return response


class _Guard(asyncio.Protocol):
    """Sits between the transport and aiohttp's protocol: connection caps and the request deadline."""

    def __init__(self, server: BoundedHttpServer, inner: asyncio.Protocol) -> None:
        self.server = server
        self.inner: asyncio.Protocol | None = inner
        self.client = "?"
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.streams = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if peer else "?"
        refusal = self.server._admit(self)
        if refusal is not None:
            self.server.count(refusal)
            self.inner = None
            transport.write(_BUSY)
            transport.close()
            return
        self.timer = asyncio.get_running_loop().call_later(self.server.bounds.request_deadline_s, self._expire)
        assert self.inner is not None
        self.inner.connection_made(transport)

    def _expire(self) -> None:
        self.timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.server.count(Refusal.DEADLINE)
            self.transport.abort()

    def exempt(self) -> None:
        """This connection became an event stream: its request deadline no longer applies."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.inner is None:
            return
        self.server._release(self)
        inner, self.inner = self.inner, None
        inner.connection_lost(exc)


class _GuardedSite(web.BaseSite):
    """A TCP site whose connections go through :class:`_Guard`."""

    def __init__(self, runner: web.AppRunner, server: BoundedHttpServer, host: str, port: int) -> None:
        super().__init__(runner, backlog=128)
        self._owner = server
        self._host = host
        self._port = port
        self.bound_port = port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.bound_port}"

    async def start(self) -> None:
        await super().start()
        inner = self._runner.server
        assert inner is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Guard(self._owner, inner()), self._host, self._port)
        self.bound_port = self._server.sockets[0].getsockname()[1]


class BoundedHttpServer:
    """Serve an :class:`aiohttp.web.Application` within :class:`HttpBounds`, from a daemon thread.

    :param routes: called with the application to add its routes (and any middleware of its own).
    :param host: address to bind; ``127.0.0.1`` by default.
    :param port: TCP port; 0 picks a free one (see :attr:`port`).
    :param bounds: the limits (module docstring).
    :param name: the thread's name, for logs.
    :param middlewares: extra middlewares run before the routes (e.g. :func:`host_check`).
    """

    def __init__(
        self,
        routes: Callable[[web.Application], None],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bounds: HttpBounds | None = None,
        name: str = "http",
        middlewares: Iterable[Callable] = (),
    ) -> None:
        self.routes = routes
        self.host = host
        self.requested_port = port
        self.bounds = bounds or HttpBounds()
        self.name = name
        self.middlewares = list(middlewares)
        self.refusals: Counter[Refusal] = Counter()
        self._lock = threading.Lock()
        self._conns: dict[asyncio.Transport, _Guard] = {}
        self._per_client: Counter[str] = Counter()
        self._streams = 0
        self._streams_per_client: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> BoundedHttpServer:
        """Bind and serve; returns once listening. Raises ``OSError`` if the address is taken."""
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        loop = asyncio.new_event_loop()
        self._loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                port = loop.run_until_complete(self._setup())
            except BaseException as err:
                ready.set_exception(err)
                loop.close()
                return
            ready.set_result(port)
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        self._port = ready.result()
        return self

    async def _setup(self) -> int:
        app = web.Application(
            client_max_size=self.bounds.max_body_bytes,
            middlewares=[_one_request_per_connection, *self.middlewares],
        )
        app[_SERVER_KEY] = self
        self.routes(app)
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=SHUTDOWN_GRACE_S,
            handler_cancellation=True,
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_LINE_BYTES,
            max_headers=MAX_HEADERS,
        )
        await runner.setup()
        site = _GuardedSite(runner, self, self.host, self.requested_port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        return site.bound_port

    @property
    def port(self) -> int:
        """The port bound by :meth:`start` (kept after :meth:`close`)."""
        assert self._port is not None, "start() first"
        return self._port

    @property
    def server_address(self) -> tuple[str, int]:
        """``(host, port)``, as ``http.server`` names it."""
        return self.host, self.port

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`close`."""
        return self._runner is not None

    def close(self) -> None:
        """Stop listening, give running handlers :data:`SHUTDOWN_GRACE_S`, close every connection."""
        loop, runner = self._loop, self._runner
        if loop is None or runner is None:
            return
        self._runner = None
        try:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=SHUTDOWN_GRACE_S + 10)
        except (concurrent.futures.TimeoutError, RuntimeError) as err:
            log.warning("%s: shutdown did not finish cleanly: %s", self.name, err)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)

    #: ``http.server``'s name for :meth:`close`.
    shutdown = close

    def __enter__(self) -> BoundedHttpServer:
        return self.start() if self._port is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call_soon(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the server's loop (from any thread); nothing if the server is not running."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                loop.call_soon_threadsafe(fn)

    # ------------------------------------------------------------------ bounds

    @staticmethod
    def of(request: web.Request) -> BoundedHttpServer:
        """The server that is serving ``request``."""
        return request.app[_SERVER_KEY]

    def refusal_counts(self) -> dict[str, int]:
        """Refusals so far by reason (a JSON-able copy of :attr:`refusals`)."""
        with self._lock:
            return {r.value: n for r, n in sorted(self.refusals.items())}

    def count(self, refusal: Refusal) -> None:
        """Count one refusal (thread-safe)."""
        with self._lock:
            self.refusals[refusal] += 1

    def connections(self) -> int:
        """Connections held now."""
        with self._lock:
            return len(self._conns)

    def _admit(self, guard: _Guard) -> Refusal | None:
        with self._lock:
            if len(self._conns) >= self.bounds.max_connections:
                return Refusal.CONNECTIONS
            if self._per_client[guard.client] >= self.bounds.max_connections_per_client:
                return Refusal.CLIENT_CONNECTIONS
            assert guard.transport is not None
            self._conns[guard.transport] = guard
            self._per_client[guard.client] += 1
            return None

    def _release(self, guard: _Guard) -> None:
        with self._lock:
            if self._conns.pop(guard.transport, None) is None:  # type: ignore[arg-type]
                return
            self._per_client[guard.client] -= 1
            if self._per_client[guard.client] <= 0:
                del self._per_client[guard.client]
            self._streams -= guard.streams
            self._streams_per_client[guard.client] -= guard.streams
            if self._streams_per_client[guard.client] <= 0:
                del self._streams_per_client[guard.client]
            guard.streams = 0

    def open_stream(self, request: web.Request) -> Refusal | None:
        """Make ``request``'s connection a long-lived event stream, or say why not.

        Within :attr:`HttpBounds.max_streams` (all clients) and ``max_streams_per_client``, the
        connection is freed from the request deadline; its slot is released when it closes.
        """
        guard = self._conns.get(request.transport)  # type: ignore[arg-type]
        if guard is None:
            return Refusal.DEADLINE  # closed meanwhile
        with self._lock:
            if self._streams >= self.bounds.max_streams:
                refusal = Refusal.STREAMS
            elif self._streams_per_client[guard.client] >= self.bounds.max_streams_per_client:
                refusal = Refusal.CLIENT_STREAMS
            else:
                self._streams += 1
                self._streams_per_client[guard.client] += 1
                guard.streams += 1
                refusal = None
        if refusal is not None:
            self.count(refusal)
            return refusal
        guard.exempt()
        return None

    async def write_stream(self, request: web.Request, response: web.StreamResponse, data: bytes) -> bool:
        """Write ``data`` to an event stream within ``stream_write_timeout_s``.

        Returns False when the stream is gone; a reader too slow for the deadline is disconnected.
        """
        try:
            await asyncio.wait_for(response.write(data), self.bounds.stream_write_timeout_s)
            return True
        except TimeoutError:
            self.count(Refusal.STREAM_WRITE)
            if request.transport is not None:
                request.transport.abort()
            return False
        except (ConnectionError, RuntimeError):
            return False

    def stream_count(self) -> int:
        """Event streams open now."""
        with self._lock:
            return self._streams
