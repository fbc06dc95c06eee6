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
from minions.protocols.grounding import answer_to_question, best_supported, settle, shares, support
from minions.protocols.minions_jobs import JOB_REPLY_TOKENS, _as_text, aggregate, run_jobs
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
from minions.protocols.reading import FIRST_RUN_SHARE, FIRST_RUN_TOKENS, SpeedStore, budget_tokens
from minions.protocols.result import Citation, JobRecord, JobStatus

_MAX_NOTES_CHARS = 4000   # scratchpad / feedback carried between rounds
_MAX_ANSWER_CHARS = 4000

__all__ = ["JobPlan", "MinionS", "MinionSConfig", "Synthesis"]


# Bounds on what the remote writes (maxLength in the schema bounds constrained decoding; longer
# text from an unconstrained remote is cut, not rejected). llama.cpp's grammar parser refuses
# repetitions much above 1000 (`x{0,1500}`), so no bound may exceed that.
_LIMITS = {"explanation": 1000, "answer": 1000, "feedback": 1000, "scratchpad": 1000}


class Synthesis(_Lenient):
    """The remote's decision after reading the workers' reports.

    Lenient where meaning is clear: a final decision whose "answer" is empty takes its answer from
    "explanation" (weak models put it there); with neither, a non-final round asks for another
    round instead of failing. Only the last round's schema (`LastSynthesis`) can still fail."""

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

    @model_validator(mode="before")
    @classmethod
    def _answer_from_explanation(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        answer, explanation = _as_text(data.get("answer")), _as_text(data.get("explanation"))
        if not (isinstance(answer, str) and answer.strip()) and isinstance(explanation, str) and explanation.strip():
            decision = str(data.get("decision") or "").strip().lower()
            if decision == "provide_final_answer" or cls is LastSynthesis:
                return {**data, "answer": explanation}
        return data

    @model_validator(mode="after")
    def _answer_given(self) -> Synthesis:
        if self.decision == "provide_final_answer" and not (self.answer or "").strip():
            # Nothing to answer with: on a non-final round, that is a request for another round.
            self.decision = "request_additional_info"
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
        every_record: list[JobRecord] = []   # all rounds: the evidence answers are checked against
        chunk_docs: dict[str, str] = {}      # chunk id -> document id, for citations
        job_chunks: dict[str, str] = {}      # job id -> its chunk's text, to check answers against
        if cfg.local_max_tokens < JOB_REPLY_TOKENS:
            await ctx.notice(f"local_max_tokens={cfg.local_max_tokens} may cut workers' JSON replies (up to "
                             f"~{JOB_REPLY_TOKENS} tokens) before their answer; raise it to {JOB_REPLY_TOKENS}.")
        dense_noticed = False
        size = self._sizer(ctx)  # chunk sizes in the local model's tokens, counted once per run

        for r in range(1, cfg.max_rounds + 1):
            rec = ctx.new_round()
            last = r == cfg.max_rounds

            # -- decompose: the remote plans with titles and sizes, never text ------------------
            prompt = template("minions_decompose.txt").substitute(
                round=r, max_rounds=cfg.max_rounds, task=ctx.task,
                documents=documents_overview(ctx.documents, default_chunks, cfg, redact=ctx.redact),
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
            chunk_docs.update((j.chunk.id, j.chunk.doc_id) for j in jobs)
            job_chunks.update((j.job_id, j.chunk.text) for j in jobs)
            finished: list[JobRecord] = []
            done: list[JobRecord] | None = None
            started = time.perf_counter()
            try:
                done = await run_jobs(ctx, jobs, cfg, titles, shown, finished=finished)
            finally:  # also when cancelled mid-round: the jobs that finished are kept and offered
                order = {j.job_id: i for i, j in enumerate(jobs)}
                rec.jobs = done if done is not None else sorted(finished, key=lambda x: order[x.job_id])
                every_record.extend(rec.jobs)
                _offer_fallback(ctx, every_record, chunk_docs, job_chunks)
            records = rec.jobs
            self._remember_speed(ctx, read_tokens, time.perf_counter() - started, records)
            kept = [x for x in records if x.kept]
            if ctx.best_answer is None and kept:
                ctx.best_answer = _most_common_answer(kept)  # a candidate, until the remote decides

            # -- aggregate and synthesize ---------------------------------------------------------
            outputs = aggregate(records, [t.instruction for t in resolved.tasks], cfg.aggregate_max_chars,
                                redact=ctx.redact)
            outputs = await ctx.shielded(outputs)
            synth = await self._synthesize(ctx, system, remote_opts, r, last, outputs, scratchpad)
            if synth.answer and synth.answer.strip():
                ctx.best_answer = synth.answer.strip()[:_MAX_ANSWER_CHARS]

            if synth.decision == "provide_final_answer" or last:
                rec.decision = "final_answer" if synth.decision == "provide_final_answer" else "forced_answer"
                ctx.citations = _citations(records, chunk_docs)
                answer = await self._check_grounded(ctx, every_record, job_chunks, ctx.best_answer)
                await self._round_done(ctx, rec.decision)
                return answer

            rec.decision = "another_round"
            feedback = (synth.feedback or synth.explanation or "").strip()[:_MAX_NOTES_CHARS] or None
            if cfg.strategy == "scratchpad":
                scratchpad = (synth.scratchpad or "").strip() or _append(scratchpad, synth.explanation)
                scratchpad = scratchpad[-_MAX_NOTES_CHARS:]
                answered_chunks = list(dict.fromkeys(x.chunk_id for x in kept))[:50]
            await self._round_done(ctx, rec.decision)
        return ctx.best_answer  # unreachable: the last round always returns

    async def _check_grounded(self, ctx: RunContext, records: list[JobRecord], job_chunks: dict[str, str],
                              answer: str | None) -> str | None:
        # Evidence: what the remote was shown (kept answers and quotes) and answers the document backs.
        evidence = [t for x in records if x.kept for t in (x.answer, x.citation)]
        evidence += [x.answer for x in records if support(x, job_chunks.get(x.job_id), ctx.task)]
        answer = await settle(ctx, answer, evidence, mode=self.config.ungrounded_answer,
                              evidence_name="the workers' answers and quotes")
        fallback = ctx.fallback
        if self.config.ungrounded_answer == "fallback" and ctx.degraded_reason is None and fallback is not None \
                and not shares(answer, [fallback[0]], ctx.task):
            # A weak remote's answer may share a word with some quote and still not be the answer the
            # document backs: for it ("fallback"), the remote must agree with that answer to stand.
            ctx.degraded_reason = f"the remote's answer does not agree with {fallback[2]}; returned that answer"
            await ctx.notice(f"degraded answer: {ctx.degraded_reason} (the remote said: {(answer or '')[:200]!r})")
            answer, ctx.citations, ctx.grounded = fallback[0], fallback[1], True
        if not ctx.grounded and self.config.ungrounded_answer == "fallback" and ctx.degraded_reason is None:
            # Nothing checkable either way: the workers read the document, the remote did not, so their
            # own answer to the question beats an ungrounded synthesis. Still flagged grounded=false.
            said = answer_to_question(records, ctx.task)
            if said is not None:
                ctx.degraded_reason = (f"the remote's answer shares nothing with the workers' answers and no "
                                       f"worker's answer could be checked against the document; returned the "
                                       f"workers' most frequent answer to the question ({said.support} job(s), "
                                       f"unverified)")
                await ctx.notice(f"degraded answer: {ctx.degraded_reason}")
                answer, ctx.citations = said.answer[:_MAX_ANSWER_CHARS], []
        ctx.best_answer = answer
        return answer

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
        budget = budget_tokens(speed, cfg.local_time_budget)
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
        if records and not any(r.status is JobStatus.FAILED for r in records):
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
        await ctx.emit(RoundDone(round=ctx.round, decision=decision,  # cumulative, as every protocol reports
                                 remote_usd=ctx.meter.totals("remote").cost_usd,
                                 local_tokens=ctx.meter.totals("local").usage.total_tokens))


def _offer_fallback(ctx: RunContext, records: list[JobRecord], chunk_docs: dict[str, str],
                    job_chunks: dict[str, str]) -> None:
    """Local work is never lost: the answer most jobs backed with a quote from the document becomes
    the run's fallback (see RunContext.set_fallback and grounding.support)."""
    best = best_supported(records, job_chunks, ctx.task)
    if best is None:
        return
    citations = list({(r.chunk_id, q): Citation(doc_id=chunk_docs.get(r.chunk_id, ""), chunk_id=r.chunk_id,
                                                page_start=r.pages[0], page_end=r.pages[1], text=q,
                                                **_offsets(r) if q == r.citation else {})
                      for r, q in zip(best.records, best.quotes, strict=True)}.values())
    ctx.set_fallback(best.answer[:_MAX_ANSWER_CHARS], citations,
                     f"the answer {best.support} job(s) backed with a quote from the document")


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


def _citations(records: list[JobRecord], chunk_docs: dict[str, str]) -> list[Citation]:
    """The verified citations of the given records (flagged ones are not evidence)."""
    out: dict[tuple[str, str], Citation] = {}
    for x in records:
        if not x.verified or not x.citation or x.chunk_id not in chunk_docs:
            continue
        out.setdefault((x.chunk_id, x.citation), Citation(
            doc_id=chunk_docs[x.chunk_id], chunk_id=x.chunk_id, page_start=x.pages[0], page_end=x.pages[1],
            text=x.citation, **_offsets(x)))
    return list(out.values())


def _offsets(x: JobRecord) -> dict[str, int]:
    """Where a job's citation was found when it was judged (the page is added by `place`)."""
    return {"start": x.span[0], "end": x.span[1]} if x.span else {}
