"""MinionS, part 1: the configuration, the declarative job plan the remote writes, and its expansion.

The reference implementation asks the remote for Python code and executes it; a prompt
injected into a document can reach that code through worker outputs. Here the remote returns data
(a `JobPlan`), validated by pydantic, and every number in it is clamped to the configuration before
the framework — never the model — turns it into jobs (task x chunk x sample).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, field_validator, model_validator

from minions.documents import Chunk, ChunkStrategy, Document
from minions.documents.chunking import DEFAULT_SIZES, STRATEGIES
from minions.documents.hybrid import select_within
from minions.protocols.base import ProtocolConfig
from minions.protocols.lenient import Lenient, as_text, same_text
from minions.protocols.reading import ReadBudget

# Caps on strings the remote writes into a plan: long enough for any sensible task, short enough
# that an adversarial reply cannot blow up worker prompts.
# They are also maxLength/maxItems in the JSON schema, which bounds constrained decoding; a longer
# value from an unconstrained remote is cut to the bound before validation, never rejected.
MAX_INSTRUCTION_CHARS = 500
MAX_ADVICE_CHARS = 500
MAX_QUERY_CHARS = 200
MAX_TASKS = 10
MAX_CHUNK_IDS = 200
_CHARS_PER_TOKEN = 4
_CHARS_PER_PAGE = 3000


class MinionSConfig(ProtocolConfig):
    max_rounds: int = Field(2, ge=1, le=20, description="most plan/read/aggregate rounds")
    tasks_per_round: int = Field(3, ge=1, le=50, description="most tasks a plan may hold")
    samples_per_task: int = Field(1, ge=1, le=16, description="most samples per task and chunk")
    chunk_strategy: ChunkStrategy = Field("chars", description="how documents are cut into chunks")
    chunk_size: int = Field(3000, ge=1, description="default size, in the strategy's unit")
    min_chunk_chars: int = Field(300, ge=1, description="lower bound for any chunking the remote picks")
    max_chunk_chars: int = Field(12000, ge=1, description="upper bound for any chunking the remote picks")
    max_jobs_per_round: int | None = Field(None, ge=1, description="cap on jobs per round; None: the read budget decides")
    read: Annotated[ReadBudget | None, BeforeValidator(lambda v: None if v is None else ReadBudget.parse(v))] = \
        Field(None, description="'all', '30%' or N tokens of the documents per round; None: from the local "
                                "engine's measured speed and local_time_budget")
    local_time_budget: float = Field(120.0, gt=0, description="seconds of local reading per round when read is unset")
    # Off by default on measurement: on FinanceBench, reading the neighbours of the best hit costs 1.5
    # points of coverage at a 30% budget (95.3% -> 93.8%) and gains 0.8 at 20% (benchmarks/coverage.py).
    neighbours: int = Field(0, ge=0, le=20, description="also read the chunks next to the best N hits")
    local_max_tokens: int = Field(256, ge=1, description="most tokens of one local job's reply")
    remote_max_tokens: int = Field(1024, ge=1, description="most tokens of one remote reply")
    retrieval: bool = Field(False, description="always keep only the top retrieval_top_k chunks (plan query, else the task)")
    retrieval_top_k: int = Field(8, ge=1, description="most chunks a keyword filter may select")
    concurrency: int = Field(4, ge=1, description="local jobs run at once")
    strategy: Literal["retries", "scratchpad"] = Field(
        "retries", description="between rounds the remote gets feedback only (retries) or keeps a scratchpad")
    citation_check: Literal["drop", "flag"] = Field(
        "drop", description="a job answer whose citation is not in its chunk: dropped, or kept and flagged")
    citation_similarity: float = Field(0.8, ge=0.0, le=1.0, description="how close a citation must match its chunk")
    plan_attempts: int = Field(2, ge=1, le=10, description="times the remote is asked for a valid plan")
    synth_attempts: int = Field(2, ge=1, le=10, description="times the remote is asked for a valid synthesis")
    aggregate_max_chars: int = Field(12000, ge=500, description="budget for job outputs shown to the remote")
    sample_temperature: float = Field(0.7, ge=0.0, le=2.0, description="used when a task has >1 sample")
    ask_question: bool = Field(True, description="every round also runs the user's question itself as a task "
                               "(unless the plan already holds it), so a plan that drifts still reads for it")
    ungrounded_answer: Literal["flag", "fallback"] = Field(
        "flag", description="when the remote's answer is not backed by the kept job outputs: 'flag' keeps "
        "it with grounded=false; 'fallback' returns the most frequent verified job answer instead (degraded)")

    @model_validator(mode="after")
    def _strategy_default_size(self) -> MinionSConfig:
        # chunk_size=3000 means characters; another strategy without an explicit size gets its own default.
        if "chunk_size" not in self.model_fields_set and self.chunk_strategy != "chars":
            self.chunk_size = DEFAULT_SIZES[self.chunk_strategy]
        if self.min_chunk_chars > self.max_chunk_chars:
            self.min_chunk_chars = self.max_chunk_chars
        return self

    def size_bounds(self, strategy: str) -> tuple[int, int]:
        """Safe chunk sizes for a strategy, in its own unit."""
        lo, hi = self.min_chunk_chars, self.max_chunk_chars
        if strategy == "tokens":
            return max(1, lo // _CHARS_PER_TOKEN), max(1, hi // _CHARS_PER_TOKEN)
        if strategy == "pages":
            return 1, max(1, hi // _CHARS_PER_PAGE)
        return lo, hi


# --- the plan the remote writes ----------------------------------------------------------------

def _to_int(v: Any) -> Any:
    """Numbers from a model: accept 3, 3.0, "3", 1e300 (clamped later); reject bools, NaN, words."""
    if isinstance(v, bool):
        raise ValueError("expected an integer, got a boolean")
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("expected a finite integer")
        return int(max(-1e12, min(1e12, v)))
    if isinstance(v, int):
        return max(-10**12, min(10**12, v))
    if isinstance(v, str) and v.strip().lstrip("+-").isdigit() and len(v.strip()) < 30:
        return int(v.strip())
    return v


def _text(v: Any, limit: int | None = None) -> Any:
    """A model may write a list where we asked for a string; join it rather than fail. Strings are
    stripped and cut to `limit`; objects are left for the schema to refuse."""
    v = as_text(v, objects="keep")
    if isinstance(v, str):
        v = v.strip()
        if limit is not None:
            v = v[:limit]
    return v


#: an integer as a model writes it ("3", 3.0, 1e300 -> clamped later); see _to_int
ModelInt = Annotated[int | None, BeforeValidator(_to_int)]


class PlanTask(Lenient):
    instruction: str = Field(min_length=1, max_length=MAX_INSTRUCTION_CHARS,
                             description="one atomic question a worker answers from ONE chunk")
    advice: str = Field("", max_length=MAX_ADVICE_CHARS, description="what to look for and how to format the answer")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        return {"instruction": v} if isinstance(v, str) else v

    @field_validator("instruction", mode="before")
    @classmethod
    def _instruction(cls, v: Any) -> Any:
        return _text(v, MAX_INSTRUCTION_CHARS)

    @field_validator("advice", mode="before")
    @classmethod
    def _advice(cls, v: Any) -> Any:
        return "" if v is None else _text(v, MAX_ADVICE_CHARS)


class ChunkingChoice(Lenient):
    strategy: ChunkStrategy | None = Field(None, description="chars | tokens | pages | paragraphs | sections")
    size: ModelInt = Field(None, description="chunk size in the strategy's unit")


class KeywordFilter(Lenient):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS,
                       description="keywords; only the best-matching chunks (BM25) get jobs")
    top_k: ModelInt = Field(None, description="how many chunks to keep")

    @field_validator("query", mode="before")
    @classmethod
    def _join(cls, v: Any) -> Any:
        return _text(v, MAX_QUERY_CHARS)


class JobPlan(Lenient):
    """What the remote returns at the decompose step: data, never code."""

    tasks: list[PlanTask] = Field(min_length=1, max_length=MAX_TASKS,
                                  description="atomic tasks; each runs on every selected chunk")
    chunking: ChunkingChoice | None = None
    samples_per_task: ModelInt = Field(None, description="how many times each task runs on each chunk")
    keyword_filter: KeywordFilter | None = None
    chunk_ids: list[str] | None = Field(None, max_length=MAX_CHUNK_IDS,
                                        description="restrict jobs to these chunk ids (from earlier rounds)")
    max_jobs: ModelInt = Field(None, description="cap on jobs this round")

    @field_validator("tasks", mode="before")
    @classmethod
    def _tasks(cls, v: Any) -> Any:
        # One malformed task (a number, a nested list, a dict without an instruction — small models
        # write these) is dropped rather than failing the whole plan; an empty list still fails.
        if not isinstance(v, list):
            return v
        usable = [t for t in v if (isinstance(t, str) and t.strip())
                  or (isinstance(t, dict) and _text(t.get("instruction")))]
        return usable[:MAX_TASKS]

    @field_validator("chunk_ids", mode="before")
    @classmethod
    def _ids(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [str(x)[:100] for x in v[:MAX_CHUNK_IDS] if isinstance(x, str | int) and not isinstance(x, bool)]
        return v


class ResolvedPlan(BaseModel):
    """The plan after clamping to the configuration: what actually runs, and what is recorded."""

    tasks: list[PlanTask]
    strategy: str
    size: int
    samples_per_task: int
    keyword_query: str | None = None
    top_k: int | None = None
    chunk_ids: list[str] | None = None
    max_jobs: int | None                         # None: no cap, the read budget decides
    adjustments: list[str] = Field(default_factory=list)  # what clamping changed, for the user


QUESTION_ADVICE = "Answer the question only if this excerpt states the answer; quote the sentence that does."


def resolve_plan(plan: JobPlan, cfg: MinionSConfig, task: str) -> ResolvedPlan:
    """Clamp every number and string of the remote's plan to the configuration's limits; with
    `ask_question`, put the user's question first among the tasks unless the plan already holds it."""
    notes: list[str] = []
    tasks = plan.tasks
    if len(tasks) > cfg.tasks_per_round:
        notes.append(f"plan had {len(tasks)} tasks; kept the first {cfg.tasks_per_round} (tasks_per_round)")
        tasks = tasks[: cfg.tasks_per_round]
    question = task.strip()[:MAX_INSTRUCTION_CHARS]
    if cfg.ask_question and question and not any(same_text(t.instruction, question) for t in tasks):
        # On top of tasks_per_round: the question is not the remote's choice to drop.
        tasks = [PlanTask(instruction=question, advice=QUESTION_ADVICE), *tasks]
        notes.append("added the question itself as task 1 (ask_question)")

    choice = plan.chunking or ChunkingChoice()
    strategy = choice.strategy or cfg.chunk_strategy
    if strategy not in STRATEGIES:  # unreachable through validation; belt and braces
        strategy = cfg.chunk_strategy
    if choice.size is None:
        size = cfg.chunk_size if strategy == cfg.chunk_strategy else DEFAULT_SIZES[strategy]
    else:
        size = choice.size
    lo, hi = cfg.size_bounds(strategy)
    if not lo <= size <= hi:
        clamped = min(max(size, lo), hi)
        notes.append(f"chunk size {size} ({strategy}) clamped to {clamped}")
        size = clamped

    samples = cfg.samples_per_task if plan.samples_per_task is None else plan.samples_per_task
    if not 1 <= samples <= cfg.samples_per_task:
        clamped = min(max(samples, 1), cfg.samples_per_task)
        notes.append(f"samples_per_task {samples} clamped to {clamped}")
        samples = clamped

    query, top_k = None, None
    if plan.keyword_filter is not None and plan.keyword_filter.query.strip():
        query = plan.keyword_filter.query.strip()
        top_k = plan.keyword_filter.top_k
    elif cfg.retrieval:
        query = task.strip()[:MAX_QUERY_CHARS] or None
    if query is not None:
        want = cfg.retrieval_top_k if top_k is None else top_k
        top_k = min(max(want, 1), cfg.retrieval_top_k)
        if want != top_k:
            notes.append(f"keyword filter top_k {want} clamped to {top_k}")

    max_jobs = cfg.max_jobs_per_round if plan.max_jobs is None else max(plan.max_jobs, 1)
    if max_jobs is not None and cfg.max_jobs_per_round is not None:
        max_jobs = min(max_jobs, cfg.max_jobs_per_round)
    return ResolvedPlan(tasks=list(tasks), strategy=strategy, size=size, samples_per_task=samples,
                        keyword_query=query, top_k=top_k, chunk_ids=plan.chunk_ids or None, max_jobs=max_jobs,
                        adjustments=notes)


# --- expansion into jobs -----------------------------------------------------------------------

@dataclass(slots=True)
class Job:
    job_id: str
    task_id: int          # 1-based, as the remote sees it
    sample: int           # 0-based
    chunk: Chunk
    instruction: str
    advice: str


def select_chunks(plan: ResolvedPlan, chunks: Sequence[Chunk], rank: Callable[[str], list[Chunk]], query: str,
                  budget: int | None = None, size: Callable[[Chunk], int] = lambda c: len(c.text)
                  ) -> tuple[list[Chunk], list[str]]:
    """The chunks a plan's jobs run on, best first: the listed ids (if any) restrict the pool; a
    keyword filter with top_k keeps its k best; otherwise the chunks `rank(query)` puts first while
    their `size` fits `budget` (None: the whole pool, in document order). When the job cap cannot
    cover them all, the best-ranked are kept. `rank` returns every chunk, best first (hybrid
    retrieval with neighbours, see minions.documents.hybrid)."""
    notes: list[str] = []
    pool = list(chunks)
    if plan.chunk_ids:
        wanted = set(plan.chunk_ids)
        picked = [c for c in pool if c.id in wanted]
        if picked:
            pool = picked
            if len(picked) < len(wanted):
                notes.append(f"{len(wanted) - len(picked)} requested chunk ids do not exist under "
                             f"{plan.strategy}/{plan.size} chunking; ignored")
        else:
            notes.append("none of the requested chunk ids exist under this chunking; using all chunks")
    allowed = {c.id for c in pool}
    ranked: list[Chunk] | None = None

    def ranking() -> list[Chunk]:
        nonlocal ranked
        if ranked is None:
            ranked = [c for c in rank(query) if c.id in allowed] if query.strip() else []
            listed = {c.id for c in ranked}
            ranked += [c for c in pool if c.id not in listed]
        return ranked

    per_chunk = len(plan.tasks) * plan.samples_per_task
    if plan.keyword_query and plan.top_k:
        return ranking()[: plan.top_k], notes
    if budget is None:
        selected = pool
    else:
        ranked_pool = ranking()
        selected = select_within(ranked_pool, range(len(ranked_pool)), budget, size)
    fits = None if plan.max_jobs is None else max(1, -(-plan.max_jobs // per_chunk))
    if fits is not None and len(selected) > fits:
        keep = {c.id for c in selected}
        selected = [c for c in ranking() if c.id in keep][:fits]
        notes.append(f"{len(keep)} chunks x {per_chunk} jobs exceed the cap of {plan.max_jobs} jobs: ran the "
                     f"{len(selected)} chunks that best match the task")
    return selected, notes


def expand_jobs(plan: ResolvedPlan, chunks: Sequence[Chunk], round: int) -> tuple[list[Job], int]:
    """Jobs grouped by chunk — every task and sample of chunk 1, then of chunk 2, ... — so jobs
    sharing a prompt prefix run back to back (issue 8). Returns (jobs capped at max_jobs, planned)."""
    per_chunk = len(plan.tasks) * plan.samples_per_task
    planned = per_chunk * len(chunks)
    cap = planned if plan.max_jobs is None else plan.max_jobs
    n_chunks = min(len(chunks), -(-cap // per_chunk)) if per_chunk else 0
    jobs: list[Job] = []
    for chunk in chunks[:n_chunks]:
        for t, task in enumerate(plan.tasks, start=1):
            for s in range(plan.samples_per_task):
                jobs.append(Job(job_id=f"r{round}-t{t}-{chunk.id}-s{s}", task_id=t, sample=s, chunk=chunk,
                                instruction=task.instruction, advice=task.advice))
    return jobs[:cap], planned


# --- prompts ------------------------------------------------------------------------------------

def documents_overview(docs: Sequence[Document], chunks: Sequence[Chunk], cfg: MinionSConfig,
                       redact: Callable[[str], str] | None = None) -> str:
    """What the remote may know about the documents: titles, sizes, chunk counts — never their text.
    Ids and titles pass through `redact` (see RunContext.redact) before a title is shortened."""
    redact = redact or (lambda s: s)
    counts: dict[str, int] = {}
    for c in chunks:
        counts[c.doc_id] = counts.get(c.doc_id, 0) + 1
    lines = [f"- {redact(d.id)}: \"{redact(d.title)[:120]}\" — {len(d.text):,} characters (~{len(d.text) // _CHARS_PER_TOKEN:,} "
             f"tokens), {len(d.pages)} page(s), {counts.get(d.id, 0)} chunks at {cfg.chunk_strategy}/{cfg.chunk_size}"
             for d in docs]
    return "\n".join(lines) or "- (no documents)"


def chunking_options(cfg: MinionSConfig) -> str:
    parts = []
    for s in STRATEGIES:
        lo, hi = cfg.size_bounds(s)
        unit = {"tokens": "tokens", "pages": "pages"}.get(s, "characters")
        parts.append(f"{s} ({lo}-{hi} {unit})")
    return ", ".join(parts)
