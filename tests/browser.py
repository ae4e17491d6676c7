"""A real headless Chromium for the dashboard tests: Debian's ``chromium`` driven by playwright.

Playwright's own browser download (``playwright install``) is never used: the fixture launches the
system's Chromium through ``executable_path``, and installs Debian's package with apt-get when it is
missing (once, under a file lock, as ``make setup`` does). Pages are watched for console errors and
uncaught exceptions; a test asserts there were none.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "runs"
VIEWPORT = {"width": 1280, "height": 800}


def chromium_path() -> str:
    """Path of the system Chromium, installing Debian's ``chromium`` package first if it is missing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    RUNS.mkdir(exist_ok=True)
    with open(RUNS / ".chromium-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time (pytest-xdist workers)
        found = shutil.which("chromium")
        if found:
            return found
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"],
        ):
            proc = subprocess.run([*sudo, *cmd], capture_output=True, text=True, env=env, timeout=900)
            if proc.returncode != 0:
                pytest.fail(f"cannot install Debian's chromium ({' '.join(cmd)}): {proc.stderr.strip()[-300:]}")
    found = shutil.which("chromium")
    if not found:
        pytest.fail("apt-get installed chromium but it is not on PATH")
    return found


@dataclass
class Console:
    """What a page said: console messages of type error and uncaught exceptions."""

    errors: list[str] = field(default_factory=list)

    def attach(self, page) -> None:
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))


@contextlib.contextmanager
def open_browser() -> Iterator[object]:
    """A headless Chromium (playwright ``Browser``), closed afterwards."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the [dev] extra: run make setup")
    path = chromium_path()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def number(text: str) -> int:
    """An integer shown on the page (digits grouped with thin spaces, maybe a unit after them)."""
    digits = re.sub(r"[^\d]", "", text.split(" wei")[0])
    return int(digits)


def wait_for(predicate, timeout: float, what: str, page=None, interval: float = 0.25):
    """Poll ``predicate`` until it returns something truthy (which is returned) or fail after ``timeout``.

    With ``page``, waits through playwright (which dispatches the page's events meanwhile).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        if page is not None:
            page.wait_for_timeout(interval * 1000)
        else:
            time.sleep(interval)


def screenshot(page, name: str) -> Path:
    """Save a screenshot of ``page`` as ``runs/NAME``."""
    RUNS.mkdir(exist_ok=True)
    path = RUNS / name
    page.screenshot(path=str(path))
    return path


def popen_interruptible(cmd: list[str], **kwargs) -> subprocess.Popen:
    """``subprocess.Popen`` whose child takes SIGINT as Ctrl-C even when this process ignores it.

    A job started in the background of a non-interactive shell (``make test &``, a CI runner)
    inherits SIGINT as ignored, and a Python child keeps it ignored; the tests end their
    dashboards with SIGINT, so the child gets the default disposition back before it starts.
    """
    return subprocess.Popen(cmd, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)


def dashboard_url(proc: subprocess.Popen, max_lines: int = 50) -> str:
    """The URL a feed (``runtime.mesh --dashboard``, ``eval.watch``) prints as ``dashboard: URL`` on stderr."""
    for _ in range(max_lines):
        line = proc.stderr.readline()
        if not line:
            break
        match = re.search(r"dashboard: (http://127\.0\.0\.1:\d+/)", line)
        if match:
            return match.group(1)
    pytest.fail(f"the process printed no dashboard URL (exit {proc.poll()})")
