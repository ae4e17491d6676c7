"""Both numpy exports (routing policy and attacker) are read through ``agents.export_files``, which
refuses what a node must not read: a manifest or weights file over its size bound (checked before
reading, so a huge file costs no memory), or a manifest that is not a regular file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from agents.attacker import AttackerLoadError, load_attacker
from agents.export_files import MANIFEST, MAX_MANIFEST_BYTES, MAX_WEIGHTS_BYTES, WEIGHTS
from agents.inference import PolicyLoadError, load_policy

ROOT = Path(__file__).resolve().parents[2]
EXPORTS = [("default", load_policy, PolicyLoadError), ("attacker", load_attacker, AttackerLoadError)]


def grown(path: Path, size: int) -> None:
    """Make ``path`` ``size`` bytes long without writing them (a sparse file)."""
    with open(path, "r+b") as f:
        f.truncate(size)


@pytest.mark.parametrize(("name", "load", "error"), EXPORTS)
def test_the_shipped_export_is_within_both_bounds_and_loads(name, load, error):
    directory = ROOT / "checkpoints" / name
    assert (directory / MANIFEST).stat().st_size < MAX_MANIFEST_BYTES // 10
    assert (directory / WEIGHTS).stat().st_size < MAX_WEIGHTS_BYTES // 100
    assert load(directory).manifest["format"]


@pytest.mark.parametrize(("name", "load", "error"), EXPORTS)
@pytest.mark.parametrize(("file", "limit"), [(MANIFEST, MAX_MANIFEST_BYTES), (WEIGHTS, MAX_WEIGHTS_BYTES)])
def test_a_file_over_its_bound_is_refused_before_it_is_read(tmp_path, name, load, error, file, limit):
    directory = tmp_path / name
    shutil.copytree(ROOT / "checkpoints" / name, directory)
    grown(directory / file, limit + 1)
    with pytest.raises(error, match=f"{file} is {limit + 1:,} bytes, more than the {limit:,}"):
        load(directory)


@pytest.mark.parametrize(("name", "load", "error"), EXPORTS)
@pytest.mark.parametrize("file", [MANIFEST, WEIGHTS])
def test_a_file_that_is_a_fifo_is_refused_without_blocking(tmp_path, name, load, error, file):
    directory = tmp_path / name
    shutil.copytree(ROOT / "checkpoints" / name, directory)
    (directory / file).unlink()
    os.mkfifo(directory / file)  # a read of it would wait for a writer forever
    with pytest.raises(error, match=f"{file} is not a regular file"):
        load(directory)
