"""Anthropic's Messages API through the official `anthropic` SDK.

What each Claude generation accepts is one table, CLAUDE_FAMILIES (first match wins):
- temperature: sent, clamped to the API's [0, 1] with a warning for OpenAI-scale values above 1.
  The SDK no longer types it (its newest models refuse sampling parameters: Opus 4.7 and later
  answer 400 "`temperature` is deprecated for this model"), so it goes in `extra_body` for the
  models that take it.
- extended thinking, optional: `thinking_budget=N` on the client, or a reasoning effort per call
  (`Options.reasoning_effort`, the `remote_reasoning` knob). Models with manual thinking get
  `thinking={"type": "enabled", "budget_tokens": N}` under the API's rules: budget >= 1024,
  `max_tokens` > budget (thinking counts against it — we send the answer's max tokens plus the
  budget, so thinking never eats the answer), temperature only 1 (none is sent), and no forced tool
  use (structured output then asks for JSON in the prompt). Adaptive-only models get
  `thinking={"type": "adaptive"}` and `output_config={"effort": ...}` instead.

Thinking tokens are billed as output and reported inside `output_tokens`; the API gives no separate
count (Claude 4 returns only a summary of its thinking). `Usage.reasoning_tokens` is therefore an
estimate: output tokens minus the answer text's tokens, counted with our tokenizer.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Literal, NamedTuple

from minions import errors
from minions.clients import _http
from minions.clients.base import Client, Completion, Message, Options, Usage

_KEY_ENV = "ANTHROPIC_API_KEY"
_TOOL = "respond"
_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "stop", "max_tokens": "length"}
#: reasoning effort -> thinking budget in tokens ("none": no thinking); the API's minimum is 1024
THINKING_BUDGETS = {"none": 0, "low": 1024, "medium": 4096, "high": 16384}
MIN_THINKING = 1024


class ClaudeFamily(NamedTuple):
    temperature: bool
    thinking: Literal["none", "budget", "adaptive"]
    efforts: tuple[str, ...]


CLAUDE_FAMILIES: tuple[tuple[str, ClaudeFamily], ...] = (
    # Opus 4.7 and later generations: adaptive thinking only, no sampling parameters.
    (r"claude-(opus-4-([7-9]|\d\d)|[a-z]+-([5-9]|\d\d))", ClaudeFamily(
        False, "adaptive", ("none", "low", "medium", "high", "xhigh", "max"))),
    # Claude 3.7 Sonnet and the Claude 4 family up to 4.6: manual thinking with a budget.
    (r"claude-(3-7-|[a-z]+-4)", ClaudeFamily(True, "budget", tuple(THINKING_BUDGETS))),
    (r"", ClaudeFamily(True, "none", ("none",))),
)


def claude_family(model: str) -> ClaudeFamily:
    return next(f for pattern, f in CLAUDE_FAMILIES if re.search(pattern, model))


class AnthropicClient(Client):
    provider = "anthropic"
    egress_at_transport = True

    def __init__(self, model: str, *, api_key: str | None = None, base_url: str | None = None,
                 thinking_budget: int | None = None, api_key_env: str = _KEY_ENV, **kw: Any):
        super().__init__(model, **kw)
        if thinking_budget and thinking_budget < MIN_THINKING:
            raise errors.ConfigError(f"anthropic/{model}: thinking_budget must be at least {MIN_THINKING} "
                                     f"tokens (the API's minimum), not {thinking_budget}.")
        self.family = claude_family(model)
        if thinking_budget and self.family.thinking != "budget":
            raise errors.ConfigError(f"anthropic/{model} has no extended thinking; drop thinking_budget.")
        self.thinking_budget = thinking_budget or 0
        try:
            import anthropic
        except ImportError as e:
            raise errors.MissingDependencyError("anthropic", "anthropic") from e
        self._sdk_module = anthropic
        self.api_key_env = api_key_env
        key = api_key or os.environ.get(api_key_env)
        if not key:
            raise errors.MissingAPIKeyError(self.provider, api_key_env)
        self.secrets = (key,)  # removed from every error this client raises
        # The key is always passed explicitly, so the SDK never falls back to profiles on disk.
        # max_retries=0: `Client.complete` retries, so each attempt's usage is seen (and counted) once.
        from minions.egress.transport import wrap

        self._sdk = anthropic.AsyncAnthropic(api_key=key, base_url=base_url, max_retries=0,
                                             timeout=self.retry.timeout,
                                             http_client=wrap(anthropic.DefaultAsyncHttpxClient(), self))
        self.base_url = str(self._sdk.base_url)
        _http.warn_plain_http(self.base_url, self.provider, api_key_env)

    def check_reasoning(self, effort: str) -> str | None:
        if effort not in self.family.efforts:
            if self.family.thinking == "none":
                return f"{self.spec} has no extended thinking"
            return f"{self.spec} takes reasoning effort {', '.join(self.family.efforts)}, not {effort!r}"
        return None

    async def _request(self, messages: list[Message], options: Options) -> Completion:
        if options.reasoning_effort and (why := self.check_reasoning(options.reasoning_effort)):
            raise errors.BadRequestError(why, provider=self.provider, model=self.model)
        kw = self._params(messages, options)
        warnings = []
        if self.family.temperature and "thinking" not in kw and options.temperature > 1:
            warnings.append(f"temperature {options.temperature:g} is above Anthropic's maximum; sent 1")
        if options.n == 1:
            one = await self._one(kw, options)
            return one.model_copy(update={"warnings": warnings}) if warnings else one
        # The Messages API has no `n`: n calls, at once.
        parts = await _http.gather_all([self._one(kw, options) for _ in range(options.n)])
        usage = sum((p.usage for p in parts), Usage())
        return Completion(texts=[t for p in parts for t in p.texts], usage=usage, model=self.model,
                          finish_reasons=[r for p in parts for r in p.finish_reasons], warnings=warnings)

    def max_billed_tokens(self, options: Options) -> int:
        return (options.max_tokens + self._budget(options)) * options.n  # thinking is sent on top

    def _budget(self, options: Options) -> int:
        """Thinking tokens to allow (0: no thinking). Adaptive models take the same headroom."""
        if options.reasoning_effort is not None:
            return THINKING_BUDGETS.get(options.reasoning_effort, 4 * THINKING_BUDGETS["high"])
        return self.thinking_budget

    def _params(self, messages: list[Message], options: Options) -> dict[str, Any]:
        budget = self._budget(options)
        if budget and options.json_schema is not None:
            # Thinking refuses a forced tool: ask for the JSON in the prompt; callers parse and repair.
            note = f"Reply with one JSON object that matches this JSON schema:\n{json.dumps(options.json_schema)}"
            messages = [Message(role="system", content=note), *messages]
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
        kw: dict[str, Any] = {"model": self.model, "max_tokens": options.max_tokens, "messages": turns}
        if budget:
            # Thinking counts against max_tokens: add the budget so the answer keeps its own.
            kw["max_tokens"] = options.max_tokens + budget
            if self.family.thinking == "adaptive":
                kw["thinking"] = {"type": "adaptive"}
                kw["output_config"] = {"effort": options.reasoning_effort}
            else:
                kw["thinking"] = {"type": "enabled", "budget_tokens": budget}
        elif self.family.temperature:  # with thinking only the default (1) is accepted: none is sent
            kw["extra_body"] = {"temperature": min(options.temperature, 1.0)}
        if system:
            kw["system"] = system
        if options.stop:
            kw["stop_sequences"] = list(options.stop)
        if options.json_schema is not None and not budget:
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
                                  url=self.base_url, key_env=self.api_key_env, secrets=self.secrets)
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
            # Thinking is inside output_tokens with no count of its own: estimate it (see module doc).
            thought = max(0, u.output_tokens - self.count_tokens(text)) if "thinking" in kw else 0
            usage = Usage(prompt_tokens=u.input_tokens + cached + (u.cache_creation_input_tokens or 0),
                          completion_tokens=u.output_tokens, cached_prompt_tokens=cached,
                          reasoning_tokens=thought, requests=1)
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
