"""The node's drain ends in bounded time even when a task ignores its cancel.

Python 3.11's ``asyncio.wait_for`` swallows a cancel that lands in the same loop turn as its inner
future completes; a ``while True`` loop around it then outlives the drain (the handshake flooder
did, under load in CI). The node's loops now use ``asyncio.timeout`` and end on ``Node.stopping``,
and ``cancel_and_wait`` bounds what is left.
"""

from __future__ import annotations

import asyncio
import time

from runtime.node.server import cancel_and_wait


def test_cancel_and_wait_returns_the_tasks_that_ignored_their_cancel_within_the_timeout():
    async def main() -> tuple[list[str], float, bool]:
        stop = asyncio.Event()

        async def stubborn() -> None:
            while not stop.is_set():
                try:
                    await asyncio.sleep(0.01)
                except asyncio.CancelledError:
                    continue  # what wait_for did to the flooder's loop

        async def polite() -> None:
            await asyncio.sleep(3600)

        tasks = [asyncio.create_task(stubborn(), name="stubborn"), asyncio.create_task(polite(), name="polite")]
        await asyncio.sleep(0.02)
        t0 = time.monotonic()
        stuck = await cancel_and_wait(tasks, timeout=0.3)
        elapsed = time.monotonic() - t0
        polite_cancelled = tasks[1].cancelled()
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        return [t.get_name() for t in stuck], elapsed, polite_cancelled

    stuck, elapsed, polite_cancelled = asyncio.run(main())
    assert stuck == ["stubborn"]
    assert polite_cancelled
    assert 0.25 < elapsed < 5.0


def test_cancel_and_wait_with_nothing_to_cancel_returns_at_once():
    assert asyncio.run(cancel_and_wait([], timeout=10.0)) == []


def test_the_flooder_and_dialler_loops_do_not_use_wait_for():
    """The race is in the interpreter, so guard the code: no ``asyncio.wait_for`` in the node's loops."""
    import inspect

    from runtime.node import attackers, server

    for module in (attackers, server):
        assert "asyncio.wait_for(" not in inspect.getsource(module), module.__name__
