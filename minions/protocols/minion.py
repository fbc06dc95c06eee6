"""Minion (Narayan et al. 2025, arXiv 2502.15964, §Minion): a remote model chats with a local one.

The remote model (the supervisor) gets the task, never the documents. It asks the local model
(the worker), which has every document in its prompt, one focused question per round; the worker
answers; the remote then decides, in JSON validated by `RemoteDecision`, to give the final answer
or ask again. The last round's prompt forces a final answer.

Round r: local answers question r -> remote decides (round 1 starts with the remote's first
question). With `multi_turn`, the protocol instance keeps the last few task/answer pairs and shows
them to the remote, so follow-up questions ("and the year before?") work.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from minions import errors
from minions.clients.base import Client, Message, Options
from minions.protocols.base import Cancellable, ContextLike, Protocol, ProtocolConfig, RunContext
from minions.protocols.context import (
    DEFAULT_LOCAL_WINDOW,
    fit_context,
    format_documents,
    locate_citations,
    prompt_tokens,
)
from minions.protocols.events import EventHandler, MessageSent
from minions.protocols.grounding import settle
from minions.protocols.history import Turn, history_block
from minions.protocols.lenient import as_text
from minions.protocols.parsing import ask_json
from minions.protocols.result import RoundDecision, RoundRecord, RunResult
from minions.protocols.templates import render

FINAL, MORE = "provide_final_answer", "request_additional_info"
_PLACEHOLDER = re.compile(r"<[^<>]*>")
#: tokens each round's question and framing may add to the worker's chat (its answer is local_max_tokens)
_QUESTION_TOKENS = 256


class RemoteDecision(BaseModel):
    """The remote's reply each round. Tolerant: small or sloppy models get their meaning read."""

    decision: Literal["provide_final_answer", "request_additional_info"]
    message: str = ""
    answer: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _tolerate(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        d = dict(data)
        for key in ("message", "answer"):
            d[key] = _as_text(d.get(key))
        d["message"] = (d["message"] or "").strip()
        d["answer"] = (d["answer"] or "").strip() or None
        raw = str(d.get("decision") or "").strip().lower().replace("-", "_").replace(" ", "_")
        if raw in (FINAL, MORE):
            d["decision"] = raw
        elif "final" in raw or raw in ("answer", "provide_answer", "done", "complete"):
            d["decision"] = FINAL
        elif any(w in raw for w in ("request", "more", "additional", "question", "ask", "continue")):
            d["decision"] = MORE
        elif not raw:  # no decision: an answer means final, a message means another question
            d["decision"] = FINAL if d["answer"] else MORE if d["message"] else None
        return d

    @model_validator(mode="after")
    def _final_has_answer(self) -> RemoteDecision:
        if self.decision == FINAL and not (self.answer or "").strip() and not self.message.strip():
            raise ValueError("provide_final_answer needs a non-empty 'answer'")
        return self

    @property
    def final_text(self) -> str:
        return (self.answer or "").strip() or self.message.strip()


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        # Small models copy the prompt's "<your question ...>" placeholders verbatim: that is no text.
        return "" if _PLACEHOLDER.fullmatch(value.strip()) else value
    text: str | None = as_text(value, lists="json")
    return text


#: A worker reply goes to the remote cut to `reply_limit(local_max_tokens)` characters: a local
#: server gone wrong can return megabytes (it ignored max_tokens), which must not become a remote bill.
_CHARS_PER_REPLY_TOKEN, _MIN_REPLY_CHARS = 8, 4000
_SCRUB_MARGIN = 1000  # longer than any item the scrubber recognises


def reply_limit(local_max_tokens: int) -> int:
    """Most characters of one worker reply kept (for the remote and the worker's own chat)."""
    return max(_MIN_REPLY_CHARS, _CHARS_PER_REPLY_TOKEN * local_max_tokens)


async def bounded_reply(ctx: RunContext, reply: str, local_max_tokens: int) -> str:
    """`reply`, cut to `reply_limit` with a notice when longer. Under --privacy the text is scrubbed
    (with a margin past the cut) before it is cut, so the cut cannot split personal data out of
    the scrubber's sight; the worker then reads its own runaway reply scrubbed too."""
    limit = reply_limit(local_max_tokens)
    if len(reply) <= limit:
        return reply
    await ctx.notice(f"minion: the local model replied with {len(reply):,} characters; kept the first {limit:,} "
                     f"(the bound is {_CHARS_PER_REPLY_TOKEN} characters per token of local_max_tokens, at least "
                     f"{_MIN_REPLY_CHARS:,}).")
    return ctx.redact(reply[: limit + _SCRUB_MARGIN])[:limit] + " [... cut]"


class MinionConfig(ProtocolConfig):
    max_rounds: int = Field(3, ge=1, le=50, description="most remote/local exchanges")
    #: keep a short history of earlier task/answer pairs on this protocol instance for follow-ups
    multi_turn: bool = Field(False, description="follow-ups continue the conversation (earlier questions and answers)")
    history_turns: int = Field(3, ge=1, description="earlier turns kept for follow-ups (multi_turn)")
    #: cap on the worker's prompt tokens; the local model's own context window applies as well
    max_context_tokens: int | None = Field(None, ge=1, description="cap on the worker's prompt tokens")
    #: how many times the remote may be asked for valid JSON per decision
    json_attempts: int = Field(2, ge=1, le=5, description="times the remote is asked for valid JSON per decision")
    #: when the remote's answer is not backed by the worker's replies: "flag" keeps it with
    #: grounded=false; "fallback" returns the worker's last reply instead (degraded)
    ungrounded_answer: Literal["flag", "fallback"] = Field(
        "flag", description="when the answer's own figures are not backed by what the local model found: 'flag' it "
        "(grounded=false) or 'fallback' to the best verified local answer")
    #: the worker's first question: the remote's ("remote"), or the user's task itself ("task"), so a
    #: remote whose first question drifts cannot keep the worker from answering what was asked (the
    #: remote's own questions follow in later rounds)
    first_question: Literal["remote", "task"] = Field(
        "remote", description="the worker's first question: the remote's, or the user's task itself")


class Minion(Protocol[MinionConfig]):
    name = "minion"
    Config = MinionConfig

    def __init__(self, local: Client | None = None, remote: Client | None = None, **kw: Any):
        super().__init__(local, remote, **kw)
        # State of this instance, the conversation its user is having; never shared between instances.
        self._history: deque[Turn] = deque(maxlen=self.config.history_turns)

    @property
    def history(self) -> list[Turn]:
        """Earlier turns (task and answer) this instance remembers (multi_turn only), oldest first."""
        return list(self._history)

    def clear_history(self) -> None:
        self._history.clear()

    async def arun(self, task: str, context: ContextLike = (), *, on_event: EventHandler | None = None,
                   cancel: Cancellable | None = None) -> RunResult:
        result = await super().arun(task, context, on_event=on_event, cancel=cancel)
        if self.config.multi_turn and result.answer and result.error is None:
            self._history.append(Turn(question=task, answer=result.answer))
        return result

    # -- the protocol -----------------------------------------------------------------------------

    async def _run(self, ctx: RunContext) -> str | None:
        cfg = self.config
        local_opts = Options(max_tokens=cfg.local_max_tokens, temperature=cfg.temperature)
        remote_opts = Options(max_tokens=cfg.remote_max_tokens, temperature=cfg.temperature)
        rec = ctx.new_round()
        try:
            # cache=True: the opening message is the stable prefix of every later remote call
            # (Anthropic prompt caching; other providers cache prefixes on their own).
            remote_msgs = [Message(role="user", cache=True, content=render(
                "minion_supervisor_start", task=ctx.task, history=self._history_block(),
                max_rounds=cfg.max_rounds))]
            decision = await self._decide(ctx, remote_msgs, remote_opts, step="ask")
            drafted = bool(decision.answer)
            replies: list[str] = []  # the worker's replies: the evidence the answer is checked against
            if decision.decision == FINAL:  # answerable without the documents (or a follow-up)
                return await self._finish(ctx, rec, decision.final_text, RoundDecision.FINAL_ANSWER, replies)
            local_msgs = await self._worker_opening(ctx)
            for r in range(1, cfg.max_rounds + 1):
                if r > 1:
                    rec = ctx.new_round()
                if r > 1 or cfg.first_question != "task":  # "task": the opening already asks it
                    local_msgs.append(Message(role="user", content=decision.message.strip() or ctx.task))
                reply = (await ctx.call("local", local_msgs, local_opts, step="answer", announce=True)).text.strip()
                reply = await bounded_reply(ctx, reply, cfg.local_max_tokens)
                local_msgs.append(Message(role="assistant", content=reply))
                if reply:
                    replies.append(reply)
                    # Local work is never lost: if a remote step fails for good from here on, the
                    # worker's latest reply is returned, marked degraded.
                    ctx.state.set_fallback(reply, locate_citations(reply, ctx.documents), "the local model's last reply")
                if not drafted and reply:
                    # No answer from the remote yet: if the budget stops the run, the worker's latest
                    # answer is the best we have.
                    ctx.state.propose(reply)
                last = r == cfg.max_rounds
                remote_msgs.append(Message(role="user", content=render(
                    "minion_supervisor_final" if last else "minion_supervisor_decide",
                    # --quotes off / --max-verbatim: the worker's quotes past the budget are withheld
                    reply=ctx.unquoted(await ctx.shielded(reply)) or "(no reply)", round=r,
                    max_rounds=cfg.max_rounds)))
                decision = await self._decide(ctx, remote_msgs, remote_opts, step="decide")
                drafted = drafted or bool(decision.answer)
                if last:
                    if decision.decision != FINAL:
                        await ctx.notice("minion: the remote asked for more on the last round; returning its "
                                         "best answer so far.")
                    answer = decision.final_text if decision.decision == FINAL else ctx.state.best_answer
                    if not answer:
                        raise errors.ModelOutputError("minion: no answer by the last round (the remote kept "
                                                      "asking and the local model said nothing); raise max_rounds "
                                                      "or try a stronger local model.")
                    return await self._finish(ctx, rec, answer, RoundDecision.FORCED_ANSWER, replies)
                if decision.decision == FINAL:
                    return await self._finish(ctx, rec, decision.final_text, RoundDecision.FINAL_ANSWER, replies)
                await ctx.round_done(rec, RoundDecision.ANOTHER_ROUND)
            raise AssertionError("unreachable: the last round always finishes")  # pragma: no cover
        except errors.MinionsError as e:
            ctx.end_round(rec, RoundDecision.BUDGET_EXHAUSTED if isinstance(e, errors.BudgetExceededError)
                          else RoundDecision.FAILED)
            raise

    async def _decide(self, ctx: RunContext, remote_msgs: list[Message], opts: Options, *, step: str
                      ) -> RemoteDecision:
        decision, _ = await ask_json(ctx, "remote", remote_msgs, RemoteDecision, opts, step=step,
                                     attempts=self.config.json_attempts)
        # The normalised reply, not the raw one: what the remote said, minus any repaired damage.
        remote_msgs.append(Message(role="assistant", content=decision.model_dump_json()))
        if decision.answer:
            ctx.state.propose(decision.answer)  # a draft while asking for more, or the final
        said = decision.final_text if decision.decision == FINAL else decision.message
        await ctx.emit(MessageSent(round=ctx.round, sender="remote", step=step, content=said))
        return decision

    async def _finish(self, ctx: RunContext, rec: RoundRecord, answer: str | None, decision: RoundDecision,
                      replies: list[str]) -> str | None:
        answer = await settle(ctx, answer, replies, mode=self.config.ungrounded_answer,
                              evidence_name="the worker's replies")
        ctx.state.conclude(answer, locate_citations(answer, ctx.documents))
        await ctx.round_done(rec, decision)
        return answer

    async def _worker_opening(self, ctx: RunContext) -> list[Message]:
        """The worker's chat before the first question. With first_question="task" it opens exactly as
        the local-only baseline asks its model (same prompts, same context), so the worker's first reply
        is what the local model alone would answer — Minion starts from its own worker's best, and its
        fallback can never be worse than that. Otherwise the worker learns it serves a supervisor."""
        cfg = self.config
        client = ctx.client("local")
        if cfg.first_question == "task":
            system = render("baseline_system")
            head = [system, render("baseline_user", context="", task=ctx.task)]
        else:
            head = [render("minion_worker", context="", task=ctx.task)]
        context = await fit_context(
            ctx, "local", format_documents(ctx.documents), overhead=prompt_tokens(client, *head),
            # every round adds a question and an answer to the worker's chat
            reserve=cfg.max_rounds * (cfg.local_max_tokens + _QUESTION_TOKENS),
            limit=cfg.max_context_tokens, default_window=DEFAULT_LOCAL_WINDOW)
        ctx.show(context)
        if cfg.first_question == "task":
            return [Message(role="system", content=system),
                    Message(role="user", content=render("baseline_user", context=context, task=ctx.task))]
        return [Message(role="system", content=render("minion_worker", context=context, task=ctx.task))]

    def _history_block(self) -> str:
        if not (self.config.multi_turn and self._history):
            return ""
        return "\n" + history_block(self._history) + "\n"
