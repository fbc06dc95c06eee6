"""The transport-neutral core of both servers: which protocols can run, per-request knobs,
admission (concurrency, queue, spend), timeouts and cancellation, metrics and the log line.

The HTTP app (`app.py`) and the MCP server (`mcp.py`) only translate their wire formats to a
`RunPlan` and a `Finished` run back. Every protocol is built through `protocols/build.py`, the
one recipe, from clients made once at start (a local model is loaded once, not per request).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Mapping
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from minions.clients import Client
from minions.cost import PriceTable
from minions.documents import Document
from minions.protocols import PROTOCOL_NAMES, Protocol, RunResult, protocol_class
from minions.protocols.build import build_protocol
from minions.protocols.events import EventHandler
from minions.protocols.knobs import KnobError, check_knobs, split_server_knobs
from minions.protocols.settings import RunSettings
from minions.serve.ceilings import Ceilings
from minions.serve.errors import ClientGone, InvalidRequest, RunTimedOut, UnknownModel
from minions.serve.limits import Admission, SpendTracker
from minions.serve.metrics import Metrics
from minions.serve.runloop import RunLoop, relay
from minions.serve.store import DocumentStore

log = logging.getLogger("minions.serve")


class ServeSettings(BaseModel):
    """Limits and defaults of one server (most are CLI flags of `minions serve`/`mcp`)."""

    model_config = ConfigDict(extra="forbid")

    default_protocol: str = "minions"
    #: server-wide knobs (CLI flags); each protocol takes those its Config declares, and a knob no
    #: servable protocol declares is refused at start
    knobs: dict[str, Any] = Field(default_factory=dict)
    max_concurrent: int = Field(4, ge=1)
    max_queue: int = Field(16, ge=0)
    timeout_s: float = Field(600.0, gt=0)
    max_body_bytes: int = Field(32 * 2**20, ge=1024)
    api_key: SecretStr | None = None
    #: remote dollars one run may spend (a request may ask for less, never more)
    max_request_usd: float | None = Field(None, ge=0)
    #: remote dollars the server may spend over its life
    max_total_usd: float | None = Field(None, ge=0)
    max_files: int = Field(64, ge=0)
    max_file_bytes: int = Field(256 * 2**20, ge=0)
    #: Host header names a keyless server answers to (None: any); `minions serve` on loopback sets
    #: the loopback names, so a web page cannot reach it through DNS rebinding
    allowed_hosts: list[str] | None = None
    #: what one request may ask for (chunk counts, reply tokens, concurrency, documents)
    ceilings: Ceilings = Field(default_factory=Ceilings)


class Outcome(str, Enum):
    """How a run ended (the `outcome` label of minions_runs_total)."""

    ANSWERED = "answered"
    FAILED = "failed"        # no answer: a typed error in the result, or a crash
    TIMEOUT = "timeout"      # cancelled at the server's time limit
    CANCELLED = "cancelled"  # the caller went away


class RunPlan(BaseModel):
    """One question to answer, as a front end understood it."""

    protocol: str
    task: str
    documents: list[Document]
    knobs: dict[str, Any] = Field(default_factory=dict)
    max_remote_usd: float | None = None


class Finished(BaseModel):
    result: RunResult
    queue_s: float
    run_s: float


class Ticket:
    """A request's place in the queue and its remote budget; released exactly once."""

    def __init__(self, service: Service, budget: float | None):
        self.service, self.budget = service, budget
        self.created = time.perf_counter()
        self.started: float | None = None
        self._acquiring = False
        self._closed = False

    async def acquire(self) -> None:
        self._acquiring = True
        await self.service.admission.acquire()
        self.started = time.perf_counter()

    def close(self, spent: float | None) -> None:
        """Free the slot (or the queue place) and settle the budget; `spent` None: unknown."""
        if self._closed:
            return
        self._closed = True
        adm = self.service.admission
        if self.started is not None:
            adm.release(time.perf_counter() - self.started)
        else:
            spent = 0.0  # it never ran, so it spent nothing
            if not self._acquiring:  # never reached the queue's semaphore: leave the queue here
                adm.waiting -= 1
        self.service.spend.settle(self.budget, spent)


class Service:
    def __init__(self, settings: ServeSettings | None = None, *, local: Client | None, remote: Client | None,
                 corpus: list[Document] | tuple[Document, ...] = (), run: RunSettings | None = None,
                 privacy: Any = None, prices: PriceTable | None = None, store_text: bool = True):
        """`run`: the recipe's settings every request starts from (models, price, privacy); the
        clients `local` and `remote` are built once from them (a local model loads once)."""
        self.settings = settings or ServeSettings()
        self.local, self.remote = local, remote
        self.run_settings = run or RunSettings(protocol=self.settings.default_protocol, local=local, remote=remote,
                                               store_text=store_text)
        self.privacy, self.store_text = privacy, self.run_settings.store_text
        self.prices = prices or PriceTable.load()
        self.store = DocumentStore(corpus, max_files=self.settings.max_files,
                                   max_file_bytes=self.settings.max_file_bytes)
        self.admission = Admission(self.settings.max_concurrent, self.settings.max_queue)
        self.spend = SpendTracker(per_run=self.settings.max_request_usd, total=self.settings.max_total_usd,
                                  max_running=self.settings.max_concurrent)
        self.protocol_name(self.settings.default_protocol)  # a default it cannot run is a startup error
        # so is a knob none of them takes (remote-only and RAG refuse a verbatim budget per request)
        self._knobs = split_server_knobs(self.protocols(), self.settings.knobs, self.settings.default_protocol)
        self.runner = RunLoop()
        self.metrics = Metrics(queue_depth=lambda: self.admission.waiting, running=lambda: self.admission.running)

    # -- protocols and knobs ----------------------------------------------------------------------

    def protocols(self) -> list[str]:
        """The protocols this server can run: those whose needed models it has."""
        have = {"local": self.local is not None, "remote": self.remote is not None}
        return [n for n in PROTOCOL_NAMES if all(have[r] for r in protocol_class(n).needs)]

    def protocol_name(self, model: str | None) -> str:
        name = model or self.settings.default_protocol
        if name not in self.protocols():
            why = (" (it needs a model this server was started without)" if name in PROTOCOL_NAMES else "")
            raise UnknownModel(f"The model {name!r} does not exist{why}. Models here are protocols: "
                               f"{', '.join(self.protocols())} (GET /v1/models).", param="model")
        return name

    def check_knobs(self, name: str, knobs: Mapping[str, Any]) -> dict[str, Any]:
        """Per-request knobs: names the protocol's Config declares, values it accepts; else 400."""
        try:
            check_knobs(name, {**self._knobs.get(name, {}), **knobs})
        except KnobError as e:
            raise InvalidRequest(str(e), param=f"minions.knobs.{e.knob}") from None
        return {k: v for k, v in knobs.items() if v is not None}

    def _check_ceilings(self, plan: RunPlan) -> None:
        """400 before any work when the request asks for more than the server's ceilings."""
        config = protocol_class(plan.protocol).Config(**{**self._knobs.get(plan.protocol, {}), **plan.knobs})
        effective = dict(config)  # field values, defaults applied (a chunk_size that follows the strategy)
        self.settings.ceilings.check(plan.protocol, plan.knobs, effective, plan.documents)

    def build(self, plan: RunPlan, budget: float | None) -> Protocol:
        """The run's protocol through the one recipe, with the clients built at start."""
        settings = self.run_settings.model_copy(update={
            "protocol": plan.protocol, "knobs": {**self._knobs.get(plan.protocol, {}), **plan.knobs},
            "max_remote_usd": budget})
        return build_protocol(settings, clients=(self.local, self.remote), prices=self.prices, privacy=self.privacy)

    # -- runs -------------------------------------------------------------------------------------

    def admit(self, plan: RunPlan) -> Ticket:
        """Take a queue place and a budget now, or raise QueueFull / SpendCapReached (429)."""
        self._check_ceilings(plan)
        self.admission.enter()
        try:
            budget = self.spend.reserve(plan.max_remote_usd)
        except BaseException:
            self.admission.waiting -= 1
            raise
        return Ticket(self, budget)

    async def run(self, plan: RunPlan, ticket: Ticket, *, on_event: EventHandler | None = None,
                  cancel_when: Awaitable[Any] | None = None) -> Finished:
        """Run `plan` in its own task, cancelled on timeout or when `cancel_when` completes (the
        client went away) — so no further model calls are made for a caller that is gone."""
        task = asyncio.ensure_future(self._run(plan, ticket, on_event))
        watch = asyncio.ensure_future(cancel_when) if cancel_when is not None else None
        result: RunResult | None = None
        outcome = Outcome.FAILED
        try:
            left = self.settings.timeout_s - (time.perf_counter() - ticket.created)
            done, _ = await asyncio.wait({task} | ({watch} if watch else set()), timeout=max(0.0, left),
                                         return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                result = task.result()
                outcome = Outcome.ANSWERED if result.answer is not None else Outcome.FAILED
                return Finished(result=result, queue_s=(ticket.started or ticket.created) - ticket.created,
                                run_s=time.perf_counter() - (ticket.started or ticket.created))
            if watch is not None and watch in done:
                outcome = Outcome.CANCELLED
                raise ClientGone("The client disconnected; its run was cancelled.")
            outcome = Outcome.TIMEOUT
            raise RunTimedOut(f"No answer within the server's {self.settings.timeout_s:g} s limit; the run was "
                              "cancelled. Ask with fewer documents or a cheaper protocol, or raise --timeout.")
        except asyncio.CancelledError:
            outcome = Outcome.CANCELLED  # our caller was cancelled (e.g. the MCP client cancelled the call)
            raise
        finally:
            if watch is not None:
                watch.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait({task})  # let it unwind before the slot is given to another run
                if not task.cancelled() and task.exception() is None:
                    result = task.result()  # a protocol may return what it had when cancelled
            self._account(plan.protocol, outcome, result)
            remote = result.cost.role("remote").cost_usd if result is not None else None
            ticket.close(None if result is None else (remote or 0.0))

    async def _run(self, plan: RunPlan, ticket: Ticket, on_event: EventHandler | None) -> RunResult:
        await ticket.acquire()
        protocol = self.build(plan, ticket.budget)
        # on the runs' own loop: chunking and indexing never stall this one (health, other requests)
        events = relay(on_event, asyncio.get_running_loop())
        return await self.runner.run(self._metered(protocol.arun(plan.task, plan.documents, on_event=events)))

    async def _metered(self, run: Awaitable[RunResult]) -> RunResult:
        """On the runs' loop: every request the run sends counts in /metrics as it leaves."""
        from minions.egress.record import capture

        with capture(self.metrics):
            return await run

    def _account(self, protocol: str, outcome: Outcome, result: RunResult | None) -> None:
        m = self.metrics
        m.runs.labels(protocol, outcome.value).inc()
        if result is None:
            return
        local, remote = result.cost.role("local"), result.cost.role("remote")
        m.remote_usd.inc(remote.cost_usd or 0.0)
        m.local_tokens.labels("prompt").inc(local.usage.prompt_tokens)
        m.local_tokens.labels("completion").inc(local.usage.completion_tokens)
        m.remote_tokens.labels("prompt").inc(remote.usage.prompt_tokens)
        m.remote_tokens.labels("completion").inc(remote.usage.completion_tokens)


def log_fields(finished: Finished) -> dict[str, Any]:
    """What the request log line says about a run: sizes, money and time, never text or keys."""
    r = finished.result
    local, remote = r.cost.role("local"), r.cost.role("remote")
    return {"protocol": r.protocol, "answered": r.answer is not None, "error_type": r.error_type,
            "rounds": r.n_rounds, "documents": len(r.documents), "queue_ms": round(finished.queue_s * 1000, 1),
            "run_ms": round(finished.run_s * 1000, 1), "remote_usd": remote.cost_usd,
            "remote_tokens": remote.usage.prompt_tokens + remote.usage.completion_tokens,
            "local_tokens": local.usage.prompt_tokens + local.usage.completion_tokens}


def log_request(fields: Mapping[str, Any]) -> None:
    """One JSON line per request on the `minions.serve` logger."""
    log.info(json.dumps({"event": "request", **fields}, default=str))
