"""``mkdocs build --strict`` succeeds: no warning, no broken link, every generated reference page written.

The same build as ``make docs``, into a temporary folder.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.docs.blocks import ROOT

GENERATED = (
    "reference/scenario",
    "reference/training-config",
    "reference/node-config",
    "reference/wire",
    "reference/contracts",
    "reference/cli",
    "reference/metrics",
    "reference/api/envs",
    "reference/api/runtime",
)


def test_docs_build_strictly(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,  # under make test's --timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-4000:]
    for page in GENERATED:
        assert (site / page / "index.html").is_file(), page
    scenario = (site / "reference" / "scenario" / "index.html").read_text()
    assert "blackhole 25 %" in scenario  # conf/scenario/blackholes.yaml's effective adversaries
    wire = (site / "reference" / "wire" / "index.html").read_text()
    assert "hello" in wire and "receipt" in wire
