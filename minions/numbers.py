"""Numbers with units in free text: one model for the eval scorer, citation checks and grounding.

An amount is read with its currency, scale word, percent (or basis points) and sign:
"$1,577.00", "(370)" (negative), "-0.02", "1.9%", "50 bps", "2,018mn", "$1.6 billion", "12k",
"1,600,000 thousand". Scale words may be misspelt ("millon" is still million): a small model writes
them, and reading "$42 millon" as $42 would turn a typo into another figure. So "$1.6 billion",
"$1,600 million" and "1,600,000 thousand" are one amount everywhere: the scorer, the citation
check and grounding all read numbers here, and they cannot disagree about what a figure is.
A number that names something — "FY2023", "Q4", "nw#1", "page 12", "Note 7" — is a label, not an
amount: the scorer and grounding skip labels, the citation check keeps them (a quote must not
turn "FY2023" into "FY2024").

Matching rule (`same_quantity`), in order:
1. Basis points match basis points only; both percentages: compare the numbers.
2. A percentage and a plain number (no $, no scale word): the plain number may be a fraction
   ("0.654" ~ "65.4%") or the percentage without its sign ("65.4" ~ "65.4%").
3. Both carry a scale word (thousand/million/billion/k/mn/bn...): compare full values.
4. Either side is an amount ($ or a scale word): the other side's scale is unknown — FinanceBench
   golds such as "$1577.00" are in the unit the *question* named ("in USD millions"), a 10-K table
   prints "1,577" under "(in millions)" — so the unit-less side is taken at face value in any
   power-of-1000 scale: "$1577.00" matches "1,577 million", "$1.577 billion" and "$1,577,000,000".
5. Plain numbers: face values. A ratio "0.66" never matches "660".
Magnitudes are compared, not signs: "a decline of 1.7%" and "-1.7%" state the same figure, and
text expresses sign in words as often as with a minus or parentheses.
Tolerance: relative `rel_tol` (1% by default) or half a unit in the reference's last printed
decimal, whichever is larger ("-0.02" accepts "-0.018"; "1.9%" does not accept "2%").

`key` is the exact identity the citation check needs (full value and unit, no tolerance): a
quote may not change a figure at all, while an answer may round one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

# Longest alternatives first; misspellings by stem ("milion", "millon", "bilion").
_SCALE = (r"thousands?|mill?i?on?s?|bill?i?on?s?|trill?i?on?s?|mln|mn|mm|mio|bn|tn|k|m|b")
_NUMBER = re.compile(
    r"(?<![\d.,])(?P<open>\()?\s*(?P<sign>[-−–])?\s*(?P<cur>\$|US\$|USD\s?)?\s*(?P<sign2>[-−–])?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?![\d])"
    r"(?:\s*(?P<pct>%|percent\b|per\s?cent\b)|\s*(?P<bps>basis\s+points?\b|bps\b))?"
    rf"(?:\s*(?P<scale>{_SCALE})(?![A-Za-z]))?"
    r"(?P<close>\))?", re.IGNORECASE)
YEAR = re.compile(r"^(19|20)\d\d$")
# A number right after a letter, "#" or a reference word names something; it states no amount.
_LABEL_BEFORE = re.compile(r"(?:[^\W\d_]|#|\b(?:pages?|pp?\.|notes?|items?|sections?|parts?|chapters?|exhibits?|"
                           r"tables?|figs?\.|figures?|footnotes?|rounds?|steps?)\s*)$", re.IGNORECASE)


def scale_of(word: str | None) -> float | None:
    """1e6 for "million", "millon", "mn", "m"...; None for no scale word."""
    w = (word or "").casefold()
    if not w:
        return None
    if w.startswith(("th", "k")):
        return 1e3
    if w.startswith("m"):
        return 1e6
    if w.startswith("b"):
        return 1e9
    return 1e12 if w.startswith("t") else None


@dataclass(frozen=True)
class Quantity:
    value: float            # as written, without the scale ("2,018mn" -> 2018.0)
    scale: float | None     # 1e6 for "mn", None when no scale word
    percent: bool
    currency: bool
    decimals: int           # printed decimals, for the rounding tolerance
    negative: bool
    raw: str                # the digits as printed ("2,018")
    bps: bool = False       # basis points
    label: bool = False     # a label, not an amount: "FY2023", "Q4", "COVID-19", "nw#1", "page 12", "Note 7"

    @property
    def full(self) -> float:
        return self.value * (self.scale or 1.0)

    @property
    def is_year(self) -> bool:
        return (self.scale is None and not self.percent and not self.bps and not self.currency
                and self.decimals == 0 and bool(YEAR.match(self.raw)))

    @property
    def key(self) -> str:
        """Exact identity: the full value (no tolerance, no sign, no currency) and its unit.
        "$1.6 billion", "1,600 million" and "1,600,000 thousand" have one key."""
        full = Decimal(self.raw.replace(",", "")) * Decimal(int(self.scale or 1))
        digits = format(full.normalize(), "f") if full else "0"
        return digits + ("%" if self.percent else " bps" if self.bps else "")


def extract(text: str, *, labels: bool = False) -> list[Quantity]:
    """The numbers in `text`, in order. Labels — numbers right after a letter or "#" ("FY2023",
    "Q4", "nw#1") or a reference word ("page 12", "Note 7", "Item 1A") — are left out unless
    `labels` (a citation check must see that "FY2024" is not "FY2023")."""
    out = []
    text = text or ""
    for m in _NUMBER.finditer(text):
        start = m.start() + len(m.group()) - len(m.group().lstrip())
        is_label = bool(_LABEL_BEFORE.search(text[max(0, start - 12):start]))
        if is_label and not labels:
            continue
        num = m.group("num")
        out.append(Quantity(
            value=float(num.replace(",", "")), scale=scale_of(m.group("scale")), percent=bool(m.group("pct")),
            currency=bool(m.group("cur")), decimals=len(num.split(".")[1]) if "." in num else 0,
            negative=bool(m.group("sign") or m.group("sign2") or (m.group("open") and m.group("close"))),
            raw=num, bps=bool(m.group("bps")), label=is_label))
    return out


def _close(a: float, b: float, tol: float) -> bool:
    return abs(abs(a) - abs(b)) <= tol


def same_quantity(pred: Quantity, gold: Quantity, rel_tol: float = 0.01) -> bool:
    """Does `pred` state the figure `gold` states? `gold` sets the rounding tolerance (its printed
    decimals). See the module docstring for the rules."""
    def tol(g: float) -> float:
        return max(rel_tol * abs(g), 0.5 * 10 ** -gold.decimals * (abs(g) / abs(gold.value) if gold.value else 1))

    if pred.bps or gold.bps:
        return pred.bps == gold.bps and _close(pred.value, gold.value, tol(gold.value))
    if pred.percent and gold.percent:
        return _close(pred.value, gold.value, tol(gold.value))
    if pred.percent != gold.percent:
        pct, plain = (pred, gold) if pred.percent else (gold, pred)
        if plain.scale is not None or plain.currency:
            return False
        target = gold.value if gold is pct else gold.value * 100  # compare in percent units
        candidates = (plain.value * 100, plain.value) if plain is pred else (pct.value,)
        return any(_close(c, target, tol(target)) for c in candidates)
    if pred.scale is not None and gold.scale is not None:
        return _close(pred.full, gold.full, tol(gold.full))
    if pred.scale is not None or gold.scale is not None or pred.currency or gold.currency:
        return any(_close(pred.full, gold.full * 1000.0 ** k, tol(gold.full * 1000.0 ** k)) for k in range(-4, 5))
    return _close(pred.value, gold.value, tol(gold.value))


def key_numbers(text: str) -> list[Quantity]:
    """The figures a text states: its numbers but bare years (context, not amounts), unless years
    are all there is ("Which year...?" is answered by a year)."""
    qs = extract(text)
    non_years = [q for q in qs if not q.is_year]
    return non_years or qs
