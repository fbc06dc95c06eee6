"""Is a quote really in the text? Citation checking shared by the protocols.

A worker's citation is accepted when it appears in its chunk exactly, up to whitespace, case and
quote marks, or fuzzily (difflib) — a small model misspells, drops a word, writes "were" for "was".
But a fuzzy match must never turn a different figure into a verified one: in a 10-K the numbers
are the point. So after any fuzzy match the numbers (with their scale: million is not billion),
the dates (years, month names) and the negations (not, no, never, n't, without...) of the
citation and of the matched passage must be the same multiset; any difference rejects. An exact
or normalised substring match must not cut a number in two ("$4" is not in "$42 million").
"""

from __future__ import annotations

import re
from collections import Counter
from decimal import Decimal, InvalidOperation
from difflib import SequenceMatcher

#: how citation_found reports a quote that is close in wording but not in numbers, dates or negations
CHANGED = "altered (other numbers, dates or negations)"
_WS = re.compile(r"\s+")
_ELLIPSIS = re.compile(r"\s*(?:\.\.\.|…)\s*")
_QUOTES = "\"'`“”‘’«» "
# Curly and angled quotes, and the prime-like apostrophes, read as their plain forms.
_QUOTE_MAP = str.maketrans({"“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "‘": "'", "’": "'", "‚": "'",
                            "`": "'", "´": "'"})

# A number: digits with thousands separators and a decimal part, then an optional scale word or
# unit right after it ("42 million", "$3.1bn", "12%"). Scale words are matched by their stem so a
# misspelt "milion" still reads as million.
_NUMBER = re.compile(
    r"(?<![\d.,])(\d(?:[\d,]*\d)?(?:\.\d+)?)(?![\d])"
    r"(?:\s*(%|percent\b|per\s+cent\b|thousands?\b|k\b|mill?i?on?s?\b|mm\b|mn\b|mln\b|m\b|"
    r"bill?i?on?s?\b|bn\b|b\b|trill?i?on?s?\b|tn\b|t\b|basis\s+points?\b|bps\b))?",
    re.IGNORECASE)
_SCALES = (("%", "percent"), ("per", "percent"), ("thous", "thousand"), ("k", "thousand"),
           ("mi", "million"), ("mm", "million"), ("mn", "million"), ("ml", "million"), ("m", "million"),
           ("bi", "billion"), ("bn", "billion"), ("b", "billion"), ("tr", "trillion"), ("tn", "trillion"),
           ("t", "trillion"), ("bas", "bps"), ("bps", "bps"))
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
    """The multiset of what a fuzzy match must not change: numbers with their scale, month names
    and negation words."""
    s = s.translate(_QUOTE_MAP)
    out: Counter[str] = Counter()
    for m in _NUMBER.finditer(s):
        out[f"#{_number(m.group(1))}{_scale(m.group(2))}"] += 1
    for w in _WORD.findall(s.replace("n't", " n't")):
        w = w.casefold()
        if w in _NEGATIONS:
            out[f"!{w}"] += 1
        elif w in _MONTHS:
            out[f"@{_MONTHS[w]}"] += 1
    return out


def _number(digits: str) -> str:
    plain = digits.replace(",", "")
    try:
        value = Decimal(plain)
    except InvalidOperation:  # pragma: no cover - the pattern only admits digits, commas and one dot
        return plain
    return format(value.normalize(), "f") if value else "0"


def _scale(word: str | None) -> str:
    if not word:
        return ""
    w = _WS.sub("", word.casefold())
    for stem, name in _SCALES:
        if w.startswith(stem) and (len(stem) > 1 or w == stem):
            return " " + name
    return " " + w


def citation_found(citation: str, text: str, threshold: float = 0.8) -> tuple[bool, str]:
    """Is `citation` in `text`? Exact, then normalised (whitespace, case, quote marks), then fuzzy
    (difflib ratio of the best window >= threshold, with the same numbers, dates and negations).
    A quote elided with "..." must match part by part. Returns (found, how)."""
    cite = citation.strip().strip(_QUOTES).rstrip(".,;:").strip(_QUOTES)  # quotes end sentences early
    if not cite:
        return False, "empty"
    if _contains(text, cite):
        return True, "exact"
    norm_text = normalize(text)
    parts = [p for p in (normalize(x) for x in _ELLIPSIS.split(cite)) if p]
    if parts and all(_contains(norm_text, p) for p in parts):
        return True, "normalised"
    fuzzy = [_fuzzy_match(p, norm_text, threshold) for p in parts]
    if fuzzy and all(f is True for f in fuzzy):
        return True, "fuzzy"
    if fuzzy and all(f is not None for f in fuzzy):
        return False, CHANGED  # close wording, other numbers, dates or negations: a made-up quote
    return False, "not found"


def _contains(text: str, part: str) -> bool:
    """`part` occurs in `text` somewhere that does not cut a number in two."""
    i = text.find(part)
    if i < 0:
        return False
    spans = _number_spans(text)
    while i >= 0:
        if not (_cuts(spans, i) or _cuts(spans, i + len(part))):
            return True
        i = text.find(part, i + 1)
    return False


_DIGITS = re.compile(r"\d(?:[\d,.]*\d)?")


def _number_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _DIGITS.finditer(text)]


def _cuts(spans: list[tuple[int, int]], k: int) -> bool:
    """Does offset `k` fall strictly inside a number ("4|2", "1,|000", "3.|1")?"""
    return any(s < k < e for s, e in spans)


def _fuzzy_match(cite: str, text: str, threshold: float, max_anchors: int = 8) -> bool | None:
    """True: some window of `text` about as long as `cite` matches it with difflib ratio >= threshold
    and holds the same facts (see `facts`). False: windows match by ratio, but none with the same
    facts. None: no window matches. Windows are anchored at the longest blocks the two share (a few
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
            if facts(_aligned(text, lo, sm)) == want:
                return True
            close = True
    return False if close else None


def _aligned(text: str, lo: int, sm: SequenceMatcher) -> str:
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
    return text[start:end]


# --- numbered sentences: a citation as a pointer (issue 19) ---------------------------------------
# A worker sees its chunk with numbered sentences and cites by number; the framework copies the quote
# from the chunk, so the quote is exact by construction, costs a few output tokens and cannot be
# made up. A sentence ends at . ! ? followed by a space, or at a line break; short pieces (table
# cells, headings) are merged with the next until a segment is _MIN_SEGMENT characters long, so the
# numbering adds few prompt tokens.

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
    return {_number(m.group(1)) for m in _NUMBER.finditer(s.translate(_QUOTE_MAP))}


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
