"""The dashboard's HTTP server: the static page plus a server-sent-events stream of frames.

An aiohttp app on a :class:`runtime.http_server.BoundedHttpServer` (its own event-loop thread),
bound to ``127.0.0.1`` and nothing else. Routes:

=============  ==========================================================================
``/``          the page (``static/index.html``; ``app.js`` and ``style.css`` beside it)
``/events``    ``text/event-stream``: first a ``snapshot`` event (latest frame + the whole
               series history), then a ``frame`` event per published frame (with the series
               points since the last one sent), a comment every few seconds to keep it open
``/state``     the latest frame as JSON (``null`` before the first)
``/healthz``   ``ok``
=============  ==========================================================================

The stream carries ``retry: 1000``: a browser's ``EventSource`` reconnects a second after the
stream drops, gets a fresh snapshot and carries on. Bounds (:class:`~runtime.http_server.HttpBounds`):
at most ``max_streams`` streams at once and :data:`MAX_STREAMS_PER_CLIENT` from one client (a peer
address; 503 beyond), at most 64 connections and 8 per client, a deadline of
:data:`REQUEST_DEADLINE_S` on every whole request but an accepted stream (whose every write must
finish within :data:`STREAM_WRITE_TIMEOUT_S`), no request body. A request must name this server in
its ``Host`` header (middleware; a page of another site cannot read the dashboard through DNS
rebinding); the series history keeps the last ``history`` points. A slow reader never delays the
feed: each stream sends only the latest frame when it gets to write.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import threading
import time
from pathlib import Path

from aiohttp import web

from runtime.dashboard.frames import check_frame, series_point
from runtime.http_server import BoundedHttpServer, HttpBounds, host_check

__all__ = ["DashboardServer"]

HOST = "127.0.0.1"
STATIC = Path(__file__).resolve().parent / "static"
#: Seconds a request (but an accepted event stream) may take from connect to the end of the answer.
REQUEST_DEADLINE_S = 15.0
#: Seconds one write to an event stream may take before the stream is dropped.
STREAM_WRITE_TIMEOUT_S = 15.0
#: Event streams one client (peer address) may hold at once.
MAX_STREAMS_PER_CLIENT = 4
_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class DashboardServer:
    """Serve the dashboard on ``http://127.0.0.1:PORT/`` and stream what :meth:`publish` is given.

    :param port: TCP port on 127.0.0.1; 0 picks a free one (see :attr:`url`).
    :param history: series points kept for pages that connect late or reconnect.
    :param max_streams: concurrent event streams (browser tabs) served at once.
    :param keepalive_s: seconds between keep-alive comments on an idle stream.
    :param max_streams_per_client: event streams one client (peer address) may hold at once.
    :param request_deadline_s: the deadline on a whole request (:data:`REQUEST_DEADLINE_S`).
    """

    def __init__(
        self,
        port: int = 0,
        history: int = 2000,
        max_streams: int = 16,
        keepalive_s: float = 5.0,
        *,
        max_streams_per_client: int = MAX_STREAMS_PER_CLIENT,
        request_deadline_s: float = REQUEST_DEADLINE_S,
    ) -> None:
        self.requested_port = port
        self.max_streams = max_streams
        self.keepalive_s = keepalive_s
        self.bounds = HttpBounds(
            request_deadline_s=request_deadline_s,
            max_body_bytes=1024,
            max_streams=max_streams,
            max_streams_per_client=min(max_streams_per_client, max_streams),
            stream_write_timeout_s=STREAM_WRITE_TIMEOUT_S,
        )
        self.run_id = os.urandom(6).hex()
        self._cond = threading.Condition()
        self._seq = 0
        self._frame_json = "null"
        self._history: collections.deque[tuple[int, dict]] = collections.deque(maxlen=history)
        self._generation = 0  # bumped by drop_streams(): every open stream ends
        self._sent: dict[int, int] = {}  # stream id -> last seq written
        self._next_stream = 0
        self._closed = False
        self._http: BoundedHttpServer | None = None
        self._port: int | None = None
        self._changed: asyncio.Event | None = None  # set (and replaced) on the loop at every change

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> DashboardServer:
        """Bind and serve in a background thread; raises ``OSError`` if the port is taken."""
        with self._cond:
            self._closed = False
        http = BoundedHttpServer(
            self._routes,
            host=HOST,
            port=self.requested_port,
            bounds=self.bounds,
            name="dashboard",
            middlewares=[host_check(self._hosts)],
        )
        http.start()
        self._http = http
        self._port = http.port
        return self

    def _hosts(self) -> tuple[str, str]:
        return (f"{HOST}:{self.port}", f"localhost:{self.port}")

    @property
    def port(self) -> int:
        """The port bound by :meth:`start` (kept after :meth:`close`)."""
        assert self._port is not None, "start() first"
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/``."""
        return f"http://{HOST}:{self.port}/"

    @property
    def refusals(self) -> dict[str, int]:
        """Connections and streams refused or cut so far, by reason (a fixed set)."""
        return self._http.refusal_counts() if self._http is not None else {}

    def close(self, drain_s: float = 2.0) -> None:
        """Stop serving: first let every open stream send the latest frame (at most ``drain_s``)."""
        if self._http is None:
            return
        self.wait_delivered(drain_s)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._kick()
        self._http.close()
        self._http = None

    def __enter__(self) -> DashboardServer:
        return self.start() if self._http is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ feeding (any thread)

    def publish(self, frame: dict) -> int:
        """Make ``frame`` the latest (checked with :func:`~runtime.dashboard.frames.check_frame`); its seq."""
        text = json.dumps(check_frame(frame), separators=(",", ":"), allow_nan=False)
        with self._cond:
            self._seq += 1
            self._frame_json = text
            self._history.append((self._seq, series_point(frame)))
            self._cond.notify_all()
            seq = self._seq
        self._kick()
        return seq

    def drop_streams(self) -> None:
        """End every open event stream (the pages reconnect by themselves)."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
        self._kick()

    def streams(self) -> int:
        """Event streams open now."""
        with self._cond:
            return len(self._sent)

    def wait_delivered(self, timeout: float) -> bool:
        """Wait until every open stream has written the latest frame; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(s < self._seq for s in self._sent.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def latest(self) -> str:
        """The latest frame as JSON text (``null`` before the first)."""
        with self._cond:
            return self._frame_json

    def _kick(self) -> None:
        if self._http is not None:
            self._http.call_soon(self._wake)

    def _wake(self) -> None:  # on the loop
        changed, self._changed = self._changed, asyncio.Event()
        if changed is not None:
            changed.set()

    # ------------------------------------------------------------------ serving (the loop's thread)

    def _routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return _reply(405, b"method not allowed\n", "text/plain; charset=utf-8")
        path = request.path
        if path in _FILES:
            name, ctype = _FILES[path]
            return _reply(200, (STATIC / name).read_bytes(), ctype)
        if path == "/state":
            return _reply(200, self.latest().encode(), "application/json")
        if path == "/healthz":
            return _reply(200, b"ok\n", "text/plain; charset=utf-8")
        if path == "/events" and request.method == "GET":
            return await self._stream(request)
        return _reply(404, b"not found\n", "text/plain; charset=utf-8")

    def _open_stream(self) -> int | None:
        with self._cond:
            if self._closed:
                return None
            sid = self._next_stream
            self._next_stream += 1
            self._sent[sid] = 0
            return sid

    def _close_stream(self, sid: int) -> None:
        with self._cond:
            self._sent.pop(sid, None)
            self._cond.notify_all()

    def _mark_sent(self, sid: int, seq: int) -> None:
        with self._cond:
            if sid in self._sent:
                self._sent[sid] = seq
                self._cond.notify_all()

    def _snapshot(self) -> tuple[int, int, str]:
        with self._cond:
            body = (
                f'{{"run":"{self.run_id}","seq":{self._seq},"frame":{self._frame_json},'
                f'"history":{json.dumps(list(self._history), separators=(",", ":"))}}}'
            )
            return self._generation, self._seq, body

    def _next(self, last: int, generation: int) -> tuple[str, int, str] | None:
        """What to write after ``last``: ``("frame", seq, data)``, None if nothing new, ``("end", ..)``."""
        with self._cond:
            if self._closed or self._generation != generation:
                return ("end", last, "")
            if self._seq == last:
                return None
            points = [h for h in self._history if h[0] > last]
            return (
                "frame",
                self._seq,
                f'{{"seq":{self._seq},"frame":{self._frame_json},"points":{json.dumps(points)}}}',
            )

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        http = self._http
        assert http is not None
        refusal = http.open_stream(request)
        sid = self._open_stream() if refusal is None else None
        if sid is None:
            reason = refusal.value if refusal is not None else "server closing"
            return _reply(503, f"{reason}\n".encode(), "text/plain; charset=utf-8")
        try:
            resp = _EventStream(
                status=200,
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Content-Type-Options": "nosniff",
                },
            )
            resp.force_close()
            await resp.prepare(request)
            if self._changed is None:
                self._changed = asyncio.Event()
            changed = self._changed
            generation, seq, body = self._snapshot()
            if not await http.write_stream(
                request, resp, f"retry: 1000\nid: {seq}\nevent: snapshot\ndata: {body}\n\n".encode()
            ):
                return resp
            self._mark_sent(sid, seq)
            while True:
                nxt = self._next(seq, generation)
                if nxt is None:
                    try:
                        await asyncio.wait_for(changed.wait(), self.keepalive_s)
                    except TimeoutError:
                        if not await http.write_stream(request, resp, b": ping\n\n"):
                            return resp
                    if changed.is_set():
                        changed = self._changed or changed
                    continue
                event, seq, body = nxt
                if event == "end":
                    return resp
                if self._changed is not None:
                    changed = self._changed  # before the write: a publish during it wakes us
                if not await http.write_stream(request, resp, f"id: {seq}\nevent: frame\ndata: {body}\n\n".encode()):
                    return resp
                self._mark_sent(sid, seq)
        finally:
            self._close_stream(sid)


class _EventStream(web.StreamResponse):
    """An event stream delimited by the connection's close, as before (no chunked encoding).

    aiohttp's own ``WebSocketResponse`` turns the same length check off; the stream's end is the
    end of the connection (every answer of this server carries ``Connection: close``).
    """

    _length_check = False


def _reply(status: int, body: bytes, content_type: str) -> web.Response:
    return web.Response(status=status, body=body, headers={"Content-Type": content_type, **_SECURITY_HEADERS})
