"""The Ray executor (the `ray` extra): each unit of a batch or a sweep is one Ray task.

The driver submits `_execute(fn, payload, ...)` once per unit and awaits its ObjectRef; the task
builds what it needs on its worker, runs `fn(payload, limiter)` on an event loop of its own, and
returns the row, which only the driver writes. A worker that dies (killed, out of memory, a lost
node) is rerun by Ray up to `max_retries` times; a unit's own failure is its row and is not retried.
One ObjectRef per unit and one append per ref: a retried unit still yields one row.

Per-provider ceilings live in one async actor per run (`_Limits`): every model request of a
limited client takes a lease on its provider first and gives it back when the request ends. Two
things give back the slots of a worker that died mid-call: the rerun of its task (a new attempt of
a task frees what its earlier attempts held) and, for a task that is not rerun, the lease's expiry.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import ray

from minions import errors
from minions.clients.base import Client, Completion, Message, Options

if TYPE_CHECKING:  # minions.executors opens this module: no import back at run time
    from minions.executors import ExecutorSettings, Limiter

P = TypeVar("P")
R = TypeVar("R")


@ray.remote(num_cpus=0)
class _Limits:
    """Per-provider counting semaphores with leases, shared by every worker of the run. Its
    methods are coroutines on one event loop: no two run at once between awaits."""

    def __init__(self, settings: ExecutorSettings):
        self.settings = settings
        self.cond = asyncio.Condition()
        self.held: dict[str, dict[int, tuple[str, str, str, float]]] = {}  # provider -> lease -> (task, attempt, worker, expiry)
        self.attempts: dict[str, str] = {}
        self.next_lease = 0
        self.stats_: dict[str, dict[str, int]] = {}
        self.workers: dict[str, set[str]] = {}  # provider -> every worker that called it

    async def begin(self, task_id: str, attempt: str) -> None:
        """A task's attempt starts: leases an earlier attempt of it held (its worker died) are freed."""
        async with self.cond:
            old = self.attempts.get(task_id)
            self.attempts[task_id] = attempt
            if old is None or old == attempt:
                return
            for provider, leases in self.held.items():
                for lease, (task, att, _, _) in list(leases.items()):
                    if task == task_id and att != attempt:
                        del leases[lease]
                        self.stats_[provider]["reclaimed"] += 1
            self.cond.notify_all()

    async def acquire(self, provider: str, task_id: str, attempt: str, worker: str) -> int:
        limit = self.settings.limit_for(provider)
        leases = self.held.setdefault(provider, {})
        stats = self.stats_.setdefault(provider, {"calls": 0, "max_in_flight": 0, "max_workers": 0,
                                                  "reclaimed": 0, "limit": limit})
        async with self.cond:
            while True:
                now = time.monotonic()
                for lease, (*_, expiry) in list(leases.items()):
                    if expiry <= now:  # held past its lease: a caller that died and was not rerun
                        del leases[lease]
                        stats["reclaimed"] += 1
                if len(leases) < limit:
                    break
                wait = min(expiry for *_, expiry in leases.values()) - now
                try:
                    await asyncio.wait_for(self.cond.wait(), timeout=max(wait, 0.001))
                except TimeoutError:
                    pass
            self.next_lease += 1
            leases[self.next_lease] = (task_id, attempt, worker, time.monotonic() + self.settings.lease_s)
            stats["calls"] += 1
            stats["max_in_flight"] = max(stats["max_in_flight"], len(leases))
            stats["max_workers"] = max(stats["max_workers"], len({w for _, _, w, _ in leases.values()}))
            self.workers.setdefault(provider, set()).add(worker)
            stats["workers"] = len(self.workers[provider])
            return self.next_lease

    async def release(self, provider: str, lease: int) -> None:
        async with self.cond:
            self.held.get(provider, {}).pop(lease, None)
            self.cond.notify_all()

    async def stats(self) -> dict[str, dict[str, int]]:
        return {p: dict(s) for p, s in self.stats_.items()}


class _Slots:
    """The Limiter a task's `fn` gets: wraps clients so each request holds a slot of its provider."""

    def __init__(self, actor: Any, settings: ExecutorSettings, task_id: str, attempt: str):
        self.actor, self.settings, self.task_id, self.attempt = actor, settings, task_id, attempt
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def wrap(self, client: Client) -> Client:
        provider = client.provider
        if self.actor is None or self.settings.limit_for(provider) == 0 or getattr(client, "_slot_limited", False):
            return client  # no ceiling, or wrapped already (one slot per request, not one per wrap)
        request = client._request  # noqa: SLF001  one attempt of one call: what takes the slot
        actor, task_id, attempt, worker = self.actor, self.task_id, self.attempt, self.worker

        async def limited(messages: list[Message], options: Options) -> Completion:
            lease = await actor.acquire.remote(provider, task_id, attempt, worker)
            try:
                return await request(messages, options)
            finally:
                actor.release.remote(provider, lease)  # not awaited: a cancelled call still gives it back

        # On the instance: the client's retries, timeouts and egress records stay as they are, and a
        # retry's backoff holds no slot.
        setattr(client, "_request", limited)  # noqa: B010
        setattr(client, "_slot_limited", True)  # noqa: B010
        return client


@ray.remote
def _execute(fn: Callable[[Any, Limiter], Coroutine[Any, Any, Any]], payload: Any, actor: Any,
             settings: ExecutorSettings) -> Any:
    task_id = ray.get_runtime_context().get_task_id() or uuid.uuid4().hex
    attempt = uuid.uuid4().hex
    if actor is not None:
        ray.get(actor.begin.remote(task_id, attempt))
    return asyncio.run(fn(payload, _Slots(actor, settings, task_id, attempt)))


class RayExecutor:
    """Joins the cluster at `settings.address`, or starts a local one (or uses the Ray already
    initialised in this process, e.g. by a test); `close` shuts down only a cluster it started."""

    name = "ray"

    def __init__(self, settings: ExecutorSettings):
        self.settings = settings
        self.started = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"address": settings.address} if settings.address else {"num_cpus": settings.num_cpus}
            try:
                ray.init(**kw, include_dashboard=False, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = f"join the Ray cluster at {settings.address}" if settings.address else "start a local Ray cluster"
                raise errors.ConfigError(
                    f"Cannot {where}: {str(e)[:300]}. Check the address (`ray status` on the head prints it; "
                    "`auto` on a node of the cluster), or leave out --ray-address to start a local one.") from e
            self.started = True
        self.actor: Any = None
        if settings.default_provider_limit or any(settings.provider_limits.values()):
            limits: Any = _Limits  # @ray.remote made it an ActorClass
            self.actor = limits.options(name=f"minions-limits-{uuid.uuid4().hex[:12]}").remote(settings)
        self._stats: dict[str, dict[str, int]] = {}

    async def run(self, fn: Callable[[P, Limiter], Coroutine[Any, Any, R]], payload: P) -> R:
        ref = _execute.options(max_retries=self.settings.max_retries, retry_exceptions=False).remote(
            fn, payload, self.actor, self.settings)
        try:
            return await ref
        except asyncio.CancelledError:  # the run was interrupted: the unit's task stops too
            ray.cancel(ref)
            raise
        except ray.exceptions.RayTaskError as e:  # raised inside the task (e.g. no API key on that node):
            if isinstance(e.cause, Exception):    # the caller sees it as if raised here, not Ray's wrapper
                raise e.cause from None
            raise

    def limit_stats(self) -> dict[str, dict[str, int]]:
        if self.actor is not None:
            self._stats = ray.get(self.actor.stats.remote())
        return self._stats

    def close(self) -> None:
        if self.actor is not None:
            self.limit_stats()  # kept for the caller after the actor is gone
            ray.kill(self.actor)
            self.actor = None
        if self.started:
            ray.shutdown()
            self.started = False


__all__ = ["RayExecutor"]
