"""The one protocol interface, and the run context every protocol works through.

A run's context (`RunContext`) is two things: the call gateway (gateway.py), the single door to the
models — cancellation, privacy scrubbing, the remote budget, the meter, the transcript — and the run
state (state.py), what the run has found, changed only through its methods. Protocols only decide
*what* to ask.

Cancelling a run: pass `cancel=` (a `CancelToken`, or any `threading.Event`/`asyncio.Event`) to
`arun`/`run` and set it, or cancel the asyncio task running `arun`. Either way no model call starts
after that (a call already in flight is abandoned, its tokens unmetered), and `arun` returns the
partial result — the best answer so far, its cost — with `cancelled=True`; it does not raise.

Never losing local work: a protocol offers a *fallback* (`RunState.set_fallback`) once local work
has produced something grounded — MinionS the most frequent verified job answer, Minion the worker's
last reply. When a later step fails for good (a remote reply invalid after its retries, a client
error after its retries, the budget) or the run is cancelled, that fallback is returned, marked
`degraded` with the reason, instead of losing what was paid for.
"""

from __future__ import annotations

import asyncio
import difflib
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from minions import errors
from minions._sync import run_sync
from minions.clients.base import Client
from minions.cost import PriceTable
from minions.documents import Document
from minions.egress.budget import MaxVerbatim, parse_max_verbatim
from minions.protocols.citations import place_citations
from minions.protocols.events import EventHandler, FinalAnswer
from minions.protocols.gateway import CallGateway, Cancellable, client_secrets
from minions.protocols.privacy import PrivacyPolicy
from minions.protocols.result import RunRecord, RunResult
from minions.protocols.state import RunState
from minions.tokens import count_in_pieces

if TYPE_CHECKING:
    from minions.documents.store import CorpusStore

ContextLike = str | Document | Sequence[str | Document]


def to_documents(context: ContextLike) -> list[Document]:
    items = [context] if isinstance(context, str | Document) else list(context)
    docs = []
    for i, item in enumerate(items):
        docs.append(item if isinstance(item, Document)
                    else Document.from_text(item, id=f"doc{i + 1}", title=f"Document {i + 1}"))
    return docs


def protocol_secrets(protocol: Protocol) -> tuple[str, ...]:
    """The API keys of a protocol's clients."""
    return client_secrets([protocol.local, protocol.remote])


class RunContext(CallGateway):
    """One run, as a protocol sees it: the call gateway (model calls, events, meter, transcript,
    privacy, budget, cancellation) plus `state`, what the run has found so far (changed only through
    its methods). Created by `Protocol.arun`; never shared between runs."""

    def __init__(self, protocol: Protocol, task: str, documents: list[Document],
                 on_event: EventHandler | None, cancel: Cancellable | None = None):
        super().__init__(protocol, documents, on_event, cancel)
        self.state = RunState(task, documents)

    @property
    def task(self) -> str:
        return self.state.task

    @property
    def documents(self) -> list[Document]:
        return self.state.documents

    def show(self, text: str) -> None:
        """Register document text put into a prompt, so `store_text=False` logs can omit it
        (also in its scrubbed form, which is what the remote's transcript holds)."""
        if not text:
            return
        privacy = self.protocol.privacy
        scrubbed = privacy.scrub(text) if privacy is not None else text
        self.state.show(text, *([scrubbed] if scrubbed != text else []))


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
    #: the verbatim budget (issue 22, minions/egress/budget.py), enforced before each remote request
    max_verbatim: Annotated[MaxVerbatim | None, BeforeValidator(parse_max_verbatim)] = Field(
        None, description="most document text that may reach the remote verbatim: N characters in all, or P% of "
        "each document ('0': none); a quote past it is withheld; None: no cap")
    quotes: Literal["on", "off"] = Field(
        "on", description="off: no worker quote reaches the remote (it still gets the answers and whether "
        "each quote was verified locally)")


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


ConfigT = TypeVar("ConfigT", bound=ProtocolConfig)


class Protocol(ABC, Generic[ConfigT]):
    """`run(task, context)` / `arun(...)` → `RunResult`. Failures come back typed in the result.
    A protocol is generic in its Config: `class MinionS(Protocol[MinionSConfig])`, `Config = MinionSConfig`."""

    name: ClassVar[str]
    Config: ClassVar[type[ProtocolConfig]] = ProtocolConfig
    needs: ClassVar[tuple[str, ...]] = ("local", "remote")
    config: ConfigT
    #: a corpus index (`RunSettings.index`): a run given no documents picks them from it, and chunks
    #: and embeddings of documents it holds are read from it instead of being computed again
    corpus: CorpusStore | None = None

    def __init__(self, local: Client | None = None, remote: Client | None = None, *,
                 max_remote_usd: float | str | None = None, privacy: PrivacyPolicy | None = None,
                 prices: PriceTable | None = None, store_text: bool = True, **config: Any):
        self.local, self.remote = local, remote
        self.max_remote_usd = max_remote_usd
        self.privacy = privacy          # e.g. privacy.Scrubber
        self.prices = prices or PriceTable.load()
        self.store_text = store_text    # False: document text is omitted from results and logs
        try:
            self.config = self.Config(**config)  # type: ignore[assignment]  # Config is the ConfigT class
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

    @property
    def remote_reasoning(self) -> str | None:
        return self.config.remote_reasoning

    @property
    def max_verbatim(self) -> MaxVerbatim | None:
        return self.config.max_verbatim

    @property
    def quotes(self) -> bool:
        return self.config.quotes == "on"

    @abstractmethod
    async def _run(self, ctx: RunContext) -> str | None:
        """Do the work; return the final answer. Propose (ctx.state.propose) better answers as they appear."""

    async def arun(self, task: str, context: ContextLike = (), *, on_event: EventHandler | None = None,
                   cancel: Cancellable | None = None) -> RunResult:
        """Run the protocol; every request that leaves for the remote is recorded (`minions.egress`)
        and summarised in `RunResult.egress`."""
        from minions.egress.record import Collector, capture, end_run, new_run_id

        documents = to_documents(context)
        picked = not documents and self.corpus is not None
        if picked:  # documents first, then (in the protocol) chunks
            documents = await asyncio.to_thread(self.corpus.pick, task)  # type: ignore[union-attr]
        self._mark_egress_roles()
        collector = Collector(new_run_id())
        with capture(collector, run_id=collector.run_id):
            result = await self._arun(task, documents, on_event=on_event, cancel=cancel, picked=picked)
            egress = self._egress(collector, documents)
            if result.egress is not None:  # `_arun`'s part: what the verbatim budget withheld
                egress.withheld = result.egress.withheld
            end_run(collector.run_id, egress)
        return result.model_copy(update={"egress": egress})

    def _mark_egress_roles(self) -> None:
        """Tell the clients their roles: a local model's requests to this machine are not egress; an
        in-process remote is recorded at the call (see `minions.egress.transport`)."""
        if self.local is not None and self.local is not self.remote:
            self.local.egress_role = "local"
        if self.remote is not None and "remote" in self.needs:
            self.remote.egress_role = "remote"
            price = self.prices.get(self.remote.price_key)
            self.remote.egress_price = None if price is None else price.cost

    def _egress(self, collector: Any, documents: list[Document]) -> Any:
        from collections import Counter

        from minions.egress.record import summarize

        scrubbed: dict[str, dict[str, int]] = {}
        if self.privacy is not None and hasattr(self.privacy, "spans") and collector.records:
            scrubbed = {d.id: dict(Counter(p for _s, _e, p in self.privacy.spans(d.text))) for d in documents}
        return summarize(collector.run_id, collector.records, [(d.id, d.text) for d in documents],
                         scrubbed=scrubbed)

    async def _arun(self, task: str, context: ContextLike = (), *, on_event: EventHandler | None = None,
                    cancel: Cancellable | None = None, picked: bool = False) -> RunResult:
        started = time.perf_counter()
        ctx = RunContext(self, task, to_documents(context), on_event, cancel)
        if picked:
            await ctx.notice(f"asked of the {len(ctx.documents)} document(s) the corpus index picked for the question: "
                             f"{', '.join(d.id for d in ctx.documents) or 'none (the index is empty)'}", level="info")
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
        state = ctx.state
        # Offsets into the documents for every citation, so a front end can show the quote in context.
        state.cite(place_citations(state.citations, ctx.documents, getattr(self.config, "citation_similarity", 0.8)))
        await ctx.emit(FinalAnswer(round=ctx.round or None, answer=answer,
                                   citations=[c.model_dump() for c in state.citations]))
        result = RunResult(
            protocol=self.name, task=task, answer=answer, citations=state.citations, rounds=ctx.rounds,
            cost=ctx.meter.report(), calls=ctx.meter.entries, elapsed_s=time.perf_counter() - started,
            local_model=self.local.spec if self.local else None,
            remote_model=self.remote.spec if self.remote else None,
            timings=dict(ctx.timings), budget_exhausted=budget_hit,
            rounds_exhausted=ctx.rounds_exhausted,
            error=str(error) if error else None, error_type=type(error).__name__ if error else None,
            degraded=state.degraded_reason is not None, degraded_reason=state.degraded_reason,
            grounded=state.grounded, cancelled=cancelled, warnings=ctx.warnings,
            documents=[{"id": d.id, "title": d.title, "source": d.source, "chars": len(d.text)}
                       for d in ctx.documents],
            coverage=state.read.report())
        if ctx.verbatim is not None:  # arun adds the rest of the egress summary
            from minions.egress.model import Egress

            result.egress = Egress(run_id="", withheld=ctx.verbatim.withheld)
        result.settings = RunRecord.of(self, result.cost)
        result = result.without_secrets(ctx.secrets)
        return result if self.store_text else result.redacted(state.shown_texts + [d.text for d in ctx.documents])

    async def _recover(self, ctx: RunContext, error: errors.MinionsError | None, cancelled: bool) -> str | None:
        """The answer of a run that failed or was cancelled: the protocol's grounded fallback if it has
        one (marked degraded, with the reason), else the best answer it had."""
        state = ctx.state
        fallback = state.fallback
        if fallback is None or isinstance(error, errors.DocumentError):
            return state.best_answer
        why = "the run was cancelled" if cancelled else f"a later step failed ({type(error).__name__}: {error})"
        answer = state.fall_back(f"{why}; returned {fallback.what}")  # built from verified local evidence
        await ctx.notice(f"degraded answer: {state.degraded_reason}")
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
    def max_remote_usd(self, value: float | str | None) -> None:
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
