"""The anvil process manager: starts on free ports, answers, stops cleanly, fails loudly."""

from __future__ import annotations

import os
import socket

import pytest

from runtime.chain.anvil import Anvil, AnvilError, find_tool
from runtime.chain.client import connect

pytestmark = pytest.mark.chain


@pytest.fixture(autouse=True)
def _needs_anvil() -> None:
    try:
        find_tool("anvil")
    except AnvilError as exc:
        pytest.skip(f"anvil missing ({exc}); run `make setup`")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_start_answer_stop() -> None:
    node = Anvil(chain_id=777)
    with node:
        assert node.is_running()
        assert connect(node.rpc_url).eth.chain_id == 777
        pid = node.pid
        assert pid is not None and _alive(pid)
    assert not node.is_running()
    assert not _alive(pid)
    node.stop()  # idempotent


def test_two_nodes_get_distinct_ports() -> None:
    with Anvil(chain_id=1001) as a, Anvil(chain_id=1002) as b:
        assert a.port != b.port
        assert connect(a.rpc_url).eth.chain_id == 1001
        assert connect(b.rpc_url).eth.chain_id == 1002


def test_busy_fixed_port_fails_with_the_log() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        node = Anvil(port=port, startup_timeout=10)
        with pytest.raises(AnvilError):
            node.start()
        assert not node.is_running()


def test_missing_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENSTREAMING_ANVIL", "/nonexistent/anvil")
    with pytest.raises(AnvilError, match="OPENSTREAMING_ANVIL"):
        Anvil().start()


def test_node_started_from_a_worker_thread_outlives_the_thread() -> None:
    """The parent-death signal follows the starting thread, so it is only armed from the main thread."""
    import threading

    node = Anvil(chain_id=778)
    thread = threading.Thread(target=node.start)
    thread.start()
    thread.join()
    try:
        assert node.is_running()
        assert connect(node.rpc_url).eth.chain_id == 778
    finally:
        node.stop()
