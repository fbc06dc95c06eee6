"""RunState: a run's answer state changes only through methods that keep it consistent."""

from __future__ import annotations

import pytest

from minions.documents import Document
from minions.protocols.result import Citation
from minions.protocols.state import RunState

CITE = Citation(doc_id="d", page_start=1, page_end=1, text="revenue was $5")


def test_falling_back_gives_the_fallback_with_its_citations_marked_degraded_and_grounded():
    state = RunState("task", [Document.from_text("revenue was $5", id="d")])
    state.conclude("a guess", [])
    state.check_grounded(False)
    state.set_fallback("$5", [CITE], "the workers' answer")
    assert state.fall_back("the remote's answer shares nothing") == "$5"
    assert (state.citations, state.grounded, state.degraded_reason) == ([CITE], True, "the remote's answer shares nothing")


def test_fields_cannot_be_written_and_reads_are_copies():
    state = RunState("task", [])
    state.cite([CITE])
    state.citations.clear()          # a copy: the state keeps its citations
    assert state.citations == [CITE]
    with pytest.raises(AttributeError):
        state.best_answer = "x"      # type: ignore[misc]
    with pytest.raises(RuntimeError, match="needs a fallback"):
        state.fall_back("no fallback was offered")
