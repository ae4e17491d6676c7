"""Attacks on the dashboard's HTTP, against a dashboard server in its own process on loopback.

Issue 20: one client held all 16 event-stream slots (the cap was per server), and a slow trickle
kept a thread per connection for ever (the timeout was per read, not per request).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import time

import pytest

from runtime.chain.anvil import REPO_ROOT
from runtime.dashboard.server import MAX_STREAMS_PER_CLIENT
from runtime.http_server import Refusal
from tests.runtime.http_clients import (
    closed_by_server,
    connect,
    free_port,
    request,
    settle_open,
    trickle,
    wait_listening,
)

DEADLINE_S = 2.0
MAX_STREAMS = 16

_SERVE = """
import sys
from runtime.dashboard import DashboardServer
from tests.runtime.dashboard.frames import make_frame

server = DashboardServer(port=int(sys.argv[1]), keepalive_s=0.5, request_deadline_s=float(sys.argv[2])).start()
server.publish(make_frame(1))
print("ready", flush=True)
sys.stdin.readline()  # one line from the test: print the refusals and stop
print(server.refusals, flush=True)
server.close(drain_s=0.5)
"""


@pytest.fixture
def dashboard():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE, str(port), str(DEADLINE_S)],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        wait_listening(port)
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _refusals(proc: subprocess.Popen) -> dict:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("stop\n")
    proc.stdin.flush()
    text = proc.stdout.readline()
    assert proc.wait(timeout=20) == 0
    return ast.literal_eval(text)  # the dict of str -> int the server process printed


def _open_stream(port: int, source: str):
    """A stream request from ``source``: (socket, status); the socket has read the snapshot if 200."""
    sock = connect(port, source=source)
    sock.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    data = b""
    deadline = time.monotonic() + 10
    while b"event: snapshot" not in data and b"\r\n\r\n" not in data and time.monotonic() < deadline:
        data += sock.recv(65536)
    status = int(data.split(b" ", 2)[1])
    while status == 200 and b"event: snapshot" not in data and time.monotonic() < deadline:
        data += sock.recv(65536)
    return sock, status, data


def test_one_client_cannot_hold_every_event_stream_slot(dashboard):
    port, proc = dashboard
    mine = [_open_stream(port, "127.0.0.2") for _ in range(MAX_STREAMS_PER_CLIENT + 3)]
    statuses = [status for _, status, _ in mine]
    assert statuses == [200] * MAX_STREAMS_PER_CLIENT + [503] * 3
    assert all(b"too many event streams from this client" in data for _, status, data in mine if status == 503)

    # the other clients still get streams, up to the server's cap
    clients = [f"127.0.0.{n}" for n in range(3, 3 + MAX_STREAMS // MAX_STREAMS_PER_CLIENT - 1)]
    others = [_open_stream(port, source) for source in clients for _ in range(MAX_STREAMS_PER_CLIENT)]
    assert [status for _, status, _ in others] == [200] * (MAX_STREAMS - MAX_STREAMS_PER_CLIENT)
    late = _open_stream(port, "127.0.0.30")  # every slot taken now, by four clients
    assert late[1] == 503 and b"too many event streams\n" in late[2]
    others.append(late)

    # an accepted stream is not cut at the request deadline: it still carries keep-alives after it
    time.sleep(DEADLINE_S + 1)
    for sock, status, _ in mine + others:
        if status == 200:
            sock.settimeout(5)
            assert b": ping" in sock.recv(65536)
    for s, _, _ in mine + others:
        s.close()
    refusals = _refusals(proc)
    assert refusals == {Refusal.CLIENT_STREAMS.value: 3, Refusal.STREAMS.value: 1}


def test_a_slow_trickle_is_cut_at_the_request_deadline(dashboard):
    port, proc = dashboard
    whole = f"GET /state HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Pad: {'a' * 200}\r\n\r\n".encode()
    sock = connect(port, source="127.0.0.7")
    cut, sent = trickle(sock, whole, limit_s=10 * DEADLINE_S)  # ~12 s for the whole request
    assert cut and sent < len(whole)
    sock.close()
    # meanwhile a good client was never kept waiting, and is still served
    status, body = request(port, "GET", "/healthz")
    assert status == 200 and body == b"ok\n"
    assert _refusals(proc) == {Refusal.DEADLINE.value: 1}


def test_the_per_client_connection_cap_holds(dashboard):
    port, proc = dashboard
    held = []
    for _ in range(20):
        sock = connect(port, source="127.0.0.8")
        sock.sendall(b"GET /state HTTP/1.1\r\n")
        held.append(sock)
    assert settle_open(held, 8) == 8  # HttpBounds.max_connections_per_client
    status, _ = request(port, "GET", "/healthz", source="127.0.0.9")
    assert status == 200
    assert all(closed_by_server(s, DEADLINE_S + 10) for s in held)
    for s in held:
        s.close()
    assert _refusals(proc) == {Refusal.CLIENT_CONNECTIONS.value: 12, Refusal.DEADLINE.value: 8}
