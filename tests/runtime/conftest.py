"""Fixtures for the chain tests: a real anvil per pytest worker, a clean chain state per test.

Each xdist worker starts its own anvil on a free loopback port (session scope), and every test runs
between an ``evm_snapshot`` and an ``evm_revert``, so tests are independent and order-free. A test
that needs a second chain starts one with :class:`runtime.chain.anvil.Anvil` itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from web3 import Web3

from runtime.chain.anvil import DEV_PRIVATE_KEYS, Anvil, AnvilError, find_tool
from runtime.chain.client import connect, load_artifact


@pytest.fixture(scope="session")
def anvil_node() -> Iterator[Anvil]:
    """A real anvil process for this worker, stopped at the end of the session."""
    try:
        find_tool("anvil")
        find_tool("forge")
    except AnvilError as exc:
        pytest.skip(f"Foundry tools missing ({exc}); run `make setup`")
    load_artifact("StreamChannels")  # builds contracts/out once if needed (file-locked across workers)
    load_artifact("SettlementAVS")
    node = Anvil(chain_id=31337)
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def w3(anvil_node: Anvil) -> Iterator[Web3]:
    """A Web3 on the worker's anvil; the chain is rolled back after the test."""
    web3 = connect(anvil_node.rpc_url)
    snapshot = web3.provider.make_request("evm_snapshot", [])["result"]
    try:
        yield web3
    finally:
        web3.provider.make_request("evm_revert", [snapshot])


@pytest.fixture
def keys() -> tuple[str, ...]:
    """anvil's public development keys: 0 deployer/payer, 1 payee, 2 a third party, ..."""
    return DEV_PRIVATE_KEYS
