"""Loopback test gateway — test infrastructure, not product.

One stdlib HTTP server on 127.0.0.1 speaks three wire formats so each cloud client is tested
through its real SDK over real HTTP:

    POST /v1/chat/completions   OpenAI (response_format, n, usage.prompt_tokens_details.cached_tokens)
    POST /v1/messages           Anthropic (system blocks, forced tool -> tool_use, cache_* usage)
    POST /api/chat              Ollama, non-streaming (format, options.num_ctx, prompt_eval_count)
    POST /api/show, GET /api/tags, GET /api/version

It is as strict as the real APIs (see `_openai_refusal` and `_anthropic_refusal`): parameters a
model refuses get that API's own 400 body — OpenAI reasoning models (gpt-5 family, o-series) refuse
`max_tokens`, any temperature but 1, `stop`, and efforts they do not take; unknown top-level fields
are refused; Anthropic requires `max_tokens`, keeps temperature in [0, 1] and enforces the extended
thinking rules. Reasoning models think in a deterministic number of hidden tokens per effort
(`Gateway.reasoning_tokens`), counted against `max_completion_tokens` and reported in
`completion_tokens_details`; when they use up the budget the reply is empty with
finish_reason "length", as the real API's is. Azure OpenAI's URL shape
(/openai/deployments/{name}/chat/completions?api-version=...) is served too, and any path ending in
/chat/completions speaks the OpenAI format (for providers whose base URL has its own path).

Replies come from a pluggable `minions` Client backend (default: the embedded SmolLM2, created on
first use and kept for the gateway's life) run through its sync wrapper; the backend's usage,
cached tokens included, is reported in each format. Per-test switches inject faults: see
`Gateway.reset` for the full list. Generation routes only consume faults; /api/show and
/api/tags always answer.
"""

from __future__ import annotations

import functools
import json
import random
import re
import socket
import threading
import time
import traceback
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from minions import errors
from minions.clients.base import Client, Completion, Message, Options, Usage
from minions.clients.function import FunctionClient
from minions.tokens import count_messages, count_tokens

#: what the gateway's reasoning models think, per effort (the API's default effort is "medium")
REASONING_TOKENS = {"none": 0, "minimal": 8, "low": 64, "medium": 256, "high": 1024}
FAULTS = ("429", "500", "slow", "drop", "malformed", "wrong_shape")
OPENAI, ANTHROPIC, OLLAMA = "/v1/chat/completions", "/v1/messages", "/api/chat"
AZURE = re.compile(r"/openai/deployments/([^/]+)/chat/completions")
GENERATE_ROUTES = (OPENAI, ANTHROPIC, OLLAMA)
ROUTES = {"openai": OPENAI, "anthropic": ANTHROPIC, "ollama": OLLAMA}  # provider -> generation route


@dataclass
class Recorded:
    route: str
    body: dict[str, Any]
    headers: dict[str, str]
    raw: bytes = b""  # the body's bytes as received (egress tests compare their hash)


class ScriptedBackend(FunctionClient):
    """A FunctionClient that counts tokens like a server would (cl100k, chat framing) and can
    report a prompt-cache hit of `cached_prompt_tokens` — so wire-format usage can be checked."""

    def __init__(self, fn: Callable[[list[Message], Options], Any] | None = None, *,
                 cached_prompt_tokens: int = 0, **kw: Any):
        super().__init__(fn or (lambda _m, _o: "ok"), **kw)
        self.cached_prompt_tokens = cached_prompt_tokens
        #: every Completion this backend returned, in order
        self.returned: list[Completion] = []

    def count_tokens(self, text: str) -> int:
        return count_tokens(text).n

    async def _request(self, messages: list[Message], options: Options) -> Completion:
        out = await super()._request(messages, options)
        prompt = count_messages(messages)
        out = out.model_copy(update={"usage": Usage(
            prompt_tokens=prompt, completion_tokens=out.usage.completion_tokens,
            cached_prompt_tokens=min(self.cached_prompt_tokens, prompt), requests=1)})
        self.returned.append(out)
        return out


class Gateway:
    def __init__(self, default_backend: Callable[[], Client] | None = None):
        self._default_factory = default_backend
        self._default: Client | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.reset()

    def reset(self) -> None:
        """Back to a clean, fault-free gateway (the default backend instance is kept)."""
        with self._lock:
            #: the Client answering requests; None means the default (embedded) backend
            self.backend: Client | None = None
            #: faults consumed one per generation request, in order (see FAULTS)
            self.faults: deque[str] = deque()
            self.fault_probability = 0.0
            self.fault_kinds: tuple[str, ...] = ("429", "500", "drop", "malformed")
            self._fault_rng = random.Random(0)
            self.retry_after = 0.05  # seconds, sent with every 429
            self.slow_seconds = 1.0  # how long a "slow" reply sleeps before answering
            #: requests received per route path, faulted ones included
            self.counts: Counter[str] = Counter()
            #: every request body received, in order
            self.requests: list[Recorded] = []
            #: models that answer 404 in every wire format ("not pulled" for Ollama)
            self.not_pulled: set[str] = set()
            #: model -> context limit in backend tokens; longer prompts get each format's error
            self.context_limits: dict[str, int] = {}
            self.default_context_length = 8192  # what /api/show reports for other models
            #: when set, OpenAI/Anthropic requests must carry this key or get 401
            self.api_key: str | None = None
            #: False: OpenAI route rejects response_format json_schema with 400 (older servers)
            self.openai_json_schema = True
            #: Anthropic: report this many uncached prompt tokens as cache_creation_input_tokens
            self.anthropic_cache_creation = 0
            #: hidden reasoning tokens an OpenAI reasoning model spends per reasoning_effort
            self.reasoning_tokens: dict[str, int] = dict(REASONING_TOKENS)
            #: hidden thinking tokens a Claude model spends, at most its budget
            self.thinking_tokens = 300
            #: exceptions raised inside the gateway itself (bugs); the fixture asserts it stays empty
            self.errors: list[str] = []

    # -- switches ----------------------------------------------------------------------------------

    def inject(self, *faults: str) -> Gateway:
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {unknown}; use {FAULTS}")
        with self._lock:
            self.faults.extend(faults)
        return self

    def random_faults(self, probability: float, *, seed: int = 0,
                      kinds: tuple[str, ...] = ("429", "500", "drop", "malformed")) -> Gateway:
        """Fault each generation request with `probability`, kind drawn from `kinds` (seeded)."""
        with self._lock:
            self.fault_probability, self.fault_kinds = probability, kinds
            self._fault_rng = random.Random(seed)
        return self

    def bodies(self, route: str) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if r.route == route]

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Gateway:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.gateway = self
        threading.Thread(target=self._server.serve_forever, name="gateway", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None, "call start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    def client(self, provider: str, model: str | None = None, **kw: Any) -> Client:
        """Our client for `provider` ("openai", "anthropic", "ollama") pointed at this gateway.
        Keyword arguments go to its constructor (retry=, api_key=, ...)."""
        if provider == "openai":
            from minions.clients.openai import OpenAIClient

            kw.setdefault("api_key", "sk-test")
            return OpenAIClient(model or "gpt-4o-mini", base_url=self.openai_url, **kw)
        if provider == "anthropic":
            from minions.clients.anthropic import AnthropicClient

            kw.setdefault("api_key", "sk-ant-test")
            return AnthropicClient(model or "claude-haiku-4-5", base_url=self.url, **kw)
        if provider == "ollama":
            from minions.clients.ollama import OllamaClient

            return OllamaClient(model or "smollm2:135m", host=self.url, **kw)
        raise ValueError(f"the gateway speaks openai, anthropic and ollama, not {provider!r}")

    @property
    def default_backend(self) -> Client:
        with self._lock:
            if self._default is None:
                if self._default_factory is None:
                    raise RuntimeError("this gateway has no default backend; set gateway.backend")
                self._default = self._default_factory()
            return self._default

    # -- used by the handler -----------------------------------------------------------------------

    def _record(self, route: str, body: dict[str, Any], headers: dict[str, str], raw: bytes = b"") -> None:
        with self._lock:
            self.counts[route] += 1
            self.requests.append(Recorded(route, body, headers, raw))

    def _next_fault(self) -> str | None:
        with self._lock:
            if self.faults:
                return self.faults.popleft()
            if self.fault_probability and self._fault_rng.random() < self.fault_probability:
                return self._fault_rng.choice(self.fault_kinds)
        return None

    def _too_long(self, backend: Client, model: str, messages: list[Message]) -> tuple[int, int] | None:
        limit = self.context_limits.get(model)
        if limit is None:
            return None
        tokens = sum(backend.count_tokens(m.content) for m in messages)
        return (tokens, limit) if tokens > limit else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    gateway: Gateway

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, "slow" fault) leaves a broken pipe behind: expected.
        pass


class _Reply(Exception):
    """Raised inside a route to send an error response right away."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        self.status, self.body, self.headers = status, body, headers or {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    # Headers and body go out in separate writes; with Nagle on, the second waits for the
    # client's delayed ACK (~40 ms per reply on loopback).
    disable_nagle_algorithm = True
    server: _Server
    _backend: Client | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        gw = self.server.gateway
        gw._record(self.path, {}, dict(self.headers))
        if self.path == "/api/tags":
            names = sorted({"smollm2:135m", *gw.context_limits} - gw.not_pulled)
            self._send(200, {"models": [{"name": n, "model": n, "size": 0, "digest": "0" * 64,
                                         "modified_at": "2025-01-01T00:00:00Z"} for n in names]})
        elif self.path == "/api/version":
            self._send(200, {"version": "0.6.0"})
        else:
            self._send(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:
        gw = self.server.gateway
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_unparsed": raw.decode("utf-8", "replace")}
        path, _, query = self.path.partition("?")
        gw._record(path, body, dict(self.headers), raw)
        # Resolved now, so a "slow" reply finishing after its test ended still uses that test's backend.
        self._backend = gw.backend
        route = {OPENAI: self._openai, ANTHROPIC: self._anthropic, OLLAMA: self._ollama,
                 "/api/show": self._show}.get(path)
        if route is None and (m := AZURE.fullmatch(path)):
            route = functools.partial(self._azure, deployment=m.group(1), query=query)
        elif route is None and path.endswith("/chat/completions"):
            route = self._openai  # an OpenAI-compatible provider whose base URL has its own path
        fmt = "openai" if path.endswith("/chat/completions") else {ANTHROPIC: "anthropic"}.get(path, "ollama")
        try:
            if route is None:
                raise _Reply(404, _error(fmt, 404, f"no route {path}"))
            if fmt != "ollama" or path == OLLAMA:
                if self._fault(gw._next_fault(), fmt):
                    return
            route(gw, body)
        except _Reply as r:
            self._send(r.status, r.body, r.headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away
        except Exception as e:  # a gateway bug: answer 500 and keep it for the fixture to report
            gw.errors.append(traceback.format_exc())
            self._send(500, _error(fmt, 500, f"gateway bug: {e!r}"))

    # -- faults ------------------------------------------------------------------------------------

    def _fault(self, fault: str | None, fmt: str) -> bool:
        """Apply a fault; True when the request is finished (no normal reply)."""
        gw = self.server.gateway
        if fault == "429":
            self._send(429, _error(fmt, 429, "rate limited"), {"Retry-After": str(gw.retry_after)})
        elif fault == "500":
            self._send(500, _error(fmt, 500, "internal error"))
        elif fault == "drop":  # close the socket without a byte of reply
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif fault == "malformed":
            self._send_raw(200, b"<html>upstream hiccup</html>", "application/json")
        elif fault == "wrong_shape":
            self._send(200, {"unexpected": True})
        elif fault == "slow":
            time.sleep(gw.slow_seconds)
            return False  # then answer normally, to a client that has usually given up
        else:
            return False
        return True

    # -- routes ------------------------------------------------------------------------------------

    def _check(self, gw: Gateway, fmt: str, model: str, key: str | None) -> None:
        if fmt != "ollama" and gw.api_key is not None and key != gw.api_key:
            raise _Reply(401, _error(fmt, 401, "invalid api key"))
        if model in gw.not_pulled:
            raise _Reply(404, _error(fmt, 404, f"model {model!r} not found"))

    def _run(self, gw: Gateway, fmt: str, model: str, messages: list[Message], options: Options) -> Completion:
        backend = self._backend or gw.default_backend
        if (over := gw._too_long(backend, model, messages)) is not None:
            raise _Reply(400, _error(fmt, 400, "", too_long=over))
        try:
            return backend.complete_sync(messages, options)
        except errors.ContextTooLongError as e:
            raise _Reply(400, _error(fmt, 400, str(e), too_long=(e.prompt_tokens or 0, e.limit or 0))) from e

    def _azure(self, gw: Gateway, body: dict[str, Any], *, deployment: str, query: str) -> None:
        """Azure OpenAI: the deployment is in the path, the API version in the query, the key in `api-key`."""
        if "api-version=" not in query:
            raise _Reply(404, {"error": {"code": "404", "message": "Resource not found"}})
        if gw.api_key is not None and self.headers.get("api-key") != gw.api_key:
            raise _Reply(401, {"error": {"code": "401", "message": "Access denied due to invalid subscription "
                                         "key or wrong API endpoint. Make sure to provide a valid key for an "
                                         "active subscription and use a correct regional API endpoint for "
                                         "your resource."}})
        self._openai(gw, {**body, "model": deployment}, key=gw.api_key)

    def _openai(self, gw: Gateway, body: dict[str, Any], key: str | None = None) -> None:
        model = body.get("model", "")
        if key is None:
            key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        self._check(gw, "openai", model, key)
        if (refusal := _openai_refusal(body)) is not None:
            raise _Reply(400, {"error": refusal})
        efforts = _openai_efforts(model)
        schema = None
        rf = body.get("response_format") or {}
        if rf.get("type") == "json_schema":
            if not gw.openai_json_schema:
                raise _Reply(400, _error("openai", 400, "response_format type 'json_schema' is not supported"))
            schema = rf["json_schema"]["schema"]
        elif rf.get("type") == "json_object":
            schema = {"type": "object"}
        stop = body.get("stop")
        budget = body.get("max_completion_tokens") or body.get("max_tokens") or 4096
        hidden = 0 if efforts is None else gw.reasoning_tokens[body.get("reasoning_effort") or "medium"]
        n = body.get("n") or 1
        if hidden >= budget:  # the hidden reasoning ate the whole budget: nothing left to answer with
            texts, reasons = [""] * n, ["length"] * n
            prompt = count_messages([Message(role=m["role"], content=_text(m.get("content")))
                                     for m in body.get("messages", [])])
            u = Usage(prompt_tokens=prompt, requests=1)
            hidden = budget
        else:
            options = Options(max_tokens=budget - hidden, temperature=body.get("temperature") or 0.0, n=n,
                              seed=body.get("seed"), json_schema=schema,
                              stop=tuple([stop] if isinstance(stop, str) else stop) if stop else None)
            messages = [Message(role=m["role"], content=_text(m.get("content"))) for m in body.get("messages", [])]
            out = self._run(gw, "openai", model, messages, options)
            texts, reasons, u = out.texts, out.finish_reasons, out.usage
        usage_extra = hidden * n
        self._send(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
            "created": int(time.time()), "model": model,
            "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "logprobs": None,
                         "finish_reason": r} for i, (t, r) in enumerate(zip(texts, reasons, strict=True))],
            "usage": {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens + usage_extra,
                      "total_tokens": u.total_tokens + usage_extra,
                      "prompt_tokens_details": {"cached_tokens": u.cached_prompt_tokens},
                      "completion_tokens_details": {"reasoning_tokens": usage_extra}},
        })

    def _anthropic(self, gw: Gateway, body: dict[str, Any]) -> None:
        model = body.get("model", "")
        # Older SDKs send x-api-key, newer ones a bearer token.
        key = self.headers.get("x-api-key") or (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        self._check(gw, "anthropic", model, key)
        if (refusal := _anthropic_refusal(body)) is not None:
            raise _Reply(400, {"type": "error", "error": {"type": "invalid_request_error", "message": refusal}})
        thinking = body.get("thinking") or {}
        thought = 0
        if thinking.get("type") in ("enabled", "adaptive"):
            thought = min(gw.thinking_tokens, thinking.get("budget_tokens") or gw.thinking_tokens,
                          body["max_tokens"])
        messages = []
        if system := body.get("system"):
            messages.append(Message(role="system", content=_text(system)))
        messages += [Message(role=m["role"], content=_text(m["content"])) for m in body.get("messages", [])]
        tool = None
        if (choice := body.get("tool_choice") or {}).get("type") == "tool":
            tool = next(t for t in body.get("tools", []) if t["name"] == choice["name"])
        stop = body.get("stop_sequences")
        if thought >= body["max_tokens"]:  # thinking used every token: no text at all
            out = Completion(texts=[""], finish_reasons=["length"], model=model, usage=Usage(
                prompt_tokens=count_messages(messages), requests=1))
        else:
            options = Options(max_tokens=body["max_tokens"] - thought, temperature=body.get("temperature") or 0.0,
                              json_schema=tool["input_schema"] if tool else None,
                              stop=tuple(stop) if stop else None)
            out = self._run(gw, "anthropic", model, messages, options)
        u = out.usage
        creation = min(gw.anthropic_cache_creation, u.prompt_tokens - u.cached_prompt_tokens)
        content: list[dict[str, Any]] = [{"type": "text", "text": out.text}]
        thinking_block = [{"type": "thinking", "thinking": "Considering the question.",
                           "signature": "sig-" + uuid.uuid4().hex[:8]}] if thought else []
        if tool is not None:
            try:
                content = [{"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:12]}", "name": tool["name"],
                            "input": json.loads(out.text)}]
            except ValueError:
                pass  # the backend wrote no JSON: answer with text, as a model ignoring the tool would
        self._send(200, {
            "id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message", "role": "assistant", "model": model,
            "content": thinking_block + content, "stop_sequence": None,
            "stop_reason": "tool_use" if content[0]["type"] == "tool_use" else
            {"length": "max_tokens"}.get(out.finish_reasons[0], "end_turn"),
            "usage": {"input_tokens": u.prompt_tokens - u.cached_prompt_tokens - creation,
                      # thinking is billed inside output_tokens, with no count of its own
                      "output_tokens": u.completion_tokens + thought, "cache_read_input_tokens": u.cached_prompt_tokens,
                      "cache_creation_input_tokens": creation},
        })

    def _ollama(self, gw: Gateway, body: dict[str, Any]) -> None:
        model = body.get("model", "")
        self._check(gw, "ollama", model, None)
        opts = body.get("options") or {}
        fmt = body.get("format")
        schema = fmt if isinstance(fmt, dict) else ({"type": "object"} if fmt == "json" else None)
        predict = opts.get("num_predict") or 0
        stop = opts.get("stop")
        options = Options(max_tokens=predict if predict > 0 else 512, temperature=opts.get("temperature") or 0.0,
                          seed=opts.get("seed"), json_schema=schema, stop=tuple(stop) if stop else None)
        messages = [Message(role=m["role"], content=m.get("content") or "") for m in body.get("messages", [])]
        out = self._run(gw, "ollama", model, messages, options)
        u = out.usage
        self._send(200, {
            "model": model, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "message": {"role": "assistant", "content": out.text}, "done": True,
            "done_reason": out.finish_reasons[0], "total_duration": 1, "load_duration": 0,
            # Ollama counts only the prompt tokens it evaluated; a reused prefix is left out.
            "prompt_eval_count": u.prompt_tokens - u.cached_prompt_tokens, "prompt_eval_duration": 1,
            "eval_count": u.completion_tokens, "eval_duration": 1,
        })

    def _show(self, gw: Gateway, body: dict[str, Any]) -> None:
        model = body.get("model") or body.get("name") or ""
        if model in gw.not_pulled:
            raise _Reply(404, {"error": f"model '{model}' not found"})
        limit = gw.context_limits.get(model, gw.default_context_length)
        self._send(200, {"modelfile": "", "parameters": "", "template": "{{ .Prompt }}",
                         "details": {"format": "gguf", "family": "llama", "parameter_size": "135M"},
                         "model_info": {"general.architecture": "llama", "llama.context_length": limit},
                         "capabilities": ["completion"]})

    # -- output ------------------------------------------------------------------------------------

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_raw(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


# -- what the real APIs refuse -------------------------------------------------------------------------

#: chat.completions request fields (the openai SDK's CompletionCreateParams); others are refused
OPENAI_FIELDS = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stop", "seed",
    "response_format", "reasoning_effort", "stream", "stream_options", "frequency_penalty", "presence_penalty",
    "logprobs", "top_logprobs", "logit_bias", "user", "tools", "tool_choice", "parallel_tool_calls", "store",
    "metadata", "service_tier", "modalities", "audio", "prediction", "verbosity", "web_search_options",
    "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention", "moderation", "safety_identifier",
    "functions", "function_call"})
#: OpenAI reasoning models and the reasoning_effort values each accepts (() = none; first match wins).
#: Written from the API's documented behaviour, independently of the client's own table.
OPENAI_REASONING: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    (r"gpt-5(\.\d+)?-chat", None),
    (r"gpt-5\.\d+", ("none", "low", "medium", "high")),
    (r"gpt-5", ("minimal", "low", "medium", "high")),
    (r"o1-(mini|preview)", ()),
    (r"o\d", ("low", "medium", "high")),
)


def _openai_efforts(model: str) -> tuple[str, ...] | None:
    """The efforts a reasoning model takes; None for a non-reasoning model."""
    name = model.rsplit("/", 1)[-1]
    return next((e for pattern, e in OPENAI_REASONING if re.match(pattern, name)), None)


def _quote_all(values: tuple[str, ...]) -> str:
    quoted = [f"'{v}'" for v in values]
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}" if len(quoted) > 1 else quoted[0]


def _openai_refusal(body: dict[str, Any]) -> dict[str, Any] | None:
    """The `error` object OpenAI answers 400 with, or None when the request is acceptable."""
    def err(message: str, param: str | None, code: str | None) -> dict[str, Any]:
        return {"message": message, "type": "invalid_request_error", "param": param, "code": code}

    for name in body:
        if name not in OPENAI_FIELDS:
            return err(f"Unrecognized request argument supplied: {name}", None, None)
    for name in ("model", "messages"):
        if name not in body:
            return err(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")
    temp = body.get("temperature")
    if temp is not None and not 0 <= temp <= 2:
        side = "above maximum value. Expected a value <= 2" if temp > 2 else "below minimum value. Expected a value >= 0"
        return err(f"Invalid 'temperature': decimal {side}, but got {json.dumps(temp)} instead.", "temperature",
                   "decimal_above_max_value" if temp > 2 else "decimal_below_min_value")
    efforts = _openai_efforts(body["model"])
    effort = body.get("reasoning_effort")
    if efforts is None:
        if effort is not None:
            return err("Unrecognized request argument supplied: reasoning_effort", None, None)
        return None
    # a reasoning model
    for name, hint in (("max_tokens", " Use 'max_completion_tokens' instead."), ("stop", "")):
        if body.get(name) is not None:
            return err(f"Unsupported parameter: '{name}' is not supported with this model.{hint}", name,
                       "unsupported_parameter")
    if temp is not None and temp != 1:
        return err(f"Unsupported value: 'temperature' does not support {json.dumps(temp)} with this model. Only "
                   "the default (1) value is supported.", "temperature", "unsupported_value")
    if effort is not None and not efforts:
        return err("Unsupported parameter: 'reasoning_effort' is not supported with this model.", "reasoning_effort",
                   "unsupported_parameter")
    if effort is not None and effort not in efforts:
        return err(f"Unsupported value: 'reasoning_effort' does not support '{effort}' with this model. Supported "
                   f"values are: {_quote_all(efforts)}.", "reasoning_effort", "unsupported_value")
    if not efforts:  # the first o1 releases take no system messages
        for i, m in enumerate(body["messages"]):
            if m.get("role") == "system":
                return err(f"Unsupported value: 'messages[{i}].role' does not support 'system' with this model.",
                           f"messages[{i}].role", "unsupported_value")
    return None


#: Messages API request fields (the anthropic SDK's MessageCreateParams, plus the sampling parameters
#: that models before Opus 4.7 still take); others are refused ("<name>: Extra inputs are not permitted")
ANTHROPIC_FIELDS = frozenset({
    "model", "messages", "max_tokens", "system", "temperature", "top_p", "top_k", "stop_sequences", "stream",
    "metadata", "tools", "tool_choice", "thinking", "service_tier", "container", "mcp_servers",
    "context_management", "output_config", "cache_control", "inference_geo", "speed", "diagnostics",
    "user_profile_id", "workspace_id"})
_THINKING_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
#: Claude models that take no sampling parameters and only adaptive thinking (Opus 4.7 and later)
ANTHROPIC_ADAPTIVE_ONLY = re.compile(r"claude-(opus-4-([7-9]|\d\d)|[a-z]+-([5-9]|\d\d))")


def _anthropic_refusal(body: dict[str, Any]) -> str | None:
    """The message Anthropic answers 400 (invalid_request_error) with, or None when acceptable."""
    for name in body:
        if name not in ANTHROPIC_FIELDS:
            return f"{name}: Extra inputs are not permitted"
    for name in ("model", "messages", "max_tokens"):
        if name not in body:
            return f"{name}: Field required"
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    temp = body.get("temperature")
    adaptive_only = bool(ANTHROPIC_ADAPTIVE_ONLY.search(body["model"]))
    if temp is not None and adaptive_only:
        return "`temperature` is deprecated for this model."
    if temp is not None and temp > 1:
        return "temperature: Input should be less than or equal to 1"
    if temp is not None and temp < 0:
        return "temperature: Input should be greater than or equal to 0"
    thinking = body.get("thinking")
    if not thinking or thinking.get("type") == "disabled":
        return None
    if thinking.get("type") == "enabled":
        if adaptive_only:
            return ('"thinking.type.enabled" is not supported for this model. Use "thinking.type.adaptive" and '
                    '"output_config.effort" to control thinking behavior.')
        budget = thinking.get("budget_tokens")
        if budget is None:
            return "thinking.enabled.budget_tokens: Field required"
        if budget < 1024:
            return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        if body["max_tokens"] <= budget:
            return ("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation "
                    f"at {_THINKING_DOCS}#max-tokens-and-context-window-size")
    if temp is not None and temp != 1:
        return ("`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation at "
                f"{_THINKING_DOCS}#important-considerations-when-using-extended-thinking")
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        return "Thinking may not be enabled when tool_choice forces tool use."
    return None


def _text(content: Any) -> str:
    """Message content as text: a string, or a list of text blocks/parts (OpenAI and Anthropic)."""
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


_KINDS = {
    "openai": {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
               429: "requests", 500: "server_error"},
    "anthropic": {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                  429: "rate_limit_error", 500: "api_error"},
}
_CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}


def _error(fmt: str, status: int, message: str, *, too_long: tuple[int, int] | None = None) -> dict[str, Any]:
    """An error body as each server writes it."""
    code = _CODES.get(status)
    if too_long is not None:
        n, limit = too_long
        message, code = {
            "openai": (f"This model's maximum context length is {limit} tokens. However, your messages "
                       f"resulted in {n} tokens. Please reduce the length of the messages.",
                       "context_length_exceeded"),
            "anthropic": (f"prompt is too long: {n} tokens > {limit} maximum", None),
            "ollama": (f"the input length ({n} tokens) exceeds the context length ({limit} tokens)", None),
        }[fmt]
    elif fmt == "ollama" and status == 404:
        message = f"{message}, try pulling it first"
    if fmt == "openai":
        return {"error": {"message": message, "type": _KINDS["openai"].get(status, "invalid_request_error"),
                          "param": None, "code": code}}
    if fmt == "anthropic":
        return {"type": "error", "error": {"type": _KINDS["anthropic"].get(status, "api_error"), "message": message}}
    return {"error": message}
