"""Run coroutines from synchronous code (scripts, notebooks, Streamlit).

All sync wrappers share one event loop on a daemon thread. Why one: SDK clients (httpx
connection pools) are bound to the loop they first ran on, so giving each call its own
`asyncio.run` loop breaks pooled connections, and `asyncio.run` cannot be used at all inside
a notebook that already runs a loop. Coroutines submitted here always run on that same loop.

Ctrl-C while waiting cancels the coroutine's task (so a protocol run stops before its next model
call and returns its partial result) and raises `Interrupted`, a KeyboardInterrupt that carries
whatever the coroutine returned once cancelled. A second Ctrl-C stops waiting for it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during `run_sync`: `result` is what the cancelled coroutine returned (None if it
    returned nothing, raised, or did not finish in time)."""

    def __init__(self, result: Any = None):
        super().__init__()
        self.result = result


def _portal() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="minions-sync", daemon=True).start()
            _loop = loop
        return _loop


async def _tracked(coro: Coroutine[Any, Any, T], holder: dict[str, asyncio.Task]) -> T:
    holder["task"] = asyncio.current_task()  # type: ignore[assignment]
    return await coro


def run_sync(coro: Coroutine[Any, Any, T], *, grace_s: float = 600.0) -> T:
    """Run `coro` to completion and return its result, from any thread, loop or no loop.
    On Ctrl-C, cancel it, wait up to `grace_s` for what it returns, and raise `Interrupted`."""
    loop = _portal()
    if threading.current_thread().name == "minions-sync":
        coro.close()
        raise RuntimeError("run_sync called from inside the minions event loop; await the coroutine instead")
    holder: dict[str, asyncio.Task] = {}
    future = asyncio.run_coroutine_threadsafe(_tracked(coro, holder), loop)
    try:
        return future.result()
    except KeyboardInterrupt:
        task = holder.get("task")
        if task is not None:
            loop.call_soon_threadsafe(task.cancel)
        try:
            result = future.result(timeout=grace_s)
        except BaseException:  # noqa: BLE001  a second Ctrl-C, a timeout, or the coroutine's own error
            result = None
        raise Interrupted(result) from None
