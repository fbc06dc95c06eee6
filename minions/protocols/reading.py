"""The reading budget: how much of the documents the local model reads, in tokens, not jobs.

    read="all" | "30%" | "20000" | "20000 tokens" | 20000      (library, eval configs, `--read`)

Unset, the budget is what the local engine reads in `local_time_budget` seconds at its measured
speed — document tokens read per second of wall time, remembered per model in a small JSON file
(`speeds_file()`: $MINIONS_SPEEDS_FILE, else $XDG_CACHE_HOME/minions/speeds.json, else
~/.cache/minions/speeds.json). Before a model's first run there is no measurement: the run reads 30%
(where hybrid selection covers most FinanceBench evidence, see benchmarks/coverage.py) and records
its speed for next time.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

FIRST_RUN_SHARE = 0.30
FIRST_RUN_TOKENS = 8000     # ...or this many tokens if more: short documents are read whole
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$", re.ASCII)  # ASCII: "१२३" is not 123
_TOKENS = re.compile(r"^\s*(\d[\d_,]*)\s*(?:tokens?|tok)?\s*$", re.I | re.ASCII)
FORMS = "'all', a share like '30%', or a number of tokens like '20000'"


class ReadBudget(BaseModel):
    """A parsed `read` knob."""

    kind: Literal["all", "percent", "tokens"]
    value: float = 0.0          # percent (0-100] or tokens (> 0)

    @classmethod
    def parse(cls, v: object) -> ReadBudget:
        if isinstance(v, ReadBudget):
            return v
        if isinstance(v, dict):
            return cls.model_validate(v)
        if isinstance(v, bool):
            raise ValueError(f"read must be {FORMS}, not {v!r}")
        if isinstance(v, int | float):
            if not math.isfinite(v) or v <= 0:
                raise ValueError(f"read must be {FORMS}; a token count must be positive, got {v!r}")
            return cls(kind="tokens", value=float(int(v)))
        if not isinstance(v, str):
            raise ValueError(f"read must be {FORMS}, not {type(v).__name__}")
        text = v.strip().lower()
        if text == "all":
            return cls(kind="all")
        if m := _PERCENT.match(text):
            pct = float(m.group(1))
            if not 0 < pct <= 100:
                raise ValueError(f"read={v!r}: a share must be above 0% and at most 100%")
            return cls(kind="all") if pct == 100 else cls(kind="percent", value=pct)
        if m := _TOKENS.match(text):
            n = int(m.group(1).replace(",", "").replace("_", ""))
            if n <= 0:
                raise ValueError(f"read={v!r}: a token count must be positive")
            return cls(kind="tokens", value=float(n))
        raise ValueError(f"read={v!r} is not understood: use {FORMS}")

    def tokens(self, total: int) -> int | None:
        """The budget in tokens for documents of `total` tokens; None means everything."""
        if self.kind == "all":
            return None
        if self.kind == "percent":
            return int(total * self.value / 100)
        return int(self.value)

    def __str__(self) -> str:
        return {"all": "all", "percent": f"{self.value:g}%", "tokens": f"{int(self.value):,} tokens"}[self.kind]


# --- measured speeds ---------------------------------------------------------------------------

def speeds_file() -> Path:
    if os.environ.get("MINIONS_SPEEDS_FILE"):
        return Path(os.environ["MINIONS_SPEEDS_FILE"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "minions" / "speeds.json"


class SpeedStore:
    """Document tokens read per second, per local model spec. A missing or damaged file is empty, and
    so is a damaged entry (a speed that is not a finite positive number, counts that are not numbers):
    a bad cache file never breaks a run, and recording a speed never fails one."""

    #: no engine reads faster than this; a larger figure is damage, not a measurement
    MAX_TOKENS_PER_S = 1e7

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else speeds_file()

    def _load(self) -> dict[str, dict[str, float]]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: entry for k, v in data.items() if (entry := self._entry(v)) is not None}

    @classmethod
    def _entry(cls, v: object) -> dict[str, float] | None:
        """A valid entry, or None (damaged: ignored)."""
        if not isinstance(v, dict):
            return None
        try:
            tps, tok, sec = (_finite(v.get(k)) for k in ("tokens_per_s", "tokens", "seconds"))
        except ValueError:
            return None
        if not 0 < tps <= cls.MAX_TOKENS_PER_S or tok <= 0 or sec <= 0:
            return None
        return {"tokens_per_s": tps, "tokens": tok, "seconds": sec}

    def get(self, model: str) -> float | None:
        entry = self._load().get(model)
        return None if entry is None else entry["tokens_per_s"]

    def record(self, model: str, tokens: int, seconds: float) -> float | None:
        """Fold one run's measurement in (runs weigh by their length, so a tiny run moves it little)
        and return the new speed. Failing to write (read-only home) is not an error for a run."""
        try:
            return self._record(model, tokens, seconds)
        except Exception:  # noqa: BLE001  the run's work is done: a cache write must never lose it
            return None

    def _record(self, model: str, tokens: int, seconds: float) -> float | None:
        n, seconds = _finite(tokens), _finite(seconds)
        if n <= 0 or seconds <= 0:
            return None
        data = self._load()
        old = data.get(model, {})
        tok = old.get("tokens", 0.0) * 0.5 + n   # older runs count half as much
        sec = old.get("seconds", 0.0) * 0.5 + seconds
        if self._entry({"tokens_per_s": tok / sec, "tokens": tok, "seconds": sec}) is None:
            return None
        data[model] = {"tokens_per_s": tok / sec, "tokens": tok, "seconds": sec}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False, suffix=".tmp",
                                             encoding="utf-8") as f:
                json.dump(data, f, indent=1)
            Path(f.name).replace(self.path)
        except OSError:
            return None
        return tok / sec


def _finite(v: object) -> float:
    """A finite number (bools and strings are not), else ValueError."""
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ValueError(f"not a finite number: {v!r}")
    return float(v)


def budget_tokens(tokens_per_s: float, seconds: float) -> int:
    """Tokens read in `seconds` at `tokens_per_s`; an unbounded time (inf, 1e308) is 'everything'
    as a very large int, never an OverflowError."""
    product = tokens_per_s * seconds
    return int(product) if math.isfinite(product) and product < 2**62 else 2**62
