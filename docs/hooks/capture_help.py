"""Print every command-line tool's ``--help`` as one JSON object ``{command: text}``.

Run by ``docs/hooks/reference.py`` in one subprocess at build time, so torch (imported by the
training commands) is imported once per docs build, not once per command. Each command runs as
``python -m MODULE ARGS --help`` would (``runpy`` with ``sys.argv`` set), its stdout captured.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import runpy
import sys

#: (module, extra arguments before --help); the order of the reference page.
COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("training.make_train", ()),
    ("training.train", ()),
    ("training.attack", ()),
    ("training.rllib", ()),
    ("training.export", ()),
    ("eval.evaluate", ()),
    ("eval.economy", ()),
    ("eval.exploit", ()),
    ("eval.gossip", ()),
    ("eval.watch", ()),
    ("eval.sim2real", ()),
    ("eval.bench", ()),
    ("eval.bench", ("env",)),
    ("eval.bench", ("gas",)),
    ("eval.bench", ("vouchers",)),
    ("eval.bench", ("training",)),
    ("eval.bench", ("decision",)),
    ("eval.bench", ("node",)),
    ("runtime.node", ()),
    ("runtime.mesh", ()),
    ("runtime.operator", ()),
    ("runtime.aggregator", ()),
)


def capture(module: str, args: tuple[str, ...]) -> str:
    """The text ``python -m module *args --help`` prints (stdout and stderr), without running anything else."""
    buffer = io.StringIO()
    saved = sys.argv
    sys.argv = [module, *args, "--help"]
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer), contextlib.suppress(SystemExit):
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        sys.argv = saved
    return buffer.getvalue()


def main() -> int:
    """Capture every command of :data:`COMMANDS`; print the JSON object."""
    os.environ.setdefault("COLUMNS", "100")  # argparse wraps to this width
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    result = {" ".join(("python -m", module, *args, "--help")): capture(module, args) for module, args in COMMANDS}
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
