"""MinionS, part 2: worker prompts, running jobs on the local model, checking citations, aggregating.

Worker prompt layout (issue 8): system instructions, then the chunk, then the task. Everything up to
the task is the same bytes for every job on a chunk — no job id, task or timestamp in it — so an
engine's prefix cache (llama.cpp, llama-server slots, Ollama, vLLM) reads each chunk once per round
when that chunk's jobs run back to back, which `expand_jobs` arranges and `run_jobs` preserves.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import field_validator

from minions import errors
from minions.clients.base import Message, Options
from minions.documents import Chunk
from minions.protocols.base import RunContext
from minions.protocols.citations import (
    excerpt,
    match_citation,
    normalize,
    point_citation,
    quote_segments,
)
from minions.protocols.events import JobFinished
from minions.protocols.lenient import Lenient, as_text
from minions.protocols.minions_plan import Job, MinionSConfig
from minions.protocols.parsing import parse_reply
from minions.protocols.result import JobRecord, JobStatus
from minions.protocols.templates import template

MAX_FIELD_CHARS = 2000      # what a job record keeps of each field of a worker's reply
_SHOW_ANSWER, _SHOW_CITATION, _SHOW_EXPLANATION = 400, 300, 200  # what the remote sees of each

# What the grammar allows the worker to write (issue 19): either an abstention, `{"answer": null}` —
# closed at once — or the answer first, then a short snippet of the excerpt that states it. The
# framework finds the sentences the snippet lies in and copies them from the chunk
# (citations.quote_segments, point_citation), so the quote is exact by construction and costs ~15
# output tokens instead of a copied quote plus an explanation (~150 output tokens per job before,
# issue 19's figures). The remote never needed the explanation: it sees the answer and the verified
# quote. A pointer by sentence number was measured too: numbering the sentences added ~135 prompt
# tokens to every job (29 markers per 3,000 characters of a 10-K) to save ~10 output tokens on
# answering jobs only, so the excerpt is shown plain (docs/local-speed.md). Replies in the older
# forms (`lines`; citation as a quote, explanation) are still accepted and checked.
_ANSWER_CHARS = 24  # "$1,577 million"; caps a degenerate reply ("2.1.1.1...", SmolLM2 on the 3M chunks)
# The quote: one to four words of the excerpt, enough to find its sentence by; the quote itself is
# copied from the chunk. Words only, single spaces: a pointer needs no figures (the answer's figures
# are checked in the cited sentences), and SmolLM2 fills a looser string with runs of digits
# ("2018-01-01T00:00:00.000000Z", a token per digit) or of spaces on chunks without the answer.
_WORD = "[A-Za-z]{1,12},?"  # letters only: "f,f,f,f" or "Pro-Pro-Pro" is a token a character
_QUOTE_PATTERN = f"^{_WORD}( {_WORD}){{0,3}}$"
_QUOTE_CHARS = 4 * 13
JOB_OUTPUT_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "object", "properties": {"answer": {"type": "null"}}, "required": ["answer"],
         "additionalProperties": False},
        {"type": "object",
         "properties": {"answer": {"type": "string", "maxLength": _ANSWER_CHARS},
                        "quote": {"type": "string", "pattern": _QUOTE_PATTERN}},
         "required": ["answer", "quote"], "additionalProperties": False},
    ],
}

#: tokens a worker's longest reply under that schema can take (both bounds in characters, ~3 per
#: token as figures take a token a digit, plus keys and quotes); a smaller local_max_tokens can cut the JSON
JOB_REPLY_TOKENS = (_ANSWER_CHARS + _QUOTE_CHARS) // 3 + 12

_ABSTAIN = {"", "none", "null", "nil", "n/a", "na", "not found", "unknown", "no answer", "not mentioned",
            "not available", "not applicable", "not provided", "not stated", "no information"}


class JobOutput(Lenient):
    """A worker's reply. Lenient on types (lists and numbers become text); abstaining is answer=null."""

    explanation: str = ""
    citation: str | None = None
    answer: str | None = None
    quote: str | None = None
    lines: list[int] | None = None

    @field_validator("explanation", "citation", "answer", "quote", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        return as_text(v, limit=MAX_FIELD_CHARS)

    @field_validator("lines", mode="before")
    @classmethod
    def _numbers(cls, v: Any) -> Any:
        """Sentence numbers, leniently: a single number, numeric strings ("3", "[3]"); anything else
        is ignored. Whether they are in range is checked against the chunk (`_judge`)."""
        if v is None:
            return None
        items = v if isinstance(v, list) else [v]
        out = []
        for x in items[:16]:
            if isinstance(x, bool):
                continue
            if isinstance(x, int):
                out.append(x)
            elif isinstance(x, float) and x.is_integer():
                out.append(int(x))
            elif isinstance(x, str) and (d := x.strip().strip("[]() ")).isdigit() and len(d) < 7:
                out.append(int(d))
        return out or None

    @property
    def abstained(self) -> bool:
        return self.answer is None or self.answer.strip().strip("\"'.").casefold() in _ABSTAIN


# --- prompts ------------------------------------------------------------------------------------

def worker_system() -> str:
    return template("minions_worker_system.txt").substitute()


def job_prefix(chunk: Chunk, doc_title: str = "") -> str:
    """The chunk part of a worker's user message: identical for every job on `chunk`."""
    # No chunk id or pages: the framework records where a job ran; every shown token is read per job.
    return template("minions_worker_chunk.txt").substitute(
        title=doc_title or chunk.doc_id,
        text=(f"{chunk.header}\n" if chunk.header else "") + excerpt(chunk.text))  # the header is not cited


def job_suffix(instruction: str, advice: str) -> str:
    # No advice, no line: every fixed token is read once per job (issue 14).
    return template("minions_worker_task.txt").substitute(
        instruction=instruction, advice=f"Advice: {advice}" if advice.strip() else "")


def job_messages(chunk: Chunk, instruction: str, advice: str = "", *, doc_title: str = "",
                 prefix: str | None = None) -> list[Message]:
    """A job's messages: [system instructions, user(chunk prefix + task)]. Pass `prefix` (from
    `job_prefix`) to reuse it across a chunk's jobs."""
    head = job_prefix(chunk, doc_title) if prefix is None else prefix
    return [Message(role="system", content=worker_system()),
            Message(role="user", content=head + job_suffix(instruction, advice))]


# --- running jobs -------------------------------------------------------------------------------

async def run_jobs(ctx: RunContext, jobs: Sequence[Job], cfg: MinionSConfig, titles: dict[str, str],
                   shown: set[str], *, finished: list[JobRecord] | None = None) -> list[JobRecord]:
    """Run jobs on the local model, at most `cfg.concurrency` at once, started in the given order
    (asyncio's Semaphore wakes waiters first-in first-out). A job that fails or replies with
    garbage is recorded with its status; only a round where every job fails on the client raises.
    `shown` holds the ids of chunks already registered (ctx.state.show) this run; `finished`, if
    given, receives each record as its job ends (what a cancelled round still has)."""
    rnd = ctx.round
    total = len(jobs)
    records: list[JobRecord | None] = [None] * total
    sem = asyncio.Semaphore(cfg.concurrency)
    multi = any(j.sample > 0 for j in jobs)
    temperature = cfg.sample_temperature if multi else cfg.temperature
    options = [Options(max_tokens=cfg.local_max_tokens, temperature=temperature,
                       json_schema=JOB_OUTPUT_SCHEMA, seed=s)
               for s in range(max((j.sample for j in jobs), default=0) + 1)]
    prefixes: dict[str, str] = {}
    client_errors: list[errors.ClientError] = []
    done = 0

    def messages(job: Job) -> list[Message]:
        prefix = prefixes.get(job.chunk.id)
        if prefix is None:
            prefix = prefixes[job.chunk.id] = job_prefix(job.chunk, titles.get(job.chunk.doc_id, ""))
            if job.chunk.id not in shown:  # register document text once, for redaction of logs
                shown.add(job.chunk.id)
                ctx.state.show(job.chunk.text)
        return job_messages(job.chunk, job.instruction, job.advice, prefix=prefix)

    async def one(k: int, job: Job) -> None:
        nonlocal done
        rec = JobRecord(job_id=job.job_id, task_id=job.task_id, chunk_id=job.chunk.id, sample=job.sample,
                        instruction=job.instruction, pages=(job.chunk.page_start, job.chunk.page_end))
        async with sem:
            try:
                completion = await ctx.call("local", messages(job), options[job.sample], step="job")
            except errors.ClientError as e:
                client_errors.append(e)
                rec.status, rec.note = JobStatus.FAILED, f"{type(e).__name__}: {str(e)[:200]}"
                completion = None
        if completion is not None:
            _judge(rec, completion.text, job.chunk, cfg)
        records[k] = rec
        if finished is not None:
            finished.append(rec)
        done += 1
        await ctx.emit(JobFinished(round=rnd, job_id=rec.job_id, task_id=rec.task_id, chunk_id=rec.chunk_id,
                                   pages=rec.pages, answer=rec.answer, citation=rec.citation, kept=rec.kept,
                                   status=rec.status, note=rec.note, done=done, total=total))

    # Tasks are created in job order, so they queue on the semaphore — and reach the engine's FIFO
    # executor — in that order: a chunk's jobs run back to back.
    tasks = [asyncio.create_task(one(k, j)) for k, j in enumerate(jobs)]
    try:
        await asyncio.gather(*tasks)
    finally:  # cancelled, or a job raised (RunCancelledError): no job may outlive the round
        for t in tasks:
            t.cancel()
    if total and len(client_errors) == total:
        raise client_errors[0]
    return [r for r in records if r is not None]


def _judge(rec: JobRecord, text: str, chunk: Chunk, cfg: MinionSConfig) -> None:
    """Parse a worker's reply into the record; decide whether it is kept."""
    try:
        out = parse_reply(text, JobOutput)
    except errors.ModelOutputError as e:
        rec.status, rec.note = JobStatus.UNPARSEABLE, str(e)[:200]
        return
    rec.explanation = out.explanation[:MAX_FIELD_CHARS]
    rec.citation = out.citation[:MAX_FIELD_CHARS] if out.citation else None
    rec.answer = None if out.abstained else (out.answer or "")[:MAX_FIELD_CHARS]
    if rec.answer is None:
        rec.status, rec.note = JobStatus.ABSTAINED, ""
        return
    pointer = out.lines
    if out.quote and not out.lines:  # a snippet: the sentences it lies in
        pointer = quote_segments(chunk.text, out.quote, cfg.citation_similarity) or [0]  # [0]: not found
    if pointer:  # a pointer: the quote is copied from the chunk, exact by construction
        quote, how = point_citation(chunk.text, pointer, rec.answer)
        if quote is None and pointer == [0]:
            how = "quote not in chunk" if how.startswith("citation lines") else how
        if quote is not None:
            rec.citation = quote[:MAX_FIELD_CHARS]
            rec.status, rec.note = JobStatus.KEPT, how
            if (i := chunk.text.find(quote)) >= 0:  # one contiguous quote: its offsets in the document
                rec.span = (chunk.start + i, chunk.start + i + len(quote))
            return
        if not rec.citation:
            rec.status = JobStatus.FLAGGED if cfg.citation_check == "flag" else JobStatus.DROPPED
            rec.note = how
            return
    if not rec.citation:
        found, how = False, "no citation"
    else:
        m = match_citation(rec.citation, chunk.text, cfg.citation_similarity)
        found, how = m.found, m.how
        if m.start is not None and m.end is not None:
            rec.span = (chunk.start + m.start, chunk.start + m.end)
    if found:
        rec.status, rec.note = JobStatus.KEPT, "" if how == "exact" else f"citation matched ({how})"
    else:
        rec.status = JobStatus.FLAGGED if cfg.citation_check == "flag" else JobStatus.DROPPED
        rec.note = "no citation" if how == "no citation" else f"citation {how} in chunk"


# --- aggregation for the remote -----------------------------------------------------------------

_WS = re.compile(r"\s+")


def _clip(s: str | None, n: int) -> str:
    s = _WS.sub(" ", s or "").strip()
    return s if len(s) <= n else s[: n - 1] + "…"


def aggregate(records: Sequence[JobRecord], instructions: Sequence[str], budget: int,
              redact: Callable[[str], str] | None = None, quote: Callable[[str, bool], str] | None = None) -> str:
    """Kept job outputs grouped by task, then by answer (identical answers from several chunks or
    samples are listed once), in a compact text form, within `budget` characters. `redact` (the run's
    `RunContext.redact` under --privacy) is applied to what the workers wrote, and to chunk ids,
    before anything is clipped, so a cut cannot hide personal data from the scrubber. `quote(text,
    verified)` (the run's `RunContext.quote`) gives each quote as shown, clipped: the quote, or the
    placeholder the verbatim budget puts in its place; called only for lines that are shown."""
    if redact is not None:
        records = [r.model_copy(update={
            "chunk_id": redact(r.chunk_id), "explanation": redact(r.explanation) if r.explanation else r.explanation,
            "answer": redact(r.answer) if r.answer else r.answer,
            "citation": redact(r.citation) if r.citation else r.citation}) for r in records]
    per_task = max(200, budget // max(1, len(instructions)))
    blocks = []
    for t, instruction in enumerate(instructions, start=1):
        mine = [r for r in records if r.task_id == t]
        kept = [r for r in mine if r.kept]
        head = (f"## Task {t}: {_clip(instruction, 300)}\n"
                f"{len(kept)} of {len(mine)} jobs answered ({_count(mine, JobStatus.ABSTAINED)} abstained, "
                f"{_count(mine, JobStatus.DROPPED)} dropped for unverifiable citations, "
                f"{_count(mine, JobStatus.FAILED) + _count(mine, JobStatus.UNPARSEABLE)} failed)")
        groups: dict[tuple[str, str], list[JobRecord]] = {}
        for r in kept:
            groups.setdefault((normalize(r.answer or ""), normalize(r.citation or "")), []).append(r)
        lines, used, omitted = [head], len(head), 0
        for group in groups.values():
            r = group[0]
            where = ", ".join(dict.fromkeys(f"{g.chunk_id} (p. {_pages(g.pages)})" for g in group))
            flag = " [citation NOT verified]" if r.status is JobStatus.FLAGGED else ""

            def line_with(cited: str, r: JobRecord = r, where: str = where, flag: str = flag) -> str:
                return (f"- [{where}] answer: {_clip(r.answer, _SHOW_ANSWER)} | citation: {cited}{flag}"
                        + (f" | why: {_clip(r.explanation, _SHOW_EXPLANATION)}" if (r.explanation or "").strip()
                           else ""))
            cited = _clip(r.citation, _SHOW_CITATION)
            line = line_with(f'"{cited}"')
            if used + len(line) + 1 > per_task:
                omitted += 1
                continue
            if quote is not None and cited:
                shown = quote(cited, r.status is JobStatus.KEPT)
                line = line if shown == cited else line_with(shown)  # the whole text is still cut to `budget` below
            lines.append(line)
            used += len(line) + 1
        if omitted:
            lines.append(f"- ... {omitted} more answers omitted (output budget)")
        blocks.append("\n".join(lines))
    out = "\n\n".join(blocks) if blocks else "(no jobs ran)"
    return out if len(out) <= budget else out[: budget - 40] + "\n... (truncated to the output budget)"


def _count(records: Sequence[JobRecord], status: JobStatus) -> int:
    return sum(1 for r in records if r.status is status)


def _pages(pages: tuple[int, int]) -> str:
    return str(pages[0]) if pages[0] == pages[1] else f"{pages[0]}-{pages[1]}"
