"""Fixtures of the live-node tests: a process cluster that is always cleaned up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.runtime.node.procs import Cluster


@pytest.fixture
def cluster(tmp_path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def chain():
    """A fresh anvil with StreamChannels deployed: ``(rpc_url, client)``; anvil stops after the test."""
    from runtime.chain.anvil import DEV_PRIVATE_KEYS, Anvil, AnvilError, find_tool
    from runtime.chain.client import StreamChannelsClient, connect, load_artifact

    try:
        find_tool("anvil")
    except AnvilError as exc:
        pytest.skip(f"anvil missing ({exc}); run `make setup`")
    load_artifact("StreamChannels")
    with Anvil(chain_id=31337) as node:
        client = StreamChannelsClient.deploy(connect(node.rpc_url), DEV_PRIVATE_KEYS[0])
        yield node.rpc_url, client
