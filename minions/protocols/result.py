"""What a protocol run returns and logs: answer, transcript, plans, jobs, cost, flags."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field, field_validator

from minions.cost import CostReport, MeterEntry
from minions.egress.record import Egress
from minions.redact import normalize, redact, redact_tree, tree_contains


class Citation(BaseModel):
    doc_id: str
    chunk_id: str | None = None
    page_start: int | None = None
    page_end: int | None = None
    text: str
    #: Where the quote is, for front ends to show it in context: character offsets into the
    #: document's text (`Document.text[start:end]`, the text `minions.load` gives) and the page
    #: holding `start`. None when the quote could not be placed (a made-up or altered quote).
    start: int | None = None
    end: int | None = None
    page: int | None = None


class DocumentCoverage(BaseModel):
    """How much of one document the local model (or, for remote-only and RAG, the remote) read."""

    doc_id: str
    chars_read: int
    chars_total: int

    @property
    def share(self) -> float:
        return self.chars_read / self.chars_total if self.chars_total else 1.0


class Coverage(BaseModel):
    """What was read: chunks with at least one job (or excerpt shown) out of all chunks, and the
    share of each document's characters inside them (overlapping chunkings counted once)."""

    chunks_read: int
    chunks_total: int
    documents: list[DocumentCoverage] = Field(default_factory=list)
    why: str = ""                               # what decided it: the reading budget and its source

    @property
    def chars_read(self) -> int:
        return sum(d.chars_read for d in self.documents)

    @property
    def share(self) -> float:
        total = sum(d.chars_total for d in self.documents)
        return self.chars_read / total if total else 1.0

    def summary(self) -> dict[str, Any]:
        return {"chunks_read": self.chunks_read, "chunks_total": self.chunks_total, "share": round(self.share, 4),
                "documents": {d.doc_id: round(d.share, 4) for d in self.documents}, "why": self.why}

    def line(self) -> str:
        """One line for people: "read 40 of 150 chunks (27% of the text)"."""
        docs = "" if len(self.documents) < 2 else " — " + ", ".join(
            f"{d.doc_id} {d.share:.0%}" for d in self.documents)
        return f"read {self.chunks_read} of {self.chunks_total} chunks ({self.share:.0%} of the text){docs}"


#: the two sides of a run: the remote model and the local one
Side = Literal["remote", "local"]


class TranscriptMessage(BaseModel):
    """One message as the receiving side saw it (after privacy scrubbing, for the remote)."""

    round: int
    step: str                                   # "ask", "answer", "decompose", "synthesize", ...
    to: Side
    role: Literal["system", "user", "assistant"]
    content: str


class JobStatus(str, Enum):
    """What became of one MinionS job. Only `kept` outputs (citation verified in the chunk) are
    evidence; `flagged` ones are shown to the remote marked unverified (citation_check="flag")."""

    KEPT = "kept"              # answered, citation found in the chunk
    FLAGGED = "flagged"        # answered, citation missing or not found; kept but marked
    ABSTAINED = "abstained"    # the chunk does not say
    DROPPED = "dropped"        # answered, citation missing or not found (citation_check="drop")
    FAILED = "failed"          # the model call failed, or the job was never judged
    UNPARSEABLE = "unparseable"  # the reply was not the JSON asked for


class JobRecord(BaseModel):
    job_id: str
    task_id: int
    chunk_id: str
    sample: int
    instruction: str
    pages: tuple[int, int]
    explanation: str | None = None
    citation: str | None = None
    answer: str | None = None
    #: the citation's [start, end) offsets in its document's text, when it was found in the chunk
    span: tuple[int, int] | None = None
    status: JobStatus = JobStatus.FAILED        # set when the job's reply is judged
    note: str = ""                              # the detail, for people: how a citation matched, the error

    @computed_field  # type: ignore[prop-decorator]
    @property
    def kept(self) -> bool:
        """Shown to the remote (verified or flagged)."""
        return self.status in (JobStatus.KEPT, JobStatus.FLAGGED)

    @property
    def verified(self) -> bool:
        return self.status is JobStatus.KEPT


class RoundDecision(str, Enum):
    """How a round ended."""

    FINAL_ANSWER = "final_answer"          # the protocol answered
    ANOTHER_ROUND = "another_round"        # the remote asked for another round
    FORCED_ANSWER = "forced_answer"        # the round limit was reached: answered with what it had
    BUDGET_EXHAUSTED = "budget_exhausted"  # the remote budget stopped the round
    FAILED = "failed"                      # a step failed for good

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class RoundRecord(BaseModel):
    round: int
    messages: list[TranscriptMessage] = Field(default_factory=list)
    plan: dict[str, Any] | None = None          # MinionS: the validated job plan
    jobs: list[JobRecord] = Field(default_factory=list)
    decision: RoundDecision | None = None      # None while the round runs

    @field_validator("decision", mode="before")
    @classmethod
    def _undecided(cls, v: Any) -> Any:
        return None if v == "" else v  # results written before the enum said "" for "no decision yet"


class RunRecord(BaseModel):
    """What a run ran (`RunResult.settings`): the resolved knobs (every field of the protocol's
    Config), the models, whether the remote was a stand-in and what it was priced as, and the price
    sources. `RunSettings.from_record(record)` runs it again."""

    protocol: str
    config: dict[str, Any]
    local: str | None = None
    remote: str | None = None
    remote_stand_in: bool = False
    remote_price_as: str | None = None
    price_sources: dict[str, str] = Field(default_factory=dict)
    max_remote_usd: float | None = None
    privacy: bool = False
    store_text: bool = True

    @classmethod
    def of(cls, protocol: Any, cost: CostReport | None = None) -> RunRecord:
        """The record of `protocol` (a built Protocol) and, once it has run, its cost report."""
        local, remote = protocol.local, protocol.remote
        return cls(protocol=protocol.name, config=protocol.config.model_dump(mode="json"),
                   local=local.spec if local is not None else None, remote=remote.spec if remote is not None else None,
                   remote_stand_in=bool(remote is not None and remote.stand_in),
                   remote_price_as=remote.price_as if remote is not None else None,
                   price_sources=dict(cost.price_sources) if cost is not None else {},
                   max_remote_usd=protocol.max_remote_usd, privacy=protocol.privacy is not None,
                   store_text=protocol.store_text)


class RunResult(BaseModel):
    protocol: str
    task: str
    answer: str | None
    citations: list[Citation] = Field(default_factory=list)
    rounds: list[RoundRecord] = Field(default_factory=list)
    cost: CostReport
    calls: list[MeterEntry] = Field(default_factory=list)   # one per model call, per step and round
    local_model: str | None = None
    remote_model: str | None = None
    elapsed_s: float = 0.0
    timings: dict[str, float] = Field(default_factory=dict)  # seconds per step
    budget_exhausted: bool = False
    rounds_exhausted: bool = False
    error: str | None = None                    # typed failure, explained; answer may still be set
    error_type: str | None = None
    #: the answer is a fallback built from local work (verified job answers, the worker's last reply)
    #: because a remote step failed for good or its answer was not grounded; degraded_reason says which
    degraded: bool = False
    degraded_reason: str | None = None
    #: False: the answer shares no figure or content word with the evidence the local model found
    #: (kept job answers and citations; Minion: the worker's replies). None: not checked (baselines).
    grounded: bool | None = None
    #: stopped early by a cancel token or asyncio cancellation; answer and cost are what it had
    cancelled: bool = False
    warnings: list[str] = Field(default_factory=list)
    documents: list[dict[str, Any]] = Field(default_factory=list)  # id, title, source, chars
    coverage: Coverage | None = None            # how much of the documents was read
    #: what left this machine: requests, bytes, tokens, dollars per host; verbatim share per document
    egress: Egress | None = None
    #: what ran: resolved knobs, models, stand-in status, price sources (RunSettings.from_record)
    settings: RunRecord | None = None

    @property
    def n_rounds(self) -> int:
        return len(self.rounds)

    def summary(self) -> dict[str, Any]:
        """The stable `--json` shape of `minions ask`; later versions add keys, never rename."""
        local, remote = self.cost.role("local"), self.cost.role("remote")
        usage = {r: t.usage.model_dump(include={"prompt_tokens", "completion_tokens", "cached_prompt_tokens",
                                                "reasoning_tokens"})
                 for r, t in (("local", local), ("remote", remote))}
        return {
            "answer": self.answer,
            "protocol": self.protocol,
            "usage": usage,
            "cost_usd": {"local": local.cost_usd, "remote": remote.cost_usd,
                         "remote_only_estimate": self.cost.remote_only_estimate_usd},
            "rounds": self.n_rounds,
            "elapsed_s": round(self.elapsed_s, 3),
            "remote_model": self.remote_model,
            "local_model": self.local_model,
            "remote_stand_in": self.cost.remote_stand_in,
            "price_sources": self.cost.price_sources,
            "citations": [c.model_dump() for c in self.citations],
            "coverage": self.coverage.summary() if self.coverage else None,
            "egress": self.egress.model_dump(mode="json") if self.egress else None,
            "budget_exhausted": self.budget_exhausted,
            "rounds_exhausted": self.rounds_exhausted,
            "error": self.error,
            "warnings": self.warnings,
            "error_type": self.error_type,
            "degraded": self.degraded,
            "degraded_reason": self.degraded_reason,
            "grounded": self.grounded,
            "cancelled": self.cancelled,
            "settings": self.settings.model_dump(mode="json") if self.settings else None,
        }

    def redacted(self, texts: list[str]) -> RunResult:
        """A copy with every occurrence of the given document texts removed from messages and citations."""
        # Longest first: a chunk replaced inside a whole document would leave the rest of it unmatched.
        ordered = sorted({t for t in texts if t}, key=len, reverse=True)

        def scrub(s: str) -> str:
            for t in ordered:
                if t in s:
                    s = s.replace(t, f"[document text omitted: {len(t)} chars]")
            return s

        rounds = [r.model_copy(update={"messages": [m.model_copy(update={"content": scrub(m.content)})
                                                    for m in r.messages]}) for r in self.rounds]
        citations = [c.model_copy(update={"text": scrub(c.text)}) for c in self.citations]
        return self.model_copy(update={"rounds": rounds, "citations": citations})

    def without_secrets(self, secrets: Sequence[str]) -> RunResult:
        """A copy with every secret (API keys) replaced by "[redacted]" wherever it appears; error and
        warnings are also cleaned of credential-shaped text. `self` when there is nothing to remove
        (the usual case, which costs one scan of the strings and no copy)."""
        secrets = normalize(secrets)
        error = redact(self.error, credentials=True) if self.error else self.error
        warnings = [redact(w, credentials=True) for w in self.warnings]
        data = self.model_dump()
        if error == self.error and warnings == self.warnings and not tree_contains(data, secrets):
            return self
        data = redact_tree(data, secrets)
        data["error"] = redact(data["error"], credentials=True) if data["error"] else None
        data["warnings"] = [redact(w, credentials=True) for w in data["warnings"]]
        return RunResult.model_validate(data)

    def save(self, log_dir: str | Path, *, name: str | None = None) -> Path:
        """Write the run log as one JSON file; returns its path."""
        d = Path(log_dir)
        d.mkdir(parents=True, exist_ok=True)
        path = d / (name or f"{time.strftime('%Y%m%d-%H%M%S')}-{self.protocol}-{id(self):x}.json")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.model_dump(mode="json"), indent=1))
        tmp.replace(path)
        return path
