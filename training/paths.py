"""Where the project's files are: the repository root and the Hydra config folder."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"


def project_path(path: str | os.PathLike) -> Path:
    """``path`` as given when absolute, else relative to the project root."""
    p = Path(path)
    return p if p.is_absolute() else ROOT / p
