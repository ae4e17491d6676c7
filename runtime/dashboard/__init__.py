"""The live web dashboard of a mesh: one static page, one server, one frame format, two feeds.

* :mod:`runtime.dashboard.server` — :class:`~runtime.dashboard.server.DashboardServer`, an aiohttp
  server (:class:`runtime.http_server.BoundedHttpServer`) bound to ``127.0.0.1`` only that serves
  the page (``static/``) and streams frames to it as server-sent events (``/events``); the latest
  frame is also at ``/state``.
* :mod:`runtime.dashboard.frames` — the frame format both feeds publish (documented there) and the
  helpers that keep wei exact in JSON.
* Feeds: ``python -m runtime.mesh ... --dashboard [PORT]`` (:mod:`runtime.node.dashboard_feed`, from the
  live nodes' stats files and the chain) and ``python -m eval.watch`` (an environment episode).

This package imports neither the node, the chain, the settlement service nor the environment, so
that every feed can use it (``tests/test_layout.py`` checks it).
"""

from runtime.dashboard.server import DashboardServer

__all__ = ["DashboardServer"]
