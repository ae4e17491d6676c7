"""MkDocs hook: the reference pages, written from the code at every build so they cannot drift.

``on_files`` adds these generated pages (none of them is in git):

* ``reference/scenario.md``: the docstring of ``envs/scenario.py``, every key of the
  :class:`envs.scenario.Scenario` struct (type, default, bounds) and every shipped scenario's
  effective adversaries, read from the files;
* ``reference/training-config.md``: ``conf/train.yaml``, ``conf/attack.yaml`` and ``conf/policy/*``
  as they are;
* ``reference/node-config.md``: the docstring of ``runtime/node/config.py`` and every key of the node,
  operator and aggregator configs;
* ``reference/wire.md``: every frame of ``runtime/node/wire.py`` with its fields and bounds;
* ``reference/contracts.md``: the events, errors, constants and external functions of
  ``contracts/src/*.sol`` with their NatSpec;
* ``reference/cli.md``: every command's ``--help`` (one subprocess, ``docs/hooks/capture_help.py``);
* ``reference/metrics.md``: every metric of ``envs.core.METRIC_NAMES`` (the build fails when one
  has no description here);
* ``reference/api/*.md``: one mkdocstrings page per package, a section per public module;
* ``assets/results/*.png``: the plots of ``eval/results/``.

A page that cannot be generated (a module renamed, a metric without a description) fails the build.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
GENERATED = (
    '!!! note "Generated"\n'
    "    This page is generated from {what} at every docs build; edit the code, not this page.\n\n"
)

#: What each metric of ``envs.core.METRIC_NAMES`` means (the build fails if one is missing).
METRICS: dict[str, str] = {
    "delivery_rate": "pieces delivered by their deadline over pieces sent (honest streams)",
    "mean_latency": "mean steps from emission to delivery of the delivered pieces",
    "welfare": "value of the pieces delivered by their deadline, summed over the episode",
    "dishonest_share": "share of the hand-overs (hops) that went to a dishonest node",
    "dishonest_payments_share": "share of everything paid to forwarders that dishonest nodes received",
    "honest_profit_gini": "Gini coefficient of the honest nodes' profits (0: equal)",
    "empathy_precision": "of the neighbours the empathy check flags as incoherent, the share really dishonest",
    "empathy_recall": "of the dishonest neighbours, the share the empathy check flags",
    "forged_receipts_rejected": "forged delivery claims rejected (receipts: signed) in the episode",
    "detection_steps": "per dropping cheat, steps until most of its honest neighbours rate it below 0.5 "
    "(agents.gossip.rating; the steps so far while it is not found out), averaged over the droppers",
    "detected_share": "share of the dropping cheats that most of their honest neighbours rate below 0.5",
    "false_accusations": "share of the honest nodes that most of their honest neighbours rate below 0.5, "
    "averaged over the checks (every gossip period)",
}

#: The packages of the API reference.
API_PACKAGES = ("envs", "agents", "training", "eval", "runtime")
#: Where the generated pages read from: when code moves, change these (the build names what failed).
SCENARIO_MODULE = "envs.scenario"
NODE_CONFIG_MODULE = "runtime.node.config"
SERVICE_CONFIG_MODULES = (
    ("runtime.settlement.operator", "python -m runtime.operator --config FILE"),
    ("runtime.settlement.aggregator", "python -m runtime.aggregator --config FILE"),
)
WIRE_MODULE = "runtime.node.wire"
METRICS_MODULE = "envs.core"


# ---------------------------------------------------------------------------- helpers


def _code(text: str, lang: str = "text") -> str:
    return f"```{lang}\n{text.rstrip()}\n```\n"


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _cell(value: Any) -> str:
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return f"`{text}`" if text else ""


def _describe(t: Any) -> tuple[str, str]:
    """(type, bounds) of a ``msgspec.inspect`` type."""
    import msgspec.inspect as mi

    bounds = []
    for attr, sign in (
        ("ge", ">="),
        ("gt", ">"),
        ("le", "<="),
        ("lt", "<"),
        ("min_length", "len >="),
        ("max_length", "len <="),
    ):
        value = getattr(t, attr, None)
        if value is not None:
            bounds.append(f"{sign} {value}")
    if getattr(t, "pattern", None):
        bounds.append(f"matches {t.pattern}")
    if isinstance(t, mi.UnionType):
        parts = [_describe(x) for x in t.types]
        return " | ".join(p[0] for p in parts), "; ".join(p[1] for p in parts if p[1])
    if isinstance(t, mi.LiteralType):
        return " | ".join(repr(v) for v in t.values), ""
    if isinstance(t, (mi.ListType, mi.TupleType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        item = getattr(t, "item_type", None)
        inner = _describe(item)[0] if item is not None else "..."
        return f"list[{inner}]", "; ".join(bounds)
    if isinstance(t, mi.DictType):
        return f"dict[{_describe(t.key_type)[0]}, {_describe(t.value_type)[0]}]", "; ".join(bounds)
    if isinstance(t, mi.StructType):
        return t.cls.__name__, ""
    name = type(t).__name__.removesuffix("Type").lower()
    return {"none": "null", "int": "int", "float": "float", "str": "str", "bool": "bool"}.get(name, name), "; ".join(
        bounds
    )


def _default(field: Any) -> str:
    import msgspec
    import msgspec.inspect as mi

    if field.default is not mi.NODEFAULT:
        value = field.default
    elif field.default_factory is not mi.NODEFAULT:
        value = field.default_factory()
    else:
        return "(required)"
    if isinstance(value, msgspec.Struct):
        return "(see below)"
    return json.dumps(msgspec.to_builtins(value))


def struct_rows(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key path, type, default, bounds) of every field of a msgspec struct, nested structs expanded."""
    import msgspec.inspect as mi

    rows = []
    nested = []
    for field in mi.type_info(cls).fields:
        path = f"{prefix}{field.encode_name}"
        typ, bounds = _describe(field.type)
        rows.append((path, typ, _default(field), bounds))
        inner = field.type
        if isinstance(inner, (mi.ListType, mi.VarTupleType)) and isinstance(inner.item_type, mi.StructType):
            nested.append((inner.item_type.cls, f"{path}[]."))
            continue
        if isinstance(inner, mi.UnionType):
            structs = [x for x in inner.types if isinstance(x, mi.StructType)]
            inner = structs[0] if len(structs) == 1 else None
        if isinstance(inner, mi.StructType):
            nested.append((inner.cls, f"{path}."))
    for sub, sub_prefix in nested:
        rows.extend(struct_rows(sub, sub_prefix))
    return rows


def struct_table(cls: type) -> str:
    lines = ["| key | type | default | bounds |", "|---|---|---|---|"]
    lines += [f"| `{p}` | {_cell(t)} | {_cell(d)} | {_escape(b)} |" for p, t, d, b in struct_rows(cls)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- pages


def page_scenario() -> str:
    scenario = importlib.import_module(SCENARIO_MODULE)
    out = ["# Scenario schema\n", GENERATED.format(what="`envs/scenario.py` and `conf/`")]
    out.append(
        "A scenario is a YAML file (or a dict) of the keys below; `envs.scenario.load_scenario` reads a shipped "
        "name (`conf/scenario/NAME.yaml`) or a path, and a bad key is a one-line error naming it.\n\n"
        '!!! warning "Naming `adversaries` sets every kind not named to 0"\n'
        "    Without an `adversaries` key a scenario gets the defaults below (10 % bandwidth liars, 10 % "
        "blackholes, 10 % overpricers). As soon as a file names `adversaries`, every kind it does not name is 0: "
        "`adversaries: {blackhole: 0.25}` is a blackholes-only mesh. `eval.evaluate` prints the effective "
        "adversaries in its table header, and the table at the end of this page lists them for every shipped "
        "scenario.\n"
    )
    out.append("## The schema, as the module documents it\n")
    out.append(_code(textwrap.dedent(scenario.__doc__).strip()))
    out.append("\n## Every key\n")
    out.append("Read from the `Scenario` struct; nested keys are written with dots.\n\n")
    out.append(struct_table(scenario.Scenario))
    for kind, cls in scenario.ADVERSARY_TYPES.items():
        out.append(f"\n`adversaries.{kind}` in mapping form (`{cls.__name__}`):\n\n")
        out.append(struct_table(cls))
    out.append("\n## Shipped scenarios and their effective adversaries\n\n")
    out.append("| file | nodes | topology | adversaries | dynamics | seed |\n|---|---:|---|---|---|---:|\n")
    files = sorted((ROOT / "conf" / "scenario").glob("*.yaml")) + sorted((ROOT / "conf" / "heldout").glob("*.yaml"))
    for path in files:
        s = scenario.load_scenario(path)
        dyn = ", ".join(k for k in ("churn", "turn_dishonest", "load_shift") if getattr(s.dynamics, k)) or "none"
        rel = path.relative_to(ROOT).as_posix()
        out.append(f"| `{rel}` | {s.nodes} | {s.topology.kind} | {s.adversary_summary()} | {dyn} | {s.seed} |\n")
    return "".join(out)


def page_training_config() -> str:
    out = ["# Training configuration\n", GENERATED.format(what="the files under `conf/`")]
    out.append(
        "Training is configured with Hydra: `python -m training.train key=value ...` overrides any field of "
        "`conf/train.yaml` (`python -m training.train --help` prints them all), `python -m training.attack` "
        "reads `conf/attack.yaml`, and `policy=NAME` picks `conf/policy/NAME.yaml`. Every field is documented "
        "on its line.\n"
    )
    conf = ROOT / "conf"
    files = [*sorted(conf.glob("*.yaml")), *sorted((conf / "policy").glob("*.yaml"))]
    for rel in (p.relative_to(ROOT).as_posix() for p in files):
        out.append(f"\n## `{rel}`\n\n")
        out.append(_code((ROOT / rel).read_text(encoding="utf-8"), "yaml"))
    return "".join(out)


def _structs_of(module: Any, suffix: str = "Config") -> list[type]:
    import msgspec

    return [
        obj
        for name, obj in vars(module).items()
        if inspect.isclass(obj)
        and issubclass(obj, msgspec.Struct)
        and obj.__module__ == module.__name__
        and name.endswith(suffix)
    ]


def page_node_config() -> str:
    config = importlib.import_module(NODE_CONFIG_MODULE)
    out = ["# Node configuration\n", GENERATED.format(what="`runtime/node/config.py` and `runtime/settlement/`")]
    out.append("`python -m runtime.node --config FILE` reads a YAML or JSON file of these keys.\n\n")
    out.append(_code(textwrap.dedent(config.__doc__).strip()))
    out.append("\n## Every key of a node config\n\n")
    out.append(struct_table(config.NodeConfig))
    for module_name, command in SERVICE_CONFIG_MODULES:
        module = importlib.import_module(module_name)
        structs = _structs_of(module)
        if not structs:
            raise RuntimeError(f"{module_name} defines no msgspec struct named *Config")
        for cls in structs:
            out.append(f"\n## `{cls.__name__}` (`{command}`)\n\n")
            doc = inspect.getdoc(cls)
            if doc:
                out.append(doc + "\n\n")
            out.append(struct_table(cls))
    return "".join(out)


def page_wire() -> str:
    import msgspec

    wire = importlib.import_module(WIRE_MODULE)
    out = ["# Wire protocol\n", GENERATED.format(what="`runtime/node/wire.py`")]
    out.append(_code(textwrap.dedent(wire.__doc__).strip()))
    constants = {k: v for k, v in vars(wire).items() if k.isupper() and isinstance(v, int) and not k.startswith("_")}
    out.append("\n## Constants\n\n| name | value |\n|---|---:|\n")
    out += [f"| `{k}` | {v:,} |\n" for k, v in constants.items()]
    out.append("\n## Frames\n")
    frames = [
        obj
        for obj in vars(wire).values()
        if inspect.isclass(obj)
        and issubclass(obj, msgspec.Struct)
        and obj.__module__ == wire.__name__
        and isinstance(getattr(obj.__struct_config__, "tag", None), str)
    ]
    if not frames:
        raise RuntimeError(f"{WIRE_MODULE} defines no tagged frame: the wire reference would be empty")
    for cls in frames:
        out.append(f"\n### `{cls.__struct_config__.tag}` (`{cls.__name__}`)\n\n")
        doc = inspect.getdoc(cls)
        if doc:
            out.append(doc + "\n\n")
        out.append(struct_table(cls))
    return "".join(out)


_SOL_DECL = re.compile(
    r"^\s*(event|error|function|constructor|modifier)\b|^\s*[\w\[\]]+\s+(public|external)\s+constant\b"
)


def _sol_items(text: str) -> list[tuple[str, str, str]]:
    """(kind, declaration, NatSpec) of every event, error, public constant and public/external function."""
    items = []
    doc: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("///"):
            doc.append(stripped[3:].strip())
            i += 1
            continue
        match = _SOL_DECL.match(line)
        if match:
            decl = [stripped]
            while not re.search(r"[;{]\s*$", decl[-1]) and i + 1 < len(lines):
                i += 1
                decl.append(lines[i].strip())
            text_decl = " ".join(decl).rstrip("{").rstrip().rstrip(";")
            kind = match.group(1) or "constant"
            public = kind != "function" or re.search(r"\b(external|public)\b", text_decl)
            if public and kind != "modifier":
                notes = " ".join(
                    d.removeprefix("@notice").removeprefix("@dev").strip() for d in doc if not d.startswith("@param")
                )
                items.append((kind, re.sub(r"\s+", " ", text_decl).replace("( ", "(").replace(" )", ")"), notes))
        doc = []
        i += 1
    return items


def page_contracts() -> str:
    out = ["# Contracts' interfaces and events\n", GENERATED.format(what="the Solidity sources in `contracts/src/`")]
    titles = {
        "event": "Events",
        "error": "Errors",
        "constant": "Constants",
        "constructor": "Constructor",
        "function": "Functions",
    }
    for path in sorted((ROOT / "contracts" / "src").glob("*.sol")):
        text = path.read_text(encoding="utf-8")
        out.append(f"\n## `{path.name}`\n\n")
        header = re.search(r"((?:^///.*\n)+)(?:abstract\s+)?(?:contract|library|interface)\s", text, re.M)
        if header:
            lines = [line.strip()[3:] for line in header.group(1).splitlines()]
            lines = [line for line in lines if not re.match(r"\s*@(title|author)\b", line)]
            lines = [re.sub(r"^@(notice|dev) ", "", line.strip()) for line in lines]
            notice = "\n".join(f"  {line}" if line.startswith("- ") else line for line in lines)
            out.append(_code(notice))
        items = _sol_items(text)
        for kind in ("constructor", "function", "event", "error", "constant"):
            group = [it for it in items if it[0] == kind]
            if not group:
                continue
            out.append(f"\n### {titles[kind]}\n\n")
            for _, decl, notes in group:
                out.append(f"- `{decl}`" + (f": {notes}" if notes else "") + "\n")
    return "".join(out)


def page_cli(helps: dict[str, str]) -> str:
    out = ["# Command-line tools\n", GENERATED.format(what="each command's own `--help`, run")]
    out.append("Every command prints a one-line error and exits with status 2 on a user mistake.\n")
    for command, text in helps.items():
        out.append(f"\n## `{command.removesuffix(' --help')}`\n\n")
        out.append(_code(text or "(no output)"))
    return "".join(out)


def page_metrics() -> str:
    core = importlib.import_module(METRICS_MODULE)
    missing = [m for m in core.METRIC_NAMES if m not in METRICS]
    if missing:
        raise RuntimeError(f"docs/hooks/reference.py: no description for metric(s) {', '.join(missing)}")
    out = ["# Metrics\n", GENERATED.format(what="`envs.core.METRIC_NAMES`")]
    out.append(
        "`env.episode_summary()`, `eval.evaluate` and tensorboard (`charts/<metric>`) report these per episode; "
        "`eval.evaluate` gives each a mean and a 95 % confidence interval over episodes.\n\n"
        "| metric | meaning |\n|---|---|\n"
    )
    out += [f"| `{m}` | {METRICS[m]} |\n" for m in core.METRIC_NAMES]
    out.append(
        "\nRaw per-episode counts come with them in `episode_summary()`: `earned_<kind>` (what each node kind "
        "was paid), `charges`, `payments`, `unpaid_charges`, `forged_receipts_accepted` and piece counts.\n"
    )
    return "".join(out)


def _public_modules(package: str) -> list[str]:
    path = ROOT / package
    names = [package]
    for info in pkgutil.walk_packages([str(path)], prefix=f"{package}."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        names.append(info.name)
    return sorted(names)


def page_api(package: str) -> str:
    out = [f"# `{package}`\n", GENERATED.format(what=f"the docstrings of `{package}/`")]
    for module in _public_modules(package):
        out.append(f"\n::: {module}\n")
    return "".join(out)


# ---------------------------------------------------------------------------- hook


_help_process: subprocess.Popen | None = None


def on_pre_build(config: Any) -> None:
    """Start the ``--help`` capture early; it runs while the other pages are written."""
    global _help_process
    sys.path.insert(0, str(ROOT))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}
    _help_process = subprocess.Popen(
        [sys.executable, str(ROOT / "docs" / "hooks" / "capture_help.py")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def on_files(files: Files, config: Any) -> Files:
    """Add the generated pages and the result plots."""
    builders = {
        "reference/scenario.md": page_scenario,
        "reference/training-config.md": page_training_config,
        "reference/node-config.md": page_node_config,
        "reference/wire.md": page_wire,
        "reference/contracts.md": page_contracts,
        "reference/metrics.md": page_metrics,
    }
    pages = {}
    for uri, build in builders.items():
        try:
            pages[uri] = build()
        except Exception as err:  # name the page and the cause in one line, then fail the build
            raise PluginError(f"docs/hooks/reference.py: cannot generate {uri}: {type(err).__name__}: {err}") from err
    for package in API_PACKAGES:
        pages[f"reference/api/{package}.md"] = page_api(package)
    assert _help_process is not None
    stdout, stderr = _help_process.communicate(timeout=300)
    if _help_process.returncode != 0:
        raise PluginError(f"docs/hooks/capture_help.py failed: {stderr.strip().splitlines()[-1:]}")
    pages["reference/cli.md"] = page_cli(json.loads(stdout))
    for uri, content in pages.items():
        files.append(File.generated(config, uri, content=content))
    for png in sorted((ROOT / "eval" / "results").glob("*.png")):
        files.append(File.generated(config, f"assets/results/{png.name}", abs_src_path=str(png)))
    return files
