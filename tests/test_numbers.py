"""One number model (issue 18, item 3) and grounding on the answer's own figures (issue 21, item 4).

The scorer, the citation check and grounding read numbers with `minions.numbers`, so an amount
written in other units is the same amount in all three, and a different amount is different in all
three. Grounding needs every figure the answer states (amounts, not years or labels) backed by what
the local model found."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minions.clients.function import FunctionClient
from minions.documents import Document
from minions.eval.scorers import FinanceBenchMatch
from minions.numbers import extract, same_quantity
from minions.protocols.citations import facts
from minions.protocols.grounding import shares
from minions.protocols.minion import Minion
from minions.protocols.minions import MinionS
from tests.scripted import by_schema
from tests.test_protocol_minions import plan


def units(thousands: int) -> list[str]:
    """One amount (`thousands` x $1,000) written in every unit a filing or an answer uses."""
    def dec(x: float, places: int) -> str:
        return f"{x:,.{places}f}".rstrip("0").rstrip(".")
    return [f"{thousands:,} thousand", f"${thousands:,}k", f"${dec(thousands / 1e3, 3)} million",
            f"{dec(thousands / 1e3, 3)}mn", f"${dec(thousands / 1e6, 6)} billion", f"${dec(thousands / 1e6, 6)}bn",
            f"${thousands * 1000:,}"]


def agree(a: str, b: str) -> dict[str, bool]:
    """Do the scorer, the citation check and grounding each take `a` and `b` for one amount?"""
    scored = asyncio.run(FinanceBenchMatch().score(f"Revenue was {a}.", b)).value == 1.0
    return {"scorer": scored, "citations": facts(f"Revenue was {a}") == facts(f"Revenue was {b}"),
            "grounding": shares(f"Revenue was {a}.", [f"The filing reports revenue of {b} for the year."])}


def test_the_issues_three_writings_of_one_amount_are_one_amount_everywhere():
    forms = ["$1.6 billion", "$1,600 million", "1,600,000 thousand"]
    for a in forms:
        for b in forms:
            assert agree(a, b) == {"scorer": True, "citations": True, "grounding": True}, (a, b)
    assert agree("$1.6 billion", "$1.6 million") == {"scorer": False, "citations": False, "grounding": False}


@settings(max_examples=150, deadline=None)
@given(st.integers(100, 9_999_999), st.data())
def test_equal_amounts_in_different_units_agree_in_scorer_citations_and_grounding(thousands, data):
    forms = units(thousands)
    a, b = data.draw(st.sampled_from(forms)), data.draw(st.sampled_from(forms))
    assert agree(a, b) == {"scorer": True, "citations": True, "grounding": True}, (a, b)


@settings(max_examples=150, deadline=None)
@given(st.integers(100, 9_999_999), st.sampled_from([3, 7, 11]), st.data())
def test_different_amounts_disagree_in_scorer_citations_and_grounding(thousands, factor, data):
    a = data.draw(st.sampled_from(units(thousands)))
    b = data.draw(st.sampled_from(units(thousands * factor)))
    assert agree(a, b) == {"scorer": False, "citations": False, "grounding": False}, (a, b)
    assert agree(b, a) == {"scorer": False, "citations": False, "grounding": False}, (b, a)


def test_the_model_reads_currency_scale_percent_basis_points_and_sign():
    (q,) = extract("(US$1,234.5 millon)")  # a misspelt scale word is still million
    assert q.negative and q.currency and q.full == 1_234_500_000 and q.key == "1234500000"
    assert [x.key for x in extract("margin 12.5% and 50 bps")] == ["12.5%", "50 bps"]
    assert not same_quantity(extract("50 bps")[0], extract("50%")[0])
    assert same_quantity(extract("-1.7%")[0], extract("1.7%")[0])  # magnitude: sign is often in words
    assert [x.raw for x in extract("FY2023 Q4 revenue 12k")] == ["12"]  # labels are not figures
    assert [x.raw for x in extract("FY2023 Q4", labels=True)] == ["2023", "4"]  # ...but a quote keeps them
    assert [x.raw for x in extract("$42 million (page 12, Note 7, nw#1, Item 7A)")] == ["42"]


# --- grounding: the answer's own figures (issue 21, item 4) ------------------------------------------

FOUND = "Revenue was $42 million in fiscal 2023."


@pytest.mark.parametrize("answer", [
    "Revenue was $5 million in 2023",            # shares only a bare year with what was found
    "$99 million, versus $42 million budgeted",  # one backed figure does not ground another
    "Revenue was $5 million in FY2023",          # a label is context too
])
def test_a_year_or_one_figure_of_several_does_not_ground_an_answer(answer):
    assert not shares(answer, [FOUND], "What was revenue?")


@pytest.mark.parametrize("answer", [
    "Revenue was $42 million in 2023", "$42,000 thousand", "$0.042 billion", "42 million dollars",
    "Revenue was $42 million, against $42 million budgeted",
    "$42 million (page 2, chunk r#1)",           # references are not figures the evidence must hold
])
def test_an_answer_whose_every_figure_was_found_is_grounded(answer):
    assert shares(answer, [FOUND], "What was revenue?")


def test_a_year_is_a_figure_when_years_are_all_the_answer_states():
    assert shares("It was founded in 1998.", ["The company was founded in 1998."], "When was it founded?")
    assert not shares("It was founded in 2001.", ["The company was founded in 1998."], "When was it founded?")


DOC = Document.from_pages(["Overview. The company sells maps.", "Results. " + FOUND], id="r", title="Report")
TASK = "What was revenue?"


def worker(msgs, _opts) -> str:
    """Finds the revenue on its page (as the worker of the issue's run did), abstains elsewhere."""
    if FOUND in msgs[-1].content:
        return json.dumps({"explanation": "stated", "citation": FOUND, "answer": "$42 million in fiscal 2023"})
    return json.dumps({"explanation": "not here", "citation": None, "answer": None})


def remote_answering(answer: str) -> FunctionClient:
    return by_schema({"JobPlan": [plan("Find the revenue")], ("Synthesis", "LastSynthesis"): [
        json.dumps({"decision": "provide_final_answer", "explanation": "x", "answer": answer})]}, model="remote")


@pytest.mark.parametrize("wrong", ["Revenue was $5 million in 2023", "$99 million, versus $42 million budgeted"])
def test_minions_flags_or_replaces_a_wrong_remote_answer_that_shares_a_year_or_one_figure(wrong):
    flagged = MinionS(FunctionClient(worker), remote_answering(wrong), max_rounds=1, ask_question=False,
                      ungrounded_answer="flag").run(TASK, [DOC])
    assert flagged.answer == wrong and flagged.grounded is False and not flagged.degraded
    replaced = MinionS(FunctionClient(worker), remote_answering(wrong), max_rounds=1, ask_question=False,
                       ungrounded_answer="fallback").run(TASK, [DOC])
    assert replaced.answer == "$42 million in fiscal 2023" and replaced.degraded
    right = MinionS(FunctionClient(worker), remote_answering("$42.0 million"), max_rounds=1, ask_question=False,
                    ungrounded_answer="fallback").run(TASK, [DOC])
    assert right.answer == "$42.0 million" and right.grounded and not right.degraded


@pytest.mark.parametrize("mode", ["flag", "fallback"])
def test_minion_does_not_ground_a_wrong_amount_on_a_shared_year(mode):
    remote = FunctionClient.from_replies([
        '{"decision": "request_additional_info", "message": "What was revenue?", "answer": null}',
        '{"decision": "provide_final_answer", "message": "", "answer": "Revenue was $5 million in 2023"}'],
        model="remote")
    local = FunctionClient.from_replies(["$42 million in fiscal 2023 (page 2)."], model="local")
    res = Minion(local, remote, max_rounds=1, ungrounded_answer=mode).run(TASK, [DOC])
    if mode == "flag":
        assert res.answer == "Revenue was $5 million in 2023" and res.grounded is False
    else:
        assert res.answer != "Revenue was $5 million in 2023" and res.degraded and "42 million" in res.answer
