"""The on-disk form every numpy export shares: a checked ``manifest.json`` beside ``policy.safetensors``.

The routing policy (:mod:`agents.inference`) and the learned attacker (:mod:`agents.attacker`) are
both read through here, so an export that is missing, not JSON, of another format, made for other
features or holding unreadable weights is refused the same way, with one line naming the file.
Each caller passes its own ``fail(directory, reason)`` so the refusal is its own error type.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
WEIGHTS = "policy.safetensors"
#: Largest manifest read (the shipped ones are under 100 KB; results and configs make them grow).
MAX_MANIFEST_BYTES = 8 * 1024 * 1024
#: Largest weights file read: an export is local config, but not trusted with the node's memory.
MAX_WEIGHTS_BYTES = 64 * 1024 * 1024

#: ``fail(directory, reason)`` builds the exception a refusal raises
Fail = Callable[[Path, str], Exception]


def read_checked_manifest(
    directory: Path,
    fmt: str,
    hash_field: str,
    expected_hash: str,
    spec: str,
    fail: Fail,
    hint: str = "",
    also_accepted: tuple[str, ...] = (),
) -> dict:
    """``directory/manifest.json``, refused unless it is a JSON object of format ``fmt`` whose
    ``hash_field`` equals ``expected_hash`` or one of ``also_accepted`` (``spec`` names that hash in
    the message, ``hint`` says what to do about a mismatch)."""
    if not directory.is_dir():
        raise fail(directory, "no such directory")
    path = _checked_file(directory, MANIFEST, MAX_MANIFEST_BYTES, fail)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise fail(directory, f"{MANIFEST} is not valid JSON ({err.__class__.__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != fmt:
        theirs = str(manifest.get("format"))[:40] if isinstance(manifest, dict) else type(manifest).__name__
        raise fail(directory, f"{MANIFEST} is of format {theirs}, not {fmt}")
    theirs = manifest.get(hash_field)
    if theirs != expected_hash and theirs not in also_accepted:
        raise fail(directory, f"{spec} hash {str(theirs)[:12]} differs from this code's {expected_hash[:12]}{hint}")
    return manifest


def read_weights(directory: Path, fail: Fail) -> dict[str, np.ndarray]:
    """The tensors of ``directory/policy.safetensors`` as numpy arrays (no torch)."""
    path = _checked_file(directory, WEIGHTS, MAX_WEIGHTS_BYTES, fail)
    try:
        from safetensors.numpy import load_file

        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise fail(directory, f"{WEIGHTS} is unreadable ({err.__class__.__name__})") from None


def _checked_file(directory: Path, name: str, limit: int, fail: Fail) -> Path:
    """``directory/name``, refused before any read unless it is a regular file of at most ``limit`` bytes."""
    path = directory / name
    if not path.exists():
        raise fail(directory, f"missing {name}")
    if not path.is_file():  # a FIFO or a device: its read could block or never end
        raise fail(directory, f"{name} is not a regular file")
    size = path.stat().st_size
    if size > limit:
        raise fail(directory, f"{name} is {size:,} bytes, more than the {limit:,} an export may have")
    return path
