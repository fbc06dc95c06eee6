"""Protocols end to end: through the HTTP gateway with faults on both sides, and with the embedded
model on a real FinanceBench filing."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from minions.clients import RetryPolicy, get_client
from minions.documents import Document
from minions.protocols import get_protocol
from tests.gateway import ScriptedBackend
from tests.scripted import schema_title
from tests.test_protocol_minions import honest_local, make_doc, plan

FAST = RetryPolicy(max_retries=6, base_delay=0.001, max_delay=0.01, timeout=10)


def backend_reply(msgs, opts) -> str:
    """One scripted server playing both sides, by the schema asked for: the remote plans or decides,
    anything else is a worker job."""
    title = schema_title(opts)
    if title == "JobPlan":
        return plan("Find the revenue")
    if title in ("Synthesis", "LastSynthesis"):
        return json.dumps({"decision": "provide_final_answer", "explanation": "found", "answer": "$42 million"})
    return honest_local(msgs, opts)


def test_minions_completes_under_20_percent_faults_on_both_sides_without_double_counting(gateway):
    backend = gateway.backend = ScriptedBackend(backend_reply)
    gateway.random_faults(0.2, seed=3, kinds=("429", "500", "drop"))
    local = gateway.client("ollama", "llama3.2:3b", retry=FAST)
    remote = gateway.client("openai", "gpt-4o-mini", retry=FAST)
    result = get_protocol("minions", local, remote).run("What was revenue in fiscal 2024?", [make_doc()])
    assert result.error is None and result.answer == "$42 million"
    served = sum(gateway.counts.values())
    assert served > len(backend.returned), "the seeded faults must have hit some requests"
    # every delivered reply is counted exactly once, across both roles, however many attempts it took
    total = result.cost.role("local").usage + result.cost.role("remote").usage
    assert total.requests == len(backend.returned)
    assert total.completion_tokens == sum(c.usage.completion_tokens for c in backend.returned)
    assert total.prompt_tokens == sum(c.usage.prompt_tokens for c in backend.returned)


def _financebench() -> Path | None:
    d = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "financebench"
    return d if (d / "docs.jsonl.gz").exists() else None


@pytest.fixture(scope="module")
def filing() -> tuple[Document, str]:
    root = _financebench()
    if root is None:
        pytest.skip("FinanceBench data not found at ../shared/datasets/financebench (development and CI only)")
    with gzip.open(root / "docs.jsonl.gz", "rt") as f:
        for line in f:
            doc = json.loads(line)
            if doc["doc_name"] == "3M_2018_10K":
                return (Document.from_pages(doc["pages"], id=doc["doc_name"], title=doc["doc_name"]),
                        "What is the FY2018 capital expenditure amount (in USD millions) for 3M?")
    pytest.skip("3M_2018_10K not in the prepared FinanceBench copy")


@pytest.fixture(scope="module")
def models():
    return get_client("llamacpp/smollm2"), get_client("llamacpp/smollm2", price_as="openai/gpt-4o")


@pytest.mark.real_model
@pytest.mark.financebench
@pytest.mark.parametrize("name", ["minion", "remote-only", "local-only", "rag"])
def test_every_protocol_on_a_real_filing_answers(name, filing, models):
    doc, question = filing
    local, remote = models
    knobs = {"max_rounds": 1, "max_context_tokens": 1500, "local_max_tokens": 48, "remote_max_tokens": 96,
             "top_k": 2}
    cls_fields = get_protocol(name, local, remote).Config.model_fields
    proto = get_protocol(name, local, remote, **{k: v for k, v in knobs.items() if k in cls_fields})
    result = proto.run(question, [doc])
    assert result.answer and result.answer.strip(), (result.error_type, result.error)
    assert result.error is None or result.degraded, (result.error_type, result.error)
    assert result.cost.remote_only_estimate_usd and result.cost.remote_only_estimate_usd > 0.1  # a 10-K is big
    if name in ("minion", "remote-only", "local-only"):  # the whole filing cannot fit: cut, and said so
        assert any("kept the first" in w for w in result.warnings), result.warnings


def test_anthropic_remote_gets_its_stable_prefix_marked_and_cache_reads_are_priced_lower(gateway):
    gateway.backend = ScriptedBackend(backend_reply, cached_prompt_tokens=40)
    local = gateway.client("ollama", "llama3.2:3b", retry=FAST)
    remote = gateway.client("anthropic", "claude-haiku-4-5", retry=FAST)
    result = get_protocol("minions", local, remote).run("What was revenue in fiscal 2024?", [make_doc()])
    assert result.error is None
    bodies = gateway.bodies("/v1/messages")
    assert bodies and all(b["system"][-1].get("cache_control") == {"type": "ephemeral"} for b in bodies)
    spent = result.cost.role("remote")
    assert spent.usage.cached_prompt_tokens == 40 * spent.usage.requests
    price = get_protocol("minions", local, remote).prices.get("anthropic/claude-haiku-4-5")
    uncached = price.cost(spent.usage.model_copy(update={"cached_prompt_tokens": 0}))
    assert spent.cost_usd < uncached  # what the prompt cache saved is visible in dollars
