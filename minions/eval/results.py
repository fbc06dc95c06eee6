"""results.jsonl: one line per item × configuration, appended so that a crash loses nothing finished.

The file is an `AppendLog` (minions/runlog.py, shared with `minions batch`): each row is written with
one `write`, flushed and fsync'ed; a torn last line is cut off on opening and its pair run again;
unreadable lines elsewhere are kept, counted and reported; an advisory lock stops two sweeps from
writing the same run directory at once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from minions.clients.base import Usage
from minions.runlog import AppendLog


class ResultRow(BaseModel):
    dataset: str
    item_id: str
    config_id: str
    config: str                                  # readable label
    protocol: str
    knobs: dict[str, Any] = Field(default_factory=dict)
    local: str | None = None
    remote: str | None = None
    remote_price_as: str | None = None
    remote_stand_in: bool = False
    question: str = ""
    answer: str | None = None
    gold: str | list[str] = ""
    score: float = 0.0
    scorer: str = ""
    score_detail: str = ""
    usage: dict[str, Usage] = Field(default_factory=dict)            # per role, "judge" included
    cost_usd: dict[str, float | None] = Field(default_factory=dict)  # per role, "judge" included
    remote_only_estimate_usd: float | None = None
    rounds: int = 0
    latency_s: float = 0.0
    error: str | None = None
    error_type: str | None = None
    budget_exhausted: bool = False
    rounds_exhausted: bool = False
    degraded: bool = False                       # answered from local work after a remote step failed
    grounded: bool | None = None                 # False: the answer's own figures are not backed by local evidence
    read_share: float | None = None              # share of the documents' characters read (RunResult.coverage)
    #: characters of the item's documents sent to the remote verbatim (spans of 40+ characters), and
    #: their share (RunResult.egress; a remote call served from the sweep's cache counts as sent)
    verbatim_chars: int | None = None
    verbatim_share: float | None = None
    #: what ran (RunResult.settings): resolved knobs, models, stand-in status, price sources
    settings: dict[str, Any] | None = None
    finished_at: float = Field(default_factory=time.time)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.dataset, self.item_id, self.config_id)

    @property
    def remote_usd(self) -> float | None:
        return self.cost_usd.get("remote", 0.0)

    @property
    def local_tokens(self) -> int:
        u = self.usage.get("local")
        return u.total_tokens if u else 0


class ResultsFile(AppendLog[ResultRow]):
    """Open (creating) a sweep's results.jsonl for appending; `rows` holds what was already in it.
    The file handling is the shared engine's (`minions.runlog.AppendLog`), as `minions batch` uses."""

    def __init__(self, path: str | Path):
        super().__init__(path, ResultRow, lambda r: r.key, unit="pair", writer="sweep")
