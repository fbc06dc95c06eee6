"""Scorers against hand-checked cases."""

from __future__ import annotations

import json

import pytest

from minions.clients import FunctionClient
from minions.cost import PriceTable
from minions.errors import ConfigError
from minions.eval.scorers import (
    Contains,
    FinanceBenchMatch,
    JudgeScorer,
    OptionAccuracy,
    QasperF1,
    get_scorer,
    normalize_answer,
    option_letter,
    token_f1,
)
from minions.numbers import extract, same_quantity


async def fb(answer: str, gold: str) -> float:
    return (await FinanceBenchMatch().score(answer, gold)).value


# --- FinanceBench numeric match --------------------------------------------------------------------

@pytest.mark.parametrize("answer", [
    "1,577 million", "$1,577 million", "The FY2018 capex was $1,577.00 million.", "$1.577 billion",
    "USD 1577", "$1,577,000,000", "Capital expenditure: 1577", "$1,580 million",  # within 1%
])
async def test_capex_gold_1577_matches_equivalent_answers(answer: str) -> None:
    assert await fb(answer, "$1577.00") == 1.0


@pytest.mark.parametrize("answer", ["$1,600 million", "$15.77 million", "1,477", "157.7", "no idea", ""])
async def test_capex_gold_1577_rejects_other_amounts(answer: str) -> None:
    assert await fb(answer, "$1577.00") == 0.0


async def test_percentages_ratios_and_rounding() -> None:
    assert await fb("Gross margin was 65.4%.", "65.4%") == 1
    assert await fb("about 0.654 of revenue", "65.4%") == 1      # fraction of the percentage
    assert await fb("The quick ratio is 66%", "0.66") == 1
    assert await fb("1.94%", "1.9%") == 1                         # rounds to the gold's decimals
    assert await fb("2%", "1.9%") == 0                            # coarser than the gold: not the same figure
    assert await fb("-0.018", "-0.02") == 1                       # half a unit of the gold's last decimal
    assert await fb("The ratio is 660", "0.66") == 0              # plain numbers: no scale guessing
    assert await fb("24.3", "24.26") == 1                         # 0.16% off
    assert await fb("A decline of 1.7 percent", "-1.7%") == 1     # sign in words
    assert await fb("(370)", "$370") == 1                         # parenthesised negative, magnitude


async def test_years_are_context_not_the_answer() -> None:
    gold = "AMCOR's Adj. EBITDA was $2,018mn in FY 2023"
    assert await fb("Adjusted EBITDA of $2.018 billion", gold) == 1
    assert await fb("In FY 2023 it was $2,500mn", gold) == 0
    assert await fb("2019", "2019") == 1                          # a year is the answer when it is all there is


async def test_yes_no_golds_compare_polarity() -> None:
    gold = "No, the company is managing its CAPEX efficiently: CAPEX/revenue is 5.1%"
    assert await fb("No. Capex is well managed.", gold) == 1
    assert await fb("Yes, capex is too high.", gold) == 0
    assert await fb("Yes — dividends grew every year", "Yes, not only they distribute the dividends...") == 1
    assert (await FinanceBenchMatch().score("Yes", "No, ...")).method == "yes_no"


async def test_free_text_gold_uses_token_recall() -> None:
    assert await fb("The Data Center segment grew most.", "Data Center") == 1
    assert await fb("Gaming grew most.", "Data Center") == 0


def test_number_extraction_units() -> None:
    (q,) = extract("$2,018mn")
    assert (q.value, q.scale, q.currency) == (2018.0, 1e6, True)
    (q,) = extract("(1,234.5)")
    assert q.negative and q.value == 1234.5 and q.decimals == 1
    assert [x.raw for x in extract("FY2018 Q2 revenue 12k and 3.5 billion")] == ["12", "3.5"]
    assert same_quantity(extract("1,577 thousand")[0], extract("1.577 million")[0])   # both scaled: full values
    assert not same_quantity(extract("1,577 thousand")[0], extract("1.577 billion")[0])


# --- QASPER F1 ------------------------------------------------------------------------------------

def test_qasper_normalization_and_token_f1() -> None:
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert token_f1("GLUE and SuperGLUE", "GLUE, SuperGLUE") == pytest.approx(0.8)  # P=2/3, R=1
    assert token_f1("the", "a") == 0.0            # nothing left after normalisation: 0, as the official script
    assert token_f1("12 layers", "12 layers") == 1.0


async def test_qasper_f1_max_over_references_yes_no_unanswerable() -> None:
    s = QasperF1()
    assert (await s.score("GLUE and SuperGLUE", ["GLUE, SuperGLUE", "GLUE and SuperGLUE benchmarks"])).value \
        == pytest.approx(max(0.8, 2 * 1 * 0.75 / 1.75))
    assert (await s.score("Yes", ["Yes", "No"])).value == 1.0
    assert (await s.score("Yes, they do.", ["Yes"])).value == pytest.approx(0.5)  # P=1/3, R=1
    assert (await s.score("Unanswerable", ["Unanswerable"])).value == 1.0
    assert (await s.score("The paper does not say.", ["Unanswerable"])).value == 0.0
    assert (await s.score(None, ["Yes"])).value == 0.0


# --- LongHealth option accuracy ----------------------------------------------------------------------

OPTIONS = {"A": "Rituximab", "B": "Cyclophosphamide", "C": "Doxorubicin", "D": "Vincristine", "E": "Prednisone"}


@pytest.mark.parametrize("answer,letter", [
    ("The correct answer is D: Vincristine.", "D"), ("D", "D"), ("(D) Vincristine", "D"), ("Answer: D", "D"),
    ("Vincristine was reduced because of neuropathy.", "D"), ("option b", None), ("B.", "B"),
    ("A patient had neuropathy, so vincristine was reduced", "D"), ("A: Rituximab", "A"), ("I don't know", None),
])
def test_option_letter(answer: str, letter: str | None) -> None:
    assert option_letter(answer, OPTIONS) == letter


def test_option_text_prefers_the_longest_match() -> None:
    opts = {"A": "lymphoma", "B": "Diffuse large B-cell lymphoma", "C": "x", "D": "y", "E": "z"}
    assert option_letter("She has diffuse large B-cell lymphoma.", opts) == "B"


async def test_option_accuracy_uses_item_options() -> None:
    class Item:
        metadata = {"options": OPTIONS, "correct_letter": "D"}

    assert (await OptionAccuracy().score("The correct answer is D", "Vincristine", Item())).value == 1
    assert (await OptionAccuracy().score("C: Doxorubicin", "Vincristine", Item())).value == 0


async def test_contains() -> None:
    assert (await Contains().score("Losartan 50 mg daily.", "losartan")).value == 1
    assert (await Contains().score("Lisinopril", ["losartan", "Cozaar"])).value == 0


# --- LLM judge ------------------------------------------------------------------------------------

async def test_judge_is_metered_as_its_own_role() -> None:
    seen = []

    def reply(messages, options):
        seen.append((messages[0].content, options))
        return json.dumps({"correct": "Candidate answer: It was $1,577" in messages[0].content, "reason": "same"})

    judge = FunctionClient(reply, price_as="openai/gpt-4o-mini")

    class Item:
        question = "FY2018 capex?"

    s = JudgeScorer(judge, prices=PriceTable.load())
    score = await s.score("It was $1,577 million", "$1577.00", Item())
    assert score.value == 1 and score.method == "judge" and score.judge_model == "openai/gpt-4o-mini"
    assert score.usage is not None and score.usage.requests == 1
    assert score.cost_usd == pytest.approx(PriceTable.load().cost("openai/gpt-4o-mini", score.usage))
    prompt, options = seen[0]
    assert "FY2018 capex?" in prompt and "$1577.00" in prompt and options.json_schema["properties"]["correct"]
    assert (await s.score("It was $2,000 million", "$1577.00", Item())).value == 0
    assert (await s.score("", "$1577.00", Item())).detail == "no answer" and len(seen) == 2  # no call for nothing


async def test_judge_unparseable_verdict_scores_zero_with_a_reason() -> None:
    s = JudgeScorer(FunctionClient.from_replies(["I think so"]))
    score = await s.score("x", "y")
    assert score.value == 0 and "unparseable" in score.detail and score.usage is not None


@pytest.mark.parametrize("name,right,wrong,gold,method", [
    ("financebench", "It was $1,600 million", "It was $1.6 million", "$1.6 billion", "numeric"),
    ("numeric", "0.654", "0.70", "65.4%", "numeric"),
    ("longhealth", "The answer is D", "C: Doxorubicin", "Vincristine", "option"),
    ("option", "D", "A", "Vincristine", "option"),
    ("qasper", "the BERT base model", "a recurrent network", "BERT base", "f1"),
    ("f1", "BERT base", "LSTM", "BERT base", "f1"),
    ("contains", "They used BERT base here.", "They used BERT large.", "BERT base", "contains"),
])
async def test_get_scorer_returns_a_scorer_that_scores_by_its_rule(name, right, wrong, gold, method) -> None:
    class Item:
        metadata = {"options": OPTIONS, "correct_letter": "D"}
    scorer = get_scorer(name)
    good, bad = await scorer.score(right, gold, Item()), await scorer.score(wrong, gold, Item())
    assert good.method == bad.method == method
    assert good.value > bad.value and bad.value < 0.5 <= good.value


def test_get_scorer_refuses_what_it_cannot_build() -> None:
    with pytest.raises(ConfigError, match="judge model"):
        get_scorer("judge")
    with pytest.raises(ConfigError, match="Unknown scorer"):
        get_scorer("bleu")
