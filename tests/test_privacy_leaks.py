"""--privacy leaks of issue 12 (item 2): file-name ids and titles, clipping before scrubbing, formats
the scrubber missed, and unbounded worker replies. Every check reads every request a scripted remote
received."""

from __future__ import annotations

import json
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minions.clients.base import Message
from minions.clients.function import FunctionClient
from minions.documents import Document, chunk_documents, load_many
from minions.protocols import get_protocol
from minions.protocols.minion import MinionConfig, reply_limit
from minions.protocols.privacy import Scrubber, luhn_ok
from tests.scripted import by_schema

NAMES = ["Maria Gonzalez"]


def remote_texts(remote: FunctionClient) -> list[str]:
    return [m.content for msgs, _ in remote.calls for m in msgs]


def assert_clean(remote: FunctionClient, leaks: list[str], words: list[str] = ()) -> None:
    """No `leaks` substring (any case) and no whole word of `words` in any request the remote got."""
    assert remote.calls
    for text in remote_texts(remote):
        for leak in leaks:
            assert leak.casefold() not in text.casefold(), f"{leak!r} reached the remote in {text[:300]!r}"
        for word in words:
            assert not re.search(rf"(?<![^\W_]){re.escape(word)}(?![^\W_])", text, re.IGNORECASE), \
                f"{word!r} reached the remote in {text[:300]!r}"


# --- formats ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("value,placeholder", [
    ("SSN#123456789", "[SSN]"), ("SSN: 123456789", "[SSN]"), ("social security number 123 45 6789", "[SSN]"),
    ("123.45.6789", "[SSN]"), ("4111.1111.1111.1111", "[CARD]"), ("555-2671", "[PHONE]"), ("555.2671", "[PHONE]"),
    ("Gonzalez, Maria", "[NAME]"), ("maria@例え.jp", "[EMAIL]"), ("josé.núñez@correo.es", "[EMAIL]"),
    ("192.168.001.023", "[IP]"), ("2221 0000 0000 0009", "[CARD]"), ("3782 822463 10005", "[CARD]"), ("Maria-Gonzalez", "[NAME]"), ("maria_gonzalez", "[NAME]"),
    ("MARIA GONZALEZ", "[NAME]"), ("Maria.Gonzalez", "[NAME]"), ("GONZALEZ_MARIA", "[NAME]"),
])
def test_formats_the_scrubber_missed(value, placeholder):
    out = Scrubber(NAMES).scrub(f"Contact: {value}, today.")
    digits = re.sub(r"\D", "", value)
    assert placeholder in out and out.startswith("Contact: ") and out.endswith(", today.")
    assert value not in out and (len(digits) < 4 or digits[-4:] not in out)


@pytest.mark.parametrize("text", [
    "Revenue 2019-2023 grew; pi is 3.14159265358979; section 1.2.3; 12.5% margin; $1,234.56 million.",
    "Mariana Gonzalezz and Gonzalez-Mariano are other people; the file_name_maria is not a name.",
    "Form 10-K, file number 001-36743, CIK 0000320193.",
    # From FinanceBench filings: a row of years and an exhibit table passed the Luhn check as cards.
    "(Millions) 2023 2024 2025 2026 2027 After 2027; closest to November 30. 2010 2011 2012 2013 2014 2015",
    "Incentive Plan* 8-K 12/20/10 99.8 000-15175 10.5A; Option Plan* S-8 8/27/13 99.1 333-190846 10.28 2012",
])
def test_ordinary_text_still_survives(text):
    assert Scrubber(NAMES).scrub(text) == text


def test_scrub_slice_sees_items_cut_by_the_slice():
    s = Scrubber(NAMES)
    text = "Paid with card 4111 1111 1111 1111 by Maria Gonzalez."
    cut = text.index("1111 1111")  # inside the card number
    head, tail = s.scrub_slice(text, 0, cut), s.scrub_slice(text, cut, len(text))
    assert head == "Paid with card [CARD]" and tail == "[CARD] by [NAME]."
    name_cut = text.index("Gonzalez")
    assert s.scrub_slice(text, 0, name_cut).endswith("by [NAME]")


# --- ids and titles from file names ---------------------------------------------------------------

RECORD = ("Visit summary. The patient reported seasonal allergies in April 2024. "
          "Prescribed cetirizine 10 mg daily. Follow-up in six weeks.")
NOTES = "Meeting notes. The budget for the clinic renovation is $2.1 million, approved in May 2024."
ID_LEAKS = ["jane.doe", "example.com", "example-com"]
ID_WORDS = ["Maria", "Gonzalez", "jane", "doe"]


@pytest.fixture
def named_files(tmp_path):
    a = tmp_path / "Maria Gonzalez medical record.txt"
    b = tmp_path / "jane.doe@example.com notes.txt"
    a.write_text(RECORD, encoding="utf-8")
    b.write_text(NOTES, encoding="utf-8")
    docs = load_many([a, b])
    assert {d.id for d in docs} == {"Maria-Gonzalez-medical-record", "jane.doe-example.com-notes"}
    return docs


def test_minions_overview_and_plans_use_aliases_and_map_them_back(named_files):
    seen_overview = {}

    def plan(msgs: list[Message], _o) -> str:
        user = msgs[-1].content
        seen_overview["text"] = user
        alias = re.search(r"- (private-doc-\d+): \"\[NAME\] medical record\"", user).group(1)
        return json.dumps({"tasks": [{"instruction": "What allergy is reported?", "advice": "quote it"}],
                           "chunking": {"strategy": "chars", "size": 3000}, "chunk_ids": [f"{alias}#0"]})

    def local(msgs: list[Message], _o) -> str:
        return json.dumps({"explanation": "stated", "citation": "The patient reported seasonal allergies",
                           "answer": "seasonal allergies"})

    client = by_schema({"JobPlan": plan, ("Synthesis", "LastSynthesis"): [json.dumps(
        {"decision": "provide_final_answer", "explanation": "see private-doc-1#0",
         "answer": "Seasonal allergies (private-doc-1#0)."})]}, model="remote")
    result = get_protocol("minions", FunctionClient(local, model="local"), client, privacy=Scrubber(NAMES),
                          max_rounds=1).run("Which allergy does Maria Gonzalez have?", named_files)
    assert result.error is None, result.error
    assert_clean(client, ID_LEAKS, ID_WORDS)
    assert '"[EMAIL] notes"' in seen_overview["text"]
    # The remote's plan named the alias; the job ran on the real chunk. The remote's prose keeps the
    # alias, and a notice tells the user which document it stands for.
    # (Both tasks — the plan's and the question itself — ran on that chunk only.)
    assert {j.chunk_id for j in result.rounds[0].jobs} == {"Maria-Gonzalez-medical-record#0"}
    assert result.answer == "Seasonal allergies (private-doc-1#0)."
    assert [c.doc_id for c in result.citations] == ["Maria-Gonzalez-medical-record"]
    assert any("private-doc-1 is Maria-Gonzalez-medical-record" in w for w in result.warnings)


def test_aliases_in_the_remotes_own_notes_never_come_back_as_real_ids(named_files):
    """Feedback and scratchpad the remote writes are sent back to it, clipped: they keep the alias, so
    no cut can leave a piece of a real id that the door no longer recognises."""
    # An alias across the 1,000-character bound Synthesis cuts these fields to.
    notes = "x" * 989 + " private-doc-2#0 holds it."

    client = by_schema({
        "JobPlan": [json.dumps({"tasks": [{"instruction": "What is the budget?", "advice": ""}],
                                "chunk_ids": ["private-doc-2#0"]})],
        "Synthesis": [json.dumps({"decision": "request_additional_info", "explanation": "more",  # round 1 of 2
                                  "feedback": notes, "scratchpad": notes})],
        "LastSynthesis": [json.dumps({"decision": "provide_final_answer", "explanation": "e",
                                      "answer": "$2.1 million"})]}, model="remote")

    local = FunctionClient(lambda m, o: json.dumps({"explanation": "stated", "answer": "$2.1 million",
                                                    "citation": "The budget for the clinic renovation is $2.1 million"}),
                           model="local")
    result = get_protocol("minions", local, client, privacy=Scrubber(NAMES), max_rounds=2,
                          strategy="scratchpad").run("What is the budget?", named_files)
    assert result.error is None and result.answer == "$2.1 million"
    assert {j.chunk_id for r in result.rounds for j in r.jobs} == {"jane.doe-example.com-notes#0"}
    assert_clean(client, ID_LEAKS, ID_WORDS)


@pytest.mark.parametrize("name", ["rag", "remote-only"])
def test_rag_and_remote_only_headers_hide_file_name_ids(named_files, name):
    remote = FunctionClient.from_replies(["Seasonal allergies [C1]."], model="remote")
    result = get_protocol(name, None, remote, privacy=Scrubber(NAMES)).run(
        "What allergy and what budget are mentioned?", named_files)
    assert result.error is None and result.answer == "Seasonal allergies [C1]."
    assert_clean(remote, ID_LEAKS, ID_WORDS)
    assert any("private-doc-" in t for t in remote_texts(remote))


def test_without_privacy_ids_are_unchanged(named_files):
    remote = FunctionClient.from_replies(["ok"], model="remote")
    get_protocol("rag", None, remote).run("allergies budget", named_files)
    assert any("Maria-Gonzalez-medical-record" in t for t in remote_texts(remote))


# --- scrub before clipping -----------------------------------------------------------------------

CARD = "4111 1111 1111 1111"


def test_minions_worker_answer_clipped_for_the_remote_is_scrubbed_first():
    doc = Document.from_text("Payment log. The deposit was paid by card " + CARD + " on 3 May.", id="log")
    # The aggregate shows 400 characters of an answer: put the card across that edge.
    answer = "x" * 385 + " card " + CARD + " paid"
    plan = json.dumps({"tasks": [{"instruction": "How was the deposit paid?", "advice": ""}]})
    final = json.dumps({"decision": "provide_final_answer", "explanation": "e", "answer": "by card"})
    remote = by_schema({"JobPlan": [plan], ("Synthesis", "LastSynthesis"): [final]}, model="remote")
    local = FunctionClient(lambda m, o: json.dumps({"explanation": "e", "answer": answer,
                                                    "citation": "The deposit was paid by card " + CARD}), model="local")
    result = get_protocol("minions", local, remote, privacy=Scrubber(), max_rounds=1).run("How?", [doc])
    assert result.error is None
    assert_clean(remote, ["4111", "1111"])
    assert any("[CARD]" in t for t in remote_texts(remote))


def test_rag_chunk_boundary_through_a_card_number_is_scrubbed():
    body = "Payment log. " + "The deposit was paid. " * 5
    text = body + "Card " + CARD + " was charged for the deposit."
    doc = Document.from_text(text, id="log")
    cut = text.index(CARD) + 7  # "4111 11|11 1111 1111"
    remote = FunctionClient.from_replies(["charged [C1]"], model="remote")
    # 'chars' chunks of this size split the card between the first and second chunk.
    size = cut
    result = get_protocol("rag", None, remote, privacy=Scrubber(), chunk_size=size, top_k=5).run(
        "deposit card charged", [doc])
    assert result.error is None
    chunks = [c.text for c in chunk_documents([doc], "chars", size)]
    assert len(chunks) >= 2 and not any(CARD in c for c in chunks)  # the split really happens
    assert_clean(remote, ["4111", "1111 1111", "11 1111"])


def test_remote_only_context_cut_through_a_card_number_is_scrubbed():
    text = "Payment log. " + "word " * 60 + "card " + CARD + " tail " + "word " * 60
    remote = FunctionClient.from_replies(["ok"], model="remote")
    # FunctionClient counts whitespace words: a limit that cuts inside the card's four groups.
    result = get_protocol("remote-only", None, remote, privacy=Scrubber(), max_context_tokens=90,
                          remote_max_tokens=10).run("What card?", [Document.from_text(text, id="log")])
    assert result.error is None
    assert_clean(remote, ["4111", "1111"])


# --- Minion: a runaway worker reply is bounded ---------------------------------------------------

def test_minion_forwards_a_bounded_worker_reply():
    huge = ("The patient is fine. " * 250_000)[:5_000_000]
    remote = FunctionClient.from_replies([
        json.dumps({"decision": "request_additional_info", "message": "How is the patient?"}),
        json.dumps({"decision": "provide_final_answer", "answer": "Fine."})], model="remote")
    local = FunctionClient.from_replies([huge], model="local")
    result = get_protocol("minion", local, remote, max_rounds=1).run("How is the patient?", "Patient is fine.")
    assert result.answer == "Fine." and result.error is None
    limit = reply_limit(MinionConfig().local_max_tokens)
    decide = remote.calls[1][0][-1].content
    assert len(decide) < limit + 2000 and "[... cut]" in decide
    assert max(len(t) for t in remote_texts(remote)) < limit + 2000
    assert any("5,000,000 characters" in w for w in result.warnings)


# --- property: generated personal data never reaches a scripted remote ---------------------------

_FIRST = ["Maria", "John", "Aiko", "Olu", "Sven", "Priya"]
_LAST = ["Gonzalez", "Smith", "Tanaka", "Okafor", "Lindqvist", "Raman"]


def _luhn_complete(prefix: str) -> str:
    for d in "0123456789":
        if luhn_ok(prefix + d):
            return prefix + d
    raise AssertionError("unreachable")


@st.composite
def personal_data(draw):
    """(text as planted, fragments that must not reach the remote, listed names: none of whose
    words may reach it)."""
    kind = draw(st.sampled_from(["ssn", "phone", "card", "email", "ipv4", "name"]))
    if kind == "ssn":
        area = draw(st.integers(1, 665))
        d = f"{area:03d}", f"{draw(st.integers(1, 99)):02d}", f"{draw(st.integers(1, 9999)):04d}"
        form = draw(st.sampled_from(["{0}-{1}-{2}", "{0} {1} {2}", "{0}.{1}.{2}", "SSN#{0}{1}{2}", "SSN: {0}{1}{2}"]))
        return form.format(*d), [form.format(*d).removeprefix("SSN: ").removeprefix("SSN#"), d[2]], []
    if kind == "phone":
        a, b, c = draw(st.integers(200, 999)), draw(st.integers(200, 999)), draw(st.integers(0, 9999))
        form = draw(st.sampled_from(["({0}) {1}-{2:04d}", "{0}-{1}-{2:04d}", "{0}.{1}.{2:04d}", "+1 {0} {1} {2:04d}",
                                     "{1}-{2:04d}"]))
        return form.format(a, b, c), [f"{b}-{c:04d}", f"{b}.{c:04d}", f"{b} {c:04d}"], []
    if kind == "card":
        prefix = draw(st.sampled_from(["4", "51", "55", "6011", "37"]))
        length = 15 if prefix == "37" else 16
        body = prefix + "".join(draw(st.lists(st.sampled_from(string.digits), min_size=length - len(prefix) - 1,
                                              max_size=length - len(prefix) - 1)))
        number = _luhn_complete(body)
        sep = draw(st.sampled_from(["", " ", "-", "."]))
        grouped = sep.join(number[i:i + 4] for i in range(0, len(number), 4))
        return grouped, [number[-8:-4] + sep + number[-4:] if sep else number[-8:]], []
    if kind == "email":
        user = draw(st.sampled_from(["maria", "j.doe", "o_k+tag", "josé", "さくら"]))
        host = draw(st.sampled_from(["example.com", "例え.jp", "mail.example.co.uk", "correo.es"]))
        return f"{user}@{host}", [f"{user}@"], []
    if kind == "ipv4":
        octets = [draw(st.integers(0, 255)) for _ in range(4)]
        pad = draw(st.booleans())
        ip = ".".join(f"{o:03d}" if pad else str(o) for o in octets)
        return ip, [ip], []
    first, last = draw(st.sampled_from(_FIRST)), draw(st.sampled_from(_LAST))
    form = draw(st.sampled_from(["{f} {l}", "{l}, {f}", "{f}-{l}", "{fl}_{ll}", "{F} {L}", "{l} {f}"]))
    text = form.format(f=first, l=last, fl=first.lower(), ll=last.lower(), F=first.upper(), L=last.upper())
    return text, [], [f"{first} {last}"]


_GLUE = st.sampled_from([" ", ", ", "; ", " (", ": ", "\n"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(personal_data(), min_size=1, max_size=4), glue=_GLUE,
       protocol=st.sampled_from(["remote-only", "rag", "minion", "minions"]))
def test_property_generated_personal_data_never_reaches_the_remote(items, glue, protocol):
    planted = glue.join(f"item {i}: {text}" for i, (text, _, _) in enumerate(items))
    names = [n for _, _, ns in items for n in ns]
    leaks = [frag for _, frags, _ in items for frag in frags]
    doc = Document.from_text(f"Record. {planted} End of record.", id="rec")
    local_reply = f"The record says {planted}."


    def local(msgs: list[Message], _o) -> str:
        if protocol == "minions":
            return json.dumps({"explanation": local_reply, "citation": planted, "answer": local_reply})
        return local_reply

    client = by_schema({
        "JobPlan": [json.dumps({"tasks": [{"instruction": "List what the record says.", "advice": ""}]})],
        ("Synthesis", "LastSynthesis", "RemoteDecision"): [
            json.dumps({"decision": "provide_final_answer", "explanation": "e", "answer": "done"})]},
        text=["done"], model="remote")
    knobs = {"max_rounds": 1} if protocol in ("minion", "minions") else {}
    result = get_protocol(protocol, FunctionClient(local, model="local"), client, privacy=Scrubber(names),
                          **knobs).run(f"What does the record say about {planted}?", [doc])
    assert result.error is None, result.error
    assert_clean(client, leaks, words=[w for n in names for w in n.split()])


# --- end to end: the CLI with the embedded model as local and remote -----------------------------

@pytest.mark.real_model
def test_cli_privacy_end_to_end_with_the_embedded_model(tmp_path):
    """`minions ask` over a file named after a patient, with --private-name: the run log's transcript
    (what the remote saw) holds aliases and placeholders, never the name, the email or the SSN."""
    record = tmp_path / "Maria Gonzalez medical record.txt"
    record.write_text("Patient: Gonzalez, Maria. " + RECORD + " Contact: maria@例え.jp, SSN#123456789, phone 555-2671, "
                      "card 4111.1111.1111.1111.",
                      encoding="utf-8")
    logs = tmp_path / "logs"
    out = subprocess.run([sys.executable, "-m", "minions.cli", "ask", str(record), "-q", "Which allergy is reported?",
                          "--protocol", "rag", "--private-name", "Maria Gonzalez", "--remote-max-tokens", "32",
                          "--log-dir", str(logs), "--json"],
                         capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["answer"].strip()
    log = json.loads(next(logs.glob("*.json")).read_text(encoding="utf-8"))
    to_remote = "\n".join(m["content"] for r in log["rounds"] for m in r["messages"] if m["to"] == "remote")
    assert "private-doc-1" in to_remote and "seasonal allergies" in to_remote  # the excerpt itself went
    for placeholder in ("[NAME]", "[EMAIL]", "[SSN]", "[PHONE]", "[CARD]"):
        assert placeholder in to_remote
    for leak in ("Maria", "Gonzalez", "例え", "123456789", "555-2671", "4111"):
        assert leak not in to_remote
