"""Argument types shared by the evaluation and benchmark command lines."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn


def positive_int(text: str) -> int:
    """``argparse`` type: an integer of at least 1, with a one-line error otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def seed_arg(text: str) -> int:
    """``argparse`` type: a seed in ``[0, 2**32)``, with a one-line error otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**32), got {value}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line (exit 2) instead of usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def write_reports(prog: str, outputs: Sequence[tuple[Path | None, str]]) -> int:
    """Write each ``(path, text)`` whose path is set (parents made); 0, or 2 with a one-line error."""
    try:
        for path, text in outputs:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    except OSError as err:
        print(f"{prog}: error: cannot write '{err.filename}': {err.strerror or err}", file=sys.stderr)
        return 2
    return 0
