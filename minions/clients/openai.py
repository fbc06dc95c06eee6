"""OpenAI, and every server speaking its chat-completions wire format (vLLM, SGLang, llama-server,
LM Studio, Together, OpenRouter), through the official `openai` SDK. `base_url` picks the server."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from minions import errors
from minions.clients import _http
from minions.clients.base import Client, Completion, Message, Options, Usage
from minions.clients.openai_models import MAX_RETRY_TOKENS, check_effort, context_window_of, family_of

# Local servers ignore the key, but the SDK refuses to start without one.
_NO_KEY = "not-needed"


class OpenAIClient(Client):
    provider = "openai"
    egress_at_transport = True

    def __init__(self, model: str, *, api_key: str | None = None, base_url: str | None = None,
                 api_key_env: str | None = "OPENAI_API_KEY", provider_name: str = "openai",
                 reasoning_effort: str | None = None, **kw: Any):
        super().__init__(model, **kw)
        #: what this model accepts (max_completion_tokens, temperature, reasoning_effort, ...)
        self.family = family_of(model)
        if self.context_window is None:  # configured (context_window=, a providers file) wins over the table
            self.context_window = context_window_of(model)
        if reasoning_effort is not None and (why := check_effort(model, reasoning_effort)):
            raise errors.ConfigError(f"{provider_name}/{why}. Leave reasoning_effort unset for it, "
                                     "or pick a value it takes.")
        self.reasoning_effort = reasoning_effort or self.family.default_effort
        try:
            import openai
        except ImportError as e:
            raise errors.MissingDependencyError("openai", "openai") from e
        self._sdk_module = openai
        self.provider = provider_name  # type: ignore[misc]  # an instance may name its server
        self.api_key_env = api_key_env
        key = api_key or (os.environ.get(api_key_env) if api_key_env else None)
        if not key:
            # A key is required when the provider names a variable for it — except on a loopback
            # base_url, where `openai/MODEL + base_url=` reaches a local vLLM/llama-server that never
            # checks it (a server that does answers 401, and that error names the variable).
            if api_key_env and not (base_url and _http.is_local(base_url)):
                raise errors.MissingAPIKeyError(self.provider, api_key_env)
            key = _NO_KEY
        self.secrets = () if key == _NO_KEY else (key,)  # removed from every error this client raises
        self._sdk = self._make_sdk(openai, key, base_url)
        self.base_url = str(self._sdk.base_url)
        if key != _NO_KEY:
            _http.warn_plain_http(self.base_url, self.provider, api_key_env)
        #: set once the server rejected `json_schema`: later calls go straight to json_object
        self.json_object_only = False

    def check_reasoning(self, effort: str) -> str | None:
        why = check_effort(self.model, effort)
        return f"{self.provider}/{why}" if why else None

    def max_billed_tokens(self, options: Options) -> int:
        if not self.family.reasoning:
            return options.max_tokens * options.n
        # A reply that is all hidden reasoning is retried once with a larger budget; both are billed.
        retry = min(options.max_tokens * 4, MAX_RETRY_TOKENS)
        return (options.max_tokens + (retry if retry > options.max_tokens else 0)) * options.n

    def _make_sdk(self, openai: Any, key: str, base_url: str | None) -> Any:
        # max_retries=0: `Client.complete` retries, so each attempt's usage is seen (and counted) once.
        return openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=self.retry.timeout,
                                  http_client=self._http_client(openai))

    def _http_client(self, sdk: Any) -> Any:
        """The SDK's own default httpx client, with the egress record under its transport."""
        from minions.egress.transport import wrap

        return wrap(sdk.DefaultAsyncHttpxClient(), self)

    async def _request(self, messages: list[Message], options: Options) -> Completion:
        fam = self.family
        effort = options.reasoning_effort or self.reasoning_effort
        if options.reasoning_effort and (why := self.check_reasoning(options.reasoning_effort)):
            raise errors.BadRequestError(why, provider=self.provider, model=self.model)
        wire = messages if fam.system else _fold_system(messages)
        kw: dict[str, Any] = {"model": self.model, fam.max_tokens_field: options.max_tokens,
                              "messages": [{"role": m.role, "content": m.content} for m in wire]}
        if fam.temperature:  # reasoning models take only the default (1): none is sent
            kw["temperature"] = options.temperature
        if effort:
            kw["reasoning_effort"] = effort
        if options.n > 1:
            kw["n"] = options.n
        if options.seed is not None:
            kw["seed"] = options.seed
        if options.stop and fam.stop:
            kw["stop"] = list(options.stop)
        done = await self._send(kw, messages, options.json_schema)
        if fam.reasoning and _thought_only(done):
            # The hidden reasoning ate the whole budget. One retry with a larger one; its tokens are
            # billed too, so the usage returned covers both calls.
            bigger = min(options.max_tokens * 4, MAX_RETRY_TOKENS)
            first, budget = done, max(bigger, options.max_tokens)
            if bigger > options.max_tokens:
                done = await self._send({**kw, fam.max_tokens_field: bigger}, messages, options.json_schema)
                done = done.model_copy(update={"usage": first.usage + done.usage, "warnings": [
                    *done.warnings, f"{self.spec}: reasoning used all {options.max_tokens} completion tokens; "
                    f"retried with {bigger}"]})
            if _thought_only(done):
                u = done.usage
                raise errors.ReasoningBudgetError(
                    f"{self.spec}: the model spent its whole completion budget ({budget} tokens, "
                    f"{u.reasoning_tokens} of them hidden reasoning) thinking and wrote no answer. Raise the "
                    "remote max tokens (--remote-max-tokens) or lower the reasoning effort "
                    f"(--remote-reasoning {fam.efforts[0] if fam.efforts else 'low'}).",
                    provider=self.provider, model=self.model, usage=u)
        if options.stop and not fam.stop:
            done = _cut_at_stop(done, options.stop)
        return done

    async def _send(self, kw: dict[str, Any], messages: list[Message], schema: dict[str, Any] | None) -> Completion:
        if schema is None:
            return self._completion(await self._create(kw), messages)
        if not self.json_object_only:
            name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "response"))[:64]
            fmt = {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": False}}
            try:
                return self._completion(await self._create({**kw, "response_format": fmt}), messages)
            except errors.BadRequestError:
                pass  # servers without json_schema support answer 400; json_object is near-universal
        # json_object constrains to JSON but not to the schema, so the schema goes in the prompt
        # (OpenAI also insists the word "JSON" appears in the messages in this mode).
        kw = {**kw, "messages": _with_schema_instruction(kw["messages"], schema)}
        done = self._completion(await self._create({**kw, "response_format": {"type": "json_object"}}),
                                messages)
        self.json_object_only = True
        return done

    async def _create(self, kw: dict[str, Any]) -> Any:
        try:
            return await self._sdk.chat.completions.create(**kw)
        except self._sdk_module.OpenAIError as e:
            _http.raise_sdk_error(e, self._sdk_module, provider=self.provider, model=self.model,
                                  url=self.base_url, key_env=self.api_key_env, secrets=self.secrets)
        except json.JSONDecodeError as e:  # a 200 whose body claims to be JSON and is not
            raise _http.malformed(self.provider, self.model, e) from e

    def _completion(self, resp: Any, messages: list[Message]) -> Completion:
        # Without strict validation the SDK hands back whatever the server sent (a str for a
        # non-JSON body, a half-built model for the wrong shape): check the fields we rely on.
        try:
            texts = [c.message.content or "" for c in resp.choices]
            reasons = [c.finish_reason or "stop" for c in resp.choices]
            if not texts or not all(isinstance(t, str) for t in texts):
                raise ValueError(f"no text in choices: {resp.choices!r:.200}")
            warnings: list[str] = []
            if resp.usage is None:  # some compatible servers omit usage; estimate rather than count 0
                from minions.tokens import count_messages

                warnings.append(f"{self.spec}: the server reported no usage; tokens are estimated")
                usage = Usage(prompt_tokens=count_messages(messages), requests=1,
                              completion_tokens=sum(self.count_tokens(t) for t in texts))
            else:
                details = getattr(resp.usage, "prompt_tokens_details", None)
                out_details = getattr(resp.usage, "completion_tokens_details", None)
                usage = Usage(prompt_tokens=resp.usage.prompt_tokens or 0,
                              completion_tokens=resp.usage.completion_tokens or 0,
                              cached_prompt_tokens=getattr(details, "cached_tokens", None) or 0,
                              reasoning_tokens=getattr(out_details, "reasoning_tokens", None) or 0, requests=1)
            return Completion(texts=texts, finish_reasons=reasons, usage=usage, model=self.model,
                              warnings=warnings)
        except (AttributeError, TypeError, ValueError) as e:
            raise _http.malformed(self.provider, self.model, e) from e

    async def aclose(self) -> None:
        await self._sdk.close()


def _thought_only(done: Completion) -> bool:
    """Every choice came back empty because the budget ran out (hidden reasoning took it all)."""
    return all(not t.strip() for t in done.texts) and all(r == "length" for r in done.finish_reasons)


def _cut_at_stop(done: Completion, stop: tuple[str, ...]) -> Completion:
    """`stop` for models that refuse it: the reply cut at the first stop sequence, as the API would."""
    texts, reasons = [], []
    for text, reason in zip(done.texts, done.finish_reasons, strict=True):
        cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
        texts.append(text[:min(cuts)] if cuts else text)
        reasons.append("stop" if cuts else reason)
    return done.model_copy(update={"texts": texts, "finish_reasons": reasons})


def _fold_system(messages: list[Message]) -> list[Message]:
    """For models without system messages (o1-mini): system text leads the first user message."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    rest = [m for m in messages if m.role != "system"]
    if not system:
        return rest
    if rest and rest[0].role == "user":
        return [Message(role="user", content=f"{system}\n\n{rest[0].content}"), *rest[1:]]
    return [Message(role="user", content=system), *rest]


def _with_schema_instruction(messages: list[dict[str, str]], schema: dict[str, Any]) -> list[dict[str, str]]:
    note = f"Reply with one JSON object that matches this JSON schema:\n{json.dumps(schema)}"
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{messages[0]['content']}\n\n{note}"}, *messages[1:]]
    return [{"role": "system", "content": note}, *messages]
