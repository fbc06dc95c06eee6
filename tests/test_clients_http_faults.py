"""Faults and errors for the three SDK clients over real HTTP: retries that count usage once, typed
errors past the retries, and error messages that name the fix."""

from __future__ import annotations

import socket
import time

import pytest

from minions import errors
from minions.clients import Completion, Message, Request, RetryPolicy, get_client
from tests.gateway import ROUTES, ScriptedBackend

PROVIDERS = ("openai", "anthropic", "ollama")
FAULTS = ("429", "500", "drop", "malformed", "wrong_shape", "slow")
# Short per-attempt timeout so a "slow" reply (1 s) is abandoned quickly.
QUICK = RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05, timeout=0.5)
FIRST_ERROR = {"429": errors.RateLimitError, "500": errors.ServerError, "drop": errors.APIConnectionError,
               "malformed": errors.MalformedResponseError, "wrong_shape": errors.MalformedResponseError,
               "slow": errors.RequestTimeoutError}


@pytest.fixture
def backend(gateway):
    gateway.backend = b = ScriptedBackend(lambda m, o: "the right text")
    return b


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_fault_then_success_returns_text_with_usage_counted_once(gateway, backend, provider, fault):
    c = gateway.client(provider, retry=QUICK)
    gateway.inject(fault)
    out = await c.complete("What is the answer?")
    await c.aclose()
    assert out.text == "the right text" and out.attempts == 2
    assert out.usage == backend.returned[0].usage and out.usage.requests == 1
    assert gateway.counts[ROUTES[provider]] == 2


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_each_fault_maps_to_its_typed_error(gateway, backend, provider, fault):
    c = gateway.client(provider, retry=QUICK.model_copy(update={"max_retries": 0}))
    gateway.inject(fault)
    with pytest.raises(errors.RetriesExhaustedError) as e:
        await c.complete("q")
    await c.aclose()
    assert type(e.value.last) is FIRST_ERROR[fault] and e.value.last.retryable
    assert gateway.counts[ROUTES[provider]] == 1  # the SDK's own retries are off


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_past_the_retries_raises_a_typed_error(gateway, backend, provider):
    c = gateway.client(provider, retry=QUICK)
    gateway.inject("500", "429", "500", "500")
    with pytest.raises(errors.RetriesExhaustedError) as e:
        await c.complete("q")
    await c.aclose()
    assert e.value.attempts == 3 and isinstance(e.value.last, errors.ServerError)
    assert "gave up after 3 attempts" in str(e.value)
    assert gateway.counts[ROUTES[provider]] == 3 and backend.returned == []


@pytest.mark.parametrize("provider", ["openai", "anthropic"])  # Ollama's SDK drops response headers
async def test_retry_after_header_is_honoured(gateway, backend, provider):
    gateway.retry_after = 0.05
    c = gateway.client(provider, retry=RetryPolicy(max_retries=0, timeout=5))
    gateway.inject("429")
    with pytest.raises(errors.RetriesExhaustedError) as e:
        await c.complete("q")
    assert e.value.last.retry_after == pytest.approx(0.05)
    # Backoff alone would wait >= 15 s before the retry (base_delay 30 s, half-jittered).
    c.retry = RetryPolicy(max_retries=2, base_delay=30, max_delay=60, timeout=5)
    gateway.inject("429")
    started = time.perf_counter()
    out = await c.complete("q")
    await c.aclose()
    assert out.attempts == 2 and time.perf_counter() - started < 10


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_timeout_past_the_retries(gateway, backend, provider):
    gateway.slow_seconds = 1.0
    c = gateway.client(provider, retry=QUICK.model_copy(update={"max_retries": 1, "timeout": 0.3}))
    gateway.inject("slow", "slow")
    with pytest.raises(errors.RetriesExhaustedError) as e:
        await c.complete("q")
    await c.aclose()
    assert isinstance(e.value.last, errors.RequestTimeoutError) and e.value.attempts == 2


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_random_faults_every_call_still_succeeds(gateway, backend, provider):
    backend.fn = lambda m, o: f"re: {m[-1].content}"
    gateway.random_faults(0.3, seed=7)
    c = gateway.client(provider, retry=RetryPolicy(max_retries=10, base_delay=0.001, max_delay=0.01, timeout=5))
    results = await c.batch([Request(messages=[Message(role="user", content=f"q{i}")]) for i in range(12)])
    await c.aclose()
    assert all(isinstance(r, Completion) for r in results)
    assert [r.text for r in results] == [f"re: q{i}" for i in range(12)]
    assert gateway.counts[ROUTES[provider]] > 12 and len(backend.returned) == 12


# -- errors that name the fix -----------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "env"), [("openai/gpt-4o-mini", "OPENAI_API_KEY"),
                                           ("anthropic/claude-sonnet-4-5", "ANTHROPIC_API_KEY"),
                                           ("together/meta-llama/Llama-3-8b", "TOGETHER_API_KEY")])
def test_missing_api_key_names_the_variable(monkeypatch, spec, env):
    monkeypatch.delenv(env, raising=False)
    with pytest.raises(errors.MissingAPIKeyError) as e:
        get_client(spec)
    assert env in str(e.value) and e.value.env_var == env


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_auth_error_names_the_variable_and_is_not_retried(gateway, backend, provider):
    gateway.api_key = "the-right-key"
    c = gateway.client(provider, retry=QUICK, api_key="a-wrong-key")
    with pytest.raises(errors.AuthenticationError) as e:
        await c.complete("q")
    ok = gateway.client(provider, retry=QUICK, api_key="the-right-key")
    assert (await ok.complete("q")).text == "the right text"
    await c.aclose()
    await ok.aclose()
    assert {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}[provider] in str(e.value)
    assert gateway.counts[ROUTES[provider]] == 2


async def test_unreachable_openai_compatible_server_names_url_and_servers():
    url = closed_port_url() + "/v1"
    c = get_client("openai/some-model", base_url=url, retry=QUICK)
    with pytest.raises(errors.ServerUnreachableError) as e:
        await c.complete("q")
    await c.aclose()
    assert url in str(e.value) and "vLLM/llama-server/LM Studio" in str(e.value)


async def test_unreachable_anthropic_names_url():
    url = closed_port_url()
    c = get_client("anthropic/claude-haiku-4-5", base_url=url, api_key="k", retry=QUICK)
    with pytest.raises(errors.ServerUnreachableError) as e:
        await c.complete("q")
    await c.aclose()
    assert url in str(e.value)


async def test_ollama_not_running_says_how_to_start_it():
    url = closed_port_url()
    c = get_client("ollama/llama3.2:3b", host=url, retry=QUICK)
    with pytest.raises(errors.ServerUnreachableError) as e:
        await c.complete("q")
    await c.aclose()
    assert url in str(e.value) and "ollama serve" in str(e.value)


async def test_ollama_model_not_pulled_says_ollama_pull(gateway, backend):
    gateway.not_pulled.add("llama3.2:3b")
    c = gateway.client("ollama", "llama3.2:3b", retry=QUICK)
    with pytest.raises(errors.ModelNotFoundError) as e:
        await c.complete("q")
    # also when the limit is known, so the first request is the chat itself
    c2 = gateway.client("ollama", "llama3.2:3b", retry=QUICK, context_window=8192)
    with pytest.raises(errors.ModelNotFoundError) as e2:
        await c2.complete("q")
    await c.aclose()
    await c2.aclose()
    assert "ollama pull llama3.2:3b" in str(e.value) and "ollama pull llama3.2:3b" in str(e2.value)
    assert gateway.counts["/api/show"] == 1 and gateway.counts["/api/chat"] == 1  # not retried


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_unknown_model_is_model_not_found(gateway, backend, provider):
    gateway.not_pulled.add("no-such-model")
    c = gateway.client(provider, "no-such-model", retry=QUICK)
    with pytest.raises(errors.ModelNotFoundError):
        await c.complete("q")
    await c.aclose()
    assert gateway.counts[ROUTES[provider]] == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_context_too_long_in_each_wire_format(gateway, backend, provider):
    model = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "ollama": "smollm2:135m"}[provider]
    gateway.context_limits[model] = 50
    # Ollama: a known limit is checked before sending; context_window= skips that, so the server says it.
    c = gateway.client(provider, retry=QUICK, **({"context_window": 100_000} if provider == "ollama" else {}))
    with pytest.raises(errors.ContextTooLongError) as e:
        await c.complete("word " * 200)
    await c.aclose()
    assert "context" in str(e.value) and gateway.counts[ROUTES[provider]] == 1


async def test_ollama_context_too_long_is_caught_before_sending(gateway, backend):
    gateway.context_limits["smollm2:135m"] = 50
    c = gateway.client("ollama", retry=QUICK)
    with pytest.raises(errors.ContextTooLongError) as e:
        await c.complete("word " * 200)
    await c.aclose()
    assert e.value.limit == 50 and gateway.counts["/api/chat"] == 0


def test_unknown_provider_lists_the_known_ones():
    with pytest.raises(errors.UnknownProviderError) as e:
        get_client("foo/bar")
    assert "openai" in str(e.value) and "ollama" in str(e.value)
