"""Docs that cannot lie: every Python block of the README and the docs runs as written.

Blocks marked ``<!-- docs-test: slow -->`` (a real training step, a Ray head) run among the slow
tests, blocks marked ``<!-- docs-test: chain -->`` start anvil; see ``tests/docs/blocks.py``.
Run just these: ``python -m pytest -q tests/docs``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from contextlib import nullcontext

import pytest
from filelock import FileLock

from tests.docs.blocks import ROOT, Block, blocks

PYTHON_BLOCKS = [b for b in blocks() if b.lang == "python" and b.marks[:1] != ("skip",)]
MARKS = {"slow": pytest.mark.slow, "chain": pytest.mark.chain}


def _param(block: Block):
    unknown = set(block.marks) - set(MARKS)
    assert not unknown, f"{block.id}: unknown docs-test marker(s) {unknown}"
    return pytest.param(block, id=block.id, marks=[MARKS[m] for m in block.marks])


def test_there_are_python_blocks_to_run():
    assert any(b.path.name == "README.md" for b in PYTHON_BLOCKS)
    assert any("tutorials" in b.path.parts for b in PYTHON_BLOCKS)


@pytest.mark.parametrize("block", [_param(b) for b in PYTHON_BLOCKS])
def test_python_block_runs_as_written(block: Block, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.setdefault("OMP_NUM_THREADS", "1")
    # a fresh folder, as if it were the checkout: what the block writes stays out of the real one
    for name in ("checkpoints", "conf"):
        (tmp_path / name).symlink_to(ROOT / name)
    # a block that starts a Ray head takes the lock of tests/integrations/test_rllib.py: one head at a time
    ray = "start_local_head" in block.code
    lock = FileLock(os.path.join(tempfile.gettempdir(), "openstreaming-ray-tests.lock")) if ray else nullcontext()
    with lock:
        proc = subprocess.run(
            [sys.executable, "-c", block.code],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=540,  # under make test's --timeout=600
        )
    assert proc.returncode == 0, f"{block.id} failed:\n{proc.stderr[-3000:]}"
