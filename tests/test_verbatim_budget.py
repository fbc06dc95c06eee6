"""Issue 22, item 3: the verbatim budget (`max_verbatim`, `quotes`). The accounting, the knob at every
door, withholding in MinionS and Minion with scripted clients (answering by schema title), and the
acceptance run: `--max-verbatim 0` with the embedded model, the remote over real HTTP through the
strict gateway, checked against the gateway's own log of what it received."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from minions import errors
from minions.clients.base import Message, Options
from minions.clients.function import FunctionClient
from minions.documents import Document
from minions.egress.budget import MaxVerbatim, VerbatimBudget, normalized_map, placeholder
from minions.egress.verbatim import normalize, verbatim
from minions.protocols import get_protocol
from minions.protocols.events import Notice
from minions.protocols.minion import Minion
from minions.protocols.minions import MinionS
from tests.scripted import by_schema, schema_title

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "datasets" / "sample"
WORDS = ("revenue margin segment quarter fiscal operating income capital lease goodwill asset liability "
         "equity cash flow dividend share buyback inventory tariff freight").split()


def prose(n_words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n_words)) + "."


def windows(text: str, n: int = 40) -> set[str]:
    """Every n-character window of `text`, normalised: the naive measure the tests check against."""
    t = normalize(text)
    return {t[i:i + n] for i in range(len(t) - n + 1)}


def leaked(doc: str, sent: list[str], n: int = 40) -> list[str]:
    """The n-character spans of `doc` found in `sent`, by brute force (independent of VerbatimIndex)."""
    wins = windows(doc, n)
    return [t[i:i + n] for s in sent for t in [normalize(s)] for i in range(len(t) - n + 1) if t[i:i + n] in wins]


# --- the knob's forms -------------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "kind", "value", "shown"), [
    (0, "chars", 0, "0"), ("0", "chars", 0, "0"), (500, "chars", 500, "500"), ("1,000 chars", "chars", 1000, "1000"),
    ("2%", "percent", 2, "2%"), (" 0.5 % ", "percent", 0.5, "0.5%"), ("100%", "percent", 100, "100%")])
def test_max_verbatim_takes_characters_or_a_share(given, kind, value, shown):
    m = MaxVerbatim.parse(given)
    assert (m.kind, m.value, str(m)) == (kind, value, shown)
    assert MaxVerbatim.parse(m.model_dump()) == m  # recorded as its text, read back the same
    assert m.unlimited == (shown == "100%")


@pytest.mark.parametrize(("given", "says"), [
    ("12x", "is not understood: use a number of characters like '500'"), ("150%", "between 0% and 100%"),
    (-5, "0 or more"), ("-5", "cannot be negative"), (1.5, "whole number"), (True, "not True"),
    ("", "is not understood")])
def test_a_bad_max_verbatim_names_the_forms(given, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        MaxVerbatim.parse(given)


def test_the_knob_is_refused_at_every_door_with_the_fix():
    from minions.cli import build_parser

    local, remote = FunctionClient(lambda m, o: "x", model="l"), FunctionClient(lambda m, o: "x", model="r")
    with pytest.raises(errors.ConfigError, match=r"max_verbatim='12x' is not understood: use .* like '2%'"):
        get_protocol("minions", local, remote, max_verbatim="12x")
    for bad in ("12x", "150%"):
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args(["ask", "doc.md", "-q", "?", "--max-verbatim", bad])
        assert e.value.code == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ask", "doc.md", "-q", "?", "--quotes", "of"])
    args = build_parser().parse_args(["ask", "doc.md", "-q", "?", "--max-verbatim", "0", "--quotes", "off"])
    assert (args.max_verbatim, args.quotes) == ("0", "off")


@pytest.mark.parametrize("protocol", ["remote-only", "rag"])
@pytest.mark.parametrize("knob", [{"max_verbatim": 0}, {"max_verbatim": "5%"}, {"quotes": "off"}])
def test_protocols_that_send_the_documents_refuse_a_budget_naming_the_fix(protocol, knob):
    remote = FunctionClient(lambda m, o: "x", model="r")
    with pytest.raises(errors.ConfigError, match=r"(max_verbatim|quotes)=.*sends the documents' text to the remote "
                       r"by design, so (max_verbatim|quotes)=\S+ cannot hold; use --protocol minions or minion"):
        get_protocol(protocol, None, remote, **knob)
    assert get_protocol(protocol, None, remote, max_verbatim="100%").config.max_verbatim.unlimited


def test_local_only_takes_a_budget_and_sends_nothing():
    local = FunctionClient(lambda m, o: "an answer", model="l")
    result = get_protocol("local-only", local, None, max_verbatim=0).run("q?", [prose(200)])
    assert result.answer == "an answer" and result.egress.requests == 0


# --- the accounting -------------------------------------------------------------------------------

def test_normalized_map_points_back_into_the_original():
    text = "  Revenue\n\n grew \t to  $12.4 million.\n"
    norm, where = normalized_map(text)
    assert norm == normalize(text)
    assert all(norm[i] == (text[where[i]] if not text[where[i]].isspace() else " ") for i in range(len(norm)))


def test_a_zero_budget_cuts_every_span_and_leaves_the_rest():
    doc = prose(400, seed=1)
    budget = VerbatimBudget([("d", doc)], MaxVerbatim.parse(0))
    a, b = doc[100:190], doc[1200:1260]
    out = budget.admit(f"The workers say:\n{a}\nand also <{b}> -- that is all.")
    assert not leaked(doc, [out])
    assert out == f"The workers say:\n{placeholder(90)}\nand also <{placeholder(60)}> -- that is all."
    assert budget.withheld.spans_cut == 2 and budget.withheld.span_chars == 150
    assert budget.used() == {"d": 0}
    short = doc[300:339]  # 39 characters: not verbatim by the measure, so it costs nothing
    assert budget.admit(f"<{short}>") == f"<{short}>"


def test_spans_are_admitted_in_order_while_they_fit_and_repeats_are_free():
    doc = prose(600, seed=2)
    budget = VerbatimBudget([("d", doc)], MaxVerbatim.parse(150))
    a, b, c = doc[100:200], doc[1500:1580], doc[2500:2545]
    out = budget.admit(f"{a} | {b} | {c}")
    assert out == f"{a} | {placeholder(80)} | {c}"  # b (80) would pass 150 after a (100); c (45) fits
    assert budget.used() == {"d": 146}  # c's span takes the space before it, as the document has it
    assert budget.admit(f"again: {a}") == f"again: {a}"  # already sent: costs nothing
    longer = doc[100:230]  # overlaps a: only its 30 new characters are charged, and they do not fit
    assert budget.admit(longer) == placeholder(130) and budget.used() == {"d": 146}
    assert budget.admit(doc[150:189]) == doc[150:189]


def test_a_share_is_per_document():
    d1, d2 = prose(500, seed=3), prose(500, seed=4)
    budget = VerbatimBudget([("a", d1), ("b", d2)], MaxVerbatim.parse("2%"))
    lim = int(len(normalize(d1)) * 0.02)
    assert 50 < lim < 80
    q1, q2 = d1[10:10 + lim], d2[10:10 + lim]
    assert budget.admit(q1) == q1 and budget.admit(q2) == q2  # each within its own 2%
    assert budget.admit(d1[2000:2045]) == placeholder(45)


def test_a_quote_is_withheld_whole_and_quotes_off_withholds_every_one():
    doc = prose(400, seed=5)
    budget = VerbatimBudget([("d", doc)], MaxVerbatim.parse(100))
    q1, q2 = doc[0:80], doc[1000:1080]
    assert budget.quote(q1) == q1
    assert budget.quote(q2) == "[quote withheld: 80 chars, verified locally]"  # not 20 of its characters
    assert budget.quote(q2, verified=False) == "[quote withheld: 80 chars, not verified]"
    assert budget.used() == {"d": 80} and budget.withheld.quotes_withheld == 2
    off = VerbatimBudget([("d", doc)], None, quotes=False)
    assert off.quote("a short quote") == placeholder(len("a short quote"))
    text = f"not a quote: {q1}"
    assert off.admit(text) == text  # quotes off alone cuts no other text
    assert off.admit(text, as_quotes=True) == f"not a quote: {placeholder(80)}"  # a chat reply's spans are quotes
    assert "withheld 2 quotes (93 chars) under --quotes off" in off.take_note()
    assert off.take_note() is None  # one note per request


@pytest.mark.parametrize("seed", range(6))
def test_what_is_admitted_never_measures_past_the_budget(seed):
    """Against the run's own measure (verbatim.py), over random quotes, repeats and overlaps."""
    rng = random.Random(seed)
    docs = [("a", prose(700, seed=seed)), ("b", prose(500, seed=seed + 50))]
    limit = rng.choice([0, 60, 150, 400, "1%", "3%"])
    budget = VerbatimBudget(docs, MaxVerbatim.parse(limit))
    sent = []
    for _ in range(12):
        _doc_id, text = rng.choice(docs)
        s = rng.randrange(0, len(text) - 200)
        pieces = [text[s:s + rng.randrange(20, 200)], "<own words>", text[s + 50:s + 50 + rng.randrange(0, 120)]]
        sent.append(budget.admit(" ".join(pieces)) if rng.random() < 0.6 else budget.quote(pieces[0]))
    measured = {d: verbatim(t, sent)[0] for d, t in docs}
    m = MaxVerbatim.parse(limit)
    if m.kind == "chars":
        assert sum(measured.values()) <= m.value
    else:
        assert all(measured[d] <= int(len(normalize(t)) * m.value / 100) for d, t in docs)
    assert measured == budget.used()  # the charge is the measure, exactly


# --- MinionS, scripted ----------------------------------------------------------------------------

FACT_A = "Total revenue for fiscal 2024 was $2,847.3 million, an increase of 6.2 percent over the prior year"
FACT_B = "Capital expenditures were $186.5 million, spent mostly on the Rotterdam cold-storage warehouse"
QA, QB = len(FACT_A) + 1, len(FACT_B) + 1  # the quotes as workers cite them, with the full stop
PAGES = [prose(60, seed=20) + " " + FACT_A + ". " + prose(40, seed=21),
         prose(60, seed=22) + " " + FACT_B + ". " + prose(40, seed=23)]


def doc() -> Document:
    return Document.from_pages(PAGES, id="nw", title="Northwind")


def plan(*tasks: str) -> str:
    return json.dumps({"tasks": [{"instruction": t, "advice": ""} for t in tasks],
                       "chunking": {"strategy": "pages", "size": 1}})


def final(answer: str = "$2,847.3 million") -> str:
    return json.dumps({"decision": "provide_final_answer", "explanation": "found", "answer": answer})


def more() -> str:
    return json.dumps({"decision": "request_additional_info", "explanation": "need capex", "feedback": "capex"})


def worker(answer_field: str = "short"):
    """A local model citing the planted fact of its chunk when the task names it; abstains otherwise.
    `answer_field="verbatim"`: its answer is itself a long span of the document."""
    def reply(msgs: list[Message], _o: Options) -> str:
        user = msgs[-1].content
        task = re.search(r"^Task: (.*)$", user, re.M).group(1).lower()
        for key, fact, short in (("revenue", FACT_A, "$2,847.3 million"), ("capital", FACT_B, "$186.5 million")):
            if key in task and fact[:30] in user:
                answer = fact[:60] if answer_field == "verbatim" else short
                return json.dumps({"explanation": "stated", "citation": fact + ".", "answer": answer})
        return json.dumps({"answer": None})
    return FunctionClient(reply, model="scripted-local")


def sent_to(remote: FunctionClient) -> list[str]:
    return [m.content for msgs, _ in remote.calls for m in msgs]


def run_minions(remote, local=None, **knobs):
    events: list = []
    proto = MinionS(local or worker(), remote, ask_question=False, **knobs)
    result = proto.run("What was revenue in fiscal 2024?", [doc()], on_event=events.append)
    return result, [e.message for e in events if isinstance(e, Notice)]


def test_minions_withholds_a_quote_past_the_budget_and_still_sends_the_answer():
    remote = by_schema({"JobPlan": [plan("Find the revenue")], ("Synthesis", "LastSynthesis"): [final()]})
    result, notices = run_minions(remote, max_verbatim=0)
    assert result.answer == "$2,847.3 million" and result.error is None
    synth = [t for t in sent_to(remote) if "citation:" in t][-1]
    assert f"answer: $2,847.3 million | citation: [quote withheld: {QA} chars, verified locally]" in synth
    assert not leaked(doc().text, sent_to(remote))
    eg = result.egress
    assert eg.verbatim_chars == 0 and eg.withheld.quotes_withheld == 1 and eg.withheld.quote_chars == QA
    assert eg.withheld.messages == 1 and f"withheld 1 quote ({QA} chars) under --max-verbatim 0" in eg.line()
    assert any("withheld 1 quote" in n and "synthesize" in n for n in notices)
    assert result.citations and FACT_A in result.citations[0].text  # the user still gets the quote, locally
    assert result.summary()["egress"]["withheld"]["quotes_withheld"] == 1
    assert result.settings.config["max_verbatim"] == "0"
    from minions.protocols.build import build_protocol
    from minions.protocols.settings import RunSettings

    again = RunSettings.from_record(result.settings, local=worker(), remote=remote)  # the run, reproduced
    assert build_protocol(again).config.max_verbatim == MaxVerbatim.parse(0)


def test_a_flagged_quote_is_withheld_as_not_verified():
    def liar(msgs, _o):  # cites a sentence that is not in its chunk
        if "revenue" in re.search(r"^Task: (.*)$", msgs[-1].content, re.M).group(1).lower() and FACT_A[:30] in \
                msgs[-1].content:
            return json.dumps({"citation": "Revenue for fiscal 2024 was reported in the annual report filed in June "
                                           "with regulators", "answer": "$2,847.3 million"})
        return json.dumps({"answer": None})
    remote = by_schema({"JobPlan": [plan("Find the revenue")], ("Synthesis", "LastSynthesis"): [final()]})
    run_minions(remote, FunctionClient(liar, model="l"), quotes="off", citation_check="flag")
    synth = [t for t in sent_to(remote) if "citation:" in t][-1]
    assert re.search(r"citation: \[quote withheld: \d+ chars, not verified\] \[citation NOT verified\]", synth)


def test_quotes_off_withholds_quotes_but_not_other_text_and_a_budget_cuts_that_too():
    script = {"JobPlan": [plan("Find the revenue")], ("Synthesis", "LastSynthesis"): [final()]}
    remote = by_schema(script)
    result, _ = run_minions(remote, worker("verbatim"), quotes="off")
    synth = [t for t in sent_to(remote) if "citation:" in t][-1]
    assert f"[quote withheld: {QA} chars, verified locally]" in synth and FACT_A + "." not in synth
    assert FACT_A[:60] in synth  # the answer itself quotes the document: only a budget stops that
    # 61: the span takes the space before the answer, as the document has one before "Total"
    assert result.egress.verbatim_chars == 61 and result.egress.withheld.spans_cut == 0

    remote = by_schema(script)
    result, notices = run_minions(remote, worker("verbatim"), quotes="off", max_verbatim=0)
    assert not leaked(doc().text, sent_to(remote)) and result.egress.verbatim_chars == 0
    assert result.egress.withheld.spans_cut == 1 and result.egress.withheld.span_chars == 61
    assert any(f"1 quote ({QA} chars) and 1 span (61 chars)" in n for n in notices)


def test_the_budget_counts_what_earlier_rounds_sent():
    remote = by_schema({"JobPlan": [plan("Find the revenue"), plan("Find the revenue", "Find the capital expenditure")],
                        ("Synthesis", "LastSynthesis"): [more(), final()]})
    result, _ = run_minions(remote, max_verbatim=150, max_rounds=2)
    synths = [msgs[-1].content for msgs, o in remote.calls if schema_title(o) in ("Synthesis", "LastSynthesis")]
    assert FACT_A in synths[0]  # round 1: 99 of 150
    assert FACT_A in synths[1] and FACT_B not in synths[1]  # round 2: sent again for free; B would pass 150
    assert f"[quote withheld: {QB} chars, verified locally]" in synths[1]
    (d,) = result.egress.documents
    assert d.verbatim_chars == QA <= 150 and result.egress.withheld.quotes_withheld == 1


def test_a_share_lets_both_quotes_through_when_the_document_is_long_enough():
    remote = by_schema({"JobPlan": [plan("Find the revenue", "Find the capital expenditure")],
                        ("Synthesis", "LastSynthesis"): [final()]})
    result, _ = run_minions(remote, max_verbatim="50%")
    assert result.egress.withheld.quotes_withheld == 0 and result.egress.verbatim_chars == QA + QB


# --- Minion, scripted -----------------------------------------------------------------------------

def minion_run(local_reply: str, **knobs):
    remote = by_schema({"RemoteDecision": [json.dumps({"decision": "request_additional_info",
                                                       "message": "What was revenue?"}),
                                           json.dumps({"decision": "provide_final_answer",
                                                       "answer": "$2,847.3 million"})]})
    local = FunctionClient.from_replies([local_reply], model="scripted-local")
    events: list = []
    result = Minion(local, remote, max_rounds=2, **knobs).run("What was revenue?", [doc()],
                                                                on_event=events.append)
    return result, remote, [e.message for e in events if isinstance(e, Notice)]


@pytest.mark.parametrize("knobs", [{"max_verbatim": 0}, {"quotes": "off"}])
def test_a_minion_chat_message_past_the_budget_is_shortened_with_a_notice(knobs):
    reply = f"The report says: \"{FACT_A}.\" So revenue was $2,847.3 million."
    result, remote, notices = minion_run(reply, **knobs)
    assert result.answer == "$2,847.3 million"
    assert not leaked(doc().text, sent_to(remote))
    told = [t for t in sent_to(remote) if "$2,847.3 million" in t and "The report says" in t]
    assert told and f"[quote withheld: {QA} chars, verified locally]" in told[0]
    assert "So revenue was $2,847.3 million." in told[0]  # the rest of the message still went
    assert result.egress.withheld.quotes_withheld == 1 and any("withheld 1 quote" in n for n in notices)


def test_a_minion_message_within_the_budget_goes_whole():
    reply = f"The report says: \"{FACT_A}.\""
    result, remote, _ = minion_run(reply, max_verbatim=200)
    assert any(FACT_A in t for t in sent_to(remote)) and result.egress.withheld.quotes_withheld == 0
    assert result.egress.verbatim_chars == QA


# --- acceptance: --max-verbatim 0, the embedded model, the strict gateway's own log -------------------

def _strings(value) -> list[str]:
    """Every string in a JSON body (keys aside): what a provider would read."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@pytest.mark.real_model
def test_max_verbatim_0_minions_answers_and_the_gateway_receives_no_40_char_span(gateway, monkeypatch, capsys):
    from minions.cli import main
    from tests.gateway import OPENAI

    docs = [SAMPLE / "northwind_annual_report.md"]  # one document keeps the embedded run short
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    code = main(["ask", *map(str, docs), "-q", "What was Northwind's total revenue in fiscal 2024?",
                 "--protocol", "minions", "--local", "llamacpp/smollm2", "--remote", "openai/gpt-4o-mini",
                 "--base-url", gateway.openai_url, "--max-rounds", "1", "--max-verbatim", "0", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    data = json.loads(out)
    assert data["answer"] and data["error"] is None
    received = [r for r in gateway.requests if r.route == OPENAI]
    assert len(received) >= 2  # a plan and a synthesis, answered by the embedded model behind the gateway
    texts = [s for r in received for s in _strings(json.loads(r.raw))]
    assert any("Northwind" in t for t in texts)  # the question went: the check reads the right bodies
    for path in docs:
        assert not leaked(path.read_text(encoding="utf-8"), texts), path.name
    withheld = data["egress"]["withheld"]
    assert withheld["max_verbatim"] == "0"
    # something was withheld: at least the document's opening line the plan prompt would have shown
    assert withheld["spans_cut"] + withheld["quotes_withheld"] >= 1
    assert any("[quote withheld: " in t for t in texts)
    assert all(d["verbatim_chars"] == 0 for d in data["egress"]["documents"])


# --- the server door, with the official SDK ---------------------------------------------------------

def test_serve_takes_the_budget_per_request_and_refuses_a_bad_one_with_a_400():
    import openai

    from tests.test_serve import error_of, serving

    remote = by_schema({"JobPlan": [plan("Find the revenue")], ("Synthesis", "LastSynthesis"): [final()]})
    with serving(remote=remote, local=worker(), corpus=(doc(),), default_protocol="minions") as (_srv, _s, client):
        ask = [{"role": "user", "content": "What was revenue in fiscal 2024?"}]
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="minions", messages=ask,
                                           extra_body={"minions": {"knobs": {"max_verbatim": "150%"}}})
        err = error_of(e.value)
        assert err["param"] == "minions.knobs.max_verbatim" and "between 0% and 100%" in err["message"]
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="remote-only", messages=ask,
                                           extra_body={"minions": {"knobs": {"quotes": "off"}}})
        assert "--protocol minions or minion" in error_of(e.value)["message"]
        reply = client.chat.completions.create(model="minions", messages=ask, extra_body={
            "minions": {"knobs": {"max_verbatim": 0, "ask_question": False}}})
    assert "$2,847.3 million" in reply.choices[0].message.content
    assert remote.calls and not leaked(doc().text, sent_to(remote))
    assert any(f"[quote withheld: {QA} chars, verified locally]" in t for t in sent_to(remote))


def test_the_budget_holds_with_privacy_scrubbing_too():
    remote = by_schema({"JobPlan": [plan("Find the revenue")], ("Synthesis", "LastSynthesis"): [final()]})
    events: list = []
    proto = get_protocol("minions", worker(), remote, privacy=True, max_verbatim=0, ask_question=False)
    result = proto.run("What was revenue in fiscal 2024?", [doc()], on_event=events.append)
    assert result.answer == "$2,847.3 million" and result.egress.withheld.quotes_withheld == 1
    assert not leaked(doc().text, sent_to(remote)) and result.egress.verbatim_chars == 0


def test_the_cli_renders_the_notice_and_what_was_withheld():
    from rich.console import Console

    from minions.cli.render import LiveView, print_result

    console = Console(record=True, width=200)
    renderer = LiveView(console)
    remote = by_schema({"JobPlan": [plan("Find the revenue")], ("Synthesis", "LastSynthesis"): [final()]})
    result = MinionS(worker(), remote, ask_question=False, quotes="off").run(
        "What was revenue in fiscal 2024?", [doc()], on_event=renderer)
    renderer.close()
    print_result(console, result)
    out = console.export_text()
    assert f"info: verbatim budget: withheld 1 quote ({QA} chars) under --quotes off" in out
    assert f"chars of the documents verbatim (0.0%); withheld 1 quote ({QA} chars) under --quotes off" in out


def test_a_server_wide_budget_serves_minions_and_refuses_remote_only_per_request():
    import openai

    from minions.serve.service import ServeSettings, Service
    from tests.test_serve import error_of, serving

    remote = by_schema({"JobPlan": [plan("Find the revenue")], ("Synthesis", "LastSynthesis"): [final()]})
    knobs = {"max_verbatim": 0, "ask_question": False, "top_k": 3}
    with serving(remote=remote, local=worker(), corpus=(doc(),), default_protocol="minions", knobs=knobs) as \
            (_srv, _s, client):
        ask = [{"role": "user", "content": "What was revenue in fiscal 2024?"}]
        reply = client.chat.completions.create(model="minions", messages=ask)
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="remote-only", messages=ask)
        err = error_of(e.value)
        assert err["param"] == "minions.knobs.max_verbatim" and "--protocol minions or minion" in err["message"]
    assert "$2,847.3 million" in reply.choices[0].message.content and not leaked(doc().text, sent_to(remote))
    with pytest.raises(errors.ConfigError, match="cannot hold"):  # the default protocol must hold it
        Service(ServeSettings(default_protocol="remote-only", knobs={"max_verbatim": 0}), local=worker(),
                remote=remote)


def test_the_ledger_and_the_audit_say_what_the_budget_withheld(tmp_path, capsys):
    from minions.cli import main
    from minions.egress import capture
    from minions.egress.ledger import Ledger, audit

    remote = by_schema({"JobPlan": [plan("Find the revenue")], ("Synthesis", "LastSynthesis"): [final()]})
    path = tmp_path / "egress.jsonl"
    with capture(Ledger(path)):
        MinionS(worker(), remote, ask_question=False, max_verbatim="1%").run("What was revenue?", [doc()])
    (ra,) = audit(path).runs
    assert ra.withheld is not None and ra.withheld.max_verbatim == "1%" and ra.withheld.quotes_withheld == 1
    assert main(["audit", str(path)]) == 0
    assert f"verbatim budget: withheld 1 quote ({QA} chars) under --max-verbatim 1%" in capsys.readouterr().out
