"""``python -m eval.watch``: a real episode, two policies side by side, watched in a real headless Chromium."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from agents.baselines import get_baseline
from envs.core import MeshCore
from envs.scenario import load_scenario
from eval.watch import WatchedCore, main
from tests.browser import (
    REPO,
    VIEWPORT,
    Console,
    dashboard_url,
    number,
    open_browser,
    popen_interruptible,
    screenshot,
    wait_for,
)

POLICIES = ("checkpoints/default", "seed")


def test_watched_core_plays_exactly_the_core_episode():
    # the per-node counts are additions: the episode itself is the environment's
    scenario = load_scenario("blackholes").replace(episode_steps=60)
    a, b = WatchedCore(scenario), MeshCore(scenario)
    for core in (a, b):
        core.reset(episode_seeds=[5])
    policy = get_baseline("seed")
    for _ in range(60):
        obs = a.agent_observation()
        actions = policy.act(obs.features, obs.action_mask)
        b.agent_observation()
        a.step(actions)
        b.step(actions)
    assert a.metrics() == b.metrics()
    assert a.node_delivered.sum() == a.metrics()[0]["delivered"] > 0


@pytest.mark.slow  # ~20 s: a browser, two policies playing 40 steps at 8 steps/s
def test_watch_shows_the_episode_it_plays(tmp_path):
    out = tmp_path / "watch.json"
    cmd = [sys.executable, "-m", "eval.watch", "--scenario", "blackholes", "--steps", "40", "--speed", "8",
           "--port", "0", "--hold", "120", "--json", str(out), "--seed", "7"]  # fmt: skip
    for p in POLICIES:
        cmd += ["--policy", p]
    with open_browser() as browser:  # started first: the episode lasts a few seconds
        page = browser.new_page(viewport=VIEWPORT)
        console = Console()
        console.attach(page)
        proc = popen_interruptible(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            page.goto(dashboard_url(proc))
            _check_page(page, out)
            assert console.errors == []
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, proc.stderr.read()[-2000:]


def _check_page(page, out) -> None:
    status = page.locator("#stream-status")
    panels = page.locator('[data-testid="panel"]')
    wait_for(lambda: panels.count() == 2, 30, "both panels", page)
    # live updates: frames keep coming while the episode plays
    seen = set()
    wait_for(lambda: seen.add(status.get_attribute("data-seq")) or len(seen) >= 3, 30, "live frames", page)
    wait_for(lambda: status.get_attribute("data-state") == "finished", 60, "the end of the episode", page)
    wait_for(out.exists, 30, "the --json report")
    report = {r["policy"]: r["metrics"] for r in json.loads(out.read_text())["results"]}
    nodes = load_scenario("blackholes").nodes
    for label in POLICIES:
        panel = page.locator(f'[data-testid="panel"][data-label="{label}"]')
        m = report[label]
        assert number(panel.locator('[data-stat="nodes"]').text_content()) == nodes
        assert panel.locator("g.node").count() == nodes
        assert number(panel.locator('[data-stat="delivered"]').text_content()) == m["delivered"]
        assert number(panel.locator('[data-stat="sent"]').text_content()) == m["generated"]
        assert panel.locator('[data-stat="delivery_rate"]').text_content() == f"{100 * m['delivery_rate']:.1f} %"
        # the node table of that panel: per-node deliveries add up to the episode's count
        page.get_by_role("combobox", name="Details for").select_option(label)
        cells = page.locator('#nodes-table tbody td[data-col="delivered"]').all_text_contents()
        assert len(cells) == nodes and sum(number(c) for c in cells) == m["delivered"]
    assert page.locator('#topologies g.node[data-kind="blackhole"]').count() >= 2  # in both panels
    assert page.locator("#series polyline").count() == 4  # 2 policies x (delivery, dishonest share)
    assert page.locator("#channels-wrap").is_hidden()  # the environment has no channels
    page.get_by_role("combobox", name="Details for").select_option(POLICIES[0])
    page.wait_for_timeout(300)
    screenshot(page, "dashboard_watch.png")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--scenario", "nowhere", "--policy", "seed"], "nowhere"),
        (["--scenario", "blackholes", "--policy", "nope"], "unknown policy"),
        (["--scenario", "blackholes", "--policy", "seed", "--speed", "0"], "--speed"),
        (["--scenario", "blackholes", "--policy", "seed", "--policy", "seed"], "twice"),
        (["--scenario", "blackholes", "--policy", "seed", "--port", "70000"], "--port"),
    ],
)
def test_watch_usage_errors_are_one_line(args, needle, capsys):
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
