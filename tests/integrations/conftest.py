"""Integrations with external RL libraries: every library comes from the ``[marl]`` extra (``make setup``).

A missing library fails the test with a clear message instead of skipping it silently.
"""

from __future__ import annotations

import importlib

import pytest

from envs.scenario import load_scenario

#: Episodes short enough that a test sees a few of them.
SHORT_STEPS = 20


def require(*modules: str) -> None:
    """Import ``modules`` or fail: they come from ``pip install -e '.[marl]'`` (``make setup``)."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            pytest.fail(f"{name} is not installed ({err}); run `make setup` (installs the [marl] extra)", pytrace=False)


@pytest.fixture
def short_scenario():
    return load_scenario("default").replace(episode_steps=SHORT_STEPS)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: these nets are tiny and the CI box has two shared cores."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
