"""The page in a real headless Chromium: live updates, exact wei, controls, a dropped and a restarted stream.

The frames come from the test through the real server (the feeds' own browser tests are
``tests/runtime/node/test_mesh_dashboard.py`` and ``tests/eval/test_watch.py``).
"""

from __future__ import annotations

import pytest

from runtime.dashboard import DashboardServer
from tests.browser import VIEWPORT, Console, number, open_browser, screenshot, wait_for
from tests.runtime.dashboard.frames import make_frame


def _text(page, selector: str) -> str:
    return page.locator(selector).first.text_content() or ""


@pytest.fixture(scope="module")
def browser():
    with open_browser() as b:
        yield b


def test_page_streams_survives_drops_and_restarts_without_console_errors(browser):
    server = DashboardServer(port=0).start()
    port = server.port
    console = Console()
    page = browser.new_page(viewport=VIEWPORT)
    console.attach(page)
    try:
        server.publish(make_frame(1, delivered=3))
        page.goto(server.url)
        status = page.locator("#stream-status")
        wait_for(lambda: status.get_attribute("data-state") == "live", 15, "the stream to open", page)
        wait_for(lambda: _text(page, '[data-stat="delivered"]') == "3", 10, "the first frame", page)

        # what the frame says, as the page shows it
        assert _text(page, '[data-stat="nodes"]') == "4" and page.locator("#topologies g.node").count() == 4
        assert page.locator('#topologies g.node[data-kind="blackhole"]').count() == 1
        assert page.locator("#kind-legend li").all_text_contents() == ["blackhole", "honest"]
        # wei sums beyond 2**53 stay exact (BigInt): 7e15 + 1 + 3e15 owed, 2e17 deposited
        assert number(_text(page, '[data-total="owed"]')) == 10**16 + 1
        assert number(_text(page, '[data-total="deposit"]')) == 2 * 10**17
        assert number(_text(page, '[data-total="claimed"]')) == 7 * 10**15 + 1
        assert _text(page, '[data-attack="replayed voucher"]') == "2"
        assert page.locator("#channels-table tbody tr").count() == 2
        # accusations: a cheat found out, and an honest node wrongly accused, marked as such
        assert _text(page, '[data-accusation="n0>n2"]') == "n0 rates n2 (blackhole) 0.13"
        assert page.locator('[data-accusation="n3>n1"]').get_attribute("class") == "bad"
        assert page.locator('[data-accusation="n0>n2"]').get_attribute("class") == "ok"
        assert _text(page, "#accusations-summary") == "2 · 1 of an honest node"

        # controls have accessible names and work
        pause = page.get_by_role("button", name="Pause updates")
        page.get_by_role("checkbox", name="Show pieces").uncheck()
        assert page.get_by_role("combobox", name="Details for").input_value() == "mesh"
        pause.click()
        assert page.get_by_role("button", name="Resume updates").get_attribute("aria-pressed") == "true"
        server.publish(make_frame(2, delivered=5))
        wait_for(lambda: status.get_attribute("data-seq") == "2", 10, "frame 2 to arrive", page)
        assert _text(page, '[data-stat="delivered"]') == "3"  # paused: received, not drawn
        page.get_by_role("button", name="Resume updates").click()
        assert _text(page, '[data-stat="delivered"]') == "5"
        page.get_by_role("checkbox", name="Show pieces").check()

        # the server drops the stream: the page reconnects by itself and gets a fresh snapshot
        server.drop_streams()
        wait_for(lambda: status.get_attribute("data-reconnects") == "1", 15, "a reconnect after the drop", page)
        server.publish(make_frame(3, delivered=7))
        wait_for(lambda: _text(page, '[data-stat="delivered"]') == "7", 10, "a frame after the reconnect", page)

        # the server goes away and a new one comes up on the same port: the page follows it
        first_run = status.get_attribute("data-run")
        server.close()
        server = DashboardServer(port=port).start()
        server.publish(make_frame(1, delivered=11, status="finished"))
        wait_for(lambda: status.get_attribute("data-run") == server.run_id, 20, "the restarted server", page)
        assert server.run_id != first_run
        wait_for(lambda: _text(page, '[data-stat="delivered"]') == "11", 10, "the new server's frame", page)
        assert status.get_attribute("data-state") == "finished"
        assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"]  # fits 1280 wide
        screenshot(page, "dashboard_page.png")
        assert console.errors == []
    finally:
        page.close()
        server.close(drain_s=0)
