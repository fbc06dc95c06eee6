"""Client base behaviour (retries, timeouts, batch, sync), specs, token counting, prices, the meter."""

from __future__ import annotations

import asyncio

import pytest

from minions import errors
from minions.clients import FunctionClient, Message, Options, Request, RetryPolicy, Usage, get_client
from minions.clients.spec import parse_spec
from minions.cost import CostMeter, Price, PriceTable, add_costs
from minions.tokens import count_tokens

FAST = RetryPolicy(max_retries=3, base_delay=0.001, max_delay=0.01, timeout=2)


def flaky(failures: list[Exception], reply: str = "ok"):
    """A reply function that raises the given errors in turn, then answers."""
    queue = list(failures)

    def fn(_m, _o):
        if queue:
            raise queue.pop(0)
        return reply

    return fn


async def test_retries_transient_errors_then_counts_usage_once():
    c = FunctionClient(flaky([errors.RateLimitError("429", retry_after=0.001), errors.ServerError("500"),
                              errors.APIConnectionError("drop")], "four words in reply"), retry=FAST)
    out = await c.complete("a b c")
    assert out.text == "four words in reply"
    assert out.attempts == 4
    assert out.usage == Usage(prompt_tokens=3, completion_tokens=4, requests=1)


async def test_gives_up_after_max_retries_with_typed_error():
    c = FunctionClient(flaky([errors.ServerError("boom")] * 10), retry=FAST)
    with pytest.raises(errors.RetriesExhaustedError) as e:
        await c.complete("x")
    assert e.value.attempts == 4 and isinstance(e.value.last, errors.ServerError)


async def test_no_retry_on_auth_or_bad_request():
    for exc in (errors.AuthenticationError("bad key"), errors.BadRequestError("bad"), errors.ContextTooLongError("long")):
        c = FunctionClient(flaky([exc]), retry=FAST)
        with pytest.raises(type(exc)):
            await c.complete("x")
        assert len(c.calls) == 1


async def test_per_call_timeout_is_retried_then_reported():
    async def slow(_m, _o):
        await asyncio.sleep(1)
        return "late"

    c = FunctionClient(slow, retry=RetryPolicy(max_retries=1, base_delay=0.001, timeout=0.05))
    with pytest.raises(errors.RetriesExhaustedError) as e:
        await c.complete("x")
    assert isinstance(e.value.last, errors.RequestTimeoutError)
    assert "RetryPolicy.timeout" in str(e.value)


async def test_retry_after_is_honoured():
    c = FunctionClient(flaky([errors.RateLimitError("429", retry_after=0.2)]), retry=FAST)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await c.complete("x")
    assert loop.time() - t0 >= 0.19


def test_backoff_grows_with_jitter_and_is_capped():
    c = FunctionClient(lambda m, o: "x", retry=RetryPolicy(base_delay=1, max_delay=5), seed=1)
    delays = [c._backoff(a, None) for a in range(1, 7)]
    assert 0.5 <= delays[0] <= 1 and 1 <= delays[1] <= 2 and 2 <= delays[2] <= 4
    assert all(d <= 5 for d in delays)


async def test_batch_limits_concurrency_and_returns_failures_in_place():
    running, peak = 0, 0

    async def fn(m, _o):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        if m[0].content == "fail":
            raise errors.BadRequestError("nope")
        return m[0].content.upper()

    c = FunctionClient(fn, retry=FAST)
    reqs = [Request(messages=[Message(role="user", content=t)]) for t in ["a", "b", "fail", "c", "d", "e"]]
    out = await c.batch(reqs, concurrency=2)
    assert peak == 2
    assert [o.text if not isinstance(o, Exception) else "ERR" for o in out] == ["A", "B", "ERR", "C", "D", "E"]


def test_sync_wrapper_works_repeatedly_and_inside_a_running_loop():
    c = FunctionClient(lambda m, o: "hi")
    assert c.complete_sync("x").text == "hi"
    assert c.complete_sync([{"role": "user", "content": "y"}]).text == "hi"

    async def inside():  # e.g. a notebook cell: a loop is already running in this thread
        return c.complete_sync("z").text

    assert asyncio.run(inside()) == "hi"


def test_options_reach_the_provider_and_n_samples():
    c = FunctionClient(lambda m, o: [f"s{i}" for i in range(o.n)])
    out = c.complete_sync("q", max_tokens=7, temperature=0.5, n=3, json_schema={"type": "object"})
    assert out.texts == ["s0", "s1", "s2"]
    opts = c.calls[0][1]
    assert (opts.max_tokens, opts.temperature, opts.n, opts.json_schema) == (7, 0.5, 3, {"type": "object"})


def test_usage_adds():
    a = Usage(prompt_tokens=10, completion_tokens=2, cached_prompt_tokens=4, requests=1)
    b = Usage(prompt_tokens=1, completion_tokens=1, requests=1)
    assert a + b == Usage(prompt_tokens=11, completion_tokens=3, cached_prompt_tokens=4, requests=2)
    assert a.evaluated_prompt_tokens == 6


@pytest.mark.parametrize("spec,provider,model", [
    ("ollama/llama3.2:3b", "ollama", "llama3.2:3b"),
    ("openai/gpt-4o-mini", "openai", "gpt-4o-mini"),
    ("anthropic/claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5"),
    ("llamacpp/smollm2", "llamacpp", "smollm2"),
    ("llamacpp//abs/path/model.gguf", "llamacpp", "/abs/path/model.gguf"),
    ("vllm/Qwen/Qwen2.5-7B-Instruct", "vllm", "Qwen/Qwen2.5-7B-Instruct"),
])
def test_parse_spec(spec, provider, model):
    assert parse_spec(spec) == (provider, model)


def test_unknown_provider_names_the_choices():
    with pytest.raises(errors.UnknownProviderError, match="ollama, llamacpp|openai"):
        get_client("gemeni/gemini-pro")
    with pytest.raises(errors.UnknownProviderError, match="provider/model"):
        get_client("gpt-4o")


def test_missing_gguf_names_the_fix(tmp_path):
    with pytest.raises(errors.ModelNotFoundError, match=r"\.gguf"):
        get_client("llamacpp/no-such-model")


def test_token_counting_is_offline_and_labelled():
    n = count_tokens("The quick brown fox jumps over the lazy dog.", "openai/gpt-4")
    assert n.n == 10 and n.method == "exact"
    assert count_tokens("hello", "anthropic/claude-sonnet-4-5").method == "tiktoken-cl100k"


def test_price_lookup_and_cost_arithmetic(tmp_path, monkeypatch):
    table = PriceTable.load()
    assert table.get("openai/gpt-4o-2024-08-06") == table.get("openai/gpt-4o")
    assert table.get("openai/gpt-4o-mini").input == 0.15  # not shadowed by gpt-4o
    assert table.get("ollama/qwen2.5:7b").input == 0.0
    assert table.get("openai/some-new-model") is None
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=100_000, cached_prompt_tokens=400_000)
    # 600k fresh at 2.50 + 400k cached at 1.25 + 100k out at 10.00
    assert table.cost("openai/gpt-4o", usage) == pytest.approx(1.5 + 0.5 + 1.0)
    extra = tmp_path / "p.toml"
    extra.write_text('[models."openai/some-new-model"]\ninput = 1.0\noutput = 2.0\n')
    monkeypatch.setenv("MINIONS_PRICES", str(extra))
    assert PriceTable.load().get("openai/some-new-model").output == 2.0


def test_meter_sums_per_role_step_round_and_unknown_stays_unknown():
    prices = PriceTable({"function/r": Price(input=1.0, output=2.0), "function/l": Price(input=0, output=0)})
    m = CostMeter(prices)
    m.record("remote", "function/r", Usage(prompt_tokens=1000, completion_tokens=500, requests=1), step="plan", round=1)
    m.record("remote", "function/r", Usage(prompt_tokens=2000, completion_tokens=0, requests=1), step="answer", round=2)
    m.record("local", "function/l", Usage(prompt_tokens=9000, completion_tokens=90, requests=1), step="job", round=1)
    assert m.totals("remote").cost_usd == pytest.approx((3000 * 1 + 500 * 2) / 1e6)
    assert m.totals("remote", round=1).usage.prompt_tokens == 1000
    assert m.totals(step="job").usage.completion_tokens == 90
    m.estimate_remote_only("function/r", 100_000, 100)
    rep = m.report()
    assert rep.remote_only_estimate_usd == pytest.approx((100_000 + 200) / 1e6)
    assert rep.savings_ratio == pytest.approx(rep.remote_only_estimate_usd / rep.role("remote").cost_usd)
    m.record("remote", "nowhere/unknown", Usage(prompt_tokens=1, requests=1))
    assert m.totals("remote").cost_usd is None
    assert add_costs([1.0, None]) is None and add_costs([]) == 0.0


def test_options_validate():
    with pytest.raises(ValueError):
        Options(max_tokens=0)
