"""The one protocol interface, and the run context every protocol makes its model calls through.

`RunContext.call` is the single door to the models: it scrubs what goes to the remote (privacy),
checks the remote budget against the worst case before every remote call, meters usage and
dollars per role/step/round, keeps the transcript and times each step. Protocols only decide
*what* to ask.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import BaseModel

from minions import errors
from minions._sync import run_sync
from minions.clients.base import Client, Completion, Message, Options, Usage
from minions.cost import CostMeter, PriceTable
from minions.documents import Document
from minions.protocols.coverage import ReadLog
from minions.protocols.events import EventHandler, FinalAnswer, MessageSent, Notice, emit
from minions.protocols.result import Citation, RoundRecord, RunResult, TranscriptMessage
from minions.tokens import count_messages

ContextLike = str | Document | Sequence[str | Document]


def to_documents(context: ContextLike) -> list[Document]:
    items = [context] if isinstance(context, str | Document) else list(context)
    docs = []
    for i, item in enumerate(items):
        docs.append(item if isinstance(item, Document)
                    else Document.from_text(item, id=f"doc{i + 1}", title=f"Document {i + 1}"))
    return docs


class RunContext:
    """State of one run. Created by `Protocol.arun`; never shared between runs."""

    def __init__(self, protocol: Protocol, task: str, documents: list[Document],
                 on_event: EventHandler | None):
        self.protocol, self.task, self.documents = protocol, task, documents
        self.on_event = on_event
        self.meter = CostMeter(protocol.prices)
        self.rounds: list[RoundRecord] = []
        self.timings: dict[str, float] = defaultdict(float)
        self.warnings: list[str] = []
        self.shown_texts: list[str] = []   # document text put into prompts (redacted from logs on request)
        self.best_answer: str | None = None  # what to return if the budget or rounds run out
        self.citations: list[Citation] = []
        self.read = ReadLog(documents)      # what the models were shown of the documents: RunResult.coverage
        self._last_prompt: dict[str, list[Message]] = {}

    # -- rounds and events ----------------------------------------------------------------------

    @property
    def round(self) -> int:
        return self.rounds[-1].round if self.rounds else 0

    def new_round(self) -> RoundRecord:
        rec = RoundRecord(round=len(self.rounds) + 1)
        self.rounds.append(rec)
        return rec

    async def emit(self, event: Any) -> None:
        await emit(self.on_event, event)

    async def notice(self, message: str, level: str = "warning") -> None:
        self.warnings.append(message)
        await self.emit(Notice(round=self.round or None, level=level, message=message))

    # -- model calls ----------------------------------------------------------------------------

    def client(self, role: str) -> Client:
        c = self.protocol.local if role == "local" else self.protocol.remote
        if c is None:
            raise errors.ConfigError(f"The {self.protocol.name} protocol needs a {role} model.")
        return c

    async def call(self, role: str, messages: list[Message], options: Options, *, step: str,
                   announce: bool = False) -> Completion:
        """One model call on behalf of the protocol. `announce` emits the reply as a MessageSent."""
        client = self.client(role)
        if role == "remote":
            messages = [await self._protect(m) for m in messages]
            self._check_budget(client, messages, options)
        rec = self.rounds[-1] if self.rounds else self.new_round()
        rec.messages.extend(TranscriptMessage(round=rec.round, step=step, to=role, role=m.role, content=m.content)
                            for m in self._new_messages(role, messages))
        started = time.perf_counter()
        try:
            completion = await client.complete(messages, options)
        finally:
            self.timings[step] += time.perf_counter() - started
        self.meter.record(role, client.price_key, completion.usage, step=step, round=rec.round)
        for w in completion.warnings:
            await self.notice(f"{client.spec}: {w}")
        rec.messages.append(TranscriptMessage(round=rec.round, step=step, to="remote" if role == "local" else "local",
                                              role="assistant", content=completion.text))
        if announce:
            await self.emit(MessageSent(round=rec.round, sender=role, step=step, content=completion.text))
        return completion

    def _new_messages(self, role: str, messages: list[Message]) -> list[Message]:
        """Messages identical to the start of the previous call to the same side were logged then;
        log the rest. So a document held in the first message (Minion) or a chunk shared by several
        jobs (MinionS) is logged once, not once per round or job."""
        prev = self._last_prompt.get(role, [])
        self._last_prompt[role] = messages
        same = 0
        while same < min(len(prev), len(messages) - 1) and prev[same] == messages[same]:
            same += 1
        return messages[same:]

    async def _protect(self, m: Message) -> Message:
        scrubber = self.protocol.privacy
        if scrubber is None:
            return m
        return m.model_copy(update={"content": scrubber.scrub(m.content)})

    def _check_budget(self, client: Client, messages: list[Message], options: Options) -> None:
        cap = self.protocol.max_remote_usd
        if cap is None:
            return
        worst = self.meter.prices.cost(client.price_key, Usage(
            prompt_tokens=count_messages(messages, client.price_key),
            completion_tokens=options.max_tokens * options.n, requests=1))
        spent = self.meter.totals("remote").cost_usd
        if worst is None or spent is None:
            return  # unpriced model: a dollar cap cannot apply (noted at run start)
        if spent + worst > cap:
            raise errors.BudgetExceededError(
                f"Remote budget ${cap:.4f} reached: ${spent:.4f} spent, next call could cost up to "
                f"${worst:.4f}. Raise --max-remote-usd to continue.")


class ProtocolConfig(BaseModel):
    """Knobs every protocol has. Protocols subclass this with their own."""

    remote_max_tokens: int = 1024
    local_max_tokens: int = 512
    temperature: float = 0.0


class Protocol(ABC):
    """`run(task, context)` / `arun(...)` → `RunResult`. Failures come back typed in the result."""

    name: ClassVar[str]
    Config: ClassVar[type[ProtocolConfig]] = ProtocolConfig
    needs: ClassVar[tuple[str, ...]] = ("local", "remote")

    def __init__(self, local: Client | None = None, remote: Client | None = None, *,
                 max_remote_usd: float | None = None, privacy: Any = None,
                 prices: PriceTable | None = None, store_text: bool = True, **config: Any):
        self.local, self.remote = local, remote
        self.max_remote_usd = max_remote_usd
        self.privacy = privacy          # anything with .scrub(str) -> str, e.g. privacy.Scrubber
        self.prices = prices or PriceTable.load()
        self.store_text = store_text    # False: document text is omitted from results and logs
        self.config = self.Config(**config)
        for role in self.needs:
            if getattr(self, role) is None:
                raise errors.ConfigError(f"The {self.name} protocol needs a {role} model (--{role} SPEC).")

    @abstractmethod
    async def _run(self, ctx: RunContext) -> str | None:
        """Do the work; return the final answer. Set ctx.best_answer as better answers appear."""

    async def arun(self, task: str, context: ContextLike = (), *, on_event: EventHandler | None = None
                   ) -> RunResult:
        started = time.perf_counter()
        ctx = RunContext(self, task, to_documents(context), on_event)
        self._estimate_remote_only(ctx)
        answer, error = None, None
        budget_hit = False
        try:
            answer = await self._run(ctx)
        except errors.BudgetExceededError as e:
            budget_hit, error = True, e
            answer = ctx.best_answer
            await ctx.notice(str(e))
        except (errors.ClientError, errors.ModelOutputError, errors.DocumentError) as e:
            error, answer = e, ctx.best_answer
        await ctx.emit(FinalAnswer(round=ctx.round or None, answer=answer,
                                   citations=[c.model_dump() for c in ctx.citations]))
        result = RunResult(
            protocol=self.name, task=task, answer=answer, citations=ctx.citations, rounds=ctx.rounds,
            cost=ctx.meter.report(), calls=ctx.meter.entries, elapsed_s=time.perf_counter() - started,
            local_model=self.local.spec if self.local else None,
            remote_model=self.remote.spec if self.remote else None,
            timings=dict(ctx.timings), budget_exhausted=budget_hit,
            rounds_exhausted=bool(ctx.rounds and ctx.rounds[-1].decision == "forced_answer"),
            error=str(error) if error else None, error_type=type(error).__name__ if error else None,
            warnings=ctx.warnings,
            documents=[{"id": d.id, "title": d.title, "source": d.source, "chars": len(d.text)}
                       for d in ctx.documents],
            coverage=ctx.read.report())
        return result if self.store_text else result.redacted(ctx.shown_texts + [d.text for d in ctx.documents])

    def run(self, task: str, context: ContextLike = (), *, on_event: EventHandler | None = None) -> RunResult:
        return run_sync(self.arun(task, context, on_event=on_event))

    def _estimate_remote_only(self, ctx: RunContext) -> None:
        """Remote-only bill: the whole context and the task sent once to the remote model, counted
        with the remote's own tokenizer where it has one. The answer is taken as a quarter of the
        remote's max tokens (answers are short)."""
        if self.remote is None:
            return
        text = "\n\n".join(d.text for d in ctx.documents) + "\n\n" + ctx.task
        ctx.meter.estimate_remote_only(self.remote.price_key, self.remote.count_tokens(text) + 20,
                                       max(1, self.config.remote_max_tokens // 4),
                                       stand_in=self.remote.price_as is not None)
