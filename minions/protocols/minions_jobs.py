"""MinionS, part 2: worker prompts, running jobs on the local model, checking citations, aggregating.

Worker prompt layout (issue 8): system instructions, then the chunk, then the task. Everything up to
the task is the same bytes for every job on a chunk — no job id, task or timestamp in it — so an
engine's prefix cache (llama.cpp, llama-server slots, Ollama, vLLM) reads each chunk once per round
when that chunk's jobs run back to back, which `expand_jobs` arranges and `run_jobs` preserves.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from difflib import SequenceMatcher
from typing import Any

from pydantic import field_validator

from minions import errors
from minions.clients.base import Message, Options
from minions.documents import Chunk
from minions.protocols.events import JobFinished
from minions.protocols.minions_plan import Job, MinionSConfig, _Lenient, template
from minions.protocols.parsing import parse_reply
from minions.protocols.result import JobRecord

MAX_FIELD_CHARS = 2000      # what a job record keeps of each field of a worker's reply
_SHOW_ANSWER, _SHOW_CITATION, _SHOW_EXPLANATION = 400, 300, 200  # what the remote sees of each

# What the grammar allows the worker to write. "answer" comes first and is the only required key, so
# an abstention is `{"answer": null}` — a handful of tokens — instead of an explanation and a null
# citation written before the null (issue 14: ~166 output tokens per job, most of them abstaining).
# Short bounds cap what a rambling small model writes (SmolLM2 fills them on irrelevant chunks: 207
# tokens at 200/300/150 characters, 107 at 100/200/100). The bounds themselves cost nothing: llama.cpp
# samples as fast under maxLength 100, 300 or 1000 as unbounded (benchmarks/protocols.py).
JOB_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answer": {"anyOf": [{"type": "string", "maxLength": 100}, {"type": "null"}]},
        "citation": {"type": "string", "maxLength": 200},
        "explanation": {"type": "string", "maxLength": 100},
    },
    "required": ["answer"],
}

_ABSTAIN = {"", "none", "null", "nil", "n/a", "na", "not found", "unknown", "no answer", "not mentioned",
            "not available", "not applicable", "not provided", "not stated", "no information"}


def _as_text(v: Any) -> Any:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, list):
        return "; ".join(str(_as_text(x)) for x in v if x is not None) or None
    return json.dumps(v, ensure_ascii=False)[:MAX_FIELD_CHARS]


class JobOutput(_Lenient):
    """A worker's reply. Lenient on types (lists and numbers become text); abstaining is answer=null."""

    explanation: str = ""
    citation: str | None = None
    answer: str | None = None

    @field_validator("explanation", "citation", "answer", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        return _as_text(v)

    @property
    def abstained(self) -> bool:
        return self.answer is None or self.answer.strip().strip("\"'.").casefold() in _ABSTAIN


# --- prompts ------------------------------------------------------------------------------------

def worker_system() -> str:
    return template("minions_worker_system.txt").substitute()


def job_prefix(chunk: Chunk, doc_title: str = "") -> str:
    """The chunk part of a worker's user message: identical for every job on `chunk`."""
    pages = f"page {chunk.page_start}" if chunk.page_start == chunk.page_end \
        else f"pages {chunk.page_start}-{chunk.page_end}"
    return template("minions_worker_chunk.txt").substitute(
        title=doc_title or chunk.doc_id, chunk_id=chunk.id, pages=pages, text=chunk.text)


def job_suffix(instruction: str, advice: str) -> str:
    # No advice, no line: every fixed token is read once per job (issue 14).
    return template("minions_worker_task.txt").substitute(
        instruction=instruction, advice=f"Advice: {advice}\n" if advice.strip() else "")


def job_messages(chunk: Chunk, instruction: str, advice: str = "", *, doc_title: str = "",
                 prefix: str | None = None) -> list[Message]:
    """A job's messages: [system instructions, user(chunk prefix + task)]. Pass `prefix` (from
    `job_prefix`) to reuse it across a chunk's jobs."""
    head = job_prefix(chunk, doc_title) if prefix is None else prefix
    return [Message(role="system", content=worker_system()),
            Message(role="user", content=head + job_suffix(instruction, advice))]


# --- citations ----------------------------------------------------------------------------------

_WS = re.compile(r"\s+")
_ELLIPSIS = re.compile(r"\s*(?:\.\.\.|…)\s*")
_QUOTES = "\"'`“”‘’«» "


def _norm(s: str) -> str:
    return _WS.sub(" ", s).strip().casefold()


def citation_found(citation: str, text: str, threshold: float = 0.8) -> tuple[bool, str]:
    """Is `citation` in `text`? Exact, then whitespace/case-normalised, then fuzzy (difflib ratio of
    the best window >= threshold). A quote elided with "..." must match part by part.
    Returns (found, how)."""
    cite = citation.strip().strip(_QUOTES).rstrip(".,;:").strip(_QUOTES)  # quotes end sentences early
    if not cite:
        return False, "empty"
    if cite in text:
        return True, "exact"
    norm_text = _norm(text)
    parts = [p for p in (_norm(x) for x in _ELLIPSIS.split(cite)) if p]
    if parts and all(p in norm_text for p in parts):
        return True, "normalised"
    if all(_fuzzy(p, norm_text) >= threshold for p in parts):
        return True, "fuzzy"
    return False, "not found"


def _fuzzy(cite: str, text: str, max_anchors: int = 8) -> float:
    """Best SequenceMatcher ratio between `cite` and a same-length window of `text`, trying windows
    anchored at the longest blocks the two share (a few ms for a 3,000-char chunk)."""
    n = len(cite)
    if n < 8 or n > 2000 or not text:
        return 0.0
    blocks = SequenceMatcher(None, text, cite, autojunk=False).get_matching_blocks()
    best = 0.0
    for i, j, size in sorted(blocks, key=lambda b: -b[2])[:max_anchors]:
        if size < 3:
            break
        start = max(0, i - j)
        for lo, hi in ((start, start + n), (max(0, start - 3), start + n + 3)):
            sm = SequenceMatcher(None, text[lo:hi], cite, autojunk=False)
            if sm.quick_ratio() > best:
                best = max(best, sm.ratio())
    return best


# --- running jobs -------------------------------------------------------------------------------

async def run_jobs(ctx: Any, jobs: Sequence[Job], cfg: MinionSConfig, titles: dict[str, str],
                   shown: set[str]) -> list[JobRecord]:
    """Run jobs on the local model, at most `cfg.concurrency` at once, started in the given order
    (asyncio's Semaphore wakes waiters first-in first-out). A job that fails or replies with
    garbage is recorded with a note; only a round where every job fails on the client raises.
    `shown` holds the ids of chunks already registered in ctx.shown_texts this run."""
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
                ctx.shown_texts.append(job.chunk.text)
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
                rec.note = f"failed: {type(e).__name__}: {str(e)[:200]}"
                completion = None
        if completion is not None:
            _judge(rec, completion.text, job.chunk, cfg)
        records[k] = rec
        done += 1
        await ctx.emit(JobFinished(round=rnd, job_id=rec.job_id, task_id=rec.task_id, chunk_id=rec.chunk_id,
                                   pages=rec.pages, answer=rec.answer, citation=rec.citation, kept=rec.kept,
                                   note=rec.note, done=done, total=total))

    # Tasks are created in job order, so they queue on the semaphore — and reach the engine's FIFO
    # executor — in that order: a chunk's jobs run back to back.
    await asyncio.gather(*(asyncio.create_task(one(k, j)) for k, j in enumerate(jobs)))
    if total and len(client_errors) == total:
        raise client_errors[0]
    return [r for r in records if r is not None]


def _judge(rec: JobRecord, text: str, chunk: Chunk, cfg: MinionSConfig) -> None:
    """Parse a worker's reply into the record; decide whether it is kept."""
    try:
        out = parse_reply(text, JobOutput)
    except errors.ModelOutputError as e:
        rec.note = f"unparseable reply: {str(e)[:200]}"
        return
    rec.explanation = out.explanation[:MAX_FIELD_CHARS]
    rec.citation = out.citation[:MAX_FIELD_CHARS] if out.citation else None
    rec.answer = None if out.abstained else (out.answer or "")[:MAX_FIELD_CHARS]
    if rec.answer is None:
        rec.note = "abstained"
        return
    if not rec.citation:
        found, how = False, "no citation"
    else:
        found, how = citation_found(rec.citation, chunk.text, cfg.citation_similarity)
    if found:
        rec.kept = True
        rec.note = "" if how == "exact" else f"citation matched ({how})"
    elif cfg.citation_check == "flag":
        rec.kept = True
        rec.note = f"flagged: citation {how} in chunk" if how != "no citation" else "flagged: no citation"
    else:
        rec.note = f"dropped: citation {how} in chunk" if how != "no citation" else "dropped: no citation"


def verified(rec: JobRecord) -> bool:
    return rec.kept and not rec.note.startswith("flagged")


# --- aggregation for the remote -----------------------------------------------------------------

def _clip(s: str | None, n: int) -> str:
    s = _WS.sub(" ", s or "").strip()
    return s if len(s) <= n else s[: n - 1] + "…"


def aggregate(records: Sequence[JobRecord], instructions: Sequence[str], budget: int) -> str:
    """Kept job outputs grouped by task, then by answer (identical answers from several chunks or
    samples are listed once), in a compact text form, within `budget` characters."""
    per_task = max(200, budget // max(1, len(instructions)))
    blocks = []
    for t, instruction in enumerate(instructions, start=1):
        mine = [r for r in records if r.task_id == t]
        kept = [r for r in mine if r.kept]
        head = (f"## Task {t}: {_clip(instruction, 300)}\n"
                f"{len(kept)} of {len(mine)} jobs answered ({_count(mine, 'abstained')} abstained, "
                f"{_count(mine, 'dropped')} dropped for unverifiable citations, "
                f"{_count(mine, 'failed') + _count(mine, 'unparseable')} failed)")
        groups: dict[tuple[str, str], list[JobRecord]] = {}
        for r in kept:
            groups.setdefault((_norm(r.answer or ""), _norm(r.citation or "")), []).append(r)
        lines, used, omitted = [head], len(head), 0
        for group in groups.values():
            r = group[0]
            where = ", ".join(dict.fromkeys(f"{g.chunk_id} (p. {_pages(g.pages)})" for g in group))
            flag = " [citation NOT verified]" if r.note.startswith("flagged") else ""
            line = (f"- [{where}] answer: {_clip(r.answer, _SHOW_ANSWER)}"
                    f" | citation: \"{_clip(r.citation, _SHOW_CITATION)}\"{flag}"
                    f" | why: {_clip(r.explanation, _SHOW_EXPLANATION)}")
            if used + len(line) + 1 > per_task:
                omitted += 1
                continue
            lines.append(line)
            used += len(line) + 1
        if omitted:
            lines.append(f"- ... {omitted} more answers omitted (output budget)")
        blocks.append("\n".join(lines))
    out = "\n\n".join(blocks) if blocks else "(no jobs ran)"
    return out if len(out) <= budget else out[: budget - 40] + "\n... (truncated to the output budget)"


def _count(records: Sequence[JobRecord], prefix: str) -> int:
    return sum(1 for r in records if r.note.startswith(prefix))


def _pages(pages: tuple[int, int]) -> str:
    return str(pages[0]) if pages[0] == pages[1] else f"{pages[0]}-{pages[1]}"
