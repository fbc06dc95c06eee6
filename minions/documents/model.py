"""The document types: a loaded `Document` with page spans, and the `Chunk`s cut from it.

Offsets are character offsets into `Document.text`, so any chunk, citation or answer span can be
traced back to a page with `Document.page_of` (a bisect over the page starts, not a scan).
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_right
from collections.abc import Collection
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr, model_validator

PAGE_SEPARATOR = "\n\n"
_TITLE_MAX = 80


class PageSpan(BaseModel):
    """One page: its 1-based number and its [start, end) character offsets into `Document.text`.
    `ocr`: the page had no text layer and its text was read by OCR (check it before quoting it)."""

    number: int
    start: int
    end: int
    ocr: bool = False


class Document(BaseModel):
    """A loaded document. Paged formats (PDF) keep one span per page; others have one span, page 1."""

    id: str
    title: str
    source: str
    text: str
    pages: list[PageSpan] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    # Page starts for bisect; rebuilt if `pages` is replaced after construction.
    _starts: list[int] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _check_pages(self) -> Document:
        if not self.pages:
            self.pages = [PageSpan(number=1, start=0, end=len(self.text))]
        last = 0
        for p in self.pages:  # in order and inside the text, or page_of's bisect would lie
            if not last <= p.start <= p.end <= len(self.text):
                raise ValueError(f"page {p.number} span [{p.start}, {p.end}) is out of order or outside "
                                 f"the text (0..{len(self.text)}); pages must be sorted and non-overlapping")
            last = p.end
        return self

    # --- construction ------------------------------------------------------------------------

    @classmethod
    def from_text(cls, text: str, id: str | None = None, title: str | None = None,
                  source: str = "<text>", metadata: dict[str, Any] | None = None) -> Document:
        doc_id = id or content_id(text)
        return cls(id=doc_id, title=title or default_title(text, doc_id), source=source, text=text,
                   metadata=dict(metadata or {}))

    @classmethod
    def from_pages(cls, pages: list[str], id: str | None = None, title: str | None = None,
                   source: str = "<text>", metadata: dict[str, Any] | None = None,
                   ocr_pages: Collection[int] = ()) -> Document:
        """Join page texts with a blank line; page i (0-based) becomes PageSpan number i + 1.
        `ocr_pages`: 1-based numbers of the pages whose text came from OCR."""
        spans: list[PageSpan] = []
        pos = 0
        for i, page in enumerate(pages):
            if i:
                pos += len(PAGE_SEPARATOR)
            spans.append(PageSpan(number=i + 1, start=pos, end=pos + len(page), ocr=i + 1 in ocr_pages))
            pos += len(page)
        text = PAGE_SEPARATOR.join(pages)
        doc_id = id or content_id(text)
        return cls(id=doc_id, title=title or default_title(text, doc_id), source=source, text=text,
                   pages=spans, metadata=dict(metadata or {}))

    # --- provenance --------------------------------------------------------------------------

    def page_of(self, offset: int) -> int:
        """The 1-based page number holding character `offset` (separators belong to the page before)."""
        if len(self._starts) != len(self.pages):
            self._starts = [p.start for p in self.pages]
        i = bisect_right(self._starts, offset) - 1
        return self.pages[max(i, 0)].number

    def page_range(self, start: int, end: int) -> tuple[int, int]:
        """First and last page touched by the character range [start, end)."""
        return self.page_of(start), self.page_of(max(start, end - 1))

    @property
    def ocr_pages(self) -> list[int]:
        """Numbers of the pages read by OCR (scanned pages with no text layer)."""
        return [p.number for p in self.pages if p.ocr]

    def page_text(self, number: int) -> str:
        for span in self.pages:
            if span.number == number:
                return self.text[span.start:span.end]
        raise KeyError(f"{self.id} has no page {number} (pages 1..{len(self.pages)})")


class Chunk(BaseModel):
    """A contiguous piece of one document. Invariant: doc.text[start:end] == text.

    `header`: when the chunk starts inside a Markdown table below its header, that header row and
    its rule line, repeated from above (not part of `text`); `text_with_header` is what to show a model.
    """

    id: str
    doc_id: str
    index: int
    text: str
    start: int
    end: int
    page_start: int
    page_end: int
    section: str | None = None
    header: str | None = None

    @property
    def text_with_header(self) -> str:
        return f"{self.header}\n{self.text}" if self.header else self.text

    @property
    def pages(self) -> range:
        return range(self.page_start, self.page_end + 1)

    def citation(self) -> str:
        span = f"p. {self.page_start}" if self.page_start == self.page_end \
            else f"pp. {self.page_start}-{self.page_end}"
        return f"{self.doc_id}, {span}" + (f" ({self.section})" if self.section else "")


# --- ids and titles --------------------------------------------------------------------------

def content_id(data: str | bytes) -> str:
    """A short stable id from the content, for documents that have no file name."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return "doc-" + hashlib.sha1(raw, usedforsecurity=False).hexdigest()[:10]


def slug(name: str) -> str:
    """A file stem made safe for ids and citations ("Q3 report (final)" -> "Q3-report-final")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")


def default_title(text: str, fallback: str) -> str:
    """The first non-blank line (without Markdown heading marks), shortened; else the fallback."""
    m = re.search(r"\S[^\n]*", text[:4000])
    if not m:
        return fallback
    line = m.group().lstrip("#").strip() or fallback
    return line if len(line) <= _TITLE_MAX else line[: _TITLE_MAX - 1].rstrip() + "…"
