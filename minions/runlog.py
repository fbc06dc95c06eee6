"""The engine eval sweeps and `minions batch` share: a crash-safe JSONL log of finished units, and
a driver that runs the pending units with bounded concurrency under global caps.

`AppendLog`: one line per finished unit, appended so that a crash loses nothing finished. Each row
is written with one `write` of the whole line, then flushed and fsync'ed before the unit is reported
done. Only the driver (one process, one task at a time per row) writes. A process killed mid-write
can leave at most a torn last line (no newline); opening the file again cuts it off, so the unit is
simply run again. A last line that lacks only its newline (an editor, `head -c`, a copy) but is a
complete row is kept as it is: the missing newline is written in front of the next row, so opening
and closing a finished file changes nothing on disk. Unreadable lines elsewhere are kept on disk,
counted in `dropped` and listed in `dropped_lines`, for the front end to report. An advisory lock on
the file stops two runs from writing the same file at once.

`drive`: runs `work(unit)` for each unit, at most `concurrency` at once, appends each row to the log
as it finishes and emits `UnitFinished`; a spend cap (`cost_of(row)` summed over this run's rows) or
a time cap stops new units from starting (units in flight finish and are kept) and says so in
`DriveOutcome.stopped` and a `CapReached` event.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from minions import errors
from minions.protocols.events import emit

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, everything else works
    fcntl = None  # type: ignore[assignment]

Row = TypeVar("Row", bound=BaseModel)
Unit = TypeVar("Unit")


class AppendLog(Generic[Row]):
    """Open (creating) a JSONL log of `row_type` rows for appending; `rows` holds what was already in
    it. `key(row)` identifies the unit a row finished (its resume key); `unit` names one in messages."""

    def __init__(self, path: str | Path, row_type: type[Row], key: Callable[[Row], Any], *,
                 unit: str = "unit", writer: str = "run"):
        self.path = Path(path)
        self.row_type, self.key, self.unit = row_type, key, unit
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(self._fd)
                raise errors.ConfigError(f"Another {writer} is writing {self.path}; wait for it to finish, or "
                                         "write to another file.") from e
        self.rows: list[Row] = []
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
            out.append(f"{self.path}: {self.dropped} unreadable line(s) (line {shown}) were skipped; any "
                       f"{self.unit} they held is run again. Remove or repair those lines to silence this.")
        if self.torn_bytes:
            out.append(f"{self.path}: cut off a torn last line ({self.torn_bytes} bytes, from an interrupted "
                       f"write); its {self.unit} is run again.")
        return out

    def _read(self) -> None:
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                self.rows.append(self.row_type.model_validate_json(line))
            except ValidationError:
                self.dropped_lines.append(number)
        if not tail:
            return
        try:
            self.rows.append(self.row_type.model_validate_json(tail))
        except ValidationError:  # torn by a crash mid-write: cut it off, the unit is run again
            os.ftruncate(self._fd, len(data) - len(tail))
            self.torn_bytes = len(tail)
        else:  # complete, only the newline is missing: keep it byte for byte; `append` adds the newline
            self._needs_newline = True

    def done(self) -> set[Any]:
        return {self.key(r) for r in self.rows}

    def append(self, row: Row) -> None:
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

    def __enter__(self) -> AppendLog[Row]:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class UnitFinished(BaseModel):
    kind: Literal["unit_finished"] = "unit_finished"
    row: Any
    done: int
    total: int
    spent_usd: float            # this run's spend so far (cost_of summed)
    elapsed_s: float


class CapReached(BaseModel):
    kind: Literal["cap_reached"] = "cap_reached"
    cap: Literal["spend", "time"]
    message: str


@dataclass
class DriveOutcome:
    new_rows: int
    spent_usd: float
    not_started: int            # units a cap kept from starting (run again on the next run)
    stopped: str | None         # why new work stopped early (a cap), None when every unit ran


@dataclass
class _Tally:
    done: int
    new: int = 0
    spent: float = 0.0
    skipped: int = 0


async def drive(units: Iterable[Unit], work: Callable[[Unit], Awaitable[Row]], log: AppendLog[Row], *,
                concurrency: int, done: int = 0, total: int | None = None,
                cost_of: Callable[[Row], float | None] | None = None, max_total_usd: float | None = None,
                max_seconds: float | None = None, on_progress: Callable[[Any], Any] | None = None,
                on_row: Callable[[Unit, Row], None] | None = None) -> DriveOutcome:
    """Run `work` on every unit (at most `concurrency` at once); append each row to `log` as it
    finishes. `work` records a unit's failure in its row; an exception it lets escape is a bug and
    ends the run (rows already written stay). `done`/`total`: the counts progress starts from."""
    if concurrency < 1:
        raise errors.ConfigError(f"concurrency must be at least 1 (got {concurrency}).")
    pending = list(units)
    total = done + len(pending) if total is None else total
    started = time.monotonic()
    sem = asyncio.Semaphore(concurrency)
    state = _Tally(done=done)
    stopped: list[str] = []

    def cap() -> tuple[Literal["spend", "time"], str] | None:
        if max_total_usd is not None and state.spent >= max_total_usd:
            return "spend", (f"spend cap reached: ${state.spent:.4f} spent of --max-total-usd "
                             f"${max_total_usd:g}; no new {log.unit} started")
        if max_seconds is not None and time.monotonic() - started >= max_seconds:
            return "time", (f"time cap reached: {time.monotonic() - started:.1f} s of --max-seconds "
                            f"{max_seconds:g}; no new {log.unit} started")
        return None

    async def one(unit: Unit) -> None:
        async with sem:
            if (reason := cap()) is not None:
                state.skipped += 1
                if not stopped:
                    stopped.append(reason[1])
                    await emit(on_progress, CapReached(cap=reason[0], message=reason[1]))
                return
            row = await work(unit)
            log.append(row)
            state.done += 1
            state.new += 1
            state.spent += (cost_of(row) or 0.0) if cost_of else 0.0
            if on_row is not None:
                on_row(unit, row)
            await emit(on_progress, UnitFinished(row=row, done=state.done, total=total,
                                                 spent_usd=state.spent, elapsed_s=time.monotonic() - started))

    await asyncio.gather(*(one(u) for u in pending))
    reason = stopped[0] if stopped else None
    if reason and state.skipped:
        reason += f" ({state.skipped} left for the next run, which resumes where this one stopped)"
    return DriveOutcome(new_rows=state.new, spent_usd=state.spent, not_started=state.skipped,
                        stopped=reason)


__all__ = ["AppendLog", "CapReached", "DriveOutcome", "UnitFinished", "drive"]
