"""Anthropic's Messages API through the official `anthropic` SDK."""

from __future__ import annotations

import json
import os
from typing import Any

from minions import errors
from minions.clients import _http
from minions.clients.base import Client, Completion, Message, Options, Usage

_KEY_ENV = "ANTHROPIC_API_KEY"
_TOOL = "respond"
_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "stop", "max_tokens": "length"}


class AnthropicClient(Client):
    provider = "anthropic"

    def __init__(self, model: str, *, api_key: str | None = None, base_url: str | None = None, **kw: Any):
        super().__init__(model, **kw)
        try:
            import anthropic
        except ImportError as e:
            raise errors.MissingDependencyError("anthropic", "anthropic") from e
        self._sdk_module = anthropic
        key = api_key or os.environ.get(_KEY_ENV)
        if not key:
            raise errors.MissingAPIKeyError(self.provider, _KEY_ENV)
        self.secrets = (key,)  # removed from every error this client raises
        # The key is always passed explicitly, so the SDK never falls back to profiles on disk.
        # max_retries=0: `Client.complete` retries, so each attempt's usage is seen (and counted) once.
        self._sdk = anthropic.AsyncAnthropic(api_key=key, base_url=base_url, max_retries=0,
                                             timeout=self.retry.timeout)
        self.base_url = str(self._sdk.base_url)

    async def _request(self, messages: list[Message], options: Options) -> Completion:
        kw = self._params(messages, options)
        if options.n == 1:
            return await self._one(kw, options)
        # The Messages API has no `n`: n calls, at once.
        parts = await _http.gather_all([self._one(kw, options) for _ in range(options.n)])
        usage = sum((p.usage for p in parts), Usage())
        return Completion(texts=[t for p in parts for t in p.texts], usage=usage, model=self.model,
                          finish_reasons=[r for p in parts for r in p.finish_reasons])

    def _params(self, messages: list[Message], options: Options) -> dict[str, Any]:
        system: list[dict[str, Any]] = []
        turns: list[dict[str, Any]] = []
        for m in messages:
            if not m.content:
                continue  # the API rejects empty text blocks
            block: dict[str, Any] = {"type": "text", "text": m.content}
            if m.cache:  # end of a stable prefix: the provider caches everything up to here
                block["cache_control"] = {"type": "ephemeral"}
            if m.role == "system":
                system.append(block)
            elif turns and turns[-1]["role"] == m.role:  # roles must alternate: merge runs
                turns[-1]["content"].append(block)
            else:
                turns.append({"role": m.role, "content": [block]})
        # No temperature: current Messages API versions do not take sampling parameters.
        kw: dict[str, Any] = {"model": self.model, "max_tokens": options.max_tokens, "messages": turns}
        if system:
            kw["system"] = system
        if options.stop:
            kw["stop_sequences"] = list(options.stop)
        if options.json_schema is not None:
            # JSON via one forced tool: its input is constrained to the schema. The input must be an
            # object, so other top-level types are wrapped in {"value": ...} and unwrapped on return.
            kw["tools"] = [{"name": _TOOL, "description": "Give the answer in this exact structure.",
                            "input_schema": _object_schema(options.json_schema)}]
            kw["tool_choice"] = {"type": "tool", "name": _TOOL}
        return kw

    async def _one(self, kw: dict[str, Any], options: Options) -> Completion:
        try:
            resp = await self._sdk.messages.create(**kw)
        except self._sdk_module.AnthropicError as e:
            _http.raise_sdk_error(e, self._sdk_module, provider=self.provider, model=self.model,
                                  url=self.base_url, key_env=_KEY_ENV, secrets=self.secrets)
        except json.JSONDecodeError as e:
            raise _http.malformed(self.provider, self.model, e) from e
        try:
            texts, tool_input = [], None
            for block in resp.content:
                if block.type == "tool_use":
                    tool_input = block.input
                elif block.type == "text":
                    texts.append(block.text)
            if tool_input is not None:
                wrapped = options.json_schema is not None and not _is_object(options.json_schema)
                text = json.dumps(tool_input["value"] if wrapped else tool_input)
            else:  # no tool call: hand back the text; callers parse and repair
                text = "".join(texts)
            u = resp.usage
            cached = u.cache_read_input_tokens or 0
            usage = Usage(prompt_tokens=u.input_tokens + cached + (u.cache_creation_input_tokens or 0),
                          completion_tokens=u.output_tokens, cached_prompt_tokens=cached, requests=1)
            return Completion(texts=[text], usage=usage, model=self.model,
                              finish_reasons=[_REASONS.get(resp.stop_reason or "", resp.stop_reason or "stop")])
        except (AttributeError, TypeError, ValueError, KeyError) as e:
            raise _http.malformed(self.provider, self.model, e) from e

    async def aclose(self) -> None:
        await self._sdk.close()


def _is_object(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "object" or ("type" not in schema and "properties" in schema)


def _object_schema(schema: dict[str, Any]) -> dict[str, Any]:
    if _is_object(schema):
        return schema
    return {"type": "object", "properties": {"value": schema}, "required": ["value"]}
