"""Where a server's protocol runs execute: an event loop of their own on a worker thread.

The server's loop (uvicorn's, or the MCP SDK's) answers requests, `/health` and `/metrics`; the
runs' CPU work — chunking, BM25 and dense indexing, prompt building, a synchronous scripted
client — happens on this loop's thread, so it cannot stall the server's. A run is started from
the server's loop and awaited there; cancelling that await (timeout, client gone) cancels the
run's task here, at its next await, and waits for it to unwind (a protocol may return what it had
when cancelled). One loop per service: every model client is used from the same loop.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class RunLoop:
    def __init__(self, name: str = "minions-runs"):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()
        # an owner that is dropped (tests make many services) stops its thread
        self._finalizer = weakref.finalize(self, self.loop.call_soon_threadsafe, self.loop.stop)

    def close(self) -> None:
        self._finalizer()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on this loop and return its result to the calling loop."""
        caller = asyncio.get_running_loop()
        done: asyncio.Future[T] = caller.create_future()
        holder: dict[str, asyncio.Task[T]] = {}

        def copy(task: asyncio.Task[T]) -> None:  # on the caller's loop
            if done.done():
                return
            if task.cancelled():
                done.cancel()
            elif (exc := task.exception()) is not None:
                done.set_exception(exc)
            else:
                done.set_result(task.result())

        def start() -> None:  # on this loop
            task = self.loop.create_task(coro)
            holder["task"] = task
            task.add_done_callback(lambda t: caller.call_soon_threadsafe(copy, t))

        self.loop.call_soon_threadsafe(start)
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            # `start` was queued first, so the task exists when this runs
            self.loop.call_soon_threadsafe(lambda: holder["task"].cancel())
            return await done  # its unwinding: a result, an error, or CancelledError again


def relay(handler: Callable[[Any], Any] | None, caller: asyncio.AbstractEventLoop) -> Callable[[Any], None] | None:
    """An event handler for a run on the RunLoop that calls `handler` on the caller's loop, in order
    (an async handler runs as a task there: the run never waits for a slow client)."""
    if handler is None:
        return None

    def deliver(event: Any) -> None:
        out = handler(event)
        if asyncio.iscoroutine(out):
            caller.create_task(out)

    def forward(event: Any) -> None:
        caller.call_soon_threadsafe(deliver, event)

    return forward
