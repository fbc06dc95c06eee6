"""Today's remote models through the strict gateway and the official SDKs: OpenAI reasoning models
(gpt-5-mini, o4-mini), Anthropic temperature and extended thinking, and the three protocols end to end."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest

from minions import errors
from minions.clients import FunctionClient, Message, Options, RetryPolicy
from minions.cost import PriceTable
from minions.protocols import get_protocol
from tests.gateway import ANTHROPIC, OPENAI, REASONING_TOKENS, ScriptedBackend
from tests.test_protocol_minions import honest_local, make_doc, plan

# claude-sonnet-4-5 is the acceptance model; the SDK warns it is nearing end of life.
pytestmark = pytest.mark.filterwarnings("ignore:The model 'claude-sonnet-4-5' is deprecated:DeprecationWarning")
FAST = RetryPolicy(max_retries=2, base_delay=0.001, max_delay=0.01, timeout=10)


def post(url: str, body: dict, headers: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


# --- the gateway refuses what the real APIs refuse, with their bodies --------------------------------

def test_gateway_refuses_reasoning_model_parameters_with_openais_exact_bodies(gateway):
    gateway.backend = ScriptedBackend()
    sdk = openai.OpenAI(api_key="sk-test", base_url=gateway.openai_url, max_retries=0)
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.BadRequestError) as e:
        sdk.chat.completions.create(model="gpt-5-mini", messages=msgs, max_tokens=50)
    assert e.value.status_code == 400 and e.value.body == {
        "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
                   "Use 'max_completion_tokens' instead.",
        "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}
    with pytest.raises(openai.BadRequestError) as e:
        sdk.chat.completions.create(model="o4-mini", messages=msgs, max_completion_tokens=50, temperature=0.0)
    assert e.value.body["message"] == ("Unsupported value: 'temperature' does not support 0.0 with this model. "
                                       "Only the default (1) value is supported.")
    assert e.value.body["code"] == "unsupported_value"
    with pytest.raises(openai.BadRequestError) as e:
        sdk.chat.completions.create(model="o4-mini", messages=msgs, reasoning_effort="minimal")
    assert e.value.body["message"] == ("Unsupported value: 'reasoning_effort' does not support 'minimal' with this "
                                       "model. Supported values are: 'low', 'medium', and 'high'.")
    with pytest.raises(openai.BadRequestError) as e:  # a non-reasoning model has no such argument
        sdk.chat.completions.create(model="gpt-4o", messages=msgs, reasoning_effort="low")
    assert e.value.body["message"] == "Unrecognized request argument supplied: reasoning_effort"
    with pytest.raises(openai.BadRequestError) as e:
        sdk.chat.completions.create(model="gpt-4o", messages=msgs, extra_body={"max_tokenz": 5})
    assert e.value.body["message"] == "Unrecognized request argument supplied: max_tokenz"
    # accepted: temperature 1 on a reasoning model, and the classic parameters on gpt-4o
    assert sdk.chat.completions.create(model="o4-mini", messages=msgs, temperature=1).choices[0].message.content
    assert sdk.chat.completions.create(model="gpt-4o", messages=msgs, max_tokens=5, temperature=0).choices


def test_gateway_refuses_what_anthropic_refuses(gateway):
    gateway.backend = ScriptedBackend()
    url, headers = gateway.url + ANTHROPIC, {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    base = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}

    def refusal(body: dict) -> str:
        status, reply = post(url, body, headers)
        assert status == 400 and reply["type"] == "error" and reply["error"]["type"] == "invalid_request_error"
        return reply["error"]["message"]

    assert refusal(base) == "max_tokens: Field required"
    assert refusal({**base, "max_tokens": 50, "temperature": 1.5}) == "temperature: Input should be less than or equal to 1"
    assert refusal({**base, "max_tokens": 50, "top_k_": 3}) == "top_k_: Extra inputs are not permitted"
    thinking = {"type": "enabled", "budget_tokens": 512}
    assert refusal({**base, "max_tokens": 4000, "thinking": thinking}) == \
        "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
    thinking["budget_tokens"] = 2048
    assert refusal({**base, "max_tokens": 2048, "thinking": thinking}).startswith(
        "`max_tokens` must be greater than `thinking.budget_tokens`")
    assert refusal({**base, "max_tokens": 4000, "thinking": thinking, "temperature": 0.0}).startswith(
        "`temperature` may only be set to 1 when thinking is enabled")
    forced = {"tools": [{"name": "t", "input_schema": {"type": "object"}}], "tool_choice": {"type": "tool", "name": "t"}}
    assert refusal({**base, "max_tokens": 4000, "thinking": thinking, **forced}) == \
        "Thinking may not be enabled when tool_choice forces tool use."
    assert refusal({**base, "model": "claude-opus-4-7", "max_tokens": 50, "temperature": 0.5}) == \
        "`temperature` is deprecated for this model."
    assert post(url, {**base, "max_tokens": 50, "temperature": 0.0}, headers)[0] == 200


# --- our OpenAI client on reasoning models ------------------------------------------------------------

@pytest.mark.parametrize("model", ["gpt-5-mini", "o4-mini"])
async def test_reasoning_model_call_sends_only_what_it_accepts_and_meters_hidden_tokens(gateway, model):
    gateway.backend = backend = ScriptedBackend(lambda m, o: "forty-two")
    client = gateway.client("openai", model, retry=FAST)
    out = await client.complete([Message(role="system", content="Be brief."), Message(role="user", content="Q?")],
                                max_tokens=300, temperature=0.0)
    body = gateway.bodies(OPENAI)[-1]
    assert body["max_completion_tokens"] == 300 and "max_tokens" not in body and "temperature" not in body
    assert body["reasoning_effort"] == "low"  # the default keeps planning cheap
    hidden = REASONING_TOKENS["low"]
    assert out.text == "forty-two" and out.usage.reasoning_tokens == hidden
    assert out.usage.completion_tokens == backend.returned[-1].usage.completion_tokens + hidden
    assert backend.calls[-1][1].max_tokens == 300 - hidden  # the thinking came out of the same budget


async def test_first_o1_models_get_no_effort_and_no_system_message(gateway):
    gateway.backend = backend = ScriptedBackend(lambda m, o: "ok")
    out = await gateway.client("openai", "o1-mini", retry=FAST).complete(
        [Message(role="system", content="Be brief."), Message(role="user", content="Q?")], max_tokens=400)
    body = gateway.bodies(OPENAI)[-1]
    assert out.text == "ok" and "reasoning_effort" not in body
    assert [m["role"] for m in body["messages"]] == ["user"] and body["messages"][0]["content"] == "Be brief.\n\nQ?"
    assert out.usage.reasoning_tokens == REASONING_TOKENS["medium"]  # the API's default effort
    assert backend.calls


async def test_non_reasoning_model_keeps_max_tokens_and_temperature(gateway):
    gateway.backend = ScriptedBackend()
    out = await gateway.client("openai", "gpt-4o", retry=FAST).complete("Q?", max_tokens=40, temperature=0.3)
    body = gateway.bodies(OPENAI)[-1]
    assert body["max_tokens"] == 40 and body["temperature"] == 0.3 and "reasoning_effort" not in body
    assert out.usage.reasoning_tokens == 0


async def test_stop_is_applied_by_the_client_for_models_that_refuse_it(gateway):
    gateway.backend = ScriptedBackend(lambda m, o: "Answer: 42\nEND and more")
    out = await gateway.client("openai", "gpt-5-mini", retry=FAST).complete("Q?", stop=("\nEND",))
    assert "stop" not in gateway.bodies(OPENAI)[-1]
    assert out.text == "Answer: 42" and out.finish_reasons == ["stop"]


async def test_empty_length_reply_is_retried_once_with_a_larger_budget_and_both_are_billed(gateway):
    gateway.backend = ScriptedBackend(lambda m, o: "42")
    gateway.reasoning_tokens["low"] = 600  # more than the first budget, less than the retry's
    out = await gateway.client("openai", "gpt-5-mini", retry=FAST).complete("Q?", max_tokens=200)
    assert [b["max_completion_tokens"] for b in gateway.bodies(OPENAI)] == [200, 800]
    assert out.text == "42"
    assert out.usage.requests == 2 and out.usage.reasoning_tokens == 200 + 600
    assert any("retried with 800" in w for w in out.warnings)


async def test_reasoning_that_never_ends_is_a_typed_error_naming_the_knobs_and_keeps_the_bill(gateway):
    gateway.backend = ScriptedBackend(lambda m, o: "never seen")
    gateway.reasoning_tokens["low"] = 10**6
    with pytest.raises(errors.ReasoningBudgetError) as e:
        await gateway.client("openai", "o4-mini", retry=FAST).complete("Q?", max_tokens=100)
    assert "--remote-max-tokens" in str(e.value) and "--remote-reasoning" in str(e.value)
    assert e.value.usage.reasoning_tokens == 100 + 400 and e.value.usage.requests == 2


def test_reasoning_effort_a_model_does_not_take_is_a_config_error_before_any_call(gateway):
    remote = gateway.client("openai", "o4-mini")
    with pytest.raises(errors.ConfigError, match="o4-mini takes reasoning effort low, medium, high, not 'minimal'"):
        get_protocol("remote-only", None, remote, remote_reasoning="minimal")
    with pytest.raises(errors.ConfigError, match="gpt-4o takes no reasoning effort"):
        get_protocol("remote-only", None, gateway.client("openai", "gpt-4o"), remote_reasoning="high")
    with pytest.raises(errors.ConfigError, match="gpt-5-mini takes reasoning effort minimal, low, medium, high"):
        gateway.client("openai", "gpt-5-mini", reasoning_effort="none")
    assert gateway.counts[OPENAI] == 0


# --- Anthropic: temperature sent, thinking optional and metered --------------------------------------

async def test_anthropic_sends_temperature_clamped_to_its_range(gateway):
    gateway.backend = ScriptedBackend()
    client = gateway.client("anthropic", "claude-sonnet-4-5", retry=FAST)
    await client.complete("Q?", temperature=0.2)
    out = await client.complete("Q?", temperature=1.6)
    bodies = gateway.bodies(ANTHROPIC)
    assert [b["temperature"] for b in bodies] == [0.2, 1.0] and "thinking" not in bodies[0]
    assert any("above Anthropic's maximum" in w for w in out.warnings)


async def test_anthropic_extended_thinking_follows_the_api_rules_and_is_metered(gateway):
    gateway.backend = ScriptedBackend(lambda m, o: json.dumps({"answer": "42"}))
    gateway.thinking_tokens = 700
    client = gateway.client("anthropic", "claude-sonnet-4-5", retry=FAST)
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    out = await client.complete("Q?", max_tokens=200, reasoning_effort="low", json_schema=schema)
    body = gateway.bodies(ANTHROPIC)[-1]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024} and body["max_tokens"] == 1224
    assert "temperature" not in body and "tool_choice" not in body  # both refused with thinking
    assert json.loads(out.text) == {"answer": "42"}
    assert out.usage.reasoning_tokens == pytest.approx(700, abs=3)  # estimated: output minus the answer's tokens
    assert out.usage.completion_tokens > 700


async def test_newest_claude_gets_no_temperature_and_adaptive_thinking(gateway):
    gateway.backend = ScriptedBackend(lambda m, o: "ok")
    client = gateway.client("anthropic", "claude-opus-4-7", retry=FAST)
    assert (await client.complete("Q?", temperature=0.0)).text == "ok"  # the API would refuse any temperature
    await client.complete("Q?", max_tokens=100, reasoning_effort="high")
    plain, thinking = gateway.bodies(ANTHROPIC)
    assert "temperature" not in plain and "thinking" not in plain
    assert thinking["thinking"] == {"type": "adaptive"} and thinking["output_config"] == {"effort": "high"}
    with pytest.raises(errors.ConfigError, match="has no extended thinking"):
        get_protocol("remote-only", None, gateway.client("anthropic", "claude-3-5-haiku"), remote_reasoning="low")


# --- acceptance: the protocols complete against today's remotes --------------------------------------

def remote_reply(msgs, _opts) -> str:
    """The remote's side for all three protocols, served behind the gateway in each wire format."""
    last = msgs[-1].content
    if "plan the workers' jobs" in last or "not valid" in last:
        return plan("Find the revenue")
    if '"decision"' in last or "decision" in msgs[0].content:
        return json.dumps({"decision": "provide_final_answer", "explanation": "found", "message": "",
                           "answer": "$42 million"})
    return "$42 million"


@pytest.mark.parametrize("protocol", ["minions", "minion", "remote-only"])
@pytest.mark.parametrize("model", ["openai/gpt-5-mini", "openai/o4-mini", "anthropic/claude-sonnet-4-5"])
def test_protocols_complete_against_todays_remotes(gateway, protocol, model):
    gateway.backend = ScriptedBackend(remote_reply)
    provider, name = model.split("/")
    remote = gateway.client(provider, name, retry=FAST)
    local = FunctionClient(lambda m, o: honest_local(m, o) if "<excerpt>" in m[-1].content else "$42 million",
                           model="local")
    result = get_protocol(protocol, local, remote, prices=PriceTable.load()).run(
        "What was revenue in fiscal 2024?", [make_doc()])
    assert result.error is None and "$42 million" in (result.answer or ""), (result.error, result.answer)
    spent = result.cost.role("remote")
    assert spent.usage.requests >= 1 and spent.cost_usd and spent.cost_usd > 0
    if provider == "openai":
        bodies = gateway.bodies(OPENAI)
        assert bodies and all("max_tokens" not in b and "temperature" not in b for b in bodies)
        assert spent.usage.reasoning_tokens == REASONING_TOKENS["low"] * spent.usage.requests
        price = PriceTable.load().get(model)
        assert "genai-prices" in price.source and result.cost.price_sources[model] == price.source
        assert spent.cost_usd == pytest.approx(price.cost(spent.usage))  # reasoning tokens billed as output
        without = spent.usage.model_copy(update={"completion_tokens": spent.usage.completion_tokens
                                                 - spent.usage.reasoning_tokens})
        assert spent.cost_usd - price.cost(without) == pytest.approx(spent.usage.reasoning_tokens * price.output / 1e6)
    else:
        bodies = gateway.bodies(ANTHROPIC)
        assert bodies and all(b["temperature"] == 0.0 for b in bodies)


@pytest.mark.real_model
def test_embedded_model_behind_a_reasoning_model_name_answers_through_the_strict_gateway(gateway):
    """The real model end to end: SmolLM2 serves `openai/gpt-5-mini` in OpenAI's wire format; the run
    must complete with an answer, the request must be one the real API accepts, and the hidden tokens
    must be metered and priced."""
    remote = gateway.client("openai", "gpt-5-mini", retry=RetryPolicy(timeout=120))
    doc = "Northwind Traders annual report. Total revenue in fiscal 2024 was $12.4 million."
    result = get_protocol("remote-only", None, remote, remote_max_tokens=96, prices=PriceTable.load()).run(
        "What was Northwind's total revenue in fiscal 2024?", doc)
    assert result.error is None and result.answer and result.answer.strip()
    body = gateway.bodies(OPENAI)[-1]
    assert body["max_completion_tokens"] == 96 and "max_tokens" not in body and "temperature" not in body
    spent = result.cost.role("remote")
    assert spent.usage.reasoning_tokens == REASONING_TOKENS["low"] and spent.cost_usd > 0


def test_budget_check_counts_the_retry_a_reasoning_model_may_need(gateway):
    gateway.backend = ScriptedBackend(lambda m, o: "42")
    remote = gateway.client("openai", "gpt-5-mini", retry=FAST)
    remote_opts = Options(max_tokens=1000)
    assert remote.max_billed_tokens(remote_opts) == 5000
    assert gateway.client("openai", "gpt-4o").max_billed_tokens(remote_opts) == 1000
    # $2/M output: one 1000-token reply fits $0.005, but not one plus its 4000-token retry
    result = get_protocol("remote-only", None, remote, remote_max_tokens=1000, max_remote_usd=0.005,
                          prices=PriceTable.load()).run("Q?", "short doc")
    assert result.budget_exhausted and gateway.counts[OPENAI] == 0
    ok = get_protocol("remote-only", None, remote, remote_max_tokens=1000, max_remote_usd=0.02,
                      prices=PriceTable.load()).run("Q?", "short doc")
    assert ok.answer == "42" and not ok.budget_exhausted
