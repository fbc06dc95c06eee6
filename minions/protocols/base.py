"""The one protocol interface, and the run context every protocol makes its model calls through.

`RunContext.call` is the single door to the models: it stops a cancelled run, scrubs what goes to
the remote (privacy), checks the remote budget against the worst case before every remote call,
meters usage and dollars per role/step/round, keeps the transcript and times each step. Protocols
only decide *what* to ask.

Cancelling a run: pass `cancel=` (a `CancelToken`, or any `threading.Event`/`asyncio.Event`) to
`arun`/`run` and set it, or cancel the asyncio task running `arun`. Either way no model call starts
after that (a call already in flight is abandoned, its tokens unmetered), and `arun` returns the
partial result — the best answer so far, its cost — with `cancelled=True`; it does not raise.

Never losing local work: a protocol offers a *fallback* (`RunContext.set_fallback`) once local work
has produced something grounded — MinionS the most frequent verified job answer, Minion the worker's
last reply. When a later step fails for good (a remote reply invalid after its retries, a client
error after its retries, the budget) or the run is cancelled, that fallback is returned, marked
`degraded` with the reason, instead of losing what was paid for.
"""

from __future__ import annotations

import asyncio
import difflib
import threading
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, ClassVar
from typing import Protocol as _Structural

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from minions import errors
from minions._sync import run_sync
from minions.clients.base import Client, Completion, Message, Options, Usage
from minions.cost import CostMeter, PriceTable
from minions.documents import Document
from minions.protocols.citations import place_citations
from minions.protocols.coverage import ReadLog
from minions.protocols.events import EventHandler, FinalAnswer, MessageSent, Notice, emit
from minions.protocols.privacy import DocumentAliases
from minions.protocols.result import Citation, RoundRecord, RunRecord, RunResult, TranscriptMessage
from minions.redact import env_secrets, normalize, redact
from minions.tokens import count_in_pieces, count_messages

ContextLike = str | Document | Sequence[str | Document]


class Cancellable(_Structural):
    """Anything with `is_set()`: a CancelToken, a threading.Event, an asyncio.Event."""

    def is_set(self) -> bool: ...


class CancelToken:
    """Set it (from any thread, or a signal handler) to stop a run before its next model call."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


def to_documents(context: ContextLike) -> list[Document]:
    items = [context] if isinstance(context, str | Document) else list(context)
    docs = []
    for i, item in enumerate(items):
        docs.append(item if isinstance(item, Document)
                    else Document.from_text(item, id=f"doc{i + 1}", title=f"Document {i + 1}"))
    return docs


def protocol_secrets(protocol: Protocol) -> tuple[str, ...]:
    """The API keys of a protocol's clients."""
    return tuple(s for c in (protocol.local, protocol.remote) if c is not None for s in c.secrets)


class RunContext:
    """State of one run. Created by `Protocol.arun`; never shared between runs."""

    def __init__(self, protocol: Protocol, task: str, documents: list[Document],
                 on_event: EventHandler | None, cancel: Cancellable | None = None):
        self.protocol, self.task, self.documents = protocol, task, documents
        self.on_event = on_event
        self.cancel = cancel
        self.meter = CostMeter(protocol.prices)
        self.rounds: list[RoundRecord] = []
        self.timings: dict[str, float] = defaultdict(float)
        self.warnings: list[str] = []
        # --privacy: aliases for document ids made from file names, personal data found per document
        self._aliases = DocumentAliases(protocol.privacy, documents) if protocol.privacy is not None else None
        self._spans: dict[str, list] = {}
        self._aliases_noted = False
        self.shown_texts: list[str] = []   # document text put into prompts (redacted from logs on request)
        self.best_answer: str | None = None  # what to return if the budget or rounds run out
        self.citations: list[Citation] = []
        self.read = ReadLog(documents)      # what the models were shown of the documents: RunResult.coverage
        self.grounded: bool | None = None   # set by protocols that check their answer against evidence
        self.degraded_reason: str | None = None  # set when the protocol itself returns a fallback
        self._fallback: tuple[str, list[Citation], str] | None = None
        self._last_prompt: dict[str, list[Message]] = {}
        # API keys to keep out of notices and the result: the clients' own and the environment's
        self.secrets = normalize([*protocol_secrets(protocol), *env_secrets()])

    # -- fallback and cancellation ------------------------------------------------------------

    def set_fallback(self, answer: str, citations: list[Citation], what: str) -> None:
        """What to return, marked degraded, if a later step fails or the run is cancelled: a grounded
        answer from local work. `what` says what it is, for the user ("the most frequent ...")."""
        self._fallback = (answer, list(citations), what)

    @property
    def fallback(self) -> tuple[str, list[Citation], str] | None:
        return self._fallback

    def check_cancelled(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise errors.RunCancelledError("The run was cancelled.")

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
        message = redact(message, self.secrets, credentials=True)
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
        self.check_cancelled()  # before every call: a cancelled run starts nothing new
        client = self.client(role)
        if role == "remote":
            if (effort := self.protocol.config.remote_reasoning) and options.reasoning_effort is None:
                options = options.model_copy(update={"reasoning_effort": effort})
            messages = [await self._protect(m) for m in messages]
            self._check_budget(client, messages, options)
        rec = self.rounds[-1] if self.rounds else self.new_round()
        rec.messages.extend(TranscriptMessage(round=rec.round, step=step, to=role, role=m.role, content=m.content)
                            for m in self._new_messages(role, messages))
        started = time.perf_counter()
        try:
            completion = await client.complete(messages, options)
        except errors.ClientError as e:
            if e.usage is not None:  # billed though it failed (a reasoning model's hidden tokens)
                self.meter.record(role, client.price_key, e.usage, step=step, round=rec.round)
            raise
        finally:
            self.timings[step] += time.perf_counter() - started
        if role == "remote" and self._aliases is not None and self._aliases.to_real:
            # chunk ids the remote names in a plan resolve to the real documents; its prose keeps the aliases
            completion = completion.model_copy(update={"texts": [self._aliases.reveal_ids(t) for t in completion.texts]})
            if not self._aliases_noted:
                self._aliases_noted = True
                await self.notice(f"--privacy: the remote knows documents whose names hold personal data by "
                                  f"aliases: {self._aliases.describe()}.", level="info")
        self.meter.record(role, client.price_key, completion.usage, step=step, round=rec.round)
        for w in completion.warnings:
            await self.notice(f"{client.spec}: {w}")
        rec.messages.append(TranscriptMessage(round=rec.round, step=step, to="remote" if role == "local" else "local",
                                              role="assistant", content=completion.text))
        if role == "remote":
            self._check_overshoot(client, completion)  # after logging: the run log shows what was paid for
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

    async def shielded(self, text: str) -> str:
        """Text the local model wrote, as the remote may see it: through the privacy shield's local
        rewrite when enabled (the deterministic scrubber runs on every remote message anyway, in `call`)."""
        privacy = self.protocol.privacy
        if privacy is not None and getattr(privacy, "local_rewrite", False) and hasattr(privacy, "shield"):
            return await privacy.shield(self, text)
        return text

    async def _protect(self, m: Message) -> Message:
        if self.protocol.privacy is None:
            return m
        return m.model_copy(update={"content": self.redact(m.content)})

    def redact(self, text: str) -> str:
        """`text` as the remote may see it (`--privacy`: document aliases, then the scrubber).
        Every remote message gets this at the door; protocols also call it before they clip text
        for the remote, so a cut never splits a card number out of the scrubber's sight."""
        privacy = self.protocol.privacy
        if privacy is None or not text:
            return text
        return privacy.scrub(self._aliases.hide(text) if self._aliases is not None else text)

    def redact_slice(self, doc: Document, start: int, end: int) -> str:
        """`doc.text[start:end]` as the remote may see it, scrubbed as part of the whole document, so
        an item cut by the slice's edges is still recognised (see Scrubber.scrub_slice)."""
        privacy = self.protocol.privacy
        if privacy is None:
            return doc.text[start:end]
        if not hasattr(privacy, "scrub_slice"):
            return self.redact(doc.text[start:end])
        if doc.id not in self._spans:
            self._spans[doc.id] = privacy.spans(doc.text)
        return self.redact(privacy.scrub_slice(doc.text, start, end, self._spans[doc.id]))

    def _check_budget(self, client: Client, messages: list[Message], options: Options) -> None:
        cap = self.protocol.max_remote_usd
        if cap is None:
            return
        worst = self.meter.prices.cost(client.price_key, Usage(
            prompt_tokens=count_messages(messages, client.price_key),
            completion_tokens=client.max_billed_tokens(options), requests=1))
        spent = self.meter.totals("remote").cost_usd
        if worst is None or spent is None:
            return  # unpriced: refused in Protocol._check_remote when a cap is set, noted at run start
        if spent + worst > cap:
            raise errors.BudgetExceededError(
                f"Remote budget ${cap:.4f} reached: ${spent:.4f} spent, next call could cost up to "
                f"${worst:.4f}. Raise --max-remote-usd to continue.")

    def _check_overshoot(self, client: Client, completion: Completion) -> None:
        """A remote that ignores max_tokens (or bills more than it sends) can push spending past the
        cap despite the worst-case check before the call: stop at once, saying by how much."""
        cap = self.protocol.max_remote_usd
        spent = self.meter.totals("remote").cost_usd
        if cap is None or spent is None or spent <= cap:
            return
        last = self.meter.prices.cost(client.price_key, completion.usage) or 0.0
        raise errors.BudgetExceededError(
            f"Remote budget ${cap:.4f} overshot by ${spent - cap:.4f}: the last call cost ${last:.4f} "
            f"({completion.usage.completion_tokens} completion tokens), ${spent:.4f} spent in all; stopped "
            f"there. {client.spec} returned more than it was allowed; lower --remote-max-tokens or raise "
            "--max-remote-usd.")


class ProtocolConfig(BaseModel):
    """Knobs every protocol has. Protocols subclass this with their own. A knob it does not
    declare is an error: a misspelt one must not silently run with the default."""

    model_config = ConfigDict(extra="forbid")

    # The bounds are those `Options` enforces on every call: a bad value is refused when the run is
    # built (a 400 on the server, exit 2 on the command line), not by a call half-way through it.
    remote_max_tokens: int = Field(1024, ge=1, description="most tokens of one remote reply")
    local_max_tokens: int = Field(512, ge=1, description="most tokens of one local reply")
    temperature: float = Field(0.0, ge=0.0, le=2.0, allow_inf_nan=False, description="sampling temperature")
    #: reasoning effort for a remote reasoning model (OpenAI gpt-5/o-series `reasoning_effort`,
    #: Anthropic extended thinking); None: the client's default, which keeps planning cheap
    remote_reasoning: str | None = Field(
        None, description="reasoning effort of a remote reasoning model (OpenAI gpt-5/o-series reasoning_effort, "
        "Claude extended thinking): none, minimal, low, medium, high; which ones depends on the model; "
        "default: low where the model takes it")


def config_error(protocol: str, cls: type[ProtocolConfig], e: ValidationError) -> errors.ConfigError:
    """pydantic's error as a ConfigError that names the valid knobs (and the likely one meant)."""
    valid = sorted(cls.model_fields)
    problems = []
    for err in e.errors():
        name = ".".join(map(str, err["loc"]))
        if err["type"] == "extra_forbidden":
            near = difflib.get_close_matches(name, valid, n=1)
            problems.append(f"no knob {name!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
        else:
            problems.append(f"{name}: {err['msg']}")
    return errors.ConfigError(f"Protocol {protocol!r}: {'; '.join(problems)}. Its knobs: {', '.join(valid)}.")


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
        try:
            self.config = self.Config(**config)
        except ValidationError as e:
            raise config_error(self.name, self.Config, e) from None
        for role in self.needs:
            if getattr(self, role) is None:
                raise errors.ConfigError(f"The {self.name} protocol needs a {role} model (--{role} SPEC).")
        self._check_remote()

    def _check_remote(self) -> None:
        """Refuse, before any call, what the remote cannot honour: a reasoning effort it does not
        take, and a dollar cap on a model without a price (the cap could never apply)."""
        if self.remote is None or "remote" not in self.needs:
            return
        effort = self.config.remote_reasoning
        if effort is not None and (why := self.remote.check_reasoning(effort)):
            raise errors.ConfigError(f"--remote-reasoning {effort}: {why}.")
        if self.max_remote_usd is not None and self.prices.get(self.remote.price_key) is None:
            raise errors.ConfigError(
                f"{self.remote.price_key} has no price, so --max-remote-usd cannot be enforced. Price it as a "
                "known model (--remote-price-as SPEC, remote_price_as=) or add its row to your prices file "
                "(MINIONS_PRICES=/path/prices.toml); or drop the budget.")

    @abstractmethod
    async def _run(self, ctx: RunContext) -> str | None:
        """Do the work; return the final answer. Set ctx.best_answer as better answers appear."""

    async def arun(self, task: str, context: ContextLike = (), *, on_event: EventHandler | None = None,
                   cancel: Cancellable | None = None) -> RunResult:
        started = time.perf_counter()
        ctx = RunContext(self, task, to_documents(context), on_event, cancel)
        for doc in ctx.documents:  # load warnings (e.g. "decoded it as latin-1") belong with the run
            for w in doc.metadata.get("warnings", ()):
                await ctx.notice(str(w))
        self._estimate_remote_only(ctx)
        if self.remote is not None and "remote" in self.needs and self.prices.get(self.remote.price_key) is None:
            await ctx.notice(f"{self.remote.price_key} has no price: remote dollars are unknown for this run "
                             "(price it with --remote-price-as or a MINIONS_PRICES file).", level="info")
        answer: str | None = None
        error: errors.MinionsError | None = None
        budget_hit = cancelled = False
        try:
            answer = await self._run(ctx)
        except errors.BudgetExceededError as e:
            budget_hit, error = True, e
            await ctx.notice(str(e))
        except (errors.ClientError, errors.ModelOutputError, errors.DocumentError) as e:
            error = e
        except (errors.RunCancelledError, asyncio.CancelledError):
            # Returned, not re-raised: whoever cancelled gets what was done and what it cost.
            cancelled = True
        if error is not None or cancelled:
            answer = await self._recover(ctx, error, cancelled)
        # Offsets into the documents for every citation, so a front end can show the quote in context.
        ctx.citations = place_citations(ctx.citations, ctx.documents,
                                        getattr(self.config, "citation_similarity", 0.8))
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
            degraded=ctx.degraded_reason is not None, degraded_reason=ctx.degraded_reason,
            grounded=ctx.grounded, cancelled=cancelled, warnings=ctx.warnings,
            documents=[{"id": d.id, "title": d.title, "source": d.source, "chars": len(d.text)}
                       for d in ctx.documents],
            coverage=ctx.read.report())
        result.settings = RunRecord.of(self, result.cost)
        result = result.without_secrets(ctx.secrets)
        return result if self.store_text else result.redacted(ctx.shown_texts + [d.text for d in ctx.documents])

    async def _recover(self, ctx: RunContext, error: errors.MinionsError | None, cancelled: bool) -> str | None:
        """The answer of a run that failed or was cancelled: the protocol's grounded fallback if it has
        one (marked degraded, with the reason), else the best answer it had."""
        fallback = ctx.fallback
        if fallback is None or isinstance(error, errors.DocumentError):
            return ctx.best_answer
        answer, citations, what = fallback
        why = "the run was cancelled" if cancelled else f"a later step failed ({type(error).__name__}: {error})"
        ctx.degraded_reason = f"{why}; returned {what}"
        ctx.citations = citations
        ctx.grounded = True  # built from verified local evidence
        await ctx.notice(f"degraded answer: {ctx.degraded_reason}")
        return answer

    def run(self, task: str, context: ContextLike = (), *, on_event: EventHandler | None = None,
            cancel: Cancellable | None = None) -> RunResult:
        """`arun` from synchronous code. Ctrl-C cancels the run and raises `minions.Interrupted`
        (a KeyboardInterrupt) carrying the partial result in `.result`."""
        return run_sync(self.arun(task, context, on_event=on_event, cancel=cancel))

    @property
    def max_remote_usd(self) -> float | None:
        """The remote dollar cap; set it to None, a number or a numeric string (see `budget_usd`)."""
        return self._max_remote_usd

    @max_remote_usd.setter
    def max_remote_usd(self, value: Any) -> None:
        from minions.protocols.budget import budget_usd

        self._max_remote_usd = budget_usd(value)

    def _estimate_remote_only(self, ctx: RunContext) -> None:
        """Remote-only bill: the whole context and the task sent once to the remote model, counted
        with the remote's own tokenizer where it has one. The answer is taken as a quarter of the
        remote's max tokens (answers are short)."""
        if self.remote is None:
            return
        # Counted document by document, in pieces: joining the documents would copy them all, and
        # a whole document's token list can take 9x its size in memory.
        count = self.remote.count_tokens
        n = sum(count_in_pieces(d.text, count) for d in ctx.documents) + count(ctx.task)
        ctx.meter.estimate_remote_only(self.remote.price_key, n + 20,
                                       max(1, self.config.remote_max_tokens // 4),
                                       stand_in=self.remote.price_as is not None)
