"""What a configuration sends verbatim, for the sweep's "verbatim sent" column (issue 22).

A run's `RunResult.egress` measures what left the machine. In a sweep, a remote call answered from
the LM cache sends nothing, so a configuration whose calls another configuration already made would
look more private than it is. `Sent` collects, per pair, the texts that left (the egress records) and
the texts the remote role was asked and answered from the cache; `measure` runs the verbatim measure
over both only when there were such hits (otherwise the run's own measure is the answer).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from minions.clients.base import Message
from minions.documents import Document
from minions.egress.model import EgressRecord
from minions.egress.record import capture, role_of
from minions.egress.verbatim import VerbatimIndex
from minions.protocols.result import RunResult


class Sent:
    """One pair's outbound texts: an egress sink (records that left) plus cache hits of the remote."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.replayed = 0

    def add(self, record: EgressRecord) -> None:
        if record.text:
            self.texts.append(record.text)

    def end_run(self, run_id: str, summary: Any) -> None:
        pass


_PAIR: ContextVar[Sent | None] = ContextVar("minions_eval_sent", default=None)


def on_cache_hit(client: Any, messages: list[Message]) -> None:
    """`CachedClient.on_hit` for the sweep's clients: a remote call served from the cache counts as sent."""
    sent = _PAIR.get()
    if sent is not None and role_of(client) == "remote":
        sent.texts.append("\n\n".join(m.content for m in messages))
        sent.replayed += 1


@contextlib.contextmanager
def collecting() -> Iterator[Sent]:
    """Within this block (one pair's run), collect what its remote is sent."""
    sent = Sent()
    token = _PAIR.set(sent)
    try:
        with capture(sent):
            yield sent
    finally:
        _PAIR.reset(token)


def measure(result: RunResult, documents: list[Document], sent: Sent) -> tuple[int | None, float | None]:
    """(characters, share) of the pair's documents sent verbatim; None when the run has no measure."""
    eg = result.egress
    if eg is None:
        return None, None
    if not sent.replayed:
        return eg.verbatim_chars, round(eg.verbatim_share, 6)
    chars = total = 0
    for doc in documents:
        index = VerbatimIndex(doc.text, min_chars=eg.min_verbatim_chars)
        for text in sent.texts:
            index.add(text)
        chars, total = chars + index.chars, total + index.total
    return chars, round(chars / total, 6) if total else 0.0
