"""The call gateway: the single door through which a run reaches its models.

`CallGateway.call` stops a cancelled run, scrubs what goes to the remote (privacy), withholds document
text past the verbatim budget (`minions.egress.budget`), checks the remote budget against the worst
case before every remote call, meters usage and dollars per role/step/round, keeps the transcript
and times each step. Protocols only decide *what* to ask; what they
find lives in `RunState` (state.py).

Cancelling a run: pass `cancel=` (a `CancelToken`, or any `threading.Event`/`asyncio.Event`) to
`arun`/`run` and set it, or cancel the asyncio task running `arun`. Either way no model call starts
after that (a call already in flight is abandoned, its tokens unmetered).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import TYPE_CHECKING
from typing import Protocol as _Structural

from minions import errors
from minions.clients.base import Client, Completion, Message, Options, Usage
from minions.cost import CostMeter, PriceTable
from minions.documents import Document
from minions.egress.budget import MaxVerbatim, VerbatimBudget
from minions.protocols.events import Event, EventHandler, Level, MessageSent, Notice, RoundDone, emit
from minions.protocols.privacy import DocumentAliases, PrivacyPolicy, Span
from minions.protocols.result import RoundDecision, RoundRecord, Side, TranscriptMessage
from minions.redact import env_secrets, normalize, redact
from minions.tokens import count_messages

if TYPE_CHECKING:
    from collections.abc import Sequence


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


class Roles(_Structural):
    """What the gateway needs of a protocol: its clients, name, privacy, prices and budget."""

    @property
    def name(self) -> str: ...

    @property
    def local(self) -> Client | None: ...

    @property
    def remote(self) -> Client | None: ...

    @property
    def privacy(self) -> PrivacyPolicy | None: ...

    @property
    def prices(self) -> PriceTable: ...

    @property
    def max_remote_usd(self) -> float | None: ...

    @property
    def remote_reasoning(self) -> str | None: ...

    @property
    def max_verbatim(self) -> MaxVerbatim | None: ...

    @property
    def quotes(self) -> bool: ...


def client_secrets(clients: Sequence[Client | None]) -> tuple[str, ...]:
    """The API keys of these clients."""
    return tuple(s for c in clients if c is not None for s in c.secrets)


class CallGateway:
    """Model calls, events, notices, the transcript and the meter of one run; never shared between runs."""

    def __init__(self, protocol: Roles, documents: list[Document], on_event: EventHandler | None,
                 cancel: Cancellable | None = None):
        self.protocol = protocol
        self.on_event = on_event
        self.cancel = cancel
        self.meter = CostMeter(protocol.prices)
        self.rounds: list[RoundRecord] = []
        self.timings: dict[str, float] = defaultdict(float)
        self.warnings: list[str] = []
        # --privacy: aliases for document ids made from file names, personal data found per document
        self._aliases = DocumentAliases(protocol.privacy, documents) if protocol.privacy is not None else None
        self._spans: dict[str, list[Span]] = {}
        self._aliases_noted = False
        self._last_prompt: dict[str, list[Message]] = {}
        # --max-verbatim / --quotes off: the run's verbatim budget; None without one
        budget = VerbatimBudget([(d.id, d.text) for d in documents], protocol.max_verbatim, quotes=protocol.quotes)
        self.verbatim = budget if budget.active and protocol.remote is not None else None
        # API keys to keep out of notices and the result: the clients' own and the environment's
        self.secrets = normalize([*client_secrets([protocol.local, protocol.remote]), *env_secrets()])

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

    def end_round(self, rec: RoundRecord, decision: RoundDecision) -> None:
        """Record how round `rec` ended, unless it already has an ending (a failure after the round's
        decision does not rewrite it)."""
        if rec.decision is None:
            rec.decision = decision

    async def round_done(self, rec: RoundRecord, decision: RoundDecision) -> None:
        """Record how round `rec` ended and tell the front ends, with the run's cumulative spending."""
        rec.decision = decision
        await self.emit(RoundDone(round=rec.round, decision=decision,
                                  remote_usd=self.meter.totals("remote").cost_usd,
                                  local_tokens=self.meter.totals("local").usage.total_tokens))

    @property
    def rounds_exhausted(self) -> bool:
        return bool(self.rounds and self.rounds[-1].decision is RoundDecision.FORCED_ANSWER)

    async def emit(self, event: Event) -> None:
        await emit(self.on_event, event)

    async def notice(self, message: str, level: Level = "warning") -> None:
        message = redact(message, self.secrets, credentials=True)
        self.warnings.append(message)
        await self.emit(Notice(round=self.round or None, level=level, message=message))

    # -- model calls ----------------------------------------------------------------------------

    def client(self, role: str) -> Client:
        c = self.protocol.local if role == "local" else self.protocol.remote
        if c is None:
            raise errors.ConfigError(f"The {self.protocol.name} protocol needs a {role} model.")
        return c

    async def call(self, role: Side, messages: list[Message], options: Options, *, step: str,
                   announce: bool = False) -> Completion:
        """One model call on behalf of the protocol. `announce` emits the reply as a MessageSent."""
        self.check_cancelled()  # before every call: a cancelled run starts nothing new
        client = self.client(role)
        if role == "remote":
            if (effort := self.protocol.remote_reasoning) and options.reasoning_effort is None:
                options = options.model_copy(update={"reasoning_effort": effort})
            messages = await self._within_verbatim([self._protect(m) for m in messages], step)
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
        if privacy is not None and privacy.local_rewrite:
            return await privacy.shield(self, text)
        return text

    def quote(self, text: str, *, verified: bool = True) -> str:
        """A worker's quote as the remote may see it: the quote, or its placeholder when the verbatim
        budget (or --quotes off) withholds it. Call it on the text as it will be sent (scrubbed, clipped)."""
        return text if self.verbatim is None else self.verbatim.quote(text, verified=verified)

    def unquoted(self, text: str) -> str:
        """A local model's chat reply as the remote may see it: with --quotes off, every verbatim span
        of a document in it is withheld as a quote (the budget applies at the door in any case)."""
        return text if self.verbatim is None else self.verbatim.admit(text, as_quotes=True)

    async def _within_verbatim(self, messages: list[Message], step: str) -> list[Message]:
        """The door's check: document text past the verbatim budget is cut from every message before
        it leaves, with one notice per request saying what was withheld."""
        budget = self.verbatim
        if budget is None:
            return messages
        out = [m.model_copy(update={"content": budget.admit(m.content)}) if m.content else m for m in messages]
        if note := budget.take_note():
            await self.notice(f"{note} (step {step})", level="info")
        return out

    def _protect(self, m: Message) -> Message:
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
