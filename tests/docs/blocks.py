"""Code blocks of the README and the docs pages, with the marker that says how a test runs them.

A fenced block may be preceded (on the line right above its fence) by an HTML comment, invisible
on GitHub and on the site::

    <!-- docs-test: slow -->          run it, in the tests marked slow (a real training or a Ray head)
    <!-- docs-test: slow chain -->   run it, in the tests marked slow and chain (it starts anvil)
    <!-- docs-test: skip REASON -->   never run it (say why: it needs a testnet, a funded key, ...)

Every other ``python`` block runs as written, in a fresh process whose working directory is an
empty temporary folder (so a block that writes files leaves nothing in the checkout).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^```(\w*)\s*$")
_MARKER = re.compile(r"^<!--\s*docs-test:\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block."""

    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    marks: tuple[str, ...]  # () or pytest marks ("slow", "chain"), or ("skip", reason words...)

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"


def documents() -> list[Path]:
    """README.md and every hand-written page under docs/ (the generated ones are not in the tree)."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(paths: list[Path] | None = None) -> list[Block]:
    """Every fenced block of ``paths`` (default: :func:`documents`)."""
    found = []
    for path in paths or documents():
        lines = path.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            match = _FENCE.match(lines[i])
            if not match:
                i += 1
                continue
            start, lang = i, match.group(1)
            marker = _MARKER.match(lines[i - 1]) if i > 0 else None
            j = i + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            code = "\n".join(lines[start + 1 : j]) + "\n"
            found.append(Block(path, start + 1, lang, code, tuple(marker.group(1).split()) if marker else ()))
            i = j + 1
    return found
