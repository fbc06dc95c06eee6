"""Deeply nested JSON in model replies (issue 12, item 1): a typed ModelOutputError the retry path
shows the model, or a usable value; never a RecursionError out of `run`."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minions import errors
from minions.clients.base import Message
from minions.clients.function import FunctionClient
from minions.documents import Document
from minions.protocols import get_protocol
from minions.protocols.lenient import as_text
from minions.protocols.minion import RemoteDecision
from minions.protocols.minions import LastSynthesis, Synthesis
from minions.protocols.minions_jobs import MAX_FIELD_CHARS, JobOutput
from minions.protocols.minions_plan import JobPlan
from minions.protocols.parsing import MAX_NESTING, nested_too_deep, parse_reply
from minions.protocols.result import JobStatus
from tests.scripted import by_schema

DOC = Document.from_pages(["Northwind Traders annual report.",
                           "Financial results. The revenue was $42 million in fiscal 2024."], id="nw", title="Northwind")
PLAN = json.dumps({"tasks": [{"instruction": "Find the revenue", "advice": "quote it"}],
                   "chunking": {"strategy": "pages", "size": 1}})
GOOD_JOB = json.dumps({"explanation": "stated", "citation": "The revenue was $42 million in fiscal 2024",
                       "answer": "$42 million"})
FINAL = json.dumps({"decision": "provide_final_answer", "explanation": "found", "answer": "$42 million"})


def nested(depth: int, kind: str = "list", leaf: str = '"x"') -> str:
    """`depth` levels of lists ([[["x"]]]), objects ({"a": {"a": "x"}}) or both alternating, as JSON text."""
    opens = {"list": ["["], "dict": ['{"a": '], "mixed": ["[", '{"a": ']}[kind]
    closes = {"[": "]", '{"a": ': "}"}
    seq = [opens[i % len(opens)] for i in range(depth)]
    return "".join(seq) + leaf + "".join(closes[o] for o in reversed(seq))


def synthesis(value: str) -> str:
    return '{"decision": "provide_final_answer", "explanation": "e", "answer": ' + value + "}"


def job(value: str) -> str:
    return '{"explanation": "e", "citation": "The revenue was $42 million in fiscal 2024", "answer": ' + value + "}"


def remote_for(decisions: list[str]) -> FunctionClient:
    """Plans with PLAN; answers the i-th synthesis (or its retry) with decisions[i] (last repeats)."""
    return by_schema({"JobPlan": [PLAN], ("Synthesis", "LastSynthesis"): decisions}, model="remote")


SCHEMAS = [Synthesis, LastSynthesis, JobOutput, RemoteDecision, JobPlan]


@pytest.mark.parametrize("depth", [400, 500, 600, 999, 2000, 10_000])
@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("kind", ["list", "dict", "mixed"])
def test_deep_nesting_in_a_field_is_a_typed_error(schema, depth, kind):
    field = "tasks" if schema is JobPlan else "answer"
    text = '{"decision": "provide_final_answer", "explanation": "e", "citation": "c", "' + field + '": ' \
        + nested(depth, kind) + "}"
    with pytest.raises(errors.ModelOutputError):
        parse_reply(text, schema)


@pytest.mark.parametrize("depth", [1, 5, MAX_NESTING - 1])
def test_shallow_lists_still_become_text(depth):
    # The reply object is one level; a field may nest MAX_NESTING - 1 more.
    assert parse_reply(synthesis(nested(depth)), Synthesis).answer == "x"
    assert parse_reply(job(nested(depth)), JobOutput).answer == "x"
    with pytest.raises(errors.ModelOutputError, match="nested more than"):
        parse_reply(synthesis(nested(MAX_NESTING)), Synthesis)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(depth=st.integers(1, 5000), kind=st.sampled_from(["list", "dict", "mixed"]), cut=st.integers(0, 3))
def test_property_nested_values_never_escape_untyped(depth, kind, cut):
    value = nested(depth, kind)
    text = synthesis(value)
    text = text[: len(text) - cut * (depth // 4)]  # sometimes truncated, as a reply cut at max_tokens is
    for schema in SCHEMAS:
        try:
            parse_reply(text, schema)
        except errors.ModelOutputError:
            pass
    # The text conversion itself: a ValueError (shown to the model by pydantic) or text, never a RecursionError.
    obj: object = "x"
    for i in range(depth):
        obj = [obj] if kind == "list" or (kind == "mixed" and i % 2 == 0) else {"a": obj}
    try:
        out = as_text(obj, limit=MAX_FIELD_CHARS)
    except ValueError:
        assert nested_too_deep(obj)
    else:
        assert isinstance(out, str)
        if kind == "list":  # lists are joined level by level, and refused past the bound
            assert not nested_too_deep(obj) and out == "x"


# --- through MinionS.run and Minion.run ------------------------------------------------------------

@pytest.mark.parametrize("depth", [400, 500, 600])
def test_minions_remote_synthesis_nested_deep_is_a_typed_failure_not_a_crash(depth):
    remote = remote_for([synthesis(nested(depth))])
    local = FunctionClient(lambda m, o: GOOD_JOB, model="local")
    result = get_protocol("minions", local, remote, max_rounds=1).run("What was revenue?", [DOC])
    assert result.error_type == "ModelOutputError" and "nested more than" in result.error
    assert result.answer == "$42 million"  # the workers' answer is kept as the best so far
    # The retry showed the model its error.
    retry = remote.calls[-1][0][-1].content
    assert retry.startswith("That reply was not valid") and "nested more than" in retry


def test_minions_retry_after_a_nested_reply_recovers():
    remote = remote_for([synthesis(nested(500)), FINAL])
    local = FunctionClient(lambda m, o: GOOD_JOB, model="local")
    result = get_protocol("minions", local, remote, max_rounds=1).run("What was revenue?", [DOC])
    assert result.error is None and result.answer == "$42 million"


@pytest.mark.parametrize("depth", [500, 3000])
def test_minions_worker_answer_nested_deep_is_an_unparseable_job(depth):
    def local(msgs: list[Message], _o) -> str:
        return job(nested(depth)) if "Financial results" in msgs[-1].content else GOOD_JOB

    result = get_protocol("minions", FunctionClient(local, model="local"), remote_for([FINAL]),
                          max_rounds=1).run("What was revenue?", [DOC])
    assert result.error is None and result.answer == "$42 million"
    bad = [j for j in result.rounds[0].jobs if j.chunk_id == "nw#1"]
    assert bad and not bad[0].kept and bad[0].status is JobStatus.UNPARSEABLE


@pytest.mark.parametrize("depth", [500, 950, 5000])
def test_minion_remote_decision_nested_deep_is_a_typed_failure(depth):
    remote = FunctionClient.from_replies([synthesis(nested(depth))], model="remote")
    local = FunctionClient.from_replies(["$42 million"], model="local")
    result = get_protocol("minion", local, remote, max_rounds=1).run("What was revenue?", [DOC])
    assert result.error_type == "ModelOutputError"
    assert len(remote.calls) == 2  # asked again once, with the error shown


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(remote_depth=st.integers(1, 3000), local_depth=st.integers(1, 3000),
       kind=st.sampled_from(["list", "dict", "mixed"]))
def test_property_minions_run_with_nested_replies_returns_typed_results(remote_depth, local_depth, kind):
    remote = remote_for([synthesis(nested(remote_depth, kind))])
    local = FunctionClient(lambda m, o: job(nested(local_depth, kind)), model="local")
    result = get_protocol("minions", local, remote, max_rounds=1, ask_question=False).run("What was revenue?", [DOC])
    if remote_depth + 1 > MAX_NESTING:  # the reply object itself is the first level
        assert result.error_type == "ModelOutputError" and "nested" in result.error
    else:  # shallow: lists are joined, objects kept as their JSON text
        assert result.error is None
        assert result.answer == as_text(json.loads(nested(remote_depth, kind))).strip()
    jobs = result.rounds[0].jobs
    assert len(jobs) == 2
    assert all(j.status is JobStatus.UNPARSEABLE for j in jobs) == (local_depth + 1 > MAX_NESTING)
