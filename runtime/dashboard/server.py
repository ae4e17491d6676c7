"""The dashboard's HTTP server: the static page plus a server-sent-events stream of frames.

Standard library only (``http.server``, one thread per connection), bound to ``127.0.0.1`` and
nothing else. Routes:

=============  ==========================================================================
``/``          the page (``static/index.html``; ``app.js`` and ``style.css`` beside it)
``/events``    ``text/event-stream``: first a ``snapshot`` event (latest frame + the whole
               series history), then a ``frame`` event per published frame (with the series
               points since the last one sent), a comment every few seconds to keep it open
``/state``     the latest frame as JSON (``null`` before the first)
``/healthz``   ``ok``
=============  ==========================================================================

The stream carries ``retry: 1000``: a browser's ``EventSource`` reconnects a second after the
stream drops, gets a fresh snapshot and carries on. Bounds: at most ``max_streams`` streams at
once (503 beyond), a request must name this server in its ``Host`` header (a page of another site
cannot read the dashboard through DNS rebinding), every socket read and write times out, the series
history keeps the last ``history`` points. A slow reader never delays the feed: each stream sends
only the latest frame when it gets to write.
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from runtime.dashboard.frames import check_frame, series_point

__all__ = ["DashboardServer"]

HOST = "127.0.0.1"
STATIC = Path(__file__).resolve().parent / "static"
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
    """

    def __init__(self, port: int = 0, history: int = 2000, max_streams: int = 16, keepalive_s: float = 5.0) -> None:
        self.requested_port = port
        self.max_streams = max_streams
        self.keepalive_s = keepalive_s
        self.run_id = os.urandom(6).hex()
        self._cond = threading.Condition()
        self._seq = 0
        self._frame_json = "null"
        self._history: collections.deque[tuple[int, dict]] = collections.deque(maxlen=history)
        self._generation = 0  # bumped by drop_streams(): every open stream ends
        self._sent: dict[int, int] = {}  # stream id -> last seq written
        self._next_stream = 0
        self._closed = False
        self._httpd: ThreadingHTTPServer | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> DashboardServer:
        """Bind and serve in a background thread; raises ``OSError`` if the port is taken."""
        dashboard = self

        class Handler(_Handler):
            pass

        Handler.dashboard = dashboard
        httpd = ThreadingHTTPServer((HOST, self.requested_port), Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._port = httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, name="dashboard", daemon=True)
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        """The port bound by :meth:`start` (kept after :meth:`close`)."""
        assert self._port is not None, "start() first"
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/``."""
        return f"http://{HOST}:{self.port}/"

    def close(self, drain_s: float = 2.0) -> None:
        """Stop serving: first let every open stream send the latest frame (at most ``drain_s``)."""
        if self._httpd is None:
            return
        self.wait_delivered(drain_s)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None

    def __enter__(self) -> DashboardServer:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ feeding

    def publish(self, frame: dict) -> int:
        """Make ``frame`` the latest (checked with :func:`~runtime.dashboard.frames.check_frame`); its seq."""
        text = json.dumps(check_frame(frame), separators=(",", ":"), allow_nan=False)
        with self._cond:
            self._seq += 1
            self._frame_json = text
            self._history.append((self._seq, series_point(frame)))
            self._cond.notify_all()
            return self._seq

    def drop_streams(self) -> None:
        """End every open event stream (the pages reconnect by themselves)."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

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

    # ------------------------------------------------------------------ streaming (handler threads)

    def _open_stream(self) -> int | None:
        with self._cond:
            if self._closed or len(self._sent) >= self.max_streams:
                return None
            sid = self._next_stream
            self._next_stream += 1
            self._sent[sid] = 0
            return sid

    def _close_stream(self, sid: int) -> None:
        with self._cond:
            self._sent.pop(sid, None)
            self._cond.notify_all()

    def _snapshot(self) -> tuple[int, str]:
        with self._cond:
            body = (
                f'{{"run":"{self.run_id}","seq":{self._seq},"frame":{self._frame_json},'
                f'"history":{json.dumps(list(self._history), separators=(",", ":"))}}}'
            )
            return self._seq, body

    def _next(self, sid: int, last: int, generation: int) -> tuple[str, int, str] | None:
        """Block until there is something to write: ``(event, seq, data)``; None when the stream must end."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._closed or self._generation != generation or self._seq != last, self.keepalive_s
            )
            if self._closed or self._generation != generation:
                return None
            if self._seq == last:
                return ("ping", last, "")
            points = [h for h in self._history if h[0] > last]
            body = f'{{"seq":{self._seq},"frame":{self._frame_json},"points":{json.dumps(points)}}}'
            return ("frame", self._seq, body)

    def _mark_sent(self, sid: int, seq: int) -> None:
        with self._cond:
            if sid in self._sent:
                self._sent[sid] = seq
                self._cond.notify_all()


class _Handler(BaseHTTPRequestHandler):
    dashboard: DashboardServer
    server_version = "OpenStreamingDashboard"
    sys_version = ""
    timeout = 15  # every read and write of the connection's socket

    def log_message(self, format: str, *args: object) -> None:  # quiet: the feeds own the terminal
        pass

    def _host_ok(self) -> bool:
        port = self.dashboard.port
        return self.headers.get("Host", "") in (f"{HOST}:{port}", f"localhost:{port}")

    def _reply(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in _SECURITY_HEADERS.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._host_ok():
            self._reply(HTTPStatus.FORBIDDEN, b"wrong Host header\n", "text/plain; charset=utf-8")
            return
        path = self.path.split("?", 1)[0]
        if path in _FILES:
            name, ctype = _FILES[path]
            self._reply(HTTPStatus.OK, (STATIC / name).read_bytes(), ctype)
        elif path == "/state":
            self._reply(HTTPStatus.OK, self.dashboard.latest().encode(), "application/json")
        elif path == "/healthz":
            self._reply(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/events" and self.command == "GET":
            self._stream()
        else:
            self._reply(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def _stream(self) -> None:
        d = self.dashboard
        sid = d._open_stream()
        if sid is None:
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE, b"too many streams\n", "text/plain; charset=utf-8")
            return
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.close_connection = True
            with d._cond:
                generation = d._generation
            seq, body = d._snapshot()
            self.wfile.write(f"retry: 1000\nid: {seq}\nevent: snapshot\ndata: {body}\n\n".encode())
            self.wfile.flush()
            d._mark_sent(sid, seq)
            while True:
                nxt = d._next(sid, seq, generation)
                if nxt is None:
                    return
                event, seq, body = nxt
                if event == "ping":
                    self.wfile.write(b": ping\n\n")
                else:
                    self.wfile.write(f"id: {seq}\nevent: frame\ndata: {body}\n\n".encode())
                self.wfile.flush()
                d._mark_sent(sid, seq)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            return
        finally:
            d._close_stream(sid)
