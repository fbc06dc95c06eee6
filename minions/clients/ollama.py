"""Local models served by Ollama, through the official `ollama` SDK."""

from __future__ import annotations

import math
import os
from collections.abc import Awaitable
from typing import Any, TypeVar

from minions import errors
from minions.clients import _http
from minions.clients.base import Client, Completion, Message, Options, Usage
from minions.tokens import count_messages

T = TypeVar("T")
_CTX_STEP = 2048  # num_ctx granularity; also the floor (Ollama's own default is 2048-4096)


class OllamaClient(Client):
    provider = "ollama"
    egress_at_transport = True

    def __init__(self, model: str, *, host: str | None = None, **kw: Any):
        super().__init__(model, **kw)
        try:
            import httpx  # the ollama SDK's transport: its timeouts and dropped connections surface raw
            import ollama
        except ImportError as e:
            raise errors.MissingDependencyError("ollama", "ollama") from e
        self._ollama, self._httpx = ollama, httpx
        self.host = host or os.environ.get("OLLAMA_HOST") or "http://localhost:11434"
        self._sdk = ollama.AsyncClient(host=self.host, timeout=self.retry.timeout)
        from minions.egress.transport import wrap

        wrap(self._sdk._client, self)  # the SDK's httpx client: a worker on another machine is egress
        # The model's context limit, from `show()` once per instance (None: unknown). Concurrent
        # first calls may each ask; that is harmless and avoids a loop-bound lock.
        self._limit: int | None = self.context_window
        self._limit_known = self.context_window is not None

    async def _request(self, messages: list[Message], options: Options) -> Completion:
        limit = await self._context_limit()
        estimate = count_messages(messages, self.spec)
        # Ollama silently truncates prompts longer than num_ctx (default 2048-4096), so size it to
        # the prompt (+10% for tokenizer differences) plus the reply, in steps that let Ollama
        # reuse a loaded context across calls of similar size.
        need = math.ceil(estimate * 1.1) + options.max_tokens
        num_ctx = max(_CTX_STEP, math.ceil(need / _CTX_STEP) * _CTX_STEP)
        warnings: list[str] = []
        if limit is not None and estimate > limit:
            raise errors.ContextTooLongError(
                f"{self.spec}: the prompt (~{estimate} tokens) exceeds the model's {limit}-token context "
                "window. Use smaller chunks or fewer documents, or a model with a longer context.",
                provider=self.provider, model=self.model, prompt_tokens=estimate, limit=limit)
        if limit is not None and num_ctx > limit:
            num_ctx = limit
            warnings.append(f"{self.spec}: needs ~{need} tokens of context (prompt ~{estimate} + up to "
                            f"{options.max_tokens} to write) but the model's limit is {limit}; the reply "
                            "may be cut short.")
        opts: dict[str, Any] = {"num_ctx": num_ctx, "num_predict": options.max_tokens,
                                "temperature": options.temperature}
        if options.stop:
            opts["stop"] = list(options.stop)
        if options.n == 1:
            seeds = [options.seed]
        else:  # no `n` in Ollama: n calls, each with its own seed so the samples differ
            base = options.seed if options.seed is not None else self._rng.randrange(2**31)
            seeds = [base + i for i in range(options.n)]
        wire = [{"role": m.role, "content": m.content} for m in messages]
        calls = [self._call(self._sdk.chat(model=self.model, messages=wire, format=options.json_schema,
                                           options=opts if s is None else {**opts, "seed": s}, stream=False))
                 for s in seeds]
        parts = [await calls[0]] if len(calls) == 1 else await _http.gather_all(calls)
        texts, reasons, usage = [], [], Usage()
        for r in parts:
            try:
                texts.append(r.message.content or "")
                reasons.append(r.done_reason or "stop")
                usage += _usage(r.prompt_eval_count, r.eval_count or 0, estimate)
            except (AttributeError, TypeError) as e:
                raise _http.malformed(self.provider, self.model, e) from e
        return Completion(texts=texts, finish_reasons=reasons, usage=usage, model=self.model,
                          warnings=warnings)

    async def _context_limit(self) -> int | None:
        if not self._limit_known:
            info = (await self._call(self._sdk.show(self.model))).modelinfo or {}
            self._limit = next((int(v) for k, v in info.items() if k.endswith(".context_length")), None)
            self._limit_known = True
        return self._limit

    async def _call(self, call: Awaitable[T]) -> T:
        """Await one SDK call, mapping its failures onto minions.errors."""
        kw: dict[str, Any] = {"provider": self.provider, "model": self.model}
        try:
            return await call
        except self._ollama.ResponseError as e:
            detail = str(e.error)
            if e.status_code == 404 or "try pulling" in detail:
                raise errors.ModelNotFoundError(
                    f"Ollama at {self.host} does not have the model {self.model!r} ({detail}): "
                    f"run `ollama pull {self.model}`", **kw) from e
            status = e.status_code if e.status_code > 0 else 500  # -1: an error inside a 200 stream
            raise _http.status_error(status, detail, key_env="OLLAMA_API_KEY", **kw) from e
        except self._httpx.TimeoutException as e:
            raise errors.RequestTimeoutError(f"{self.spec}: no reply from {self.host} in time", **kw) from e
        except (ConnectionError, self._httpx.TransportError) as e:  # the SDK turns ConnectError into ConnectionError
            refused = type(e) is ConnectionError or _http.connect_failed(e)
            if refused:
                raise errors.ServerUnreachableError(
                    f"Ollama is not running at {self.host}: start it with `ollama serve` "
                    "(or point OLLAMA_HOST / host= at it)", **kw) from e
            raise _http.transport_error(e, url=self.host, start_hint="", **kw) from e
        except (ValueError, TypeError) as e:  # a 200 body that is not JSON, or not a ChatResponse
            raise _http.malformed(self.provider, self.model, e) from e

    async def aclose(self) -> None:
        await self._sdk.close()


def _usage(evaluated: int | None, completion: int, estimate: int) -> Usage:
    # Ollama reports only the prompt tokens it evaluated: a prefix reused from the loaded context
    # is left out of prompt_eval_count (and older servers drop the field when all of it was
    # reused). The full prompt length is not reported, so it comes from our estimate (cl100k +
    # chat framing). Tokenizers differ from cl100k by up to ~20%, so only a larger shortfall is
    # read as cache reuse: then prompt = estimate and cached = estimate - evaluated; otherwise
    # the server's count stands and nothing is cached. Heuristic by necessity; labelled so.
    if evaluated is None or evaluated < 0.8 * estimate:
        evaluated = evaluated or 0
        return Usage(prompt_tokens=estimate, completion_tokens=completion,
                     cached_prompt_tokens=estimate - evaluated, requests=1)
    return Usage(prompt_tokens=evaluated, completion_tokens=completion, requests=1)
