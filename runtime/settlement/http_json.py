"""A tiny JSON-over-HTTP server base for the settlement service's endpoints (stdlib only)."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("openstreaming.http")


class JsonHandler(BaseHTTPRequestHandler):
    """Request handler that answers JSON and logs through ``logging`` instead of stderr."""

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("http: " + fmt, *args)

    def reply(self, status: int, obj: Any) -> None:
        """Send ``obj`` as a JSON body with ``status``."""
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def start_server(handler: type[JsonHandler], host: str, port: int, name: str) -> ThreadingHTTPServer:
    """Serve ``handler`` on ``host:port`` (0 picks a free port) from a daemon thread."""
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server
