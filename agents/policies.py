"""Resolve a policy from what a user types: a baseline name or an exported policy directory.

``resolve_policy("seed")`` gives the baseline of that name (``agents.baselines``);
``resolve_policy("checkpoints/default")`` loads an exported learned policy with
``agents.inference.load_policy`` (numpy only). Anything else raises :class:`PolicyError`
whose message is one line, fit to print to a user as is.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from agents.baselines import BASELINES, RoutingPolicy, get_baseline


class PolicyError(ValueError):
    """A policy that cannot be resolved; ``str(err)`` is a one-line reason."""


def resolve_policy(name_or_dir: str | Path, allow_prefix: bool = False) -> RoutingPolicy:
    """A routing policy from a baseline name or an exported policy directory.

    :param name_or_dir: ``seed``, ``shortest``, ``random``, ``oracle``, or a directory written by
        ``training.export`` (``policy.safetensors`` + ``manifest.json``).
    :raises PolicyError: unknown name, missing directory, missing ``agents.inference``, or a
        directory that does not load (its reason, on one line).
    :param allow_prefix: also load an export of an older observation spec whose features are a
        prefix of this one's (``checkpoints/pre_gossip``); the simulation tools allow it, the live
        node does not.
    """
    text = str(name_or_dir)
    if text in BASELINES:
        return get_baseline(text)
    path = Path(text)
    if not path.is_dir():
        raise PolicyError(
            f"unknown policy '{text}': not a baseline ({', '.join(BASELINES)}) nor an exported policy directory"
        )
    try:
        inference = importlib.import_module("agents.inference")
    except ModuleNotFoundError as err:
        if err.name != "agents.inference":
            raise
        raise PolicyError(f"policy '{text}': learned policies need agents.inference, which is not installed") from None
    try:
        return inference.load_policy(path, allow_prefix=allow_prefix)
    except Exception as err:  # any load failure reaches the user as one line, not a traceback
        reason = " ".join(str(err).split()) or err.__class__.__name__
        if reason.startswith("policy '"):  # agents.inference already names the directory
            raise PolicyError(reason) from None
        raise PolicyError(f"policy '{text}': cannot load ({reason})") from None


def policy_label(name_or_dir: str | Path) -> str:
    """Short label for tables and plots: the baseline name, or the directory as given."""
    return str(name_or_dir).rstrip("/")
