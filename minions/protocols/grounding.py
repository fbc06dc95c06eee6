"""Is an answer grounded in what the local model found? And the best answer local work supports.

Grounding is defined on the answer's *claims*, minus whatever the question itself already contains
(repeating "fiscal 2024" or "revenue" from the question is not evidence). When the answer states
figures, its claims are its figures, read by `minions.numbers` ("$1.6 billion" is "$1,600 million";
a bare year or a label such as "FY2023" is context, not a figure, unless years are all the answer
states), and *every* one of them must be backed by a figure in the evidence: "$5 million in 2023"
is not grounded by "$42 million in fiscal 2023", nor "$99 million, versus $42 million budgeted" by
the 42 alone. An answer without figures is grounded when one of its content words (lower-cased,
without stop words, a trailing plural "s" removed) is in the evidence; an answer with no claim of
its own is not. An answer's figure may round the evidence's ("$1.6 billion" for "$1,577 million":
its own printed precision); unit words like "million" never count as content. No model and no
tuning to any wording. A figure the remote computed (a ratio of two found figures) is flagged
ungrounded: the flag asks for a check, it does not remove the answer.

Used by MinionS (evidence: kept job answers and citations) and Minion (the worker's replies).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from minions.numbers import Quantity, extract, key_numbers, same_quantity
from minions.protocols.lenient import same_text
from minions.protocols.result import JobRecord, JobStatus

if TYPE_CHECKING:
    from minions.protocols.base import RunContext

_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)
# Function words and hedges that carry no claim. Short on purpose: content words stay content.
STOP_WORDS = frozenset("""
the and for are was were has have had not but with from this that these those than then there their they
them its into onto over under about above below after before what which who whom whose when where why how
all any each both few more most other some such only own same very can will just should would could may
might must shall does did doing done been being also per via out off our ours your yours his her hers him
she itself themselves answer answers question questions document documents excerpt excerpts chunk chunks
based according given stated states state says said reported report reports shows shown show total value
amount figure figures approximately about around roughly nearly null none unknown found information
""".split())


def figures(text: str, question: str = "") -> list[Quantity]:
    """The figures `text` states (`key_numbers`: amounts, not bare years or labels), minus those
    the question already states."""
    asked = extract(question)
    return [q for q in key_numbers(text or "") if not any(q.key == a.key for a in asked)]


def backed(figure: Quantity, evidence: Sequence[Quantity]) -> bool:
    """Is `figure` stated by one of the evidence's numbers (up to `figure`'s own rounding)?"""
    return any(same_quantity(e, figure, rel_tol=0.0) for e in evidence)


def words(text: str) -> set[str]:
    """Content words of `text`: lower-cased, stop words out, a trailing plural "s" removed."""
    out = set()
    for w in _WORD.findall((text or "").casefold()):
        if w in STOP_WORDS:
            continue
        out.add(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return out


def claims(answer: str, question: str = "") -> tuple[list[Quantity], set[str]]:
    """(figures, content words) of `answer` that the question does not already contain."""
    return figures(answer, question), words(answer) - words(question)


def shares(answer: str | None, evidence: Iterable[str | None], question: str = "") -> bool:
    """True when the answer has claims beyond the question's and they are backed by the evidence:
    every figure it states, or, without figures, one of its content words."""
    if not answer or not answer.strip():
        return False
    figs, ws = claims(answer, question)
    if not figs and not ws:
        return False
    texts = [t for t in evidence if t]
    if figs:
        found = [q for t in texts for q in extract(t)]
        return all(backed(f, found) for f in figs)
    return any(ws & words(t) for t in texts)


def answer_key(answer: str) -> str:
    """Answers that state the same numbers are one answer ("$42 million", "42 million."); without
    numbers, the same content words in any order."""
    figs = figures(answer)
    if figs:
        return "#" + " ".join(sorted({q.key for q in figs}))
    return " ".join(sorted(words(answer))) or " ".join(answer.casefold().split())


_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
POLARITY = frozenset({"yes", "no"})


def support(record: JobRecord, chunk_text: str | None, question: str = "") -> str | None:
    """The quote from the document that backs a job's answer, or None. Either its citation — found
    in its chunk (status kept) and sharing a claim with the answer, or any verified quote for a bare
    yes/no — or, when the quote was not found, the chunk's sentence holding the answer's figures,
    if every figure the answer states (beyond the question's) is in its chunk: a number read off
    the page is checkable even when the worker copied the wrong sentence."""
    answer = (record.answer or "").strip()
    if not answer or record.status not in (JobStatus.KEPT, JobStatus.FLAGGED, JobStatus.DROPPED):
        return None
    figs, ws = claims(answer, question)
    if record.status is JobStatus.KEPT and record.citation:
        if not figs and ws and ws <= POLARITY or shares(answer, [record.citation], question):
            return record.citation
    amounts = [q for q in figs if not q.is_year]  # a bare year is context, not a figure read off the page
    if amounts and chunk_text and all(backed(f, extract(chunk_text)) for f in figs):
        sentences = [x.strip() for x in _SENTENCE.split(chunk_text) if x.strip()]
        return max(sentences, key=lambda x: sum(backed(f, extract(x)) for f in figs))[:300]
    return None


@dataclass
class Candidate:
    """The answer most jobs backed with a quote from the document, with those jobs and quotes."""

    answer: str
    support: int
    records: list[JobRecord] = field(default_factory=list)
    quotes: list[str] = field(default_factory=list)


def best_supported(records: Sequence[JobRecord], chunk_texts: dict[str, str] | None = None,
                   question: str = "") -> Candidate | None:
    """The answer given by the most jobs with `support` (keyed by `answer_key`), preferring answers
    to the question itself (a job whose task is the question) over answers to the plan's sub-tasks,
    which need not answer what was asked; ties go to the answer found first. `chunk_texts` maps job
    ids to their chunk's text. None when no job's answer is backed."""
    groups: dict[str, list[tuple[JobRecord, str]]] = {}
    for r in records:
        quote = support(r, (chunk_texts or {}).get(r.job_id), question)
        if quote is not None:
            groups.setdefault(answer_key(r.answer or ""), []).append((r, quote))
    if not groups:
        return None
    def rank(group: list[tuple[JobRecord, str]]) -> tuple[bool, int]:
        return any(same_text(r.instruction, question) for r, _ in group), len(group)
    best = max(groups.values(), key=rank)  # max keeps the first of equals: dicts keep insertion order
    return Candidate(answer=(best[0][0].answer or "").strip(), support=len(best),
                     records=[r for r, _ in best], quotes=[q for _, q in best])


def answer_to_question(records: Sequence[JobRecord], question: str) -> Candidate | None:
    """The workers' most frequent answer to the question itself (jobs whose task is the question),
    checked or not: what the readers of the document said when nothing they said can be checked."""
    groups: dict[str, list[JobRecord]] = {}
    for r in records:
        if r.answer and r.answer.strip() and r.status in (JobStatus.KEPT, JobStatus.FLAGGED, JobStatus.DROPPED) \
                and same_text(r.instruction, question):
            groups.setdefault(answer_key(r.answer), []).append(r)
    if not groups:
        return None
    best = max(groups.values(), key=len)
    return Candidate(answer=(best[0].answer or "").strip(), support=len(best), records=best)


async def settle(ctx: RunContext, answer: str | None, evidence: Iterable[str | None], *,
                 mode: Literal["flag", "fallback"], evidence_name: str) -> str | None:
    """The final answer, checked against the local evidence: sets ctx.state.grounded. An ungrounded answer is
    kept and flagged ("flag"), or replaced by the run's fallback, marked degraded ("fallback", when
    the run has one). Returns the answer to give."""
    state = ctx.state
    state.check_grounded(shares(answer, evidence, ctx.task))
    if state.grounded:
        return answer
    fallback = state.fallback
    if mode == "fallback" and fallback is not None:
        given = state.fall_back(f"the remote's answer is not backed by {evidence_name}; returned {fallback.what}")
        await ctx.notice(f"degraded answer: {state.degraded_reason} (the remote said: {(answer or '')[:200]!r})")
        return given
    await ctx.notice(f"the answer's figures or content words are not in {evidence_name} (grounded: false): "
                     "check it against the document.")
    return answer
