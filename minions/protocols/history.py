"""Follow-up history: the one way a conversation's earlier turns are shown to a model.

Three doors feed earlier turns into a new question: Minion with `multi_turn` (its supervisor's opening
prompt), the app (for protocols that do not remember turns) and serve (an OpenAI `messages` list). They
all render the same `Turn`s with `history_block`, so the same conversation reads the same to the model
whichever door it came through.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict

from minions.protocols.clip import clip
from minions.protocols.templates import render

#: an earlier answer longer than this is clipped: it is context for a follow-up, not evidence
MAX_ANSWER_CHARS = 600


class Turn(BaseModel):
    """One earlier exchange: what the user said and, when there was one, the answer."""

    model_config = ConfigDict(frozen=True)

    question: str
    answer: str | None = None


def _line(i: int, turn: Turn) -> str:
    line = f"{i}. Question: {turn.question}"
    return line if turn.answer is None else f"{line}\n   Answer: {clip(turn.answer, MAX_ANSWER_CHARS)}"


def history_block(turns: Iterable[Turn], keep: int | None = None) -> str:
    """The earlier turns (the last `keep`, when given) as a prompt section; "" when there are none."""
    kept = list(turns)
    if keep is not None:
        kept = kept[-keep:] if keep > 0 else []
    if not kept:
        return ""
    return render("history", turns="\n".join(_line(i, t) for i, t in enumerate(kept, 1)))


def with_history(question: str, turns: Sequence[Turn], keep: int | None = None) -> str:
    """A follow-up for a protocol that does not remember turns: the earlier turns, then the question."""
    block = history_block(turns, keep)
    return render("follow_up", history=block, question=question) if block else question
