"""The embedded llama.cpp client with the real SmolLM2-135M model (in-process)."""

from __future__ import annotations

import asyncio
import json
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from minions import errors
from minions.clients import Message, get_client

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def llm():
    return get_client("llamacpp/smollm2")


class Answer(BaseModel):
    answer: str = Field(max_length=40)  # bounded strings keep a small model from rambling past max_tokens
    confidence: int


def test_plain_completion(llm):
    out = llm.complete_sync("Say hello.", max_tokens=16)
    assert out.text.strip()
    assert out.usage.prompt_tokens > 3 and 0 < out.usage.completion_tokens <= 16
    assert out.usage.requests == 1 and out.finish_reasons[0] in ("stop", "length")


class Figure(BaseModel):
    unit: Literal["thousand", "million", "billion"]
    amount: float


def test_structured_output_matches_schema(llm):
    out = llm.complete_sync("Revenue was $12.4 million. Give the revenue and your confidence 1-5 as JSON.",
                            max_tokens=64, json_schema=Answer.model_json_schema())
    raw = json.loads(out.text)  # constrained decoding: the JSON itself has the shape, nothing is coerced
    assert set(raw) == {"answer", "confidence"}
    assert type(raw["confidence"]) is int and type(raw["answer"]) is str and len(raw["answer"]) <= 40
    # An enum in the schema is a grammar constraint: the model can only pick one of its values.
    fig = json.loads(llm.complete_sync("Capital expenditure was $3.1 million. Give the amount and its unit.",
                                       max_tokens=32, json_schema=Figure.model_json_schema()).text)
    assert fig["unit"] in ("thousand", "million", "billion") and type(fig["amount"]) in (int, float)


def test_n_samples_are_independent_draws_each_reproducible_from_its_seed(llm):
    prompt = "Write one short sentence about any animal."
    out = llm.complete_sync(prompt, max_tokens=12, n=3, temperature=1.0)
    assert len(out.texts) == 3 and len(out.finish_reasons) == 3 and out.usage.requests == 1
    assert len(set(out.texts)) > 1  # samples, not one reply copied n times
    assert [llm.complete_sync(prompt, max_tokens=12, temperature=1.0, seed=k).text for k in range(3)] == out.texts


def test_shared_prefix_is_reused_and_reported(llm):
    chunk = "Page 7. Northwind's capital expenditure in fiscal 2024 was $3.1 million. " * 20
    prefix = [Message(role="system", content="Answer from the document."), Message(role="user", content=chunk)]
    first = llm.complete_sync([*prefix, Message(role="user", content="Task: what was capex?")], max_tokens=8)
    second = llm.complete_sync([*prefix, Message(role="user", content="Task: which year?")], max_tokens=8)
    assert second.usage.cached_prompt_tokens > 0
    assert second.usage.evaluated_prompt_tokens < first.usage.evaluated_prompt_tokens


PROMPTS = ["Repeat the word apple.", "What is 2+2?", "Name the capital of France.", "Say the word blue."]


async def test_concurrent_callers_get_their_own_answers_no_crosstalk(llm):
    alone = [llm.complete_sync(p, max_tokens=10, temperature=0.0).text for p in PROMPTS]
    assert len(set(alone)) == len(PROMPTS)  # different prompts, different answers
    together = await asyncio.gather(*(llm.complete(p, max_tokens=10, temperature=0.0) for p in PROMPTS))
    # Greedy decoding is deterministic: a concurrent call answers exactly as it does alone, so a reply
    # mixed with (or swapped for) another caller's shows up as a difference.
    assert [o.text for o in together] == alone
    assert "Paris" in alone[2] and "4" in alone[1]


def test_exact_token_count(llm):
    n = llm.count_tokens("hello world")
    assert n == 2


def test_context_too_long_names_the_fix():
    small = get_client("llamacpp/smollm2", n_ctx=128)
    with pytest.raises(errors.ContextTooLongError, match="chunked protocol"):
        small.complete_sync("word " * 400, max_tokens=4)


def test_instances_route_same_prefix_to_same_engine():
    c = get_client("llamacpp/smollm2", instances=3)
    a = [Message(role="system", content="sys"), Message(role="user", content="chunk one " * 50)]
    b = [Message(role="system", content="sys"), Message(role="user", content="chunk two " * 50)]
    assert c._route([*a, Message(role="user", content="t1")]) == c._route([*a, Message(role="user", content="t2")])
    assert c._route([*b, Message(role="user", content="t1")]) == c._route([*b, Message(role="user", content="t2")])


def test_schema_beyond_the_grammar_limit_is_refused_not_crashed(llm):
    schema = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 1500}}, "required": ["a"]}
    with pytest.raises(errors.BadRequestError, match="grammar limit"):
        llm.complete_sync("x", max_tokens=4, json_schema=schema)


@pytest.mark.parametrize("user", [{"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "10000"}, {}])
def test_wait_policy_default_yields_to_the_users_setting(monkeypatch, user):
    """Issue 19: PASSIVE by default; a user's OMP_WAIT_POLICY or GOMP_SPINCOUNT wins (neither is overridden)."""
    from minions.clients.llamacpp import LlamaCppClient

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    for k, v in user.items():
        monkeypatch.setenv(k, v)
    import os

    LlamaCppClient("smollm2")
    if not user:
        assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    elif "GOMP_SPINCOUNT" in user:
        assert "OMP_WAIT_POLICY" not in os.environ and os.environ["GOMP_SPINCOUNT"] == "10000"
    else:
        assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
