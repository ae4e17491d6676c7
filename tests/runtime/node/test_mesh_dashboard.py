"""``python -m runtime.mesh --dashboard``: a short real mesh on anvil, watched in a real headless Chromium.

What the page shows at the end (node count, pieces sent and delivered, the channel totals it sums
itself from its per-channel rows, settlement) must agree with the run's own ``--json`` report.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import pytest

from tests.browser import (
    VIEWPORT,
    Console,
    dashboard_url,
    number,
    open_browser,
    popen_interruptible,
    screenshot,
    wait_for,
)
from tests.runtime.node.procs import REPO


def test_a_taken_dashboard_port_is_a_one_line_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "runtime.mesh", "--dashboard", str(port), "--quiet"],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 2 and f"--dashboard: cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.chain
@pytest.mark.slow  # ~1.5-2 min: anvil, 5 nodes, settlement
def test_mesh_dashboard_agrees_with_the_report(tmp_path):
    out = tmp_path / "mesh.json"
    cmd = [sys.executable, "-m", "runtime.mesh", "--nodes", "5", "--duration", "4", "--policy", "seed",
           "--adversaries", "blackhole=1", "--seed", "3", "--quiet", "--json", str(out),
           "--workdir", str(tmp_path / "w"), "--dashboard", "0", "--dashboard-hold", "120"]  # fmt: skip
    with open_browser() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        console = Console()
        console.attach(page)
        proc = popen_interruptible(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            page.goto(dashboard_url(proc))
            status = page.locator("#stream-status")
            # the plan shows at once, before anvil and the nodes are up
            wait_for(lambda: page.locator("#topologies g.node").count() == 5, 30, "the planned nodes", page)
            statuses = set()

            def finished() -> bool:
                if proc.poll() is not None and not out.exists():
                    pytest.fail(f"the mesh exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
                statuses.add(status.text_content())
                return status.get_attribute("data-state") == "finished"

            wait_for(finished, 300, "the end of the run", page, interval=0.3)
            assert "live · running" in statuses  # it streamed while the nodes ran
            wait_for(out.exists, 30, "the --json report")
            report = json.loads(out.read_text())
            _check_against_report(page, report)
            screenshot(page, "dashboard_mesh.png")
            assert console.errors == []
        finally:
            proc.send_signal(signal.SIGINT)  # ends the --dashboard-hold
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, proc.stderr.read()[-2000:]


def _check_against_report(page, r: dict) -> None:
    def shown(selector: str) -> int:
        return number(page.locator(selector).first.text_content())

    assert shown('[data-stat="nodes"]') == r["nodes"] == page.locator("#topologies g.node").count()
    assert shown('[data-stat="delivered"]') == r["pieces_delivered"] > 0
    assert shown('[data-stat="sent"]') == r["pieces_sent"]
    kinds = page.locator("#topologies g.node").evaluate_all("gs => gs.map(g => [g.dataset.id, g.dataset.kind])")
    assert dict(kinds) == r["kinds"]
    # channel totals: the page sums its rows (chain reads + the payees' vouchers) itself
    assert page.locator("#channels-table tbody tr").count() == r["channels"] == shown('[data-total="count"]')
    assert shown('[data-total="deposit"]') == r["deposits_wei"]
    assert shown('[data-total="claimed"]') == r["claimed_onchain_wei"] > 0
    assert shown('[data-total="owed"]') == r["owed_by_vouchers_wei"]
    assert shown('[data-total="refund"]') == r["refunded_wei"]
    assert page.locator('[data-total="match"]').text_content() == "yes"
    states = page.locator("#channels-table tbody tr td:nth-child(3)").all_text_contents()
    assert set(states) == {"settled"}
    # settlement: the feed read the chain after the report, so it may have seen later epochs
    assert shown('[data-settlement="epochs"]') >= r["epochs_finalised"] >= 1
    assert page.locator('[data-settlement="roots"]').text_content() == "yes"
    assert shown('[data-settlement="slashed"]') == len(r["slashed_operators"]) == 0
    accused = page.locator("#accusations li").evaluate_all("ls => ls.map(l => l.dataset.accusation.split('>'))")
    assert all(r["kinds"][by] == "honest" and of in r["kinds"] for by, of in accused)  # honest judges only
    cells = page.locator('#nodes-table tbody td[data-col="delivered"]').all_text_contents()
    assert sum(number(c) for c in cells) == r["pieces_delivered"]
