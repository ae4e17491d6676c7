"""Raw HTTP clients on loopback for the attack tests: any source address in 127.0.0.0/8, bounded waits.

On Linux the whole of 127.0.0.0/8 is the loopback interface, so a socket bound to ``127.0.0.N``
before it connects is, to the server, a different client (peer address) from ``127.0.0.1``.
"""

from __future__ import annotations

import json
import socket
import time


def connect(port: int, source: str = "127.0.0.1", timeout: float = 5.0) -> socket.socket:
    """A TCP connection to ``127.0.0.1:port`` from ``source`` (any port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    source: str = "127.0.0.1",
    timeout: float = 10.0,
    host: str | None = None,
) -> tuple[int, bytes]:
    """One whole request from ``source``; the status and the body (read to the server's close)."""
    with connect(port, source, timeout) as sock:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        data = read_to_close(sock, timeout)
    status_line, _, rest = data.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), payload


def get_json(port: int, path: str, source: str = "127.0.0.1", timeout: float = 10.0) -> dict:
    """``GET path`` as JSON (asserting a 200)."""
    status, payload = request(port, "GET", path, source=source, timeout=timeout)
    assert status == 200, (status, payload[:200])
    return json.loads(payload)


def read_to_close(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes (or ``timeout`` passes, then what came)."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """True if the server closes (or resets) ``sock`` within ``timeout``; what it sends is skipped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def still_open(sock: socket.socket) -> bool:
    """True if the server has neither closed ``sock`` nor sent anything on it (checked without waiting)."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)  # data or b"" (closed): not open and silent
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float = 60.0) -> None:
    """Wait until something accepts on ``127.0.0.1:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port}")


def settle_open(socks: list[socket.socket], expected: int, timeout: float = 10.0) -> int:
    """How many of ``socks`` the server holds open and silent, once that count reaches ``expected``.

    The server refuses connections beyond its caps asynchronously; this waits (bounded) for it to
    have answered them, and returns the count it finds at the end (``expected`` unless it timed out).
    """
    deadline = time.monotonic() + timeout
    count = sum(still_open(s) for s in socks)
    while count != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        count = sum(still_open(s) for s in socks)
    return count


def trickle(sock: socket.socket, whole: bytes, limit_s: float, gap_s: float = 0.05) -> tuple[bool, int]:
    """Sends ``whole`` one byte every ``gap_s`` for at most ``limit_s``: (was the connection cut, bytes sent).

    Every single read the server makes gets its byte quickly, so only a deadline on the whole request
    can cut this client off.
    """
    started, sent = time.monotonic(), 0
    while sent < len(whole) and time.monotonic() - started < limit_s:
        try:
            sock.sendall(whole[sent : sent + 1])
        except OSError:
            return True, sent
        sent += 1
        if not still_open(sock):
            return True, sent
        time.sleep(gap_s)
    return False, sent
