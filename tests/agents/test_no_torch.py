"""``agents`` must run without torch: importing every module of the package never imports it."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import importlib, pkgutil, sys
import agents
names = [m.name for m in pkgutil.iter_modules(agents.__path__, "agents.")]
for name in names:
    importlib.import_module(name)
assert "agents.features" in names and "agents.baselines" in names, names
assert "torch" not in sys.modules, "torch imported by " + ", ".join(names)
print(len(names))
"""


def test_no_module_under_agents_imports_torch():
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 7
