"""Strict configuration files shared by every process of the runtime (nodes, operators, aggregator).

A config is YAML or JSON read into a msgspec struct that refuses unknown keys; every problem raises
:class:`ConfigError` whose message is one line naming the file or the key, fit to print to a user as
is. A config or key file is read only if it is a regular file, UTF-8 and small
(:data:`MAX_CONFIG_BYTES`, :data:`MAX_KEY_FILE_BYTES`): a FIFO, a device or a huge file is refused
before it is read. Private keys are never accepted inside a configuration file (a config is
something people copy, commit and paste into bug reports): :func:`read_key_from` takes a key from
an environment variable or from a file only its owner can read.

This module imports nothing from ``runtime.node``, ``runtime.chain`` or ``runtime.settlement``: all
three use it.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Annotated, TypeVar

import msgspec
import yaml

__all__ = ["ConfigError", "Listen", "StrictStruct", "load_struct", "read_key_from"]

T = TypeVar("T")

_KEY_RE = re.compile(r"(0x)?[0-9a-fA-F]{64}")


class ConfigError(ValueError):
    """A configuration or key problem; ``str(err)`` is one line."""


class StrictStruct(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every config struct: keyword-only, unknown keys refused."""


class Listen(StrictStruct):
    """Where a process listens: a host and a port (0: any free port)."""

    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0


_PATH_RE = re.compile(r" - at `\$\.?([^`]*)`")
#: Largest config file read (a mesh's node config is a few KB).
MAX_CONFIG_BYTES = 1024 * 1024
#: Largest key file read (a hex key and a newline are 67 bytes).
MAX_KEY_FILE_BYTES = 4096


def read_bounded_text(path: Path, limit: int, label: str) -> tuple[str, int]:
    """The UTF-8 text of the regular file ``path`` (at most ``limit`` bytes) and its mode.

    Opened without blocking and checked on the open descriptor, so a FIFO or a device in its place
    is refused rather than waited on; anything else wrong is a :class:`ConfigError` starting ``label``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as err:
        raise ConfigError(f"{label}: cannot read ({err.strerror or err})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{label}: not a regular file")
        chunks, size = [], 0
        while size <= limit and (chunk := os.read(fd, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    except OSError as err:
        raise ConfigError(f"{label}: cannot read ({err.strerror or err})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ConfigError(f"{label}: larger than {limit:,} bytes")
    try:
        return data.decode("utf-8"), st.st_mode
    except UnicodeDecodeError:
        raise ConfigError(f"{label}: not UTF-8 text") from None


def _refuse_inline_keys(obj, where: str = "") -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if str(k).lower() in {"private_key", "key", "secret", "privkey"}:
                raise ConfigError(
                    f"config key '{where}{k}': private keys are refused in config files; use key_env or key_file"
                )
            _refuse_inline_keys(v, f"{where}{k}.")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _refuse_inline_keys(v, f"{where}{i}.")
    elif isinstance(obj, str) and _KEY_RE.fullmatch(obj.strip()):
        raise ConfigError(
            f"config key '{where.rstrip('.')}': looks like a private key; keys are refused in config files"
        )


def load_struct(path: str | Path, kind: type[T]) -> T:
    """Read a YAML/JSON file into the msgspec struct ``kind``, refusing inline private keys.

    Every problem raises :class:`ConfigError` with one line naming the file or the key.
    """
    path = Path(path)
    text, _ = read_bounded_text(path, MAX_CONFIG_BYTES, f"config '{path}'")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"config '{path}': not YAML/JSON ({' '.join(str(err).split())[:120]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config '{path}': expected a mapping at the top level")
    _refuse_inline_keys(raw)
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as err:
        text = str(err)
        m = _PATH_RE.search(text)
        key = m.group(1) if m else ""
        reason = _PATH_RE.sub("", text)
        raise ConfigError(f"config key '{key}': {reason}" if key else f"config '{path}': {reason}") from None


def read_key_from(key_env: str | None, key_file: str | None) -> str | None:
    """A private key from the environment variable ``key_env`` or the file ``key_file`` (None if neither).

    A key file readable by group or others is refused (like ssh does), as is anything that is not a
    32-byte hex key. The key is returned to the caller only; nothing here logs or writes it.
    """
    if key_env:
        value = os.environ.get(key_env)
        if not value:
            raise ConfigError(f"key_env: environment variable {key_env} is not set")
        source = f"environment variable {key_env}"
    elif key_file:
        p = Path(key_file)
        value, mode = read_bounded_text(p, MAX_KEY_FILE_BYTES, f"key_file '{p}'")
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"key_file '{p}': readable by others (mode {stat.S_IMODE(mode):o}); chmod 600 it")
        source = f"key_file '{p}'"
    else:
        return None
    value = value.strip()
    if not _KEY_RE.fullmatch(value):
        raise ConfigError(f"{source}: not a 32-byte hex private key")
    return value if value.startswith("0x") else "0x" + value
