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
from difflib import SequenceMatcher

from minions.numbers import extract

#: how citation_found reports a quote that is close in wording but not in numbers, dates or negations
CHANGED = "altered (other numbers, dates or negations)"
_WS = re.compile(r"\s+")
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
    for q in extract(s, glued=True):  # "FY2023" is a date here: a quote must keep it
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
