"""The verbatim budget: how much document text a run may send to the remote, enforced before sending.

    max_verbatim = 0 | 500 | "500 chars" | "2%"        (library, eval configs, `--max-verbatim`)
    quotes = "on" | "off"                              (`--quotes off`: no worker quote is sent)

`N` is characters of the documents, in all, that may leave verbatim in the run; `P%` is a share of
*each* document. Verbatim is what `verbatim.py` measures: spans of at least 40 characters of a
document found in outbound text, after whitespace normalisation.

How it is charged: each document keeps the positions of its text already sent in this run (a
boolean mask over the normalised document). Before a message leaves, its verbatim spans are located
(`VerbatimIndex.locate`) and each span costs the positions it would newly cover: a sentence sent
twice is charged once, as the run's egress measure (`RunResult.egress`) counts it. Spans are
admitted in order while they fit; a span that would push the run past the budget is replaced by
`[quote withheld: 214 chars, verified locally]` — verified, because the span was found in the
document here, before anything left. A worker's quote is admitted or withheld whole (`quote`).

Bottom layer: it knows documents and text, not protocols (the call gateway applies it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, model_serializer

from minions.egress.model import Withheld
from minions.egress.verbatim import MIN_CHARS, VerbatimIndex, normalize

FORMS = ("a number of characters like '500' (0: no document text leaves verbatim), or a share of each "
         "document like '2%'")
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)\s*%$", re.ASCII)
_CHARS = re.compile(r"^(\d[\d_,]*)\s*(?:chars?|characters?)?$", re.I | re.ASCII)


class MaxVerbatim(BaseModel):
    """A parsed `max_verbatim` knob; recorded (and shown) as the text it parses from: "500", "2%"."""

    kind: Literal["chars", "percent"]
    value: float                # characters in all (>= 0), or percent of each document [0, 100]

    @classmethod
    def parse(cls, v: object) -> MaxVerbatim:
        if isinstance(v, MaxVerbatim):
            return v
        if isinstance(v, dict):
            return cls.model_validate(v)
        if isinstance(v, bool):
            raise ValueError(f"max_verbatim must be {FORMS}, not {v!r}")
        if isinstance(v, int | float):
            if not math.isfinite(v) or v < 0 or v != int(v):
                raise ValueError(f"max_verbatim={v!r}: a number of characters must be a whole number, 0 or more")
            return cls(kind="chars", value=float(int(v)))
        if not isinstance(v, str):
            raise ValueError(f"max_verbatim must be {FORMS}, not {type(v).__name__}")
        text = v.strip()
        if m := _PERCENT.match(text):
            pct = float(m.group(1))
            if pct > 100:
                raise ValueError(f"max_verbatim={v!r}: a share must be between 0% and 100% (100%: no cap)")
            return cls(kind="percent", value=pct)
        if m := _CHARS.match(text):
            return cls(kind="chars", value=float(int(m.group(1).replace(",", "").replace("_", ""))))
        if text.startswith("-"):
            raise ValueError(f"max_verbatim={v!r}: the budget cannot be negative; use {FORMS}")
        raise ValueError(f"max_verbatim={v!r} is not understood: use {FORMS}")

    @model_serializer
    def _as_text(self) -> str:
        return str(self)

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.kind == "percent" else str(int(self.value))

    @property
    def unlimited(self) -> bool:
        """100% of each document: no cap at all."""
        return self.kind == "percent" and self.value >= 100


def parse_max_verbatim(v: Any) -> MaxVerbatim | None:
    """The knob's validator: None stays None (no budget)."""
    return None if v is None else MaxVerbatim.parse(v)


def placeholder(chars: int, verified: bool = True) -> str:
    """What the remote sees instead of a withheld quote."""
    return f"[quote withheld: {chars} chars, {'verified locally' if verified else 'not verified'}]"


def normalized_map(text: str) -> tuple[str, list[int]]:
    """`normalize(text)` and, for each of its characters, its offset in `text`."""
    parts: list[str] = []
    where: list[int] = []
    for m in re.finditer(r"\S+", text):
        if parts:
            parts.append(" ")
            where.append(m.start() - 1)  # the whitespace run before this word is one space
        parts.append(m.group())
        where.extend(range(m.start(), m.end()))
    return "".join(parts), where


class _Span:
    """One span of an outbound text found in some documents: [start, end) in its normalised form,
    and per document the positions it covers."""

    def __init__(self, start: int, end: int):
        self.start, self.end = start, end
        self.covers: dict[str, np.ndarray] = {}


class VerbatimBudget:
    """One run's verbatim budget over its documents (`(doc_id, text)`); never shared between runs.

    `limit` None with `quotes=False` withholds every worker quote and cuts nothing else. The
    documents are indexed on first use, so a run whose messages hold no document text indexes
    nothing it does not need."""

    def __init__(self, documents: Sequence[tuple[str, str]], limit: MaxVerbatim | None, *, quotes: bool = True,
                 min_chars: int = MIN_CHARS):
        self.documents = list(documents)
        self.limit = None if limit is not None and limit.unlimited else limit
        self.quotes = quotes
        self.min_chars = min_chars
        self.withheld = Withheld(max_verbatim=None if limit is None else str(limit),
                                 quotes="on" if quotes else "off")
        self._index: dict[str, VerbatimIndex] | None = None
        self._sent: dict[str, np.ndarray] = {}
        self._admitted: dict[str, str] = {}       # outbound text -> what was sent of it (repeats are free)
        self._pending = Withheld()                # withheld since the last `take_note`

    @property
    def active(self) -> bool:
        return self.limit is not None or not self.quotes

    # -- accounting ----------------------------------------------------------------------------

    def _indexes(self) -> dict[str, VerbatimIndex]:
        if self._index is None:
            self._index = {}
            for doc_id, text in self.documents:
                index = self._index[doc_id] = VerbatimIndex(text, min_chars=self.min_chars)
                self._sent[doc_id] = np.zeros(index.total, dtype=bool)
        return self._index

    def _limit(self, doc_id: str) -> int:
        assert self.limit is not None
        return int(self._indexes()[doc_id].total * self.limit.value / 100)

    def used(self) -> dict[str, int]:
        """Characters of each document charged so far (sent, or admitted to be sent)."""
        self._indexes()
        return {d: int(m.sum()) for d, m in self._sent.items()}

    def _spans(self, text: str) -> list[_Span]:
        """The verbatim spans of `text` in any document, overlapping ones merged, in order."""
        found: list[tuple[int, int, str, np.ndarray]] = []
        for doc_id, index in self._indexes().items():
            found += [(a, b, doc_id, mask) for a, b, mask in index.locate(text)]
        spans: list[_Span] = []
        for a, b, doc_id, mask in sorted(found, key=lambda f: (f[0], f[1])):
            if not spans or a >= spans[-1].end:
                spans.append(_Span(a, b))
            span = spans[-1]
            span.end = max(span.end, b)
            span.covers[doc_id] = span.covers[doc_id] | mask if doc_id in span.covers else mask
        return spans

    def _fits(self, extra: dict[str, np.ndarray]) -> bool:
        """Whether charging `extra` (per document, positions not yet charged) keeps the run in budget."""
        assert self.limit is not None
        if self.limit.kind == "chars":
            total = sum(int(m.sum()) for m in self._sent.values()) + sum(int(m.sum()) for m in extra.values())
            return total <= self.limit.value
        return all(int(self._sent[d].sum()) + int(m.sum()) <= self._limit(d) for d, m in extra.items())

    def _try(self, spans: Sequence[_Span]) -> bool:
        """Charge all of `spans` if together they fit; else charge nothing."""
        extra: dict[str, np.ndarray] = {}
        for span in spans:
            for doc_id, mask in span.covers.items():
                extra[doc_id] = extra[doc_id] | mask if doc_id in extra else mask.copy()
        extra = {d: m & ~self._sent[d] for d, m in extra.items()}
        if not self._fits(extra):
            return False
        for d, m in extra.items():
            self._sent[d] |= m
        return True

    # -- what the protocols and the gateway call --------------------------------------------------

    def quote(self, text: str, *, verified: bool = True) -> str:
        """A worker's quote as the remote may see it: the quote, charged to the budget, or — when
        quotes are off or it would push the run past the budget — its placeholder."""
        if not text or not self.active:
            return text
        if self.quotes and (self.limit is None or self._try(self._spans(text))):
            return text
        chars = len(normalize(text))
        for w in (self.withheld, self._pending):
            w.quotes_withheld += 1
            w.quote_chars += chars
        return placeholder(chars, verified)

    def admit(self, text: str, *, as_quotes: bool = False) -> str:
        """`text` as it may leave: its verbatim spans charged while they fit, the rest replaced by
        their placeholder. `as_quotes`: every span is a quote (a worker's chat reply), so with
        quotes off none is sent. Without a character budget (quotes off only) other text is sent as is."""
        cut_all = as_quotes and not self.quotes
        if not text or not (self.limit is not None or cut_all):
            return text
        if not cut_all and text in self._admitted:
            return self._admitted[text]  # charged when it was first sent
        spans = self._spans(text)
        dropped = [s for s in spans if cut_all or not self._try([s])]
        out = text
        if dropped:
            _norm, where = normalized_map(text)
            for s in reversed(dropped):
                out = out[: where[s.start]] + placeholder(s.end - s.start) + out[where[s.end - 1] + 1:]
            chars = sum(s.end - s.start for s in dropped)
            for w in (self.withheld, self._pending):
                if as_quotes:
                    w.quotes_withheld += len(dropped)
                    w.quote_chars += chars
                else:
                    w.spans_cut += len(dropped)
                    w.span_chars += chars
        if not cut_all:
            self._admitted[text] = out
        return out

    def take_note(self) -> str | None:
        """One line on what was withheld since the last call (the gateway's notice per request); None: nothing."""
        pending, self._pending = self._pending, Withheld()
        if not pending.quotes_withheld and not pending.spans_cut:
            return None
        self.withheld.messages += 1
        pending.max_verbatim, pending.quotes = self.withheld.max_verbatim, self.withheld.quotes
        return (f"verbatim budget: {pending.line()}; the remote got a placeholder for each (answers and "
                "verification results still went)")
