"""The embedded llama.cpp client with the real SmolLM2-135M model (in-process)."""

from __future__ import annotations

import asyncio
import json

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


def test_structured_output_matches_schema(llm):
    out = llm.complete_sync("Revenue was $12.4 million. Give the revenue and your confidence 1-5 as JSON.",
                            max_tokens=64, json_schema=Answer.model_json_schema())
    parsed = Answer.model_validate(json.loads(out.text))  # constrained decoding: valid JSON of that shape
    assert isinstance(parsed.confidence, int)


def test_n_samples(llm):
    out = llm.complete_sync("Name a colour.", max_tokens=8, n=2, temperature=0.9)
    assert len(out.texts) == 2 and len(out.finish_reasons) == 2
    assert out.usage.requests == 1


def test_shared_prefix_is_reused_and_reported(llm):
    chunk = "Page 7. Northwind's capital expenditure in fiscal 2024 was $3.1 million. " * 20
    prefix = [Message(role="system", content="Answer from the document."), Message(role="user", content=chunk)]
    first = llm.complete_sync([*prefix, Message(role="user", content="Task: what was capex?")], max_tokens=8)
    second = llm.complete_sync([*prefix, Message(role="user", content="Task: which year?")], max_tokens=8)
    assert second.usage.cached_prompt_tokens > 0
    assert second.usage.evaluated_prompt_tokens < first.usage.evaluated_prompt_tokens


async def test_concurrent_callers_are_safe(llm):
    outs = await asyncio.gather(*(llm.complete(f"Count to {i}.", max_tokens=8) for i in range(4)))
    assert all(o.text for o in outs)


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
