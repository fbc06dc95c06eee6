"""Question sets over documents: `minions batch QUESTIONS.jsonl DOCS...`, as a library.

    outcome = run_batch("questions.jsonl", ["10k.pdf"], "answers.jsonl", RunSettings(...))

Input: one JSON object a line — `id`, `question`, and optionally `documents` (paths, relative to the
questions file; absent: the default documents given to the run). Output: one `BatchRow` a line,
per (question id, document set), written exactly once by the shared engine (`minions.runlog`):
a rerun reads the output, skips what is done and runs the rest, so a run killed at any point and run
again gives every result exactly once. A failed item is a row with `error` set; it loses no other
item's work. Progress is reported as events (`BatchStarted`, `runlog.UnitFinished`,
`runlog.CapReached`); the library never prints.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from minions import errors
from minions._sync import run_sync
from minions.clients import Client, get_client
from minions.cost import PriceTable
from minions.executors import Limiter, RemoteExecutor
from minions.protocols import Protocol
from minions.protocols.base import protocol_secrets
from minions.protocols.build import ClientFactory, build_protocol
from minions.protocols.events import emit
from minions.protocols.settings import RunSettings
from minions.redact import env_secrets, redact
from minions.runlog import AppendLog, DriveOutcome, drive


class Question(BaseModel):
    """One input line."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    documents: list[str] | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


class BatchRow(BaseModel):
    """One output line: a question answered over one document set."""

    id: str
    documents: list[str]                 # the paths as resolved for this run
    doc_set: str                         # short hash of `documents`: the resume key with `id`
    question: str
    answer: str | None = None
    citations: list[dict[str, Any]] = Field(default_factory=list)
    cost_usd: dict[str, float | None] = Field(default_factory=dict)   # local, remote, remote_only_estimate
    coverage: dict[str, Any] | None = None
    flags: dict[str, Any] = Field(default_factory=dict)   # degraded, grounded, budget/rounds exhausted
    warnings: list[str] = Field(default_factory=list)
    settings: dict[str, Any] | None = None                # the run's RunRecord
    latency_s: float = 0.0
    error: str | None = None
    error_type: str | None = None
    finished_at: float = Field(default_factory=time.time)

    @property
    def key(self) -> tuple[str, str]:
        return (self.id, self.doc_set)

    @property
    def total_usd(self) -> float:
        # an unpriced role (None: a model with no price) counts as 0 toward the spend cap
        return sum(v for v in (self.cost_usd.get("local"), self.cost_usd.get("remote")) if v)


def doc_set_key(paths: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(paths)).encode()).hexdigest()[:16]


@dataclass
class Unit:
    question: Question
    documents: list[str]
    line: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.question.id, doc_set_key(self.documents))


def read_questions(path: str | Path, default_docs: list[str | Path], *, index: bool = False) -> list[Unit]:
    """Every line of the questions file as a unit of work; a ConfigError naming the line (and the
    fix) for a line that is not a question, a repeated id, or a question with no documents (allowed
    with `index`: a corpus index picks them)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise errors.ConfigError(f"Cannot read the questions file {path}: {e}") from e
    defaults = [str(Path(d).expanduser().resolve()) for d in default_docs]
    units: list[Unit] = []
    seen: dict[tuple[str, str], int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            q = Question.model_validate_json(line)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'line'}: {err['msg']}" for err in e.errors())
            raise errors.ConfigError(f"{path} line {number}: not a question ({problems}). Each line is a JSON "
                                     'object like {"id": "q1", "question": "...", "documents": ["a.pdf"]} '
                                     "(documents optional).") from None
        docs = ([str((path.parent / d).expanduser().resolve()) for d in q.documents]
                if q.documents is not None else defaults)
        if not docs and not index:
            raise errors.ConfigError(f"{path} line {number}: question {q.id!r} has no documents; give DOCS on the "
                                     "command line, a \"documents\" list on the line, or --index PATH.")
        unit = Unit(q, docs, number)
        if unit.key in seen:
            raise errors.ConfigError(f"{path} line {number}: id {q.id!r} repeats line {seen[unit.key]} over the "
                                     "same documents; ids must be unique.")
        seen[unit.key] = number
        units.append(unit)
    if not units:
        raise errors.ConfigError(f"{path} holds no questions.")
    return units


class BatchStarted(BaseModel):
    kind: Literal["batch_started"] = "batch_started"
    total: int
    done: int                 # already in the output (resumed)
    warnings: list[str] = []  # problems found in the output file (unreadable lines, a torn tail)


@dataclass
class BatchOutcome:
    out: Path
    rows: list[BatchRow]      # this question set's rows, resumed and new, one per unit
    new_rows: int
    spent_usd: float          # this run's spend
    stopped: str | None       # a cap stopped new work: why
    not_started: int
    warnings: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(1 for r in self.rows if r.error)


class _Documents:
    """Loaded documents by path, shared by the questions that read them; loaded off the event loop,
    and dropped once no pending question needs them (a corpus of filings is large)."""

    def __init__(self, max_chars: int | None, pending: list[Unit]):
        self.max_chars = max_chars
        self.docs: dict[str, Any] = {}
        self.lock = asyncio.Lock()
        self.uses = Counter(p for u in pending for p in u.documents)

    def release(self, unit: Unit, _row: Any = None) -> None:
        for p in unit.documents:
            self.uses[p] -= 1
            if self.uses[p] <= 0:
                self.docs.pop(p, None)

    async def get(self, paths: list[str]) -> list[Any]:
        from minions.documents import load
        from minions.documents.loaders import unique_ids

        async with self.lock:
            for p in paths:
                if p not in self.docs:
                    self.docs[p] = await asyncio.to_thread(load, Path(p), max_chars=self.max_chars)
        return unique_ids(self.docs[p] for p in paths)  # copies only the ones it renames


def _base(unit: Unit) -> dict[str, Any]:
    return {"id": unit.question.id, "documents": unit.documents, "doc_set": doc_set_key(unit.documents),
            "question": unit.question.question}


async def _answer(unit: Unit, protocol: Protocol, docs: _Documents) -> BatchRow:
    started = time.perf_counter()
    base = _base(unit)
    try:
        loaded = await docs.get(unit.documents)
        result = await protocol.arun(unit.question.question, loaded)
    except Exception as e:  # noqa: BLE001  one item's failure (a bad document, a bug) is its row, not the run's end
        return BatchRow(**base, latency_s=time.perf_counter() - started, error_type=type(e).__name__,
                        error=redact(str(e), [*protocol_secrets(protocol), *env_secrets()], credentials=True))
    s = result.summary()
    return BatchRow(**base, answer=s["answer"], citations=s["citations"], cost_usd=s["cost_usd"],
                    coverage=s["coverage"], warnings=s["warnings"], settings=s["settings"],
                    flags={k: s[k] for k in ("degraded", "degraded_reason", "grounded", "budget_exhausted",
                                             "rounds_exhausted", "cancelled")},
                    latency_s=time.perf_counter() - started, error=s["error"], error_type=s["error_type"])


@dataclass
class _RemoteUnit:
    """What a worker needs to answer one unit on its own: it builds its protocol from the settings."""

    unit: Unit
    settings: RunSettings
    factory: ClientFactory | None
    prices: PriceTable | None
    max_document_chars: int | None


async def _answer_remote(job: _RemoteUnit, limiter: Limiter) -> BatchRow:
    """One unit on an executor's worker (a Ray task): the same `_answer`, with this worker's clients
    behind the cluster-wide per-provider limiter."""
    def make(role: str, spec: str, kw: dict[str, Any]) -> Client:
        return limiter.wrap(job.factory(role, spec, kw) if job.factory else get_client(spec, **kw))

    protocol = build_protocol(job.settings, factory=make, prices=job.prices)
    try:
        return await _answer(job.unit, protocol, _Documents(job.max_document_chars, [job.unit]))
    finally:
        await _close(protocol)


async def _close(protocol: Protocol) -> None:
    for c in {id(c): c for c in (protocol.local, protocol.remote) if c is not None}.values():
        await c.aclose()


def open_output(out: str | Path) -> AppendLog[BatchRow]:
    return AppendLog(out, BatchRow, lambda r: r.key, unit="question", writer="batch")


async def arun_batch(questions: str | Path, documents: list[str | Path], out: str | Path, settings: RunSettings, *,
                     concurrency: int = 4, max_total_usd: float | None = None, max_seconds: float | None = None,
                     factory: ClientFactory | None = None, prices: PriceTable | None = None,
                     max_document_chars: int | None = None, on_progress: Callable[[Any], Any] | None = None,
                     executor: RemoteExecutor | None = None) -> BatchOutcome:
    """Answer every question of `questions` (not yet in `out`), appending one row each to `out`.
    `executor`: run each question on it (a Ray task each; `minions.executors`) instead of in this
    process; rows are still written here, by this driver only."""
    units = read_questions(questions, documents, index=settings.index is not None)  # bad input first
    if executor is not None and not all(isinstance(m, str | None) for m in (settings.local, settings.remote)):
        raise errors.ConfigError(f"With the {executor.name} executor, give the models as specs (e.g. "
                                 "'ollama/llama3.2:3b'), not client objects: each worker builds its own.")
    protocol = build_protocol(settings, factory=factory, prices=prices)  # then bad settings
    wanted = {u.key for u in units}
    with open_output(out) as log:
        warnings = log.describe_problems()
        finished = log.done() & wanted
        pending = [u for u in units if u.key not in finished]
        docs = _Documents(max_document_chars, pending if executor is None else [])

        async def remote(unit: Unit) -> BatchRow:
            assert executor is not None
            try:
                return await executor.run(_answer_remote, _RemoteUnit(unit, settings, factory, prices,
                                                                       max_document_chars))
            except Exception as e:  # noqa: BLE001  the unit's worker died more often than Ray retries
                return BatchRow(**_base(unit), error_type=type(e).__name__,
                                error=redact(str(e), [*protocol_secrets(protocol), *env_secrets()], credentials=True))

        await emit(on_progress, BatchStarted(total=len(units), done=len(finished), warnings=warnings))
        try:
            outcome: DriveOutcome = await drive(
                pending, (lambda u: _answer(u, protocol, docs)) if executor is None else remote, log,
                concurrency=concurrency, done=len(finished), total=len(units), cost_of=lambda r: r.total_usd,
                max_total_usd=max_total_usd, max_seconds=max_seconds, on_progress=on_progress,
                on_row=docs.release if executor is None else None)
        finally:
            await _close(protocol)
        rows = [r for r in log.rows if r.key in wanted]
    return BatchOutcome(out=Path(out), rows=rows, new_rows=outcome.new_rows, spent_usd=outcome.spent_usd,
                        stopped=outcome.stopped, not_started=outcome.not_started, warnings=warnings)


def run_batch(*args: Any, **kw: Any) -> BatchOutcome:
    return run_sync(arun_batch(*args, **kw))


__all__ = ["BatchOutcome", "BatchRow", "BatchStarted", "Question", "arun_batch", "read_questions", "run_batch"]
