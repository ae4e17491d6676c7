"""What the Hydra entry points of ``training`` share: field docs for ``--help``, one-line user errors.

``python -m training.train`` and ``python -m training.attack`` are Hydra apps over a YAML file of
``conf/`` whose every field is documented on its line; :func:`field_docs` turns those lines into
the ``--help`` listing, and :func:`run_app` runs a job so that a :class:`UserError` (a
configuration mistake) ends in one line on stderr with exit status 2, never a traceback.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from training.paths import CONF_DIR


class UserError(Exception):
    """A configuration mistake: reported in one line, exit status 2."""


def field_docs(files: Sequence[tuple[Path, str]]) -> list[str]:
    """``key = default  doc`` lines of YAML config files, dotted keys, ``hydra``/``defaults`` left out.

    :param files: ``(path, prefix)`` pairs; a non-empty prefix is put before every key of its file.
    """
    lines: list[str] = []
    for path, prefix in files:
        stack: list[tuple[int, str]] = []
        for raw in path.read_text().splitlines():
            m = re.match(r"^(\s*)([A-Za-z_][\w]*):\s*(.*?)\s*(?:#\s*(.*))?$", raw)
            if not m or raw.lstrip().startswith("#"):
                continue
            indent, key, value, doc = len(m.group(1)), m.group(2), m.group(3), m.group(4)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            if key in ("hydra", "defaults") and indent == 0:
                stack.append((indent, "#skip"))
                continue
            if any(part == "#skip" for _, part in stack):
                continue
            if not value and not doc:
                stack.append((indent, key))
                continue
            dotted = ".".join([prefix] * bool(prefix) + [p for _, p in stack] + [key])
            lines.append(f"  {dotted + ' = ' + value:<40} {doc or ''}".rstrip())
    return lines


def flat(d: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat(v, key + "."))
        else:
            out[key] = v
    return out


def command_line(prog: str) -> str:
    """``prog`` followed by the job's Hydra overrides (what reproduces the run)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task)
    except Exception:
        overrides = sys.argv[1:]
    return " ".join([prog, *overrides])


def run_app(config_name: str, job: Callable[[Any, str], Any], prog: str, print_help: Callable[[], None]) -> None:
    """Run ``job(cfg, command)`` as the Hydra app of ``conf/<config_name>.yaml``; ``--help`` prints
    ``print_help()`` first, a :class:`UserError` exits 2 with its one line, Ctrl-C exits 130."""
    if any(a in ("--help", "-h") for a in sys.argv[1:]):
        print_help()
    import hydra
    from omegaconf import DictConfig

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)
    def _app(cfg: DictConfig) -> None:
        try:
            job(cfg, command_line(prog))
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            sys.exit(130)

    _app()
