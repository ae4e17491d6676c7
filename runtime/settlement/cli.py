"""The command-line opening shared by the settlement service's processes (operator, aggregator)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from runtime.configfile import ConfigError

T = TypeVar("T")


def start_service(prog: str, description: str, argv: list[str] | None, load: Callable[[Path], T]) -> T | None:
    """Parse ``--config FILE`` and ``--log-level``, set up logging, and return ``load(config_path)``.

    :param load: reads and validates the config (and any key it names); raises :class:`ConfigError`.
    :return: what ``load`` returned, or None after printing the error as one line on stderr (the
        caller exits with status 2).
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", required=True, type=Path, help="config file (YAML or JSON)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return load(args.config)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return None
