"""The mesh feed's accusations, from the nodes' stats as the launcher reads them, through a real server."""

from __future__ import annotations

import json

from runtime.dashboard import DashboardServer
from runtime.node.dashboard_feed import MeshFeed

PLAN = {
    "ids": ["n0", "n1", "n2", "n3"],
    "kinds": ["honest", "honest", "blackhole", "slanderer"],
    "links": [("n0", "n1", 1), ("n0", "n2", 1), ("n1", "n2", 1), ("n1", "n3", 1)],
    "positions": [[0, 0], [1, 0], [0, 1], [1, 1]],
}


def _summary(snaps, ids, kinds) -> dict:
    return {"pieces_sent": 0, "pieces_delivered": 0, "delivery_rate": 0.0, "dishonest_share": 0.0}


def test_accusations_list_honest_ratings_below_half_lowest_first_and_nothing_else():
    snaps = {
        "n0": {"peers": {"n1": {"rating": 0.9}, "n2": {"rating": 0.2}}},
        "n1": {"peers": {"n0": {"rating": 0.45}, "n2": {"rating": 0.05}, "n3": {"rating": 0.5}}},
        # a cheat's own view is not an accusation; neither is a rating of a non-neighbour or a non-number
        "n3": {"peers": {"n1": {"rating": 0.0}}},
        "n2": {"peers": {"n0": {"rating": "0.1"}}},
    }
    with DashboardServer(port=0).start() as server:
        feed = MeshFeed(server, _summary)
        feed.plan(PLAN, "seed", 10.0)
        assert json.loads(server.latest())["panels"][0]["accusations"] == []  # before any stats
        snaps["n0"]["peers"]["n3"] = {"rating": 0.0}  # n3 is not n0's neighbour
        feed.update(snaps, 1.0)
        accusations = json.loads(server.latest())["panels"][0]["accusations"]
    assert accusations == [
        {"by": "n1", "of": "n2", "rating": 0.05},
        {"by": "n0", "of": "n2", "rating": 0.2},
        {"by": "n1", "of": "n0", "rating": 0.45},
    ]
