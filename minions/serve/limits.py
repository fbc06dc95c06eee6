"""Serving limits: a cap on concurrent runs with a bounded queue, and remote spend caps.

Both are per server instance (no module state) and used from one event loop, so plain counters
need no locks. A `Ticket` is taken synchronously when a request is accepted — so a full queue or
an exhausted budget is refused with a status code before any response starts — and released
exactly once, however the request ends.
"""

from __future__ import annotations

import asyncio
import math

from minions.serve.errors import QueueFull, SpendCapReached


class Admission:
    """At most `max_running` runs at once; up to `max_queued` more wait in FIFO order; the rest
    are refused with QueueFull and a Retry-After estimated from recent run durations."""

    def __init__(self, max_running: int, max_queued: int):
        if max_running < 1 or max_queued < 0:
            raise ValueError("max_running must be >= 1 and max_queued >= 0")
        self.max_running, self.max_queued = max_running, max_queued
        self.running = 0
        self.waiting = 0
        self._free = asyncio.Semaphore(max_running)
        self._avg_run_s = 1.0  # exponentially weighted; only used to suggest Retry-After

    def enter(self) -> None:
        """Join the queue or raise QueueFull. Pair with `acquire` then `leave`."""
        if self.running + self.waiting >= self.max_running + self.max_queued:
            ahead = self.waiting + 1
            retry = max(1, math.ceil(self._avg_run_s * ahead / self.max_running))
            raise QueueFull(f"The server is busy: {self.running} runs in progress and {self.waiting} queued "
                            f"(limits {self.max_running} and {self.max_queued}). Retry after {retry} s.",
                            retry_after=retry)
        self.waiting += 1

    async def acquire(self) -> None:
        try:
            await self._free.acquire()
        finally:
            self.waiting -= 1
        self.running += 1

    def release(self, run_seconds: float | None) -> None:
        self.running -= 1
        self._free.release()
        if run_seconds is not None:
            self._avg_run_s = 0.8 * self._avg_run_s + 0.2 * run_seconds


class SpendTracker:
    """Remote dollars: a per-run cap and a server-wide cap.

    Each run reserves its cap from what is left of the server-wide cap before it starts (so
    concurrent runs can never overshoot it together) and settles to what it really spent. A run
    cancelled before reporting its spend keeps its whole reservation as spent: the cap is a
    promise, and unknown spend must not break it. Without a per-run cap, a run may reserve a
    `max_running`-th of the server-wide cap.
    """

    def __init__(self, *, per_run: float | None, total: float | None, max_running: int):
        self.per_run, self.total, self.max_running = per_run, total, max_running
        self.spent = 0.0
        self.reserved = 0.0

    def reserve(self, requested: float | None) -> float | None:
        """The cap for one run (None: uncapped), reserved from the server-wide cap."""
        caps = [c for c in (self.per_run, requested) if c is not None]
        if self.total is None:
            return min(caps) if caps else None
        left = self.total - self.spent - self.reserved
        if left <= 1e-12:
            raise SpendCapReached(f"The server's remote spend cap of ${self.total:.4f} is used up "
                                  f"(${self.spent:.4f} spent, ${self.reserved:.4f} reserved by runs in "
                                  "progress). Restart the server with a higher --max-total-usd.")
        share = self.per_run if self.per_run is not None else self.total / self.max_running
        amount = min([share, left, *caps])
        self.reserved += amount
        return amount

    def settle(self, reserved: float | None, spent: float | None) -> None:
        if self.total is not None and reserved is not None:
            self.reserved = max(0.0, self.reserved - reserved)
            self.spent += reserved if spent is None else spent
        elif spent is not None:
            self.spent += spent
