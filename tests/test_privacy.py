"""The privacy scrubber, the local-rewrite shield, and no personal data reaching any remote request."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minions.clients.base import Message
from minions.clients.function import FunctionClient
from minions.cost import Price, PriceTable
from minions.documents import Document
from minions.protocols import get_protocol
from minions.protocols.privacy import Scrubber, luhn_ok
from tests.scripted import by_schema

PRICES = PriceTable({"function/remote": Price(input=1.0, output=2.0), "function/local": Price(input=0.0, output=0.0)})

# Personal data planted in documents and in the local model's answers, by kind.
PLANTED = {
    "[EMAIL]": ["alice.johnson@example.com", "a_j+tag@mail.example.co.uk"],
    "[PHONE]": ["(415) 555-2671", "415-555-2671", "415.555.2671", "+1 415 555 2671", "+44 20 7946 0958",
                "+49-30-1234567", "+33 (0)1 23 45 67 89"],
    "[SSN]": ["123-45-6789", "078 05 1120"],
    "[CARD]": ["4111 1111 1111 1111", "5555-5555-5555-4444", "378282246310005", "6011111111111117"],
    "[IP]": ["192.168.1.20", "10.0.0.1", "2001:db8:85a3::8a2e:370:7334", "fe80::1", "::ffff:10.0.0.1"],
    "[NAME]": ["Alice Johnson", "alice   JOHNSON", "Dr. Okafor"],
}
NAMES = ["Alice Johnson", "Okafor"]
ALL_PLANTED = [v for vs in PLANTED.values() for v in vs]


@pytest.mark.parametrize("placeholder,value", [(k, v) for k, vs in PLANTED.items() for v in vs])
def test_each_kind_is_replaced_by_its_placeholder(placeholder, value):
    out = Scrubber(NAMES).scrub(f"Contact: {value}, today.")
    assert value not in out
    assert placeholder in out
    assert out.startswith("Contact: ") and out.endswith(", today.")


@pytest.mark.parametrize("text", [
    "Revenue was $1,234,567 in fiscal 2024, up 12.5% from 2023.",
    "Filed 2024-01-15 at 10:30:00; CIK 0000320193; Form 10-K; page 47 of 120.",
    "Uses std::map and version v1.2.3.4; ratio 3:2:1.",
    "Order 4111-1111-1111-1112 fails the Luhn check.",
    "Our 1234567 shares; 12345678901234 units; invoice 0123456789.",
])
def test_ordinary_text_survives(text):
    assert Scrubber(["Bob"]).scrub(text) == text


def test_names_are_case_insensitive_whole_words_longest_first():
    s = Scrubber(["Bob", "Mary Ann Smith", "Mary Ann"])
    assert s.scrub("bob, BOB and Bob. Bobby stays.") == "[NAME], [NAME] and [NAME]. Bobby stays."
    assert s.scrub("Bob's cat, bob-tail") == "[NAME]'s cat, [NAME]-tail"
    assert s.scrub("mary ann  smith met Mary Ann.") == "[NAME] met [NAME]."
    assert Scrubber().scrub("Alice") == "Alice"  # no names listed, no name redaction
    assert Scrubber(["", "  "]).names == ()


def test_regex_metacharacters_in_names_are_literal():
    s = Scrubber(["J. (Jim) O'Neil+"])
    assert s.scrub("Ask J. (Jim) O'Neil+ now") == "Ask [NAME] now"
    assert s.scrub("Ask J  (Jim) ONeil now") == "Ask J  (Jim) ONeil now"


def test_luhn():
    assert luhn_ok("4111111111111111") and luhn_ok("79927398713")
    assert not luhn_ok("4111111111111112")


_FILLER = st.text(alphabet=string.ascii_letters + " .,;:!?()'\"\n", max_size=40)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_FILLER, st.sampled_from(ALL_PLANTED)), min_size=1, max_size=6), _FILLER)
def test_planted_data_never_survives_and_scrub_is_idempotent(pieces, tail):
    # Each planted item sits between separators, as it would in prose.
    text = "".join(f"{f} {v} " for f, v in pieces) + tail
    s = Scrubber(NAMES)
    out = s.scrub(text)
    for _, value in pieces:
        assert value not in out
    assert s.scrub(out) == out


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_scrub_is_total_and_idempotent_on_any_text(text):
    s = Scrubber(NAMES)
    out = s.scrub(text)
    assert s.scrub(out) == out


# --- through the protocols: nothing planted reaches the remote -----------------------------------

DOC = ("Patient record. Name: Alice Johnson, email alice.johnson@example.com, phone (415) 555-2671, "
       "SSN 123-45-6789, card 4111 1111 1111 1111, last login from 192.168.1.20 and 2001:db8:85a3::8a2e:370:7334. "
       "Treating physician: Dr. Okafor, +44 20 7946 0958. Diagnosis: seasonal allergies.")
LOCAL_LEAK = ("Alice Johnson (alice.johnson@example.com, 415-555-2671, SSN 123-45-6789, card 5555-5555-5555-4444, "
              "IP 10.0.0.1) has seasonal allergies, says Dr. Okafor.")
# What the document planted, verbatim (a real model may invent other names; only listed ones are names).
PLANTED_IN_DOC = ["Alice Johnson", "alice.johnson@example.com", "(415) 555-2671", "123-45-6789", "4111 1111 1111 1111",
                  "192.168.1.20", "2001:db8:85a3::8a2e:370:7334", "Okafor", "+44 20 7946 0958"]
LEAKS = ["Alice", "Johnson", "Okafor", "alice.johnson@example.com", "555-2671", "123-45-6789", "4111 1111",
         "5555-5555", "192.168.1.20", "10.0.0.1", "2001:db8", "7946 0958"]


def _remote_texts(remote: FunctionClient) -> list[str]:
    return [m.content for msgs, _ in remote.calls for m in msgs]


def _assert_clean(remote: FunctionClient, leaks: list[str] = LEAKS):
    assert remote.calls
    for text in _remote_texts(remote):
        for leak in leaks:
            assert leak not in text, f"{leak!r} reached the remote"


def _minion_remote():
    return FunctionClient.from_replies([
        json.dumps({"decision": "request_additional_info", "message": "Who is the patient and what is the diagnosis?"}),
        json.dumps({"decision": "provide_final_answer", "answer": "Seasonal allergies."}),
    ], model="remote")


def _minions_remote():
    return by_schema({
        "JobPlan": [json.dumps({"tasks": [{"instruction": "Who is the patient and what is the diagnosis?"}]})],
        ("Synthesis", "LastSynthesis"): [json.dumps({"decision": "provide_final_answer", "explanation": "from the jobs",
                                                     "answer": "Seasonal allergies."})]}, model="remote")


def _minions_local(messages: list[Message], _opts) -> str:
    if messages[0].content.startswith("Rewrite the user's message"):
        return "The patient (SSN 123-45-6789) has seasonal allergies."  # sloppy: the scrubber must catch it
    # A worker that quotes personal data verbatim (the citation is verified in the chunk, so kept).
    return json.dumps({"explanation": "Alice Johnson's record", "answer": LOCAL_LEAK,
                       "citation": "Name: Alice Johnson, email alice.johnson@example.com, phone (415) 555-2671"})


@pytest.mark.parametrize("name", ["minion", "minions", "remote-only", "rag"])
async def test_no_planted_data_reaches_any_remote_request(name):
    remote = _minion_remote() if name == "minion" else _minions_remote() if name == "minions" else \
        FunctionClient.from_replies(["Alice Johnson has seasonal allergies."], model="remote")
    local = FunctionClient(_minions_local, model="local") if name == "minions" else \
        FunctionClient.from_replies([LOCAL_LEAK], model="local")
    proto = get_protocol(name, local, remote, prices=PRICES, privacy=Scrubber(NAMES))
    # The task itself names the patient too.
    result = await proto.arun("What is Alice Johnson's diagnosis?", [Document.from_text(DOC, id="record")])
    assert result.error is None, result.error
    _assert_clean(remote)
    # The transcript records what the remote saw: scrubbed, with typed placeholders.
    to_remote = [m.content for r in result.rounds for m in r.messages if m.to == "remote" and m.role == "user"]
    assert any("[NAME]" in t for t in to_remote)
    if name != "minion":
        assert any("[SSN]" in t and "[CARD]" in t and "[IP]" in t for t in to_remote)


async def test_minion_local_rewrite_shield_runs_on_local_answers_and_is_scrubbed_anyway():
    remote = _minion_remote()

    def local_fn(messages: list[Message], _opts):
        if messages[0].content.startswith("Rewrite the user's message"):
            # A sloppy rewrite that keeps some personal data: the scrubber must still catch it.
            return "The patient (SSN 123-45-6789) has seasonal allergies."
        return LOCAL_LEAK

    local = FunctionClient(local_fn, model="local")
    proto = get_protocol("minion", local, remote, prices=PRICES,
                         privacy=Scrubber(NAMES, local_rewrite=True), max_rounds=2)
    result = await proto.arun("What is the diagnosis?", DOC)
    assert result.answer == "Seasonal allergies."
    _assert_clean(remote)
    rewrite_calls = [msgs for msgs, _ in local.calls if msgs[0].content.startswith("Rewrite")]
    assert len(rewrite_calls) == 1 and rewrite_calls[0][1].content == LOCAL_LEAK
    assert "Names to remove: Alice Johnson, Okafor" in rewrite_calls[0][0].content
    decide = remote.calls[1][0][-1].content
    assert "The patient (SSN [SSN]) has seasonal allergies." in decide
    assert [e.step for e in result.calls if e.role == "local"] == ["answer", "privacy"]


async def test_minions_local_rewrite_shield_runs_on_job_outputs_and_is_scrubbed_anyway():
    remote = _minions_remote()
    local = FunctionClient(_minions_local, model="local")
    proto = get_protocol("minions", local, remote, prices=PRICES, privacy=Scrubber(NAMES, local_rewrite=True),
                         max_rounds=1)
    result = await proto.arun("What is the diagnosis?", [Document.from_text(DOC, id="record")])
    assert result.error is None and result.answer == "Seasonal allergies."
    _assert_clean(remote)
    rewrites = [msgs for msgs, _ in local.calls if msgs[0].content.startswith("Rewrite")]
    # The job outputs went through it — already scrubbed, since aggregation scrubs before it clips.
    assert len(rewrites) == 1 and "has seasonal allergies, says Dr. [NAME]." in rewrites[0][1].content
    synth = remote.calls[-1][0][-1].content
    assert "The patient (SSN [SSN]) has seasonal allergies." in synth and LOCAL_LEAK not in synth
    assert [e.step for e in result.calls if e.role == "local"][-1] == "privacy"


async def test_no_privacy_option_sends_text_unchanged():
    remote = FunctionClient.from_replies(["ok"], model="remote")
    await get_protocol("remote-only", None, remote, prices=PRICES).arun("Q?", DOC)
    assert any(DOC in t for t in _remote_texts(remote))


@pytest.mark.real_model
async def test_real_model_minions_with_the_shield_keeps_the_remote_clean():
    from minions.clients.llamacpp import LlamaCppClient

    local = LlamaCppClient("smollm2", n_threads=1)  # one thread: the suite shares two cores
    try:
        remote = _minions_remote()
        proto = get_protocol("minions", local, remote, prices=PRICES, privacy=Scrubber(NAMES, local_rewrite=True),
                             max_rounds=1, local_max_tokens=96, max_jobs_per_round=2)
        proto.privacy.rewrite_max_tokens = 48
        result = await proto.arun("What is the diagnosis?", [Document.from_text(DOC, id="record")])
        assert result.error is None and result.answer == "Seasonal allergies.", result.error
        _assert_clean(remote, PLANTED_IN_DOC)
        steps = [e.step for e in result.calls if e.role == "local"]
        assert steps.count("job") == 2 and steps[-1] == "privacy"
    finally:
        await local.aclose()


@pytest.mark.real_model
async def test_real_model_shield_then_scrubber_keep_the_remote_clean():
    from minions.clients.llamacpp import LlamaCppClient

    local = LlamaCppClient("smollm2", n_threads=1)  # one thread: the suite shares two cores
    try:
        remote = _minion_remote()
        proto = get_protocol("minion", local, remote, prices=PRICES, privacy=Scrubber(NAMES, local_rewrite=True),
                             max_rounds=1, local_max_tokens=48)
        proto.privacy.rewrite_max_tokens = 48
        result = await proto.arun("What is the diagnosis?", DOC)
        assert result.error is None, result.error
        assert result.answer == "Seasonal allergies."
        _assert_clean(remote, PLANTED_IN_DOC)
        assert [e.step for e in result.calls if e.role == "local"] == ["answer", "privacy"]
    finally:
        await local.aclose()
