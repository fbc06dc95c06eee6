"""The three SDK clients (OpenAI, Anthropic, Ollama) for real over HTTP against the loopback gateway:
plain calls, structured output, n samples, cached tokens, and what each puts on the wire."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, Field

from minions.clients import Message, RetryPolicy, Usage
from minions.tokens import count_messages
from tests.gateway import ANTHROPIC, OLLAMA, OPENAI, ScriptedBackend

PROVIDERS = ("openai", "anthropic", "ollama")
ROUTE = {"openai": OPENAI, "anthropic": ANTHROPIC, "ollama": OLLAMA}
FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05, timeout=5)
DOC = ("The annual report says revenue grew to $12.4 million in fiscal 2024, up from $10.1 million, "
       "while operating costs stayed flat at $7 million across both years. ") * 3


class Answer(BaseModel):
    answer: str = Field(max_length=12)  # a short bound keeps a small model from rambling
    confidence: int


@pytest.fixture(params=PROVIDERS)
async def client(request, gateway):
    c = gateway.client(request.param, retry=FAST)
    yield c
    await c.aclose()


async def test_plain_completion_reports_backend_usage(client, gateway):
    gateway.backend = backend = ScriptedBackend(lambda m, o: f"echo: {m[-1].content}")
    out = await client.complete("hello there", max_tokens=20)
    assert out.text == "echo: hello there" and out.finish_reasons == ["stop"]
    assert out.usage == backend.returned[-1].usage and out.usage.requests == 1
    assert out.attempts == 1 and out.warnings == []
    assert gateway.counts[ROUTE[client.provider]] == 1


async def test_structured_output_sends_the_schema_in_each_wire_format(client, gateway):
    schema = Answer.model_json_schema()
    gateway.backend = backend = ScriptedBackend(
        lambda m, o: json.dumps({"answer": "12.4", "confidence": 4}))
    out = await client.complete("Revenue?", json_schema=schema)
    assert backend.calls[-1][1].json_schema == schema  # the backend was constrained to our schema
    assert Answer.model_validate_json(out.text).confidence == 4
    body = gateway.bodies(ROUTE[client.provider])[-1]
    if client.provider == "openai":
        assert body["response_format"] == {"type": "json_schema",
                                           "json_schema": {"name": "Answer", "schema": schema, "strict": False}}
    elif client.provider == "anthropic":
        assert body["tool_choice"] == {"type": "tool", "name": body["tools"][0]["name"]}
        assert body["tools"][0]["input_schema"] == schema
    else:
        assert body["format"] == schema


async def test_n_samples(client, gateway):
    seen: list[int | None] = []

    def reply(_m, o):
        seen.append(o.seed)
        return [f"sample {i}" for i in range(o.n)]

    gateway.backend = backend = ScriptedBackend(reply)
    out = await client.complete("pick a number", n=3, temperature=0.8)
    assert len(out.texts) == 3 and len(out.finish_reasons) == 3
    assert out.usage == sum((c.usage for c in backend.returned), Usage())
    if client.provider == "openai":  # one request with the API's own `n`
        assert gateway.counts[OPENAI] == 1 and gateway.bodies(OPENAI)[0]["n"] == 3
        assert out.texts == ["sample 0", "sample 1", "sample 2"]
    else:  # no `n` in these APIs: n requests; Ollama's each with its own seed
        assert gateway.counts[ROUTE[client.provider]] == 3 and out.usage.requests == 3
    if client.provider == "ollama":
        assert len(set(seen)) == 3


async def test_cached_prompt_tokens_reach_usage(client, gateway):
    gateway.backend = backend = ScriptedBackend(lambda m, o: "fine", cached_prompt_tokens=60)
    out = await client.complete([Message(role="system", content=DOC, cache=True),
                                 Message(role="user", content="What was revenue in 2024?")])
    expected = backend.returned[-1].usage
    assert expected.cached_prompt_tokens == 60
    assert out.usage == expected and out.usage.evaluated_prompt_tokens == expected.prompt_tokens - 60


async def test_anthropic_cache_creation_counts_as_prompt(gateway):
    gateway.backend = backend = ScriptedBackend(lambda m, o: "fine", cached_prompt_tokens=10)
    gateway.anthropic_cache_creation = 25
    c = gateway.client("anthropic", retry=FAST)
    out = await c.complete([Message(role="user", content=DOC, cache=True), Message(role="user", content="Q?")])
    await c.aclose()
    assert out.usage == backend.returned[-1].usage  # input + cache_read + cache_creation
    assert out.usage.cached_prompt_tokens == 10


async def test_anthropic_wire_system_blocks_merged_turns_and_cache_control(gateway):
    gateway.backend = ScriptedBackend(lambda m, o: "ok")
    c = gateway.client("anthropic", retry=FAST)
    await c.complete([Message(role="system", content="You are terse."),
                      Message(role="user", content="Context: " + DOC, cache=True),
                      Message(role="user", content="Question one?"),
                      Message(role="assistant", content="Answer one."),
                      Message(role="user", content="Question two?")])
    await c.aclose()
    body = gateway.bodies(ANTHROPIC)[0]
    assert body["system"] == [{"type": "text", "text": "You are terse."}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    first = body["messages"][0]["content"]
    assert first[0]["cache_control"] == {"type": "ephemeral"} and "cache_control" not in first[1]
    assert first[1]["text"] == "Question one?"


async def test_anthropic_non_object_schema_is_wrapped_and_unwrapped(gateway):
    gateway.backend = ScriptedBackend(lambda m, o: json.dumps({"value": ["a", "b"]}))
    c = gateway.client("anthropic", retry=FAST)
    out = await c.complete("list two letters", json_schema={"type": "array", "items": {"type": "string"}})
    await c.aclose()
    assert json.loads(out.text) == ["a", "b"]
    assert gateway.bodies(ANTHROPIC)[0]["tools"][0]["input_schema"]["required"] == ["value"]


async def test_openai_falls_back_to_json_object_and_remembers(gateway):
    gateway.backend = ScriptedBackend(lambda m, o: '{"answer": "x", "confidence": 1}')
    gateway.openai_json_schema = False
    c = gateway.client("openai", retry=FAST)
    for _ in range(2):
        out = await c.complete("Revenue?", json_schema=Answer.model_json_schema())
        assert Answer.model_validate_json(out.text).answer == "x"
    await c.aclose()
    kinds = [b["response_format"]["type"] for b in gateway.bodies(OPENAI)]
    assert kinds == ["json_schema", "json_object", "json_object"]  # rejected once, then remembered
    assert "JSON schema" in gateway.bodies(OPENAI)[1]["messages"][0]["content"]


async def test_openai_compatible_server_without_key(gateway, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    from minions.clients import get_client

    gateway.backend = ScriptedBackend(lambda m, o: "local")
    c = get_client("vllm/Qwen/Qwen2.5-7B-Instruct", base_url=gateway.openai_url, retry=FAST)
    out = await c.complete("hi")
    await c.aclose()
    assert out.text == "local" and c.provider == "vllm" and c.spec == "vllm/Qwen/Qwen2.5-7B-Instruct"
    assert gateway.bodies(OPENAI)[0]["model"] == "Qwen/Qwen2.5-7B-Instruct"


async def test_ollama_sizes_num_ctx_to_the_prompt(gateway):
    gateway.backend = ScriptedBackend(lambda m, o: "ok")
    c = gateway.client("ollama", retry=FAST)
    await c.complete("short", max_tokens=100)
    long = [Message(role="user", content=DOC * 20)]
    est = count_messages(long)
    assert 2000 < est < 3000
    out = await c.complete(long, max_tokens=512)
    await c.aclose()
    sent = [b["options"]["num_ctx"] for b in gateway.bodies(OLLAMA)]
    assert sent == [2048, 4096]  # (est * 1.1 + 512) rounded up to a multiple of 2048
    assert out.warnings == []
    assert gateway.counts["/api/show"] == 1  # context limit looked up once per client


async def test_ollama_clamps_num_ctx_to_the_model_limit_and_warns(gateway):
    gateway.backend = ScriptedBackend(lambda m, o: "ok")
    gateway.context_limits["smollm2:135m"] = 3000
    c = gateway.client("ollama", retry=FAST)
    out = await c.complete(DOC * 20, max_tokens=512)
    await c.aclose()
    assert gateway.bodies(OLLAMA)[0]["options"]["num_ctx"] == 3000
    assert len(out.warnings) == 1 and "3000" in out.warnings[0]


async def test_ollama_reads_prompt_reuse_from_prompt_eval_count(gateway):
    # Ollama reports only evaluated prompt tokens; a big shortfall against the estimate is reuse.
    gateway.backend = ScriptedBackend(lambda m, o: "ok", cached_prompt_tokens=0)
    c = gateway.client("ollama", retry=FAST)
    fresh = await c.complete(DOC)
    gateway.backend = ScriptedBackend(lambda m, o: "ok", cached_prompt_tokens=70)
    reused = await c.complete(DOC)
    await c.aclose()
    assert fresh.usage.cached_prompt_tokens == 0
    assert reused.usage.prompt_tokens == fresh.usage.prompt_tokens == count_messages([Message(role="user", content=DOC)])
    assert reused.usage.cached_prompt_tokens == 70


# -- the real embedded model behind each wire format ------------------------------------------------

# Generous: the first call loads the model, and the 2 cores are shared. No retries: an abandoned
# attempt keeps the engine busy, so retrying a slow local model only queues more work.
REAL = RetryPolicy(max_retries=0, timeout=300)


@pytest.fixture(params=PROVIDERS)
async def real_client(request, gateway):
    c = gateway.client(request.param, retry=REAL)
    yield c
    await c.aclose()


@pytest.mark.real_model
async def test_real_model_plain(real_client, gateway):
    out = await real_client.complete("Say hello.", max_tokens=8)
    assert out.text.strip() and out.usage.prompt_tokens > 3 and 0 < out.usage.completion_tokens <= 8


@pytest.mark.real_model
async def test_real_model_structured_output(real_client, gateway):
    out = await real_client.complete(
        "Revenue was $12.4 million. Give the revenue and your confidence 1-5 as JSON.",
        max_tokens=48, json_schema=Answer.model_json_schema())
    parsed = Answer.model_validate(json.loads(out.text))  # constrained decoding end to end
    assert isinstance(parsed.confidence, int)
