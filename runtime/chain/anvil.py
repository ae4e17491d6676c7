"""Start and stop a real anvil (Foundry's local Ethereum node) on a free loopback port.

anvil comes from npm (``@foundry-rs/anvil``, installed by ``make setup``). :class:`Anvil` runs the
native binary directly (not the node wrapper) so that stopping it stops the chain. Nodes still running
at interpreter exit are stopped, and on Linux a node started from the main thread is also told by the
kernel to exit when its parent dies, so even a killed test worker does not leak one::

    with Anvil(chain_id=31337) as node:
        w3 = Web3(Web3.HTTPProvider(node.rpc_url))

The chain uses anvil's public development mnemonic; :data:`DEV_PRIVATE_KEYS` are its first ten
well-known keys (for local chains only: they hold nothing anywhere real).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["DEV_MNEMONIC", "DEV_PRIVATE_KEYS", "REPO_ROOT", "Anvil", "AnvilError", "find_tool", "free_port"]

REPO_ROOT = Path(__file__).resolve().parents[2]

#: anvil's default mnemonic (public; local development only).
DEV_MNEMONIC = "test test test test test test test test test test test junk"

#: The first ten accounts anvil derives from :data:`DEV_MNEMONIC` (public; local development only).
DEV_PRIVATE_KEYS: tuple[str, ...] = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)


class AnvilError(RuntimeError):
    """anvil could not be found or did not come up."""


def _npm_platform() -> str:
    system = {"linux": "linux", "darwin": "darwin", "win32": "win32"}.get(sys.platform, sys.platform)
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"{system}-{arch}"


def find_tool(name: str) -> str:
    """Path of a Foundry tool (``anvil`` or ``forge``).

    Looks, in order, at ``$OPENSTREAMING_<NAME>``, the native binary that npm installed under
    ``node_modules/@foundry-rs/<name>-<platform>/bin/``, ``node_modules/.bin/<name>`` and ``PATH``.
    """
    override = os.environ.get(f"OPENSTREAMING_{name.upper()}")
    if override:
        if not Path(override).is_file():
            raise AnvilError(f"OPENSTREAMING_{name.upper()}={override} is not a file")
        return override
    suffix = ".exe" if sys.platform == "win32" else ""
    native = REPO_ROOT / "node_modules" / "@foundry-rs" / f"{name}-{_npm_platform()}" / "bin" / f"{name}{suffix}"
    if native.is_file():
        return str(native)
    wrapper = REPO_ROOT / "node_modules" / ".bin" / name
    if wrapper.is_file():
        return str(wrapper)
    found = shutil.which(name)
    if found:
        return found
    raise AnvilError(f"{name} not found: run `make setup` (npm ci installs @foundry-rs/{name})")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Resolved once here: the child must not import or load anything between fork and exec.
_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1

#: every Anvil started by this process and not yet stopped (stopped at interpreter exit)
_LIVE: weakref.WeakSet[Anvil] = weakref.WeakSet()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the kernel sends the child SIGTERM when the thread that started it exits."""
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


@atexit.register
def _stop_all() -> None:
    for node in list(_LIVE):
        with contextlib.suppress(Exception):
            node.stop()


class Anvil:
    """A local anvil node on a free loopback port; a context manager.

    :param chain_id: the chain id anvil reports (and signs transactions for).
    :param host: interface to listen on (loopback by default).
    :param port: a fixed port; by default a free one is picked (retrying on a race).
    :param accounts: number of funded development accounts.
    :param balance_eth: each development account's starting balance in ETH.
    :param extra_args: more anvil command-line arguments.
    :param startup_timeout: seconds to wait for the RPC endpoint to answer.
    """

    def __init__(
        self,
        chain_id: int = 31337,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        accounts: int = 10,
        balance_eth: int = 10_000,
        extra_args: tuple[str, ...] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        self.chain_id = chain_id
        self.host = host
        self.port = port
        self.accounts = accounts
        self.balance_eth = balance_eth
        self.extra_args = extra_args
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def rpc_url(self) -> str:
        """The node's HTTP JSON-RPC endpoint."""
        if self.port is None:
            raise AnvilError("anvil is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The anvil process id while it runs."""
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        """Whether the anvil process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> Anvil:
        """Starts anvil and waits until its RPC answers with the right chain id."""
        if self.is_running():
            return self
        binary = find_tool("anvil")
        fixed_port = self.port is not None
        last_error = ""
        for _attempt in range(1 if fixed_port else 5):
            port = self.port if fixed_port else free_port(self.host)
            assert port is not None
            self._spawn(binary, port)
            try:
                self._wait_ready()
                return self
            except AnvilError as exc:
                last_error = str(exc)
                self.stop()
        raise AnvilError(last_error)

    def _spawn(self, binary: str, port: int) -> None:
        self.port = port
        cmd = [
            binary,
            "--host", self.host,
            "--port", str(port),
            "--chain-id", str(self.chain_id),
            "--accounts", str(self.accounts),
            "--balance", str(self.balance_eth),
            "--mnemonic", DEV_MNEMONIC,
            *self.extra_args,
        ]  # fmt: skip
        self._log = tempfile.NamedTemporaryFile(prefix="anvil-", suffix=".log")  # noqa: SIM115
        self._process = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # The death signal follows the starting *thread*: only ask for it from the main thread.
            preexec_fn=_die_with_parent
            if _PRCTL is not None and threading.current_thread() is threading.main_thread()
            else None,
        )
        _LIVE.add(self)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise AnvilError(f"anvil exited during startup:\n{self._tail()}")
            request = urllib.request.Request(self.rpc_url, body, {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=1.0) as response:
                    answer = json.loads(response.read())
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.05)
                continue
            if int(answer.get("result", "0x0"), 16) != self.chain_id:
                raise AnvilError(f"port {self.port} answers for another chain: {answer}")
            return
        raise AnvilError(f"anvil did not answer on {self.rpc_url} within {self.startup_timeout}s:\n{self._tail()}")

    def _tail(self, limit: int = 2000) -> str:
        if self._log is None:
            return ""
        try:
            return Path(self._log.name).read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """Stops anvil (SIGTERM, then SIGKILL after ``timeout`` seconds) and removes its log."""
        process, self._process = self._process, None
        _LIVE.discard(self)
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running on {self.rpc_url}" if self.is_running() else "stopped"
        return f"Anvil(chain_id={self.chain_id}, {state})"
