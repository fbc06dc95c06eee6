"""Typed progress events. Protocols emit them; the CLI, the eval runner and the app render them."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from minions.protocols.result import JobStatus, RoundDecision, Side

#: how much a notice matters
Level = Literal["info", "warning"]


class _Event(BaseModel):
    round: int | None = None


class MessageSent(_Event):
    """A message one side sent the other (remote → local question, local → remote answer, ...)."""

    kind: Literal["message"] = "message"
    sender: Side
    step: str
    content: str


class JobsPlanned(_Event):
    kind: Literal["jobs_planned"] = "jobs_planned"
    n_jobs: int
    n_tasks: int
    n_chunks: int
    plan: dict[str, Any]


class JobFinished(_Event):
    kind: Literal["job_finished"] = "job_finished"
    job_id: str
    task_id: int
    chunk_id: str
    pages: tuple[int, int]
    answer: str | None
    citation: str | None
    kept: bool
    status: JobStatus = JobStatus.KEPT
    note: str = ""  # the detail: how the citation matched, the error
    done: int = 0   # jobs finished so far this round
    total: int = 0


class RoundDone(_Event):
    kind: Literal["round_done"] = "round_done"
    decision: RoundDecision
    remote_usd: float | None   # cumulative: remote dollars spent by the run so far (every protocol)
    local_tokens: int          # cumulative: local tokens used by the run so far


class FinalAnswer(_Event):
    kind: Literal["final_answer"] = "final_answer"
    answer: str | None
    citations: list[dict[str, Any]] = Field(default_factory=list)


class Notice(_Event):
    """Something the user should see that is not an error: truncation, budget, retries."""

    kind: Literal["notice"] = "notice"
    level: Level = "warning"
    message: str


#: every event a run emits
Event = MessageSent | JobsPlanned | JobFinished | RoundDone | FinalAnswer | Notice

#: what front ends pass as `on_event`: called with each event, sync or async
EventHandler = Callable[[Event], None | Awaitable[None]]


E = TypeVar("E")


async def emit(handler: Callable[[E], None | Awaitable[None]] | None, event: E) -> None:
    if handler is None:
        return
    out = handler(event)
    if inspect.isawaitable(out):
        await out
