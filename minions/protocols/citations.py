"""Is a quote really in the text? Citation checking shared by the protocols.

A worker's citation is accepted when it appears in its chunk exactly, up to whitespace, case and
quote marks, or fuzzily (difflib) — a small model misspells, drops a word, writes "were" for "was".
But a fuzzy match must never turn a different figure into a verified one: in a 10-K the numbers
are the point. So after any fuzzy match the numbers (read by `minions.numbers` as full amounts:
million is not billion, "$1.6 billion" is "$1,600 million"), the dates (years, month names) and
the negations (not, no, never, n't, without...) of the citation and of the matched passage must
be the same multiset; any difference rejects. An exact
or normalised substring match must not cut a number in two ("$4" is not in "$42 million").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from minions.documents import Document
from minions.numbers import extract
from minions.protocols.result import Citation

#: how citation_found reports a quote that is close in wording but not in numbers, dates or negations
CHANGED = "altered (other numbers, dates or negations)"
_WS = re.compile(r"\s+")
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r" ?\n\s*")
_WRAPPED = re.compile(r"(?<=[A-Za-z,;:])\n(?=[A-Za-z(])")
_ELLIPSIS = re.compile(r"\s*(?:\.\.\.|…)\s*")
_QUOTES = "\"'`“”‘’«» "
# Curly and angled quotes, and the prime-like apostrophes, read as their plain forms.
_QUOTE_MAP = str.maketrans({"“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "‘": "'", "’": "'", "‚": "'",
                            "`": "'", "´": "'"})

_MONTHS = {m: i for i, names in enumerate((
    ("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",), ("june", "jun"),
    ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"), ("october", "oct"),
    ("november", "nov"), ("december", "dec")), start=1) for m in names}
_NEGATIONS = {"not", "no", "never", "none", "nor", "neither", "without", "cannot", "nothing", "nobody",
              "nowhere", "n't"}
_WORD = re.compile(r"n't\b|[^\W\d_]+", re.IGNORECASE)


def normalize(s: str) -> str:
    """Whitespace collapsed, case folded, curly quotes made plain: what citation matching ignores."""
    return _WS.sub(" ", s.translate(_QUOTE_MAP)).strip().casefold()


def facts(s: str) -> Counter[str]:
    """The multiset of what a fuzzy match must not change: numbers as full amounts with their unit
    (`Quantity.key`), month names and negation words."""
    s = s.translate(_QUOTE_MAP)
    out: Counter[str] = Counter()
    for q in extract(s, labels=True):  # "FY2023" is a date here: a quote must keep it
        out[f"#{q.key}"] += 1
    for w in _WORD.findall(s.replace("n't", " n't")):
        w = w.casefold()
        if w in _NEGATIONS:
            out[f"!{w}"] += 1
        elif w in _MONTHS:
            out[f"@{_MONTHS[w]}"] += 1
    return out


def citation_found(citation: str, text: str, threshold: float = 0.8) -> tuple[bool, str]:
    """Is `citation` in `text`? Exact, then normalised (whitespace, case, quote marks), then fuzzy
    (difflib ratio of the best window >= threshold, with the same numbers, dates and negations).
    A quote elided with "..." must match part by part. Returns (found, how)."""
    m = match_citation(citation, text, threshold)
    return m.found, m.how


@dataclass(frozen=True)
class CitationMatch:
    """How a citation matched, and where: `text[start:end]` is the passage it matched (for an elided
    quote, from its first part to its last). start/end are None when it was not found."""

    found: bool
    how: str
    start: int | None = None
    end: int | None = None


def match_citation(citation: str, text: str, threshold: float = 0.8, *, fuzzy: bool = True) -> CitationMatch:
    """`citation_found` with the matched span's character offsets into `text`: exact matches slice
    to the quote itself, normalised and fuzzy ones to the original text they matched (mapped back
    through the normalisation, so collapsed whitespace and case folding are undone exactly)."""
    cite = citation.strip().strip(_QUOTES).rstrip(".,;:").strip(_QUOTES)  # quotes end sentences early
    if not cite:
        return CitationMatch(False, "empty")
    i = _find(text, cite)
    if i is not None:
        return CitationMatch(True, "exact", i, i + len(cite))
    norm_text = normalize(text)  # the offsets map (3x slower to build) only once a match is found
    parts = [p for p in (normalize(x) for x in _ELLIPSIS.split(cite)) if p]
    spans: list[tuple[int, int] | None] = []
    pos = 0
    for p in parts:  # in order when they occur in order, else anywhere
        k = _find(norm_text, p, pos)
        k = _find(norm_text, p) if k is None else k
        spans.append(None if k is None else (k, k + len(p)))
        pos = k + len(p) if k is not None else pos
    if parts and all(spans):
        return _mapped(True, "normalised", spans, text)
    close = [_fuzzy_match(p, norm_text, threshold) for p in parts] if fuzzy else []
    if close and all(isinstance(f, tuple) for f in close):
        return _mapped(True, "fuzzy", close, text)
    if close and all(f is not None for f in close):
        return CitationMatch(False, CHANGED)  # close wording, other numbers, dates or negations: a made-up quote
    return CitationMatch(False, "not found")


def _mapped(found: bool, how: str, spans: Sequence[object], text: str) -> CitationMatch:
    """A match over the normalised text, its span mapped back to the original text's offsets."""
    where = normalize_with_offsets(text)[1]
    pairs = [s for s in spans if isinstance(s, tuple)]
    lo, hi = min(s for s, _ in pairs), max(e for _, e in pairs)
    return CitationMatch(found, how, where[lo], where[hi - 1] + 1)


def normalize_with_offsets(text: str) -> tuple[str, list[int]]:
    """`normalize(text)`, and for each of its characters the offset in `text` it came from (a
    collapsed whitespace run maps to the run's first character; casefold's expansions, ß -> ss,
    map every output character to their one source)."""
    out: list[str] = []
    where: list[int] = []
    for m in _RUNS.finditer(text.translate(_QUOTE_MAP)):
        piece = m.group()
        if piece[0].isspace():
            if out and m.end() < len(text):  # inner runs become one space; leading and trailing go
                out.append(" ")
                where.append(m.start())
            continue
        for k, ch in enumerate(piece, m.start()):
            folded = ch.casefold()
            out.append(folded)
            where.extend([k] * len(folded))
    return "".join(out), where


_RUNS = re.compile(r"\s+|\S+")


def _find(text: str, part: str, start: int = 0) -> int | None:
    """Where `part` first occurs in `text` (from `start`) somewhere that does not cut a number in two."""
    i = text.find(part, start)
    if i < 0:
        return None
    spans = _number_spans(text)
    while i >= 0:
        if not (_cuts(spans, i) or _cuts(spans, i + len(part))):
            return i
        i = text.find(part, i + 1)
    return None


_DIGITS = re.compile(r"\d(?:[\d,.]*\d)?")


def _number_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _DIGITS.finditer(text)]


def _cuts(spans: list[tuple[int, int]], k: int) -> bool:
    """Does offset `k` fall strictly inside a number ("4|2", "1,|000", "3.|1")?"""
    return any(s < k < e for s, e in spans)


def _fuzzy_match(cite: str, text: str, threshold: float,
                 max_anchors: int = 8) -> tuple[int, int] | bool | None:
    """(start, end) of the passage matched: some window of `text` about as long as `cite` matches
    it with difflib ratio >= threshold and holds the same facts (see `facts`). False: windows match
    by ratio, but none with the same facts. None: no window matches. Windows are anchored at the longest blocks the two share (a few
    ms for a 3,000-char chunk)."""
    n = len(cite)
    if n < 8 or n > 2000 or not text:
        return None
    close = False
    want = facts(cite)
    blocks = SequenceMatcher(None, text, cite, autojunk=False).get_matching_blocks()
    tried: set[tuple[int, int]] = set()
    for i, j, size in sorted(blocks, key=lambda b: -b[2])[:max_anchors]:
        if size < 3:
            break
        start = max(0, i - j)
        for lo, hi in ((start, start + n), (max(0, start - 3), start + n + 3)):
            if (lo, hi) in tried:
                continue
            tried.add((lo, hi))
            sm = SequenceMatcher(None, text[lo:hi], cite, autojunk=False)
            if sm.quick_ratio() < threshold or sm.ratio() < threshold:
                continue
            start, end = _aligned(text, lo, sm)
            if facts(text[start:end]) == want:
                return start, end
            close = True
    return False if close else None


def _aligned(text: str, lo: int, sm: SequenceMatcher) -> tuple[int, int]:
    """The passage of `text` the citation lines up with: from the first to the last matching block
    of the window, widened to whole words and numbers so an edge never splits "2023" or "million"."""
    matched = [b for b in sm.get_matching_blocks() if b.size]
    start, end = lo + matched[0].a, lo + matched[-1].a + matched[-1].size
    for s, e in _number_spans(text[max(0, start - 40): end + 40]):
        s, e = s + max(0, start - 40), e + max(0, start - 40)
        if s < start < e:
            start = s
        if s < end < e:
            end = e
    while start > 0 and text[start - 1].isalnum():
        start -= 1
    while end < len(text) and text[end].isalnum():
        end += 1
    return start, end


#: above this many characters of a citation's pages, only exact and normalised matches place it
#: (difflib over a whole long page-less document costs seconds; worker quotes come placed already)
_FUZZY_PLACE_MAX = 60_000


def place_citations(citations: Sequence[Citation], documents: Sequence[Document],
                    threshold: float = 0.8) -> list[Citation]:
    """Each citation with its character offsets into its document's text and the page they start
    on (see `Citation.start`), found within the pages it names. A citation placed already (a
    worker's quote, where it was verified) only gets its page; one not found keeps None."""
    docs = {d.id: d for d in documents}
    out = []
    for c in citations:
        doc = docs.get(c.doc_id)
        if doc is None:
            out.append(c)
            continue
        start, end = c.start, c.end
        if start is None or end is None or not 0 <= start <= end <= len(doc.text):
            start, end = _place(c, doc, threshold)
        if start is None or end is None:
            out.append(c.model_copy(update={"start": None, "end": None, "page": None}))
        else:
            out.append(c.model_copy(update={"start": start, "end": end, "page": doc.page_of(start)}))
    return out


def _place(c: Citation, doc: Document, threshold: float) -> tuple[int | None, int | None]:
    lo, hi = 0, len(doc.text)
    spans = {p.number: p for p in doc.pages}
    first, last = spans.get(c.page_start or 0), spans.get(c.page_end or c.page_start or 0)
    if first is not None and last is not None and first.start <= last.end:
        lo, hi = first.start, last.end
    region = doc.text[lo:hi]
    m = match_citation(c.text, region, threshold, fuzzy=len(region) <= _FUZZY_PLACE_MAX)
    if not m.found or m.start is None or m.end is None:
        return None, None
    return lo + m.start, lo + m.end


# --- sentences: a citation as a pointer (issue 19) ------------------------------------------------
# A worker cites by pointing at the chunk's sentences: by a short snippet it copies (`quote_segments`
# finds the sentences it lies in), or by number when it was shown them numbered (`numbered`). The
# framework copies the quote from the chunk, so it is exact by construction and cannot be made up.
# A sentence ends at . ! ? followed by a space, or at a line break; short pieces (table cells,
# headings) are merged with the next until a segment is _MIN_SEGMENT characters long.

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_MIN_SEGMENT = 40
MAX_CITED_SEGMENTS = 3


def segments(text: str) -> list[tuple[int, int]]:
    """The (start, end) offsets in `text` of its numbered segments, in order, whitespace trimmed."""
    pieces, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        pieces.append((start, m.start()))
        start = m.end()
    pieces.append((start, len(text)))
    out: list[tuple[int, int]] = []
    cur: tuple[int, int] | None = None
    for s, e in pieces:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if s >= e:
            continue
        cur = (s, e) if cur is None else (cur[0], e)
        if cur[1] - cur[0] >= _MIN_SEGMENT:
            out.append(cur)
            cur = None
    if cur is not None:
        if out and cur[1] - cur[0] < _MIN_SEGMENT // 2:
            out[-1] = (out[-1][0], cur[1])
        else:
            out.append(cur)
    return out


def numbered(text: str) -> str:
    """`text` as the worker sees it: one segment a line, each after its number in brackets."""
    return "\n".join(f"[{i}] {_WS.sub(' ', text[s:e])}" for i, (s, e) in enumerate(segments(text), start=1))


def excerpt(text: str) -> str:
    """`text` as the worker sees it: runs of spaces and blank lines collapsed, a PDF's wrapped lines
    (a break between two letters) joined — ~11% fewer prompt tokens on a 10-K; table rows (which end
    in figures) keep their line breaks. Snippets quoted from it are found in the original by
    `quote_segments` (whitespace-insensitive matching)."""
    return _WRAPPED.sub(" ", _BLANK_LINES.sub("\n", _SPACES.sub(" ", text)).strip())


def quote_segments(text: str, snippet: str, threshold: float = 0.8) -> list[int]:
    """The numbers (1-based, as `segments`) of the sentences a worker's snippet lies in, at most
    MAX_CITED_SEGMENTS; [] when the snippet is not in `text` (made up, or changed figures)."""
    m = match_citation(snippet, text, threshold)
    if not m.found or m.start is None or m.end is None:
        return []
    hit = [i for i, (s, e) in enumerate(segments(text), start=1) if s < m.end and e > m.start]
    return hit[:MAX_CITED_SEGMENTS]


def quote_lines(text: str, numbers: list[int]) -> tuple[str | None, list[int]]:
    """The quote the segment numbers point at (segments in order, gaps marked with "..."), and the
    numbers that were in range; (None, []) when none is. Model output is untrusted: numbers out of
    range are ignored, duplicates dropped, at most MAX_CITED_SEGMENTS kept."""
    spans = segments(text)
    valid = sorted({n for n in numbers if 1 <= n <= len(spans)})[:MAX_CITED_SEGMENTS]
    if not valid:
        return None, []
    parts: list[str] = []
    for k, n in enumerate(valid):
        s, e = spans[n - 1]
        if k and valid[k - 1] != n - 1:
            parts.append(" ... ")
        elif k:
            parts.append(" ")
        parts.append(text[s:e])
    return "".join(parts), valid


def figures(s: str) -> set[str]:
    """The numbers in `s`, scale ignored (a table says "1,577" under "(Millions)", an answer "$1,577 million")."""
    return {f"{q.value:g}" for q in extract(s.translate(_QUOTE_MAP), labels=True)}


def point_citation(text: str, numbers: list[int], answer: str) -> tuple[str | None, str]:
    """The quote for an answer cited by sentence numbers, and how it was found. The cited sentences
    must hold every figure of the answer; if they do not, the chunk's first segment that does is
    cited instead ("re-pointed": a small model often writes [1]); if none does, (None, why)."""
    need = figures(answer)
    quote, valid = quote_lines(text, numbers)
    if quote is not None and need <= figures(quote):
        return quote, ""
    if need:
        for i, (s, e) in enumerate(segments(text), start=1):
            if need <= figures(text[s:e]):
                return text[s:e], f"citation re-pointed to sentence {i}"
    if quote is None:
        return None, f"citation lines {numbers[:MAX_CITED_SEGMENTS]} not in chunk"
    return None, "answer's figures not in the chunk"
