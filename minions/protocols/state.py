"""What one run has found so far, changed only through its methods.

`RunState` holds the answer state of a run — the best answer, its citations, whether it is grounded,
the degraded reason, the grounded fallback — and what the models were shown of the documents.
Protocols change it through methods that say what happened (`propose`, `conclude`, `degrade`, ...),
never by writing fields, so each transition keeps the state consistent (a degraded answer always
carries its fallback's citations and counts as grounded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from minions.documents import Document
from minions.protocols.coverage import ReadLog
from minions.protocols.result import Citation


class Fallback(NamedTuple):
    """A grounded answer from local work, returned (marked degraded) if a later step fails."""

    answer: str
    citations: list[Citation]
    what: str  # what it is, for the user ("the most frequent ...")


class RunState:
    """The answer state of one run. Created by `Protocol.arun`; never shared between runs."""

    def __init__(self, task: str, documents: list[Document]):
        self.task, self.documents = task, documents
        self._best: str | None = None
        self._citations: list[Citation] = []
        self._grounded: bool | None = None
        self._degraded: str | None = None
        self._fallback: Fallback | None = None
        self._shown: list[str] = []
        self._read = ReadLog(documents)

    # -- reading --------------------------------------------------------------------------------

    @property
    def best_answer(self) -> str | None:
        """What to return if the budget or the rounds run out."""
        return self._best

    @property
    def citations(self) -> list[Citation]:
        return list(self._citations)

    @property
    def grounded(self) -> bool | None:
        """Whether the answer was checked against local evidence and shares something with it."""
        return self._grounded

    @property
    def degraded_reason(self) -> str | None:
        return self._degraded

    @property
    def fallback(self) -> Fallback | None:
        return self._fallback

    @property
    def shown_texts(self) -> list[str]:
        """Document text put into prompts, to redact from results under store_text=False."""
        return list(self._shown)

    @property
    def read(self) -> ReadLog:
        """What the models were shown of the documents (RunResult.coverage)."""
        return self._read

    # -- changing ---------------------------------------------------------------------------------

    def propose(self, answer: str | None) -> None:
        """A candidate answer: returned if the run stops before it concludes."""
        self._best = answer

    def cite(self, citations: Sequence[Citation]) -> None:
        self._citations = list(citations)

    def conclude(self, answer: str | None, citations: Sequence[Citation]) -> None:
        """The answer and the citations the run gives."""
        self._best = answer
        self._citations = list(citations)

    def check_grounded(self, grounded: bool) -> None:
        self._grounded = grounded

    def set_fallback(self, answer: str, citations: Sequence[Citation], what: str) -> None:
        """What to return, marked degraded, if a later step fails or the run is cancelled: a grounded
        answer from local work. `what` says what it is, for the user."""
        self._fallback = Fallback(answer, list(citations), what)

    def degrade(self, reason: str, answer: str, citations: Sequence[Citation], *, grounded: bool | None) -> str:
        """Give `answer` instead of the one the run reached, saying why; returns it."""
        self._degraded = reason
        self._citations = list(citations)
        self._grounded = grounded
        return answer

    def fall_back(self, reason: str) -> str:
        """Give the fallback (which must be set) instead, marked degraded with `reason`: built from
        verified local evidence, so grounded."""
        if self._fallback is None:
            raise RuntimeError("fall_back needs a fallback (set_fallback first)")
        return self.degrade(reason, self._fallback.answer, self._fallback.citations, grounded=True)

    def show(self, *texts: str) -> None:
        """Register document text put into a prompt (each form of it the transcript holds)."""
        self._shown.extend(t for t in texts if t)
