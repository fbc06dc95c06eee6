"""Numbers with units, pulled out of free text, and the rule for when two of them agree.

Extraction: "$1,577.00", "(370)" (negative), "-0.02", "1.9%", "2,018mn", "$1.6 billion", "12k".

Matching rule (`same_quantity`), in order:
1. Both percentages: compare the numbers.
2. A percentage and a plain number (no $, no scale word): the plain number may be a fraction
   ("0.654" ~ "65.4%") or the percentage without its sign ("65.4" ~ "65.4%").
3. Both carry a scale word (thousand/million/billion/k/mn/bn...): compare full values.
4. Either side is an amount ($ or a scale word): the other side's scale is unknown — FinanceBench
   golds such as "$1577.00" are in the unit the *question* named ("in USD millions") — so the
   unit-less side is taken at face value in any power-of-1000 scale: "$1577.00" matches
   "1,577 million", "$1.577 billion" and "$1,577,000,000"; "1,577 thousand" vs "1.577 million"
   (both scaled) compares full values.
5. Plain numbers: face values. A ratio "0.66" never matches "660".
Magnitudes are compared, not signs: "a decline of 1.7%" and "-1.7%" state the same figure, and
answers express sign in words as often as with a minus.
Tolerance: relative `rel_tol` (1% by default) or half a unit in the gold's last printed decimal,
whichever is larger ("-0.02" accepts "-0.018"; "1.9%" does not accept "2%").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCALES = {"thousand": 1e3, "thousands": 1e3, "k": 1e3, "million": 1e6, "millions": 1e6, "mn": 1e6, "mm": 1e6,
          "m": 1e6, "mio": 1e6, "billion": 1e9, "billions": 1e9, "bn": 1e9, "b": 1e9, "trillion": 1e12,
          "trillions": 1e12, "tn": 1e12}
_NUMBER = re.compile(
    r"(?<![A-Za-z0-9.,])(?P<open>\()?\s*(?P<sign>[-−–])?\s*(?P<cur>\$|US\$|USD\s?)?\s*(?P<sign2>[-−–])?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?![\d])"
    r"(?:\s*(?P<pct>%|percent\b|per\s?cent\b))?"
    r"(?:\s*(?P<scale>thousands?|millions?|billions?|trillions?|mn|mm|mio|bn|tn|k|m|b)(?![A-Za-z]))?"
    r"(?P<close>\))?", re.IGNORECASE)
YEAR = re.compile(r"^(19|20)\d\d$")


@dataclass(frozen=True)
class Quantity:
    value: float            # as written, without the scale ("2,018mn" -> 2018.0)
    scale: float | None     # 1e6 for "mn", None when no scale word
    percent: bool
    currency: bool
    decimals: int           # printed decimals, for the rounding tolerance
    negative: bool
    raw: str

    @property
    def full(self) -> float:
        return self.value * (self.scale or 1.0)

    @property
    def is_year(self) -> bool:
        return (self.scale is None and not self.percent and not self.currency and self.decimals == 0
                and bool(YEAR.match(self.raw.strip("() "))))


def extract(text: str) -> list[Quantity]:
    out = []
    for m in _NUMBER.finditer(text or ""):
        num = m.group("num")
        scale_word = (m.group("scale") or "").lower()
        out.append(Quantity(
            value=float(num.replace(",", "")), scale=SCALES.get(scale_word), percent=bool(m.group("pct")),
            currency=bool(m.group("cur")), decimals=len(num.split(".")[1]) if "." in num else 0,
            negative=bool(m.group("sign") or m.group("sign2") or (m.group("open") and m.group("close"))),
            raw=num))
    return out


def _close(a: float, b: float, tol: float) -> bool:
    return abs(abs(a) - abs(b)) <= tol


def same_quantity(pred: Quantity, gold: Quantity, rel_tol: float = 0.01) -> bool:
    def tol(g: float) -> float:
        return max(rel_tol * abs(g), 0.5 * 10 ** -gold.decimals * (abs(g) / abs(gold.value) if gold.value else 1))

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
    """The numbers an answer must state: all but bare years, unless years are all there is."""
    qs = extract(text)
    non_years = [q for q in qs if not q.is_year]
    return non_years or qs
