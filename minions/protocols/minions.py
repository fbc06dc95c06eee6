"""MinionS (Narayan et al., 2025, arXiv 2502.15964): decompose, run local jobs in parallel, aggregate,
synthesize — without executing model output.

Each round:
  decompose   the remote (which sees the task, the documents' titles and sizes, and earlier feedback,
              never document text) returns a `JobPlan`: tasks, chunking, samples, a keyword filter,
              a job cap. Invalid plans go back with the validation error; numbers are clamped.
  execute     the plan expands into jobs (task x chunk x sample) grouped by chunk; the local model
              runs them concurrently, each replying {explanation, citation, answer} under a schema.
  aggregate   abstentions are dropped, citations checked against their chunk, the rest grouped by
              task in a compact form for the remote.
  synthesize  the remote answers or asks for another round with feedback; the last round must answer.
Multi-round strategies: "retries" (each round starts fresh from the task and the last feedback) and
"scratchpad" (a running summary the remote keeps is carried into every plan).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from minions.clients.base import Message, Options
from minions.documents import Chunk, Document, chunk_documents
from minions.documents.hybrid import HybridIndex, complete, with_neighbours
from minions.errors import MissingDependencyError
from minions.protocols.base import Protocol, RunContext
from minions.protocols.events import JobsPlanned, MessageSent, RoundDone
from minions.protocols.minions_jobs import _as_text, aggregate, run_jobs, verified
from minions.protocols.minions_plan import (
    JobPlan,
    MinionSConfig,
    _Lenient,
    chunking_options,
    documents_overview,
    expand_jobs,
    resolve_plan,
    select_chunks,
    template,
)
from minions.protocols.parsing import ask_json
from minions.protocols.reading import FIRST_RUN_SHARE, FIRST_RUN_TOKENS, SpeedStore
from minions.protocols.result import Citation, JobRecord

_MAX_NOTES_CHARS = 4000   # scratchpad / feedback carried between rounds
_MAX_ANSWER_CHARS = 4000

__all__ = ["JobPlan", "MinionS", "MinionSConfig", "Synthesis"]


# Bounds on what the remote writes (maxLength in the schema bounds constrained decoding; longer
# text from an unconstrained remote is cut, not rejected). llama.cpp's grammar parser refuses
# repetitions much above 1000 (`x{0,1500}`), so no bound may exceed that.
_LIMITS = {"explanation": 1000, "answer": 1000, "feedback": 1000, "scratchpad": 1000}


class Synthesis(_Lenient):
    """The remote's decision after reading the workers' reports."""

    decision: Literal["provide_final_answer", "request_additional_info"]
    explanation: str = Field("", max_length=_LIMITS["explanation"])
    answer: str | None = Field(None, max_length=_LIMITS["answer"])
    feedback: str | None = Field(None, max_length=_LIMITS["feedback"])
    scratchpad: str | None = Field(None, max_length=_LIMITS["scratchpad"])

    @field_validator("explanation", "answer", "feedback", "scratchpad", mode="before")
    @classmethod
    def _text(cls, v: Any, info: ValidationInfo) -> Any:
        v = _as_text(v)
        if v is None and info.field_name == "explanation":
            return ""
        return v.strip()[: _LIMITS[info.field_name]] if isinstance(v, str) else v

    @field_validator("decision", mode="before")
    @classmethod
    def _decision(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _answer_given(self) -> Synthesis:
        if self.decision == "provide_final_answer" and not (self.answer or "").strip():
            raise ValueError('"provide_final_answer" needs a non-empty "answer"')
        return self


class LastSynthesis(Synthesis):
    """On the last round an answer is required whatever the decision."""

    answer: str = Field(min_length=1, max_length=_LIMITS["answer"])


class _Chunks:
    """Chunkings and retrieval indexes of this run's documents, built on first use and kept for the
    run (the remote may switch chunking between rounds and back)."""

    def __init__(self, docs: list[Document]):
        self.docs = docs
        self._chunks: dict[tuple[str, int], list[Chunk]] = {}
        self._index: dict[tuple[str, int], HybridIndex] = {}
        self.dense_missing: MissingDependencyError | None = None

    def get(self, strategy: str, size: int) -> list[Chunk]:
        key = (strategy, size)
        if key not in self._chunks:
            self._chunks[key] = chunk_documents(self.docs, strategy, size)  # type: ignore[arg-type]
        return self._chunks[key]

    def index(self, strategy: str, size: int) -> HybridIndex:
        key = (strategy, size)
        if key not in self._index:
            self._index[key] = index = HybridIndex.for_documents(self.docs, self.get(strategy, size))
            self.dense_missing = self.dense_missing or index.dense_missing
        return self._index[key]

    def ranker(self, strategy: str, size: int, neighbours: int) -> Callable[[str], list[Chunk]]:
        """Every chunk, best first for the query (hybrid retrieval); with `neighbours`, the chunks next
        to the best `neighbours` hits follow each of them."""
        def rank(query: str) -> list[Chunk]:
            index = self.index(strategy, size)
            order = complete(index.ranking(query), len(index.chunks))
            if neighbours:
                order = with_neighbours(index.chunks, order, neighbours)
            return [index.chunks[i] for i in order]
        return rank


class MinionS(Protocol):
    name = "minions"
    Config = MinionSConfig
    config: MinionSConfig

    async def _run(self, ctx: RunContext) -> str | None:
        cfg = self.config
        chunks = _Chunks(ctx.documents)
        default_chunks = chunks.get(cfg.chunk_strategy, cfg.chunk_size)
        titles = {d.id: d.title for d in ctx.documents}
        shown: set[str] = set()
        remote_opts = Options(max_tokens=cfg.remote_max_tokens, temperature=cfg.temperature)
        # Stable across rounds: marked for the provider's prompt cache (Anthropic `cache_control`).
        system = Message(role="system", cache=True, content=template("minions_remote_system.txt").substitute())
        feedback: str | None = None
        scratchpad = ""
        answered_chunks: list[str] = []
        dense_noticed = False
        size = self._sizer(ctx)  # chunk sizes in the local model's tokens, counted once per run

        for r in range(1, cfg.max_rounds + 1):
            rec = ctx.new_round()
            last = r == cfg.max_rounds

            # -- decompose: the remote plans with titles and sizes, never text ------------------
            prompt = template("minions_decompose.txt").substitute(
                round=r, max_rounds=cfg.max_rounds, task=ctx.task,
                documents=documents_overview(ctx.documents, default_chunks, cfg),
                tasks_per_round=cfg.tasks_per_round, samples_per_task=cfg.samples_per_task,
                job_cap=f"at most {cfg.max_jobs_per_round} jobs in all" if cfg.max_jobs_per_round else "no cap on jobs",
                reading=self._reading_line(ctx, default_chunks, size), n_chunks=len(default_chunks), top_k=cfg.retrieval_top_k,
                chunking=chunking_options(cfg), default_strategy=cfg.chunk_strategy,
                default_size=cfg.chunk_size, history=self._history(r, feedback, scratchpad, answered_chunks))
            plan, completion = await ask_json(ctx, "remote", [system, Message(role="user", content=prompt)],
                                              JobPlan, remote_opts, step="decompose", attempts=cfg.plan_attempts)
            await ctx.emit(MessageSent(round=r, sender="remote", step="decompose", content=completion.text))
            resolved = resolve_plan(plan, cfg, ctx.task)
            for note in resolved.adjustments:
                await ctx.notice(f"round {r}: {note}", level="info")

            # -- execute: jobs grouped by chunk, run on the local model ---------------------------
            pool = chunks.get(resolved.strategy, resolved.size)
            # The query: the question, every task the plan holds, and the plan's keywords.
            query = " ".join([ctx.task, *(t.instruction for t in resolved.tasks), resolved.keyword_query or ""])
            budget, why = self._budget(ctx, pool, size)
            # Indexing embeds every chunk (~0.5 s for a 10-K): off the event loop, so events, servers
            # and cancellation stay responsive.
            await asyncio.to_thread(chunks.index, resolved.strategy, resolved.size)
            rank = chunks.ranker(resolved.strategy, resolved.size, cfg.neighbours)
            selected, notes = select_chunks(resolved, pool, rank, query, budget, size)
            jobs, planned = expand_jobs(resolved, selected, r)
            if planned > len(jobs):
                notes.append(f"plan expands to {planned} jobs; running the first {len(jobs)} (job cap)")
            if chunks.dense_missing is not None and not dense_noticed:
                dense_noticed = True
                await ctx.notice(f"chunks chosen by BM25 only: hybrid retrieval (BM25 + dense embeddings) needs "
                                 f"the '{chunks.dense_missing.extra}' extra: pip install 'minions[embeddings]'",
                                 level="info")
            read = list({j.chunk.id: j.chunk for j in jobs}.values())
            ctx.read.chunks(read, total=len(pool))
            ctx.read.why = why
            read_tokens, pool_tokens = sum(size(c) for c in read), sum(size(c) for c in pool)
            notes.append(f"read {len(read)} of {len(pool)} chunks ({read_tokens:,} of {pool_tokens:,} tokens, "
                         f"{read_tokens / max(pool_tokens, 1):.0%}): {why}")
            for note in notes:
                await ctx.notice(f"round {r}: {note}", level="info")
            rec.plan = {**resolved.model_dump(), "planned_jobs": planned, "selected_chunks": len(selected)}
            await ctx.emit(JobsPlanned(round=r, n_jobs=len(jobs), n_tasks=len(resolved.tasks),
                                       n_chunks=len({j.chunk.id for j in jobs}), plan=rec.plan))
            started = time.perf_counter()
            records = await run_jobs(ctx, jobs, cfg, titles, shown)
            self._remember_speed(ctx, read_tokens, time.perf_counter() - started, records)
            rec.jobs = records
            kept = [x for x in records if x.kept]
            if ctx.best_answer is None and kept:
                ctx.best_answer = _most_common_answer(kept)  # a candidate, until the remote decides

            # -- aggregate and synthesize ---------------------------------------------------------
            outputs = aggregate(records, [t.instruction for t in resolved.tasks], cfg.aggregate_max_chars)
            synth = await self._synthesize(ctx, system, remote_opts, r, last, outputs, scratchpad)
            if synth.answer and synth.answer.strip():
                ctx.best_answer = synth.answer.strip()[:_MAX_ANSWER_CHARS]

            if synth.decision == "provide_final_answer" or last:
                rec.decision = "final_answer" if synth.decision == "provide_final_answer" else "forced_answer"
                ctx.citations = _citations(records, jobs)
                await self._round_done(ctx, rec.decision)
                return ctx.best_answer

            rec.decision = "another_round"
            feedback = (synth.feedback or synth.explanation or "").strip()[:_MAX_NOTES_CHARS] or None
            if cfg.strategy == "scratchpad":
                scratchpad = (synth.scratchpad or "").strip() or _append(scratchpad, synth.explanation)
                scratchpad = scratchpad[-_MAX_NOTES_CHARS:]
                answered_chunks = list(dict.fromkeys(x.chunk_id for x in kept))[:50]
            await self._round_done(ctx, rec.decision)
        return ctx.best_answer  # unreachable: the last round always returns

    # -- reading budget ----------------------------------------------------------------------------

    @staticmethod
    def _sizer(ctx: RunContext) -> Callable[[Chunk], int]:
        """A chunk's size in the local model's tokens (counted once per chunk)."""
        client, sizes = ctx.client("local"), {}

        def size(c: Chunk) -> int:
            key = (c.doc_id, c.start, c.end)  # not the id: "doc#3" names another span under another chunking
            if key not in sizes:
                sizes[key] = client.count_tokens(c.text)
            return sizes[key]
        return size

    def _budget(self, ctx: RunContext, pool: list[Chunk], size: Callable[[Chunk], int]) -> tuple[int | None, str]:
        """Tokens of document the local model reads this round (None: all), and why."""
        cfg = self.config
        total = sum(size(c) for c in pool)
        if cfg.read is not None:
            budget = cfg.read.tokens(total)
            return budget, f"read={cfg.read}"
        spec = ctx.client("local").spec
        speed = SpeedStore().get(spec)
        if speed is None:
            budget = max(int(total * FIRST_RUN_SHARE), FIRST_RUN_TOKENS)
            why = (f"no reading speed measured yet for {spec}, so a first run reads {FIRST_RUN_SHARE:.0%} or "
                   f"{FIRST_RUN_TOKENS:,} tokens; this run's speed is remembered (read= chooses)")
            return (None, why) if budget >= total else (budget, why)
        budget = int(speed * cfg.local_time_budget)
        why = (f"{spec} reads ~{speed:,.0f} tokens/s (measured), so {cfg.local_time_budget:g} s of local time "
               f"(local_time_budget) reads {budget:,} tokens")
        return (None, why + ": everything") if budget >= total else (budget, why)

    def _reading_line(self, ctx: RunContext, pool: list[Chunk], size: Callable[[Chunk], int]) -> str:
        """The reading budget for the planner, in words (it never sees the text, only sizes)."""
        budget, _ = self._budget(ctx, pool, size)
        total = sum(size(c) for c in pool)
        return "all of them" if budget is None or budget >= total else \
            f"about {budget / max(total, 1):.0%} of the text (~{budget:,} of {total:,} tokens)"

    @staticmethod
    def _remember_speed(ctx: RunContext, tokens: int, seconds: float, records: list[JobRecord]) -> None:
        """Document tokens read per second of wall time, for the next run's default budget. Failed
        jobs make it meaningless, so such rounds are not recorded."""
        if records and not any(r.note.startswith("failed") for r in records):
            SpeedStore().record(ctx.client("local").spec, tokens, seconds)

    # -- steps -------------------------------------------------------------------------------------

    def _history(self, r: int, feedback: str | None, scratchpad: str, answered: list[str]) -> str:
        if r == 1:
            return "This is the first round.\n"
        parts = []
        if self.config.strategy == "scratchpad":
            parts.append(f"Notes so far (your scratchpad):\n{scratchpad or '(empty)'}\n")
            if answered:
                parts.append(f"Chunks where workers found answers last round (usable in chunk_ids, "
                             f"with the same chunking): {', '.join(answered)}\n")
        parts.append(f"Feedback from the previous round: {feedback or '(none)'}\n"
                     "Plan new jobs that get what is still missing.\n")
        return "".join(parts)

    async def _synthesize(self, ctx: RunContext, system: Message, opts: Options, r: int, last: bool,
                          outputs: str, scratchpad: str) -> Synthesis:
        cfg = self.config
        scratch_mode = cfg.strategy == "scratchpad"
        notes = f"Notes so far (your scratchpad):\n{scratchpad}\n" if scratch_mode and scratchpad else ""
        final = ("This is the last round: give your best answer now in \"answer\", even if the evidence is "
                 "incomplete, and say what is uncertain in \"explanation\"." if last else
                 f"{cfg.max_rounds - r} more round(s) are possible.")
        prompt = template("minions_synthesize.txt").substitute(
            round=r, max_rounds=cfg.max_rounds, task=ctx.task, notes=notes, outputs=outputs, final=final,
            scratchpad_instruction=(" In \"scratchpad\", write an updated summary of everything learned so "
                                    "far; it is all you will remember next round." if scratch_mode else ""))
        schema = LastSynthesis if last else Synthesis
        synth, completion = await ask_json(ctx, "remote", [system, Message(role="user", content=prompt)],
                                           schema, opts, step="synthesize", attempts=cfg.synth_attempts)
        await ctx.emit(MessageSent(round=r, sender="remote", step="synthesize", content=completion.text))
        return synth

    async def _round_done(self, ctx: RunContext, decision: str) -> None:
        r = ctx.round
        await ctx.emit(RoundDone(round=r, decision=decision,
                                 remote_usd=ctx.meter.totals("remote", round=r).cost_usd,
                                 local_tokens=ctx.meter.totals("local", round=r).usage.total_tokens))


def _append(notes: str, more: str | None) -> str:
    more = (more or "").strip()
    return f"{notes}\n{more}".strip() if more else notes


def _most_common_answer(records: list[JobRecord]) -> str | None:
    counts: dict[str, int] = {}
    for x in records:
        a = (x.answer or "").strip()
        if a:
            counts[a] = counts.get(a, 0) + 1
    return max(counts, key=lambda a: counts[a])[:_MAX_ANSWER_CHARS] if counts else None


def _citations(records: list[JobRecord], jobs: list[Any]) -> list[Citation]:
    """The verified citations of the deciding round's kept jobs (flagged ones are not evidence)."""
    by_id = {j.job_id: j for j in jobs}
    out: dict[tuple[str, str], Citation] = {}
    for x in records:
        if not verified(x) or not x.citation:
            continue
        job = by_id.get(x.job_id)
        if job is None:
            continue
        out.setdefault((x.chunk_id, x.citation), Citation(
            doc_id=job.chunk.doc_id, chunk_id=x.chunk_id, page_start=x.pages[0], page_end=x.pages[1],
            text=x.citation))
    return list(out.values())
