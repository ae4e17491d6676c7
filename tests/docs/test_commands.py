"""The shell commands and YAML of the README and the docs still match the code.

* every ``python -m MODULE`` in a shell block is a command whose ``--help`` the docs build captures
  (``docs/hooks/capture_help.py``), and every such ``--help`` runs, without a traceback, and names
  only files that exist;
* every ``make TARGET`` is a target of the Makefile;
* every YAML block that is a scenario (or a part of one) is accepted by ``envs.scenario``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from envs.scenario import Scenario, as_scenario
from tests.docs.blocks import ROOT, blocks, documents

SHELL = [b for b in blocks() if b.lang in ("bash", "sh", "console", "")]
sys.path.insert(0, str(ROOT / "docs" / "hooks"))
from capture_help import COMMANDS  # noqa: E402

CAPTURED = {module for module, _ in COMMANDS}
#: Tools the docs run that are not the project's own (installed by the [dev] extra).
EXTERNAL = {"pytest", "mkdocs"}


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "hooks" / "capture_help.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_every_documented_command_is_a_captured_cli():
    used = {(b.id, module) for b in SHELL for module in re.findall(r"python -m ([\w.]+)", b.code)}
    missing = {(where, m) for where, m in used if m not in CAPTURED and m not in EXTERNAL}
    assert not missing, f"commands in the docs whose --help nobody captures: {sorted(missing)}"
    for module in EXTERNAL & {m for _, m in used}:
        assert importlib.util.find_spec(module) is not None, f"{module} is not installed (the [dev] extra has it)"


def test_every_help_runs_and_names_only_files_that_exist(helps):
    assert set(helps) == {" ".join(("python -m", m, *a, "--help")) for m, a in COMMANDS}
    for command, text in helps.items():
        assert text.strip(), f"{command} printed nothing"
        assert "Traceback" not in text, f"{command}:\n{text[-2000:]}"
        assert "%%" not in text, f"{command} prints a doubled percent sign"
        for path in re.findall(r"(?<![/\w.-])((?:[\w.-]+/)+[\w.-]+\.(?:py|yaml|sol|json|md))\b", text):
            if "<" in path or path.startswith(("runs/", "checkpoints/", "eval/results/")):
                continue  # outputs a run writes
            assert (ROOT / path).exists(), f"{command} points to {path}, which does not exist"


def test_every_make_target_exists():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, flags=re.M))
    used = {(b.id, t) for b in SHELL for t in re.findall(r"^\s*make ([a-z][\w-]*)", b.code, flags=re.M)}
    assert used, "no make command found in the docs"
    assert not {u for u in used if u[1] not in targets}, f"make targets that do not exist: {used}"


SCENARIO_YAML = []
for _b in blocks():
    if _b.lang == "yaml":
        _data = yaml.safe_load(_b.code)
        if isinstance(_data, dict) and set(_data) <= set(Scenario.__struct_fields__):
            SCENARIO_YAML.append(pytest.param(_data, id=_b.id))


@pytest.mark.parametrize("data", SCENARIO_YAML)
def test_scenario_yaml_blocks_are_valid_scenarios(data):
    as_scenario({"nodes": 40, **data})


#: Files the docs name that a run writes (not in a checkout).
OUTPUTS = {"eval/results/bench.json", "contracts/out-audit/", "checkpoints/attacker_vs_default/export/"}
SHIPPED_CHECKPOINTS = {"default", "pre_robust", "pre_gossip", "attacker"}
TOP = {"envs", "agents", "training", "eval", "runtime", "contracts", "conf", "tests", "docs", "checkpoints"}


def test_every_file_the_docs_name_exists():
    """A `path/with.ext` or `directory/` of the project named in the README or a page exists."""
    missing = set()
    for doc in documents():
        for path in re.findall(r"`([\w.-]+(?:/[\w.*-]+)+/?)`", doc.read_text(encoding="utf-8")):
            last = path.rstrip("/").rsplit("/", 1)[-1]
            if path.split("/")[0] not in TOP or path in OUTPUTS or re.search(r"\*|\.\.\.|NAME|RUN", path):
                continue
            if path.startswith("checkpoints/") and path.split("/")[1] not in SHIPPED_CHECKPOINTS:
                continue  # a training run's output
            if (path.endswith("/") or "." in last) and not (ROOT / path).exists():
                missing.add((doc.relative_to(ROOT).as_posix(), path))
    assert not missing, f"the docs name files that do not exist: {sorted(missing)}"


#: Modules with a ``__main__`` that are the same command under another name, or a benchmark's worker.
ALIASES = {
    "runtime.node.server": "runtime.node",
    "runtime.node.mesh": "runtime.mesh",
    "runtime.settlement.operator": "runtime.operator",
    "runtime.settlement.aggregator": "runtime.aggregator",
    "eval.bench_node": "eval.bench node",
}


def test_every_command_of_the_project_is_in_the_cli_reference():
    """A new ``python -m`` entry point gets its ``--help`` into the reference (capture_help.COMMANDS)."""
    found = set()
    for package in ("envs", "agents", "training", "eval", "runtime"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if re.search(r"""^if __name__ == ["']__main__["']:""", text, flags=re.M) or path.name == "__main__.py":
                module = path.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".").removesuffix(".__main__")
                found.add(module)
    uncaptured = {m for m in found if m not in CAPTURED and m not in ALIASES}
    assert not uncaptured, f"commands without a captured --help (add them to docs/hooks/capture_help.py): {uncaptured}"
