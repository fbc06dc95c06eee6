"""How much of the documents MinionS's local model reads each round, and why.

The budget is `read=` when set; otherwise the local model's measured reading speed (SpeedStore)
times `local_time_budget`; with no speed measured yet, a first run reads FIRST_RUN_SHARE of the text
or FIRST_RUN_TOKENS, whichever is more. Each round's speed is remembered for the next run.
"""

from __future__ import annotations

from collections.abc import Sequence

from minions.clients.base import Client
from minions.documents import Chunk
from minions.protocols.reading import FIRST_RUN_SHARE, FIRST_RUN_TOKENS, ReadBudget, SpeedStore, budget_tokens
from minions.protocols.result import JobRecord, JobStatus


class ReadingBudget:
    """The reading budget of one run, in the local model's tokens (each chunk counted once)."""

    def __init__(self, local: Client, read: ReadBudget | None, local_time_budget: float):
        self.local, self.read, self.local_time_budget = local, read, local_time_budget
        self._sizes: dict[tuple[str, int, int], int] = {}

    def size(self, c: Chunk) -> int:
        """A chunk's size in the local model's tokens."""
        key = (c.doc_id, c.start, c.end)  # not the id: "doc#3" names another span under another chunking
        if key not in self._sizes:
            self._sizes[key] = self.local.count_tokens(c.text)
        return self._sizes[key]

    def total(self, chunks: Sequence[Chunk]) -> int:
        return sum(self.size(c) for c in chunks)

    def tokens(self, pool: Sequence[Chunk]) -> tuple[int | None, str]:
        """Tokens of document the local model reads this round (None: all), and why."""
        total = self.total(pool)
        if self.read is not None:
            return self.read.tokens(total), f"read={self.read}"
        spec = self.local.spec
        speed = SpeedStore().get(spec)
        if speed is None:
            budget = max(int(total * FIRST_RUN_SHARE), FIRST_RUN_TOKENS)
            why = (f"no reading speed measured yet for {spec}, so a first run reads {FIRST_RUN_SHARE:.0%} or "
                   f"{FIRST_RUN_TOKENS:,} tokens; this run's speed is remembered (read= chooses)")
            return (None, why) if budget >= total else (budget, why)
        budget = budget_tokens(speed, self.local_time_budget)
        why = (f"{spec} reads ~{speed:,.0f} tokens/s (measured), so {self.local_time_budget:g} s of local time "
               f"(local_time_budget) reads {budget:,} tokens")
        return (None, why + ": everything") if budget >= total else (budget, why)

    def describe(self, pool: Sequence[Chunk]) -> str:
        """The reading budget for the planner, in words (it never sees the text, only sizes)."""
        budget, _ = self.tokens(pool)
        total = self.total(pool)
        return "all of them" if budget is None or budget >= total else \
            f"about {budget / max(total, 1):.0%} of the text (~{budget:,} of {total:,} tokens)"

    def remember(self, tokens: int, seconds: float, records: Sequence[JobRecord]) -> None:
        """Document tokens read per second of wall time, for the next run's default budget. Failed
        jobs make it meaningless, so such rounds are not recorded."""
        if records and not any(r.status is JobStatus.FAILED for r in records):
            SpeedStore().record(self.local.spec, tokens, seconds)
