"""Issue 14: the reading budget (`read`, measured speed x local_time_budget), coverage in every run,
hybrid selection in MinionS, and the BM25 fallback when the `embeddings` extra is missing.

Scripted clients: FunctionClient counts whitespace words as tokens, so budgets are exact here.
"""

from __future__ import annotations

import json

import pytest

from minions.clients.function import FunctionClient
from minions.documents import Document, chunk_document
from minions.documents.hybrid import HybridIndex
from minions.errors import ConfigError
from minions.protocols.minions import MinionS
from minions.protocols.reading import ReadBudget, SpeedStore, speeds_file
from tests.test_protocol_minions import excerpt_and_task, final, scripted_remote

FACT = "Capital expenditure was $3.1 million, mostly for a cold-storage facility."
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def big_doc(pages: int = 40, words_per_page: int = 300, fact_page: int = 23) -> Document:
    """Filler pages of distinct nonsense words; one page states the fact."""
    texts = []
    for p in range(pages):
        n = words_per_page - (len(FACT.split()) if p == fact_page else 0)
        body = " ".join(f"{WORDS[(p * 7 + i) % len(WORDS)]}{p}" for i in range(n))
        texts.append((FACT + " " + body) if p == fact_page else body)
    return Document.from_pages(texts, id="big", title="Big report")


def pages_plan(*tasks: str) -> str:
    return json.dumps({"tasks": [{"instruction": t, "advice": ""} for t in tasks],
                       "chunking": {"strategy": "pages", "size": 1}})


def local_reply(msgs, _opts) -> str:
    excerpt, _task = excerpt_and_task(msgs)
    if FACT in excerpt:
        return json.dumps({"answer": "$3.1 million", "citation": FACT, "explanation": "stated"})
    return json.dumps({"answer": None})


def run(read=None, tasks=("Find the capital expenditure",), doc=None, **cfg):
    local = FunctionClient(local_reply, model="local")
    remote = scripted_remote([pages_plan(*tasks)], [final("$3.1 million")])
    cfg.setdefault("ask_question", False)  # one task per chunk: these tests are about which chunks are read
    res = MinionS(local, remote, max_rounds=1, read=read, **cfg).run("What was capital expenditure?",
                                                                  [doc or big_doc()])
    return res, local


# --- parsing the knob ------------------------------------------------------------------------------

@pytest.mark.parametrize("given, kind, value", [
    ("all", "all", 0), (" ALL ", "all", 0), ("30%", "percent", 30), ("12.5 %", "percent", 12.5),
    ("100%", "all", 0), ("20000", "tokens", 20000), ("20,000 tokens", "tokens", 20000), (5000, "tokens", 5000),
])
def test_read_budget_parses_the_three_forms(given, kind, value):
    b = ReadBudget.parse(given)
    assert (b.kind, b.value) == (kind, value)


@pytest.mark.parametrize("bad", ["alll", "30", "-5%", "0%", "150%", "0", "30 percent", True, -1, float("nan"), [30]])
def test_read_budget_misspellings_are_errors(bad):
    if bad == "30":  # a bare number is a token count, not a percent: valid
        assert ReadBudget.parse(bad).kind == "tokens"
        return
    with pytest.raises(ValueError, match="read"):
        ReadBudget.parse(bad)


def test_misspelt_read_fails_the_configuration_naming_the_forms():
    with pytest.raises(ConfigError, match=r"'all', a share like '30%'"):
        MinionS(FunctionClient(local_reply), FunctionClient(local_reply), read="everything")
    with pytest.raises(ConfigError):
        MinionS(FunctionClient(local_reply), FunctionClient(local_reply), local_time_budget=0)


# --- the budget decides what is read, and the run says so -------------------------------------------

def test_read_all_reads_every_chunk_and_coverage_says_so():
    res, local = run(read="all")
    cov = res.coverage
    assert len(local.calls) == 40 and (cov.chunks_read, cov.chunks_total) == (40, 40)
    assert cov.share > 0.99 and cov.why == "read=all" and res.answer == "$3.1 million"
    assert res.summary()["coverage"]["chunks_read"] == 40


def test_a_share_reads_the_best_chunks_within_it_grouped_by_chunk():
    res, local = run(read="10%", tasks=("Find the capital expenditure", "Find the cold-storage facility"))
    cov = res.coverage
    jobs = res.rounds[0].jobs
    read = list(dict.fromkeys(j.chunk_id for j in jobs))
    assert len(read) == cov.chunks_read == 4 and 0.08 < cov.share < 0.12  # 4 pages of 40 (tokens: exactly 10%)
    assert "big#23" in read  # the page holding the fact
    # each chunk's two jobs run back to back (prefix reuse), whatever order selection gave
    assert [j.chunk_id for j in jobs] == [c for c in read for _ in range(2)]
    assert any(w.startswith("round 1: read 4 of 40 chunks") and "read=10%" in w for w in res.warnings)


def test_a_token_budget_is_in_the_local_models_tokens():
    res, local = run(read="900")  # FunctionClient: a token is a word; a page is 300 words
    assert res.coverage.chunks_read == 3 and "big#23" in {j.chunk_id for j in res.rounds[0].jobs}


def test_budget_below_one_chunk_still_reads_the_best_one():
    res, _ = run(read="10")
    assert [j.chunk_id for j in res.rounds[0].jobs] == ["big#23"]


def test_default_budget_comes_from_the_measured_speed_and_the_time_budget(tmp_path, monkeypatch):
    path = tmp_path / "speeds.json"
    monkeypatch.setenv("MINIONS_SPEEDS_FILE", str(path))
    assert speeds_file() == path
    SpeedStore().record("function/local", tokens=1000, seconds=10)  # 100 tokens/s
    res, _ = run(local_time_budget=15)                             # -> 1,500 tokens: 5 pages
    assert res.coverage.chunks_read == 5 and "big#23" in {j.chunk_id for j in res.rounds[0].jobs}
    why = res.coverage.why
    assert "~100 tokens/s (measured)" in why and "15 s of local time" in why and "1,500 tokens" in why
    # this run's reading was folded into the remembered speed
    saved = json.loads(path.read_text())["function/local"]
    assert saved["tokens"] == pytest.approx(500 + 1500) and saved["seconds"] > 5


def test_first_run_without_a_measurement_reads_a_share_and_remembers_its_speed(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIONS_SPEEDS_FILE", str(tmp_path / "s.json"))
    res, _ = run()  # 40 pages x 300 words = 12,000 tokens: 30% is under 8,000 tokens, so 8,000
    assert res.coverage.chunks_read == 26 and "no reading speed measured yet" in res.coverage.why
    assert SpeedStore().get("function/local") > 0
    small, _ = run(doc=big_doc(pages=6))  # short documents are read whole on a first run
    assert small.coverage.chunks_read == small.coverage.chunks_total == 6


def test_a_damaged_speeds_file_is_an_empty_one(tmp_path):
    path = tmp_path / "speeds.json"
    path.write_text("{not json")
    store = SpeedStore(path)
    assert store.get("x") is None
    assert store.record("x", tokens=100, seconds=2) == 50 and store.get("x") == 50


# --- hybrid selection and its fallback --------------------------------------------------------------

def test_missing_embeddings_extra_falls_back_to_bm25_with_one_notice(no_dense):
    local = FunctionClient(local_reply, model="local")
    more = json.dumps({"decision": "request_additional_info", "explanation": "-", "feedback": "again"})
    remote = scripted_remote([pages_plan("Find the capital expenditure")], [more, final("$3.1 million")])
    res = MinionS(local, remote, max_rounds=2, read="10%").run("What was capital expenditure?", [big_doc()])
    notices = [w for w in res.warnings if "minions[embeddings]" in w]
    assert len(notices) == 1 and "BM25 only" in notices[0]
    assert res.n_rounds == 2 and all("big#23" in {j.chunk_id for j in r.jobs} for r in res.rounds)


def test_feedback_finds_the_page_that_answers_in_other_words():
    """Pseudo-relevance feedback: the question's words hit a summary page; the page with the figures
    shares no word with the question, only with that summary."""
    filler = [" ".join(f"{w}{p}" for w in WORDS) for p in range(38)]
    summary = "The quick ratio summary: see current assets, inventories and receivables below."
    figures = "Current assets 900; inventories 300; receivables 250; payables 400."
    doc = Document.from_pages(filler[:10] + [summary] + filler[10:30] + [figures] + filler[30:], id="d")
    chunks = chunk_document(doc, "pages", 1)
    index = HybridIndex(chunks, dense=False)
    plain = [chunks[i].page_start for i in index.lexical("What is the quick ratio?", feedback=False)]
    fed = [chunks[i].page_start for i in index.lexical("What is the quick ratio?")]
    assert plain == [11] and fed[:2] == [11, 32]


def test_neighbours_of_the_best_hit_are_read_next_when_asked():
    res, _ = run(read="600")  # two pages: the best hit and the next best match
    assert "big#23" in {j.chunk_id for j in res.rounds[0].jobs}
    res, _ = run(read="600", neighbours=1)
    assert [j.chunk_id for j in res.rounds[0].jobs] == ["big#23", "big#24"]
