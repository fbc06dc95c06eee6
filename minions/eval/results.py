"""results.jsonl: one line per item × configuration, appended so that a crash loses nothing finished.

Each row is written with one `write` of the whole line, then flushed and fsync'ed before the next
item is reported done. A process killed mid-write can leave at most a torn last line (no newline);
opening the file again cuts it off, so the pair is simply run again. An advisory lock on the file
stops two sweeps from writing the same run directory at once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from minions import errors
from minions.clients.base import Usage

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, everything else works
    fcntl = None  # type: ignore[assignment]


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
    read_share: float | None = None              # share of the documents' characters read (RunResult.coverage)
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


class ResultsFile:
    """Open (creating) a results file for appending; `rows` holds what was already in it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(self._fd)
                raise errors.ConfigError(f"Another sweep is writing {self.path}; wait for it to finish, or use "
                                         "another --out directory.") from e
        self.rows: list[ResultRow] = []
        self.dropped = 0  # unreadable lines (a torn tail is cut off, not counted)
        self._read()

    def _read(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):  # torn last line from a crash: cut it off
            os.ftruncate(self._fd, data.rfind(b"\n") + 1)
            data = data[: data.rfind(b"\n") + 1]
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                self.rows.append(ResultRow.model_validate_json(line))
            except ValidationError:
                self.dropped += 1

    def done(self) -> set[tuple[str, str, str]]:
        return {r.key for r in self.rows}

    def append(self, row: ResultRow) -> None:
        data = (row.model_dump_json() + "\n").encode()
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        os.fsync(self._fd)
        self.rows.append(row)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the lock
            self._fd = -1

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
