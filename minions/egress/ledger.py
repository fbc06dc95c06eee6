"""The egress ledger: one JSON line per outbound request, hash-chained, and its audit.

Each line is a JSON object with `prev`, the SHA-256 of the previous line's bytes (64 zeros on the
first line), and `self`, the SHA-256 of the line's own content without `self`. So:
- an edited line no longer matches its own `self` (and the next line's `prev`);
- a deleted, inserted or reordered line breaks the `prev` of the line after the gap.
An editor who rewrites every later line's hashes defeats any chain kept beside the data; keep a copy
of the last line's hash elsewhere (`minions audit` prints it) to detect that too.

Lines are `{"kind": "request", ...EgressRecord}` and, when a run ends, `{"kind": "run", "run_id":
..., "egress": Egress}` with the run's verbatim measure (the documents are not in the ledger, so the
audit reads the measure from there). `text=False` keeps hashes, sizes and counts but not the text sent.

Appends take an exclusive `flock` and read the current last line under it, so several processes
(and threads) can share one ledger; nothing is cached between appends.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from minions.egress.model import EgressRecord, HostEgress, Withheld, per_host

GENESIS = "0" * 64


def _canonical(obj: dict[str, Any]) -> bytes:
    # ASCII-only: a lone surrogate in model output cannot be written as UTF-8, but can as an escape
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _self_hash(obj: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in obj.items() if k != "self"})).hexdigest()


def _last_line(f: Any) -> bytes | None:
    """The last non-empty line of a binary file open for reading, read backwards from the end."""
    f.seek(0, os.SEEK_END)
    end = f.tell()
    buf, pos = b"", end
    while pos > 0:
        step = min(8192, pos)
        pos -= step
        f.seek(pos)
        buf = f.read(step) + buf
        stripped = buf.rstrip(b"\n")
        if b"\n" in stripped:
            return stripped.rsplit(b"\n", 1)[1]
    stripped = buf.rstrip(b"\n")
    return stripped or None


class Ledger:
    """A sink (see `minions.egress.record.capture`) appending to the JSON-lines file at `path`."""

    def __init__(self, path: str | Path, *, text: bool = True):
        self.path = str(Path(path).expanduser())
        self.text = text

    def __repr__(self) -> str:
        return f"Ledger({self.path!r}, text={self.text})"

    def add(self, record: EgressRecord) -> None:
        data = record.model_dump(mode="json")
        if not self.text:
            data["text"] = None
        self.append({"kind": "request", **data})

    def end_run(self, run_id: str, summary: Any) -> None:
        egress = summary.model_dump(mode="json") if hasattr(summary, "model_dump") else summary
        self.append({"kind": "run", "run_id": run_id, "egress": egress})

    def append(self, entry: dict[str, Any]) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as f:
            _lock(f)
            try:
                last = _last_line(f)
                entry = {**entry, "prev": hashlib.sha256(last).hexdigest() if last else GENESIS}
                entry["self"] = _self_hash(entry)
                f.seek(0, os.SEEK_END)
                f.write(_canonical(entry) + b"\n")
                f.flush()
            finally:
                _unlock(f)


def _lock(f: Any) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: one process at a time is the user's to ensure
        return
    fcntl.flock(f.fileno(), fcntl.LOCK_EX)


def _unlock(f: Any) -> None:
    try:
        import fcntl
    except ImportError:
        return
    fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class ChainError(ValueError):
    """The ledger's chain is broken at `line` (1-based)."""

    def __init__(self, line: int, why: str):
        super().__init__(f"line {line}: {why}")
        self.line = line


def read(path: str | Path) -> list[dict[str, Any]]:
    """The ledger's entries, the chain verified; raises ChainError naming the first bad line."""
    entries: list[dict[str, Any]] = []
    prev = GENESIS
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip(b"\n")
            if not line.strip():
                raise ChainError(n, "empty line (a line was blanked or cut)")
            try:
                entry = json.loads(line)
            except ValueError as e:
                raise ChainError(n, f"not JSON ({e}): the line was edited or cut") from None
            if not isinstance(entry, dict):
                raise ChainError(n, "not a JSON object: the line was edited")
            if entry.get("self") != _self_hash(entry):
                raise ChainError(n, "its content does not match its own hash: the line was edited")
            if entry.get("prev") != prev:
                raise ChainError(n, f"does not follow line {n - 1}: a line before it was deleted, inserted or moved"
                                 if n > 1 else "is not the ledger's first line: the lines before it were deleted")
            prev = hashlib.sha256(line).hexdigest()
            entries.append(entry)
    return entries


class RunAudit(BaseModel):
    run_id: str | None
    requests: int = 0
    bytes: int = 0
    hosts: list[HostEgress] = Field(default_factory=list)
    #: per document: chars, verbatim_chars, verbatim_share, scrubbed (from the run's closing line)
    documents: list[dict[str, Any]] = Field(default_factory=list)
    complete: bool = False                      # the run's closing line is present
    #: what the run's verbatim budget withheld (--max-verbatim, --quotes off); None: it had none
    withheld: Withheld | None = None


class Audit(BaseModel):
    path: str
    lines: int
    last_hash: str                              # keep it elsewhere to detect a rewritten tail
    runs: list[RunAudit]


def audit(path: str | Path) -> Audit:
    entries = read(path)
    runs: dict[str | None, tuple[list[EgressRecord], RunAudit]] = {}
    for e in entries:
        run_id = e.get("run_id")
        records, ra = runs.setdefault(run_id, ([], RunAudit(run_id=run_id)))
        if e.get("kind") == "request":
            records.append(EgressRecord.model_validate({k: v for k, v in e.items()
                                                        if k not in ("kind", "prev", "self")}))
        elif e.get("kind") == "run":
            ra.documents = list((e.get("egress") or {}).get("documents") or [])
            if isinstance(w := (e.get("egress") or {}).get("withheld"), dict):
                ra.withheld = Withheld.model_validate(w)
            ra.complete = True
    out = []
    for records, ra in runs.values():
        ra.requests, ra.bytes, ra.hosts = len(records), sum(r.bytes for r in records), per_host(records)
        out.append(ra)
    with open(path, "rb") as f:
        last = _last_line(f)
    return Audit(path=str(path), lines=len(entries), runs=out,
                 last_hash=hashlib.sha256(last).hexdigest() if last else GENESIS)
