"""Run coroutines from synchronous code (scripts, notebooks, Streamlit).

All sync wrappers share one event loop on a daemon thread. Why one: SDK clients (httpx
connection pools) are bound to the loop they first ran on, so giving each call its own
`asyncio.run` loop breaks pooled connections, and `asyncio.run` cannot be used at all inside
a notebook that already runs a loop. Coroutines submitted here always run on that same loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _portal() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="minions-sync", daemon=True).start()
            _loop = loop
        return _loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion and return its result, from any thread, loop or no loop."""
    loop = _portal()
    if threading.current_thread().name == "minions-sync":
        raise RuntimeError("run_sync called from inside the minions event loop; await the coroutine instead")
    return asyncio.run_coroutine_threadsafe(coro, loop).result()
