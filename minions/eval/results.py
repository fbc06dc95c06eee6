"""results.jsonl: one line per item × configuration, appended so that a crash loses nothing finished.

Each row is written with one `write` of the whole line, then flushed and fsync'ed before the next
item is reported done. A process killed mid-write can leave at most a torn last line (no newline);
opening the file again cuts it off, so the pair is simply run again. A last line that lacks only its
newline (an editor, `head -c`, a copy) but is a complete row is kept as it is: the missing newline is
written in front of the next row, so opening and closing a finished file changes nothing on disk.
Unreadable lines elsewhere are kept on disk, counted in `dropped` and listed in `dropped_lines`, for
the front end to report. An advisory lock on the file stops two sweeps from writing the same run
directory at once.
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
    degraded: bool = False                       # answered from local work after a remote step failed
    grounded: bool | None = None                 # False: the answer shares nothing with local evidence
    read_share: float | None = None              # share of the documents' characters read (RunResult.coverage)
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
        self.dropped_lines: list[int] = []  # 1-based numbers of unreadable lines (a torn tail is not one)
        self.torn_bytes = 0                 # bytes of a torn last line cut off on opening
        self._needs_newline = False         # the last row is complete but has no newline yet
        self._read()

    @property
    def dropped(self) -> int:
        """Unreadable lines kept on disk but not counted as results."""
        return len(self.dropped_lines)

    def describe_problems(self) -> list[str]:
        """What was wrong with the file on opening, one sentence each (empty when nothing was)."""
        out = []
        if self.dropped_lines:
            shown = ", ".join(map(str, self.dropped_lines[:10])) + (" ..." if self.dropped > 10 else "")
            out.append(f"{self.path}: {self.dropped} unreadable line(s) (line {shown}) were skipped; any pair they "
                       "held is run again. Remove or repair those lines to silence this.")
        if self.torn_bytes:
            out.append(f"{self.path}: cut off a torn last line ({self.torn_bytes} bytes, from an interrupted "
                       "write); its pair is run again.")
        return out

    def _read(self) -> None:
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                self.rows.append(ResultRow.model_validate_json(line))
            except ValidationError:
                self.dropped_lines.append(number)
        if not tail:
            return
        try:
            self.rows.append(ResultRow.model_validate_json(tail))
        except ValidationError:  # torn by a crash mid-write: cut it off, the pair is run again
            os.ftruncate(self._fd, len(data) - len(tail))
            self.torn_bytes = len(tail)
        else:  # complete, only the newline is missing: keep it byte for byte; `append` adds the newline
            self._needs_newline = True

    def done(self) -> set[tuple[str, str, str]]:
        return {r.key for r in self.rows}

    def append(self, row: ResultRow) -> None:
        data = ("\n" if self._needs_newline else "") + row.model_dump_json() + "\n"
        self._write(data.encode())
        self._needs_newline = False
        self.rows.append(row)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the lock
            self._fd = -1

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
