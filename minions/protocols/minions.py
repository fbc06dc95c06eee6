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
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from minions.clients.base import Message, Options
from minions.documents import Chunk, Document, chunk_documents
from minions.documents.hybrid import HybridIndex, complete, with_neighbours
from minions.documents.store import CorpusStore
from minions.errors import MissingDependencyError
from minions.protocols.base import Protocol, RunContext
from minions.protocols.events import JobsPlanned, MessageSent
from minions.protocols.grounding import answer_to_question, best_supported, settle, shares, support
from minions.protocols.lenient import Lenient, as_text
from minions.protocols.minions_jobs import JOB_REPLY_TOKENS, MAX_FIELD_CHARS, aggregate, run_jobs
from minions.protocols.minions_plan import (
    Job,
    JobPlan,
    MinionSConfig,
    ResolvedPlan,
    chunking_options,
    documents_overview,
    expand_jobs,
    resolve_plan,
    select_chunks,
)
from minions.protocols.parsing import ask_json
from minions.protocols.reading_budget import ReadingBudget
from minions.protocols.result import Citation, JobRecord, RoundDecision, RoundRecord
from minions.protocols.templates import template

_MAX_NOTES_CHARS = 4000   # scratchpad / feedback carried between rounds
_MAX_ANSWER_CHARS = 4000

__all__ = ["JobPlan", "MinionS", "MinionSConfig", "Synthesis"]


# Bounds on what the remote writes (maxLength in the schema bounds constrained decoding; longer
# text from an unconstrained remote is cut, not rejected). llama.cpp's grammar parser refuses
# repetitions much above 1000 (`x{0,1500}`), so no bound may exceed that.
_LIMITS = {"explanation": 1000, "answer": 1000, "feedback": 1000, "scratchpad": 1000}


class Synthesis(Lenient):
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
        v = _field_text(v)
        if v is None and info.field_name == "explanation":
            return ""
        return v.strip()[: _LIMITS[str(info.field_name)]] if isinstance(v, str) else v

    @field_validator("decision", mode="before")
    @classmethod
    def _decision(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @model_validator(mode="before")
    @classmethod
    def _answer_from_explanation(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        answer, explanation = _field_text(data.get("answer")), _field_text(data.get("explanation"))
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

    def __init__(self, docs: list[Document], corpus: CorpusStore | None = None):
        self.docs = docs
        self.corpus = corpus  # a corpus index holding these documents: stored chunks and embeddings
        self._chunks: dict[tuple[str, int], list[Chunk]] = {}
        self._index: dict[tuple[str, int], HybridIndex] = {}
        self.dense_missing: MissingDependencyError | None = None

    def get(self, strategy: str, size: int) -> list[Chunk]:
        key = (strategy, size)
        if key not in self._chunks:
            stored = self.corpus.chunks(self.docs, strategy, size) if self.corpus is not None else None
            self._chunks[key] = stored if stored is not None else chunk_documents(self.docs, strategy, size)  # type: ignore[arg-type]
        return self._chunks[key]

    def index(self, strategy: str, size: int) -> HybridIndex:
        key = (strategy, size)
        if key not in self._index:
            stored = self.corpus.index(self.docs, strategy, size) if self.corpus is not None else None
            self._index[key] = index = stored if stored is not None else \
                HybridIndex.for_documents(self.docs, self.get(strategy, size))
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


@dataclass
class _RunNotes:
    """What one MinionS run carries from round to round."""

    system: Message                  # the remote's system message, stable across rounds
    remote_opts: Options
    chunks: _Chunks
    default_chunks: list[Chunk]
    reading: ReadingBudget
    titles: dict[str, str]
    shown: set[str] = field(default_factory=set)           # chunk ids whose text is registered (ctx.show)
    feedback: str | None = None
    scratchpad: str = ""
    answered_chunks: list[str] = field(default_factory=list)
    every_record: list[JobRecord] = field(default_factory=list)  # all rounds: the evidence answers are checked against
    chunk_docs: dict[str, str] = field(default_factory=dict)     # chunk id -> document id, for citations
    job_chunks: dict[str, str] = field(default_factory=dict)     # job id -> its chunk's text, to check answers against
    dense_noticed: bool = False


class MinionS(Protocol[MinionSConfig]):
    name = "minions"
    Config = MinionSConfig

    async def _run(self, ctx: RunContext) -> str | None:
        cfg = self.config
        chunks = _Chunks(ctx.documents, self.corpus)
        run = _RunNotes(
            # Stable across rounds: marked for the provider's prompt cache (Anthropic `cache_control`).
            system=Message(role="system", cache=True, content=template("minions_remote_system.txt").substitute()),
            remote_opts=Options(max_tokens=cfg.remote_max_tokens, temperature=cfg.temperature),
            chunks=chunks, default_chunks=chunks.get(cfg.chunk_strategy, cfg.chunk_size),
            # chunk sizes in the local model's tokens, counted once per run
            reading=ReadingBudget(ctx.client("local"), cfg.read, cfg.local_time_budget),
            titles={d.id: d.title for d in ctx.documents})
        if cfg.local_max_tokens < JOB_REPLY_TOKENS:
            await ctx.notice(f"local_max_tokens={cfg.local_max_tokens} may cut workers' JSON replies (up to "
                             f"~{JOB_REPLY_TOKENS} tokens) before their answer; raise it to {JOB_REPLY_TOKENS}.")
        for r in range(1, cfg.max_rounds + 1):
            rec = ctx.new_round()
            last = r == cfg.max_rounds
            resolved = await self._decompose(ctx, run, r)
            jobs, read_tokens = await self._choose_jobs(ctx, run, rec, resolved, r)
            records = await self._execute(ctx, run, rec, jobs, read_tokens)
            kept = [x for x in records if x.kept]
            if ctx.state.best_answer is None and kept:
                ctx.state.propose(_most_common_answer(kept))  # a candidate, until the remote decides
            synth = await self._aggregate_and_synthesize(ctx, run, resolved, records, r, last)
            if synth.decision == "provide_final_answer" or last:
                decision = RoundDecision.FINAL_ANSWER if synth.decision == "provide_final_answer" \
                    else RoundDecision.FORCED_ANSWER
                ctx.state.cite(_citations(records, run.chunk_docs))
                answer = await self._check_grounded(ctx, run.every_record, run.job_chunks, ctx.state.best_answer)
                await ctx.round_done(rec, decision)
                return answer
            self._carry_over(run, synth, kept)
            await ctx.round_done(rec, RoundDecision.ANOTHER_ROUND)
        return ctx.state.best_answer  # unreachable: the last round always returns

    # -- the steps of a round -------------------------------------------------------------------

    async def _decompose(self, ctx: RunContext, run: _RunNotes, r: int) -> ResolvedPlan:
        """The remote plans with the documents' titles and sizes, never their text."""
        cfg = self.config
        prompt = template("minions_decompose.txt").substitute(
            round=r, max_rounds=cfg.max_rounds, task=ctx.task,
            documents=documents_overview(ctx.documents, run.default_chunks, cfg, redact=ctx.redact),
            tasks_per_round=cfg.tasks_per_round, samples_per_task=cfg.samples_per_task,
            job_cap=f"at most {cfg.max_jobs_per_round} jobs in all" if cfg.max_jobs_per_round else "no cap on jobs",
            reading=run.reading.describe(run.default_chunks), n_chunks=len(run.default_chunks),
            top_k=cfg.retrieval_top_k, chunking=chunking_options(cfg), default_strategy=cfg.chunk_strategy,
            default_size=cfg.chunk_size, history=self._history(r, run.feedback, run.scratchpad, run.answered_chunks))
        plan, completion = await ask_json(ctx, "remote", [run.system, Message(role="user", content=prompt)],
                                          JobPlan, run.remote_opts, step="decompose", attempts=cfg.plan_attempts)
        await ctx.emit(MessageSent(round=r, sender="remote", step="decompose", content=completion.text))
        resolved = resolve_plan(plan, cfg, ctx.task)
        for note in resolved.adjustments:
            await ctx.notice(f"round {r}: {note}", level="info")
        return resolved

    async def _choose_jobs(self, ctx: RunContext, run: _RunNotes, rec: RoundRecord, resolved: ResolvedPlan,
                           r: int) -> tuple[list[Job], int]:
        """The plan's jobs over the chunks the reading budget allows, grouped by chunk; and the tokens
        of document they read."""
        cfg = self.config
        chunks, size = run.chunks, run.reading.size
        pool = chunks.get(resolved.strategy, resolved.size)
        # The query: the question, every task the plan holds, and the plan's keywords.
        query = " ".join([ctx.task, *(t.instruction for t in resolved.tasks), resolved.keyword_query or ""])
        budget, why = run.reading.tokens(pool)
        # Indexing embeds every chunk (~0.5 s for a 10-K): off the event loop, so events, servers
        # and cancellation stay responsive.
        await asyncio.to_thread(chunks.index, resolved.strategy, resolved.size)
        rank = chunks.ranker(resolved.strategy, resolved.size, cfg.neighbours)
        selected, notes = select_chunks(resolved, pool, rank, query, budget, size)
        jobs, planned = expand_jobs(resolved, selected, r)
        if planned > len(jobs):
            notes.append(f"plan expands to {planned} jobs; running the first {len(jobs)} (job cap)")
        if chunks.dense_missing is not None and not run.dense_noticed:
            run.dense_noticed = True
            await ctx.notice(f"chunks chosen by BM25 only: hybrid retrieval (BM25 + dense embeddings) needs "
                             f"the '{chunks.dense_missing.extra}' extra: pip install 'minions[embeddings]'",
                             level="info")
        read = list({j.chunk.id: j.chunk for j in jobs}.values())
        ctx.state.read.chunks(read, total=len(pool), why=why)
        read_tokens, pool_tokens = run.reading.total(read), run.reading.total(pool)
        notes.append(f"read {len(read)} of {len(pool)} chunks ({read_tokens:,} of {pool_tokens:,} tokens, "
                     f"{read_tokens / max(pool_tokens, 1):.0%}): {why}")
        for note in notes:
            await ctx.notice(f"round {r}: {note}", level="info")
        rec.plan = {**resolved.model_dump(), "planned_jobs": planned, "selected_chunks": len(selected)}
        await ctx.emit(JobsPlanned(round=r, n_jobs=len(jobs), n_tasks=len(resolved.tasks),
                                   n_chunks=len({j.chunk.id for j in jobs}), plan=rec.plan))
        run.chunk_docs.update((j.chunk.id, j.chunk.doc_id) for j in jobs)
        run.job_chunks.update((j.job_id, j.chunk.text) for j in jobs)
        return jobs, read_tokens

    async def _execute(self, ctx: RunContext, run: _RunNotes, rec: RoundRecord, jobs: list[Job],
                       read_tokens: int) -> list[JobRecord]:
        """The jobs on the local model; what finished is kept and offered as the fallback, even when
        the round is cancelled midway."""
        finished: list[JobRecord] = []
        done: list[JobRecord] | None = None
        started = time.perf_counter()
        try:
            done = await run_jobs(ctx, jobs, self.config, run.titles, run.shown, finished=finished)
        finally:  # also when cancelled mid-round: the jobs that finished are kept and offered
            order = {j.job_id: i for i, j in enumerate(jobs)}
            rec.jobs = done if done is not None else sorted(finished, key=lambda x: order[x.job_id])
            run.every_record.extend(rec.jobs)
            _offer_fallback(ctx, run.every_record, run.chunk_docs, run.job_chunks)
        run.reading.remember(read_tokens, time.perf_counter() - started, rec.jobs)
        return rec.jobs

    async def _aggregate_and_synthesize(self, ctx: RunContext, run: _RunNotes, resolved: ResolvedPlan,
                                        records: list[JobRecord], r: int, last: bool) -> Synthesis:
        cfg = self.config
        outputs = aggregate(records, [t.instruction for t in resolved.tasks], cfg.aggregate_max_chars,
                            redact=ctx.redact, quote=lambda text, verified: ctx.quote(text, verified=verified))
        outputs = await ctx.shielded(outputs)
        synth = await self._synthesize(ctx, run.system, run.remote_opts, r, last, outputs, run.scratchpad)
        if synth.answer and synth.answer.strip():
            ctx.state.propose(synth.answer.strip()[:_MAX_ANSWER_CHARS])
        return synth

    def _carry_over(self, run: _RunNotes, synth: Synthesis, kept: list[JobRecord]) -> None:
        """What the next round's plan is told: the feedback, and with "scratchpad" the notes so far."""
        run.feedback = (synth.feedback or synth.explanation or "").strip()[:_MAX_NOTES_CHARS] or None
        if self.config.strategy == "scratchpad":
            scratchpad = (synth.scratchpad or "").strip() or _append(run.scratchpad, synth.explanation)
            run.scratchpad = scratchpad[-_MAX_NOTES_CHARS:]
            run.answered_chunks = list(dict.fromkeys(x.chunk_id for x in kept))[:50]

    async def _check_grounded(self, ctx: RunContext, records: list[JobRecord], job_chunks: dict[str, str],
                              answer: str | None) -> str | None:
        # Evidence: what the remote was shown (kept answers and quotes) and answers the document backs.
        state = ctx.state
        evidence = [t for x in records if x.kept for t in (x.answer, x.citation)]
        evidence += [x.answer for x in records if support(x, job_chunks.get(x.job_id), ctx.task)]
        answer = await settle(ctx, answer, evidence, mode=self.config.ungrounded_answer,
                              evidence_name="the workers' answers and quotes")
        fallback = state.fallback
        if self.config.ungrounded_answer == "fallback" and state.degraded_reason is None and fallback is not None \
                and not shares(answer, [fallback.answer], ctx.task):
            # A weak remote's answer may share a word with some quote and still not be the answer the
            # document backs: for it ("fallback"), the remote must agree with that answer to stand.
            said_by_remote = answer
            answer = state.fall_back(f"the remote's answer does not agree with {fallback.what}; returned that answer")
            await ctx.notice(f"degraded answer: {state.degraded_reason} "
                             f"(the remote said: {(said_by_remote or '')[:200]!r})")
        if not state.grounded and self.config.ungrounded_answer == "fallback" and state.degraded_reason is None:
            # Nothing checkable either way: the workers read the document, the remote did not, so their
            # own answer to the question beats an ungrounded synthesis. Still flagged grounded=false.
            said = answer_to_question(records, ctx.task)
            if said is not None:
                answer = state.degrade(
                    f"the remote's answer is not backed by the workers' answers and no worker's answer could "
                    f"be checked against the document; returned the workers' most frequent answer to the "
                    f"question ({said.support} job(s), unverified)",
                    said.answer[:_MAX_ANSWER_CHARS], [], grounded=state.grounded)
                await ctx.notice(f"degraded answer: {state.degraded_reason}")
        state.propose(answer)
        return answer

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
    ctx.state.set_fallback(best.answer[:_MAX_ANSWER_CHARS], citations,
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


def _field_text(v: Any) -> Any:
    return as_text(v, limit=MAX_FIELD_CHARS)


def _offsets(x: JobRecord) -> dict[str, int]:
    """Where a job's citation was found when it was judged (the page is added by `place`)."""
    return {"start": x.span[0], "end": x.span[1]} if x.span else {}
