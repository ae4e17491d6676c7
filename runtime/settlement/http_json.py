"""JSON over HTTP for the settlement service's endpoints, on :class:`runtime.http_server.BoundedHttpServer`.

The handlers stay thin: they decode the request, call the operator's or the aggregator's own
methods and answer JSON. Routing is one table, ``{path: {method: handler}}``; a path may end with
``/``; any other path is answered ``404 {"error": usage}``, another method ``405``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from runtime.http_server import json_error

__all__ = ["Handler", "json_error", "json_routes"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_routes(
    table: Mapping[str, Mapping[str, Handler]], usage: str, fallback: Handler | None = None
) -> Callable[[web.Application], None]:
    """The ``routes`` argument of :class:`~runtime.http_server.BoundedHttpServer` for ``table``.

    :param fallback: handles every path that is not in ``table`` (GET only) instead of the 404.
    """

    async def dispatch(request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        methods = table.get(path)
        if methods is None:
            if fallback is not None and request.method == "GET":
                return await fallback(request)
            return json_error(404, usage)
        handler = methods.get(request.method)
        if handler is None:
            return json_error(405, usage)
        return await handler(request)

    def add(app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", dispatch)

    return add
