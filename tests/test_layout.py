"""The project's import graph: no cycles, and the runtime's rooms import one way (chain <- settlement <- node).

Every ``import`` in every module counts, including the ones inside functions: a lazy import hides a
cycle from start-up, not from the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("envs", "agents", "training", "eval", "runtime")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules that ``name`` imports (a name imported from a package counts as its submodule if one exists)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    modules = _modules()
    g = nx.DiGraph()
    g.add_nodes_from(modules)
    for name, path in modules.items():
        for target in _imports(name, path, set(modules)):
            g.add_edge(name, target)
    return g


def test_the_graph_sees_the_known_arrows(graph: nx.DiGraph) -> None:
    # The checker must see real edges, lazy ones included, or the tests below prove nothing.
    assert graph.has_edge("runtime.node.protocol", "runtime.node.wire")
    assert graph.has_edge("training.export", "training.evaluation")  # imported inside main()
    assert graph.has_edge("runtime.mesh", "runtime.node.mesh")
    assert graph.has_edge("runtime.node.dashboard_feed", "runtime.dashboard")
    assert graph.has_edge("eval.watch", "runtime.dashboard")


def test_no_import_cycle(graph: nx.DiGraph) -> None:
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, f"import cycles: {cycles[:5]}"


@pytest.mark.parametrize(
    ("room", "forbidden"),
    [
        ("runtime.chain", ("runtime.node", "runtime.settlement")),
        ("runtime.settlement", ("runtime.node",)),
        ("runtime.configfile", ("runtime.node", "runtime.chain", "runtime.settlement")),
        # the HTTP server under the settlement service and the dashboard knows neither
        ("runtime.http_server", ("runtime.node", "runtime.chain", "runtime.settlement", "runtime.dashboard")),
        ("agents", ("training", "eval", "runtime", "envs")),
        ("envs", ("training", "eval", "runtime")),
        ("runtime", ("training", "eval")),
        # the dashboard is a view both feeds use: the mesh (runtime.node) and eval.watch (envs)
        (
            "runtime.dashboard",
            ("runtime.node", "runtime.chain", "runtime.settlement", "envs", "agents", "training", "eval"),
        ),
    ],
)
def test_rooms_import_one_way(graph: nx.DiGraph, room: str, forbidden: tuple[str, ...]) -> None:
    bad = [
        (a, b)
        for a, b in graph.edges
        if (a == room or a.startswith(room + ".")) and any(b == f or b.startswith(f + ".") for f in forbidden)
    ]
    assert not bad, f"{room} must not import {forbidden}: {bad}"
