"""The dashboard server over real HTTP on 127.0.0.1: page, state, event stream, bounds."""

from __future__ import annotations

import http.client
import json
import threading

import pytest

from runtime.dashboard import DashboardServer
from runtime.dashboard.frames import MAX_ACCUSATIONS, FrameError
from tests.runtime.dashboard.frames import make_frame


def _events(resp, n: int) -> list[tuple[str, dict | None]]:
    """Read ``n`` events (name, data) from an event-stream response; comments are skipped."""
    out: list[tuple[str, dict | None]] = []
    name, data = None, None
    while len(out) < n:
        line = resp.fp.readline().decode()
        if not line:
            break
        line = line.rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and name is not None:
            out.append((name, data))
            name, data = None, None
    return out


def _get(port: int, path: str, host: str | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Host": host} if host else {}
    conn.request("GET", path, headers=headers)
    return conn.getresponse()


@pytest.fixture
def server():
    with DashboardServer(port=0, keepalive_s=0.5) as s:
        yield s


def test_serves_the_page_and_its_assets_from_loopback(server):
    assert server.url.startswith("http://127.0.0.1:")
    page = _get(server.port, "/")
    body = page.read().decode()
    assert (
        page.status == 200
        and 'src="app.js"' in body
        and "http" not in body.split("<body>")[0].replace('href="data:,"', "")
    )  # no asset from elsewhere
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    for path, ctype in (("/app.js", "text/javascript"), ("/style.css", "text/css")):
        r = _get(server.port, path)
        assert r.status == 200 and r.headers["Content-Type"].startswith(ctype) and r.read()
    assert _get(server.port, "/nope").status == 404
    assert _get(server.port, "/../server.py").status == 404
    r = _get(server.port, "/state")
    assert r.read() == b"null"


def test_a_foreign_host_header_is_refused(server):
    # a page of another origin resolving its name to 127.0.0.1 (DNS rebinding) cannot read the dashboard
    refused = _get(server.port, "/state", host=f"evil.example:{server.port}")
    assert refused.status == 403 and "default-src 'self'" in refused.headers["Content-Security-Policy"]
    assert _get(server.port, "/state", host=f"localhost:{server.port}").status == 200


def test_stream_sends_a_snapshot_then_every_frame_with_its_points(server):
    server.publish(make_frame(1, delivered=3))
    resp = _get(server.port, "/events")
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    [(name, snap)] = _events(resp, 1)
    assert name == "snapshot" and snap["seq"] == 1 and snap["run"] == server.run_id
    assert snap["frame"]["panels"][0]["totals"]["delivered"] == 3
    assert [seq for seq, _ in snap["history"]] == [1]
    server.publish(make_frame(2, delivered=5))
    [(name, data)] = _events(resp, 1)
    assert name == "frame" and data["seq"] == 2 and data["frame"]["panels"][0]["totals"]["delivered"] == 5
    assert [seq for seq, _ in data["points"]] == [2]
    assert json.loads(_get(server.port, "/state").read())["panels"][0]["totals"]["delivered"] == 5
    assert server.wait_delivered(5.0)


def test_frames_published_faster_than_sent_keep_every_series_point(server):
    resp = _get(server.port, "/events")
    _events(resp, 1)
    for step in range(1, 30):
        server.publish(make_frame(step))
    seen: list[int] = []
    while len(seen) < 29:
        [(name, data)] = _events(resp, 1)
        assert name == "frame"
        seen += [seq for seq, _ in data["points"]]
    assert seen == list(range(1, 30))  # coalesced frames, but no point lost or repeated


def test_drop_streams_ends_every_stream_and_a_new_one_gets_a_snapshot(server):
    server.publish(make_frame(1))
    resp = _get(server.port, "/events")
    _events(resp, 1)
    assert server.streams() == 1
    server.drop_streams()
    assert resp.fp.readline() == b""  # the server closed it
    again = _get(server.port, "/events")
    [(name, snap)] = _events(again, 1)
    assert name == "snapshot" and snap["seq"] == 1


def test_streams_are_bounded():
    with DashboardServer(port=0, max_streams=2) as s:
        a, b = _get(s.port, "/events"), _get(s.port, "/events")
        _events(a, 1), _events(b, 1)
        assert _get(s.port, "/events").status == 503
        assert _get(s.port, "/state").status == 200  # the page itself still loads


def test_malformed_frames_are_refused_before_they_reach_a_page(server):
    bad_panel = make_frame(1)
    bad_panel["panels"][0]["edges"].append({"a": "n0", "b": "ghost", "traffic": 1.0, "ab": 0, "ba": 0})
    nan_point = make_frame(1)
    nan_point["panels"][0]["point"]["delivery_rate"] = float("nan")
    twins = make_frame(1)
    twins["panels"].append(twins["panels"][0])
    ghost_accused = make_frame(1)
    ghost_accused["panels"][0]["accusations"].append({"by": "n0", "of": "ghost", "rating": 0.1})
    flood = make_frame(1)
    flood["panels"][0]["accusations"] = [{"by": "n0", "of": "n2", "rating": 0.1}] * (MAX_ACCUSATIONS + 1)
    for frame, needle in [
        ({"feed": "tv"}, "feed"),
        (bad_panel, "unknown node"),
        (nan_point, "finite"),
        (twins, "distinct"),
        (ghost_accused, "unknown node"),
        (flood, "at most"),
    ]:
        with pytest.raises(FrameError, match=needle):
            server.publish(frame)
    assert _get(server.port, "/state").read() == b"null"


def test_close_drains_the_last_frame_to_open_streams():
    s = DashboardServer(port=0).start()
    resp = _get(s.port, "/events")
    _events(resp, 1)
    got: list = []
    reader = threading.Thread(target=lambda: got.extend(_events(resp, 1)))
    reader.start()
    s.publish(make_frame(7, status="finished"))
    s.close(drain_s=5.0)
    reader.join(timeout=10)
    assert got and got[0][1]["frame"]["status"] == "finished"
    with pytest.raises(OSError):
        _get(s.port, "/state")
