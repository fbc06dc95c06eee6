"""Scorers: how an answer is checked against a gold answer. Each returns a `Score` in [0, 1].

    financebench  numeric-aware match (rules in `minions.numbers`), yes/no polarity, else
                  gold-token recall ≥ 0.8 for free-text golds (use `judge` for those in earnest).
                  Lenient by design: an answer listing several figures is credited if one matches.
    longhealth    option accuracy: the answer is mapped to a letter (or an option's text)
    qasper        the official QASPER answer-F1 (SQuAD normalisation, max over gold answers)
    contains      the normalised gold (any of a list) appears in the answer
    judge         an LLM judge (`JudgeScorer`), metered as role "judge", never mixed with the
                  protocol's own cost
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel, Field

from minions import errors
from minions.clients.base import Client, Message, Options, Usage
from minions.cost import PriceTable
from minions.numbers import extract, key_numbers, same_quantity
from minions.protocols.parsing import parse_reply


class Score(BaseModel):
    value: float
    method: str
    detail: str = ""
    usage: Usage | None = None          # judge only
    cost_usd: float | None = None       # judge only
    judge_model: str | None = None


class Scorer(Protocol):
    async def score(self, answer: str | None, gold: str | list[str], item: Any = None) -> Score: ...


def _golds(gold: str | Sequence[str]) -> list[str]:
    return [gold] if isinstance(gold, str) else list(gold)


# --- SQuAD / QASPER normalisation ----------------------------------------------------------------

_PUNCT = frozenset(string.punctuation)

def normalize_answer(s: str) -> str:
    """Lower case, drop punctuation and articles, collapse whitespace (the SQuAD v1.1 rule)."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def token_f1(prediction: str, ground_truth: str) -> float:
    """QASPER's token_f1_score: 0 when nothing overlaps (including both empty)."""
    pred, gold = normalize_answer(prediction).split(), normalize_answer(ground_truth).split()
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


class QasperF1:
    async def score(self, answer, gold, item=None) -> Score:
        refs = _golds(gold)
        best = max((token_f1(answer or "", g), g) for g in refs)
        return Score(value=best[0], method="f1", detail=f"best reference: {best[1][:80]!r}")


# --- FinanceBench ----------------------------------------------------------------------------------

_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def polarity(text: str, *, head_words: int | None = None) -> str | None:
    """'yes'/'no' if the text opens with one (golds) or says one first (answers)."""
    t = text.strip().lstrip("*#>\"' ").lower()
    if head_words is not None:
        first = re.match(r"(yes|no)\b", t)
        return first.group(1) if first else None
    m = _YES_NO.search(t)
    return m.group(1).lower() if m else None


class FinanceBenchMatch:
    """See the module docstring of `minions.numbers` for the numeric rule and tolerance."""

    def __init__(self, rel_tol: float = 0.01, text_recall: float = 0.8):
        self.rel_tol, self.text_recall = rel_tol, text_recall

    async def score(self, answer, gold, item=None) -> Score:
        results = [self.match(answer or "", g) for g in _golds(gold)]
        return max(results, key=lambda s: s.value)

    def match(self, answer: str, gold: str) -> Score:
        if not answer.strip():
            return Score(value=0.0, method="empty", detail="no answer")
        gold_pol = polarity(gold, head_words=1)
        if gold_pol is not None:
            said = polarity(answer)
            return Score(value=float(said == gold_pol), method="yes_no", detail=f"gold {gold_pol}, answer {said}")
        wanted = key_numbers(gold)
        if wanted:
            # A bare year in the answer ("in FY 2023") is context, not an amount, unless the gold is a year.
            found = [p for p in extract(answer) if not p.is_year or any(q.is_year for q in wanted)]
            missing = [q.raw for q in wanted if not any(same_quantity(p, q, self.rel_tol) for p in found)]
            return Score(value=float(not missing), method="numeric",
                         detail=f"missing {', '.join(missing)}" if missing else
                         f"matched {', '.join(q.raw for q in wanted)}")
        gold_tokens = normalize_answer(gold).split()
        have = Counter(normalize_answer(answer).split())
        hit = sum((Counter(gold_tokens) & have).values()) / max(1, len(gold_tokens))
        return Score(value=float(hit >= self.text_recall), method="text", detail=f"gold-token recall {hit:.2f}")


# --- LongHealth ----------------------------------------------------------------------------------

_LETTER_PATTERNS = [  # the letter itself is case-sensitive: "the answer is a ..." is not option A
    re.compile(r"(?i:(?:correct\s+)?(?:answer|option|choice)\s*(?:is|:)?\s*)\(?([A-E])(?![A-Za-z])"),
    re.compile(r"^\s*\(?([A-E])\s*[:.)]"),
    re.compile(r"^\s*([A-E])\s*$"),
]
_ARTICLE_A = re.compile(r"\s+[a-z]")


def option_letter(answer: str, options: dict[str, str]) -> str | None:
    """The option an answer picks: an explicit letter, else the one option whose text it contains
    (the longest when one option's text contains another's), else None."""
    for pat in _LETTER_PATTERNS:
        m = pat.search(answer)
        if m and m.group(1) in options and not (m.group(1) == "A" and _ARTICLE_A.match(answer, m.end())):
            return m.group(1)
    norm = normalize_answer(answer)
    hits = [(len(normalize_answer(t)), k) for k, t in options.items() if normalize_answer(t) and
            re.search(rf"\b{re.escape(normalize_answer(t))}\b", norm)]
    if hits:
        hits.sort(reverse=True)
        if len(hits) == 1 or hits[0][0] > hits[1][0]:
            return hits[0][1]
    return None


class OptionAccuracy:
    async def score(self, answer, gold, item=None) -> Score:
        meta = getattr(item, "metadata", None) or {}
        options: dict[str, str] = meta.get("options") or {}
        correct = meta.get("correct_letter") or next((k for k, v in options.items() if v in _golds(gold)), None)
        picked = option_letter(answer or "", options)
        return Score(value=float(picked is not None and picked == correct), method="option",
                     detail=f"picked {picked}, correct {correct}")


class Contains:
    async def score(self, answer, gold, item=None) -> Score:
        norm = f" {normalize_answer(answer or '')} "
        hit = next((g for g in _golds(gold) if f" {normalize_answer(g)} " in norm), None)
        return Score(value=float(hit is not None), method="contains", detail=f"found {hit!r}" if hit else "not found")


# --- LLM judge -----------------------------------------------------------------------------------

class Verdict(BaseModel):
    correct: bool = Field(description="true if the candidate answer states the reference answer's facts")
    reason: str = Field("", description="one short sentence")


JUDGE_PROMPT = """You grade answers to questions about documents.
Question: {question}
Reference answer: {gold}
Candidate answer: {answer}

The candidate is correct if it gives the same facts as the reference: numbers may be rounded (within 1-2%)
or written in other units ("$1,577 million" = "$1.577 billion"); yes/no questions need the same yes/no;
extra explanation is fine, contradicting the reference is not.
Reply with JSON: {{"correct": true or false, "reason": "one short sentence"}}"""


class JudgeScorer:
    """An LLM judge. Its usage and dollars come back in the Score (role "judge") so that a sweep
    reports them apart from what the protocol spent."""

    def __init__(self, client: Client, *, prices: PriceTable | None = None, max_tokens: int = 128):
        self.client, self.prices, self.max_tokens = client, prices or PriceTable.load(), max_tokens

    async def score(self, answer, gold, item=None) -> Score:
        if not (answer or "").strip():
            return Score(value=0.0, method="judge", detail="no answer", judge_model=self.client.price_key)
        question = getattr(item, "question", "") or "(not given)"
        prompt = JUDGE_PROMPT.format(question=question, gold=" | ".join(_golds(gold)), answer=answer)
        opts = Options(max_tokens=self.max_tokens, temperature=0.0, json_schema=Verdict.model_json_schema())
        completion = await self.client.complete([Message(role="user", content=prompt)], opts)
        cost = self.prices.cost(self.client.price_key, completion.usage)
        base: dict[str, Any] = {"usage": completion.usage, "cost_usd": cost, "judge_model": self.client.price_key}
        try:
            verdict = parse_reply(completion.text, Verdict)
        except errors.ModelOutputError as e:
            return Score(value=0.0, method="judge", detail=f"unparseable verdict: {e}", **base)
        return Score(value=float(verdict.correct), method="judge", detail=verdict.reason[:200], **base)


SCORERS = {"financebench": FinanceBenchMatch, "numeric": FinanceBenchMatch, "longhealth": OptionAccuracy,
           "option": OptionAccuracy, "qasper": QasperF1, "f1": QasperF1, "contains": Contains}


def get_scorer(name: str, *, judge: Client | None = None, prices: PriceTable | None = None) -> Scorer:
    if name == "judge":
        if judge is None:
            raise errors.ConfigError("The judge scorer needs a judge model: set [judge] model = \"openai/gpt-4o\" "
                                     "in the sweep config or pass --judge SPEC.")
        return JudgeScorer(judge, prices=prices)
    if name not in SCORERS:
        raise errors.ConfigError(f"Unknown scorer {name!r}; choose one of: {', '.join([*SCORERS, 'judge'])}")
    return SCORERS[name]()
