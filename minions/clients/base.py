"""The one client interface every provider implements.

A provider subclasses `Client` and implements a single coroutine, `_request`, which sends one
call and maps its SDK's errors onto `minions.errors`. Everything else — message normalisation,
per-call timeout, retries with backoff and jitter, the sync wrapper, bounded-concurrency batches
— lives here once.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from minions import errors
from minions._sync import run_sync

Role = Literal["system", "user", "assistant"]


class Message(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Role
    content: str
    # Marks the end of a stable prefix the provider may cache (Anthropic `cache_control`).
    # Other providers cache prefixes automatically and ignore it.
    cache: bool = False


class Options(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_tokens: int = Field(512, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    json_schema: dict[str, Any] | None = None
    n: int = Field(1, ge=1)
    seed: int | None = None
    stop: tuple[str, ...] | None = None
    #: reasoning models only (OpenAI `reasoning_effort`); None: the client's own setting
    reasoning_effort: str | None = None


class Usage(BaseModel):
    """Tokens one call (or a sum of calls) used. `cached_prompt_tokens` is part of `prompt_tokens`;
    `reasoning_tokens` (a reasoning model's hidden thinking) is part of `completion_tokens`, so it is
    billed at the output price."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    reasoning_tokens: int = 0
    requests: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_prompt_tokens=self.cached_prompt_tokens + other.cached_prompt_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            requests=self.requests + other.requests,
        )

    @property
    def evaluated_prompt_tokens(self) -> int:
        """Prompt tokens the engine actually read (not served from a prefix cache)."""
        return self.prompt_tokens - self.cached_prompt_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Completion(BaseModel):
    texts: list[str]
    finish_reasons: list[str]
    usage: Usage
    model: str
    latency_s: float = 0.0
    attempts: int = 1
    #: things the caller should know but that did not fail the call (e.g. context near the limit)
    warnings: list[str] = Field(default_factory=list)

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""


class RetryPolicy(BaseModel):
    max_retries: int = Field(4, ge=0)
    base_delay: float = Field(0.5, ge=0)
    max_delay: float = Field(20.0, ge=0)
    max_retry_after: float = Field(60.0, ge=0, description="longest Retry-After we are willing to honour")
    timeout: float | None = Field(120.0, description="seconds per attempt; None waits forever")


class Request(BaseModel):
    """One call for `Client.batch`."""

    messages: list[Message]
    options: Options = Options()


MessagesLike = str | Sequence[Message | Mapping[str, Any]]


def to_messages(messages: MessagesLike) -> list[Message]:
    if isinstance(messages, str):
        return [Message(role="user", content=messages)]
    return [m if isinstance(m, Message) else Message.model_validate(m) for m in messages]


class Client(ABC):
    """A language model behind one async call. Subclasses implement `_request` only."""

    provider: ClassVar[str]
    #: False where the backend cannot constrain decoding to a schema; callers then parse and repair.
    supports_json_schema: ClassVar[bool] = True
    #: this client's API keys: it removes them from its errors, protocols from their results
    secrets: tuple[str, ...] = ()
    #: True where every request passes `minions.egress.transport` (the HTTP SDK clients); an
    #: in-process client serving as a remote is recorded in `complete` instead
    egress_at_transport: ClassVar[bool] = False
    #: "local" or "remote" once a protocol uses this client (see `minions.egress`); decides what is
    #: recorded as having left the machine
    egress_role: str | None = None
    #: an embedded model that, as the remote, stands in for a cloud model (offline): it is priced as
    #: one and gets the stand-in knob defaults. Set by `get_client` from the provider registry.
    stand_in: bool = False

    def __init__(self, model: str, *, retry: RetryPolicy | None = None, price_as: str | None = None,
                 context_window: int | None = None, seed: int | None = None, stand_in: bool | None = None):
        self.model = model
        self.retry = retry or RetryPolicy()
        #: price this client as another model (the embedded model standing in for a cloud one)
        self.price_as = price_as
        if stand_in is not None:
            self.stand_in = stand_in
        self.context_window = context_window
        self._rng = random.Random(seed)

    @property
    def spec(self) -> str:
        return f"{self.provider}/{self.model}"

    @property
    def price_key(self) -> str:
        return self.price_as or self.spec

    def __repr__(self) -> str:
        extra = f", price_as={self.price_as!r}" if self.price_as else ""
        return f"{type(self).__name__}({self.spec!r}{extra})"

    @abstractmethod
    async def _request(self, messages: list[Message], options: Options) -> Completion:
        """Send one call. Raise `minions.errors.ClientError` subclasses, never SDK exceptions."""

    def max_billed_tokens(self, options: Options) -> int:
        """The most completion tokens one call with `options` can be billed for (budget checks)."""
        return options.max_tokens * options.n

    def check_reasoning(self, effort: str) -> str | None:
        """None if this model takes reasoning effort `effort` (Options.reasoning_effort); else why not."""
        return f"{self.spec} takes no reasoning effort"

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` for this model; exact where the backend has a tokenizer."""
        from minions.tokens import count_tokens

        return count_tokens(text, self.spec).n

    async def complete(self, messages: MessagesLike, options: Options | None = None, **kw: Any) -> Completion:
        """One call with timeout and retries. Usage is that of the attempt that succeeded."""
        from minions.egress.record import acting_as

        # The outermost client's role holds for the whole call: a wrapper serving as the remote
        # (priced_as, a cache) over an engine that is also the local model records as the remote.
        with acting_as(self.egress_role):
            return await self._complete(messages, options, **kw)

    async def _complete(self, messages: MessagesLike, options: Options | None, **kw: Any) -> Completion:
        msgs = to_messages(messages)
        opts = options.model_copy(update=kw) if options else Options(**kw)
        policy = self.retry
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                if policy.timeout is None:
                    result = await self._request(msgs, opts)
                else:
                    result = await asyncio.wait_for(self._request(msgs, opts), policy.timeout)
                if not self.egress_at_transport and self._acting_role() == "remote":
                    self._record_in_process(msgs, result.usage)
            except asyncio.TimeoutError:
                err: errors.ClientError = errors.RequestTimeoutError(
                    f"{self.spec}: no reply within {policy.timeout:.0f}s (raise RetryPolicy.timeout "
                    "for slow local models)", provider=self.provider, model=self.model)
            except errors.ClientError as e:
                if not e.retryable:
                    raise
                err = e
            else:
                return result.model_copy(update={
                    "latency_s": time.perf_counter() - started, "attempts": attempt})
            if attempt > policy.max_retries:
                if isinstance(err, errors.ServerUnreachableError):
                    raise err  # its message already says how to start the server
                raise errors.RetriesExhaustedError(err, attempt) from err
            await asyncio.sleep(self._backoff(attempt, getattr(err, "retry_after", None)))

    def _record_in_process(self, messages: list[Message], usage: Usage) -> None:
        """The egress record of one call to an in-process remote, taken at the call itself."""
        from minions.egress.record import EgressRecord, emit, now, sha256, without_keys

        body = json.dumps({"model": self.model, "messages": [m.model_dump(include={"role", "content"})
                                                              for m in messages]}).encode()
        emit(EgressRecord(time=now(), via="in-process", host="in-process", provider=self.provider,
                          model=self.model, bytes=len(body), sha256=sha256(body),
                          text=without_keys("\n\n".join(m.content for m in messages), self),
                          prompt_tokens=usage.prompt_tokens,
                          completion_tokens=usage.completion_tokens,
                          cost_usd=self.egress_cost(usage)))

    def _acting_role(self) -> str | None:
        from minions.egress.record import role_of

        return role_of(self)

    def egress_cost(self, usage: Usage) -> float | None:
        """Dollars of one egress record (None: unpriced); the price is looked up once per client."""
        key = self.price_key
        if getattr(self, "_egress_price", (None, None))[0] != key:
            from minions.cost import PriceTable

            self._egress_price = (key, PriceTable.load().get(key))
        price = self._egress_price[1]
        return None if price is None else price.cost(usage)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry.max_retry_after)
        cap = min(self.retry.max_delay, self.retry.base_delay * 2 ** (attempt - 1))
        return cap * (0.5 + self._rng.random() / 2)  # "equal jitter": spread, never zero

    def complete_sync(self, messages: MessagesLike, options: Options | None = None, **kw: Any) -> Completion:
        return run_sync(self.complete(messages, options, **kw))

    async def batch(self, requests: Iterable[Request], *, concurrency: int = 4
                    ) -> list[Completion | errors.ClientError]:
        """Run many calls, at most `concurrency` at once. Failures come back in place, not raised."""
        sem = asyncio.Semaphore(concurrency)

        async def one(req: Request) -> Completion | errors.ClientError:
            async with sem:
                try:
                    return await self.complete(req.messages, req.options)
                except errors.ClientError as e:
                    return e

        return list(await asyncio.gather(*(one(r) for r in requests)))

    async def aclose(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release connections. Safe to call more than once."""
