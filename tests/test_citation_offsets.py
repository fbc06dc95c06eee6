"""Citation offsets (issue 20, item 4): every citation a run returns says where its quote is —
character offsets into its document's text and the page they start on — and the offsets are
exact: they slice the document to the quoted span, also when the quote matched only after
whitespace, case and quote marks were normalised, or fuzzily."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from minions.clients.function import FunctionClient
from minions.documents import Document, load
from minions.protocols import get_protocol
from minions.protocols.baselines import RAG
from minions.protocols.citations import (
    facts,
    match_citation,
    normalize,
    normalize_with_offsets,
    place_citations,
)
from minions.protocols.result import Citation
from tests.test_protocol_minions import FACTS, PAGES, final, honest_local, make_doc, plan

ROOT = Path(__file__).resolve().parents[1]
TEXT = ("Operations. Capital expenditure was $42 million in FY2023, mostly for a cold-storage facility.\n"
        "Outlook. Management  expects\nsteady demand in the “coming” year.")


def _stripped(cite: str) -> str:
    return cite.strip().strip("\"'`“”‘’«» ").rstrip(".,;:").strip("\"'`“”‘’«» ")


def test_an_exact_quote_slices_to_itself():
    m = match_citation("“Capital expenditure was $42 million in FY2023.”", TEXT)
    assert (m.found, m.how) == (True, "exact")
    assert TEXT[m.start:m.end] == "Capital expenditure was $42 million in FY2023"


def test_a_normalised_quote_slices_to_the_original_text_with_its_own_whitespace_and_case():
    m = match_citation('management expects steady demand in the "coming" year', TEXT)
    assert m.how == "normalised"
    assert TEXT[m.start:m.end] == "Management  expects\nsteady demand in the “coming” year"


def test_a_fuzzy_quote_slices_to_the_passage_it_matched_with_the_same_figures():
    m = match_citation("capital expenditure were $42 million in FY2023", TEXT)
    assert m.how == "fuzzy"
    passage = TEXT[m.start:m.end]
    assert passage.startswith("Capital expenditure was $42 million in FY2023")
    assert facts(passage) == facts("$42 million in FY2023")


def test_an_elided_quote_spans_from_its_first_part_to_its_last():
    m = match_citation("Capital expenditure was $42 million ... a cold-storage facility", TEXT)
    assert m.found
    assert TEXT[m.start:m.end] == "Capital expenditure was $42 million in FY2023, mostly for a cold-storage facility"


def test_a_quote_not_found_has_no_offsets():
    for cite in ("Capital expenditure was $999 billion in FY2023", "Revenue tripled to $900 million in 2031"):
        m = match_citation(cite, TEXT)
        assert not m.found and m.start is None and m.end is None


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("aAbß İ\t\n“”‘’«»\"'Σς.5,")), max_size=40))
def test_property_the_mapped_normalisation_is_the_normalisation(text):
    norm, where = normalize_with_offsets(text)
    assert norm == normalize(text)
    assert len(where) == len(norm) and where == sorted(where)
    assert all(0 <= k < len(text) for k in where)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["Capital expenditure was $42 million in FY2023", "mostly for a cold-storage facility",
                        "Management  expects\nsteady demand", "demand in the “coming” year"]),
       st.sampled_from(["same", "upper", "lower"]), st.booleans(), st.sampled_from(["", ".", "”"]))
def test_property_offsets_slice_the_text_to_the_quote_up_to_normalisation(quote, case, respace, tail):
    cite = {"same": quote, "upper": quote.upper(), "lower": quote.lower()}[case]
    if respace:
        cite = re.sub(r"\s+", lambda _: "  \n ", cite)
    cite += tail
    m = match_citation(cite, TEXT)
    assert m.found and m.how in ("exact", "normalised")
    assert normalize(TEXT[m.start:m.end]) == normalize(_stripped(cite))
    if m.how == "exact":
        assert TEXT[m.start:m.end] == _stripped(cite)


def test_place_citations_finds_quotes_within_their_pages_and_names_the_page():
    doc = Document.from_pages(["Revenue was $10 million.", "Intro. Revenue was $10 million. The end."], id="d")
    on_two = Citation(doc_id="d", page_start=2, page_end=2, text="revenue was $10 MILLION")
    missing = Citation(doc_id="d", page_start=1, page_end=1, text="Revenue was $99 million")
    unknown = Citation(doc_id="other", text="Revenue")
    placed = place_citations([on_two, missing, unknown], [doc])
    assert doc.text[placed[0].start:placed[0].end] == "Revenue was $10 million" and placed[0].page == 2
    assert placed[0].start == doc.pages[1].start + len("Intro. ")
    assert (placed[1].start, placed[1].end, placed[1].page) == (None, None, None)
    assert placed[2] == unknown


def test_minions_citations_carry_offsets_where_the_worker_quote_was_verified():
    def sloppy(msgs, opts):  # the honest worker, quoting in lower case with a line break
        reply = json.loads(honest_local(msgs, opts))
        if reply["citation"]:
            reply["citation"] = reply["citation"].lower().replace(" in ", "\nin ")
        return json.dumps(reply)

    remote = FunctionClient.from_replies([plan("Find the revenue"), final()], model="remote")
    doc = make_doc()
    result = get_protocol("minions", FunctionClient(sloppy, model="local"), remote, max_rounds=1,
                          ask_question=False).run("What was revenue in fiscal 2024?", [doc])
    assert result.answer == "$42 million" and result.citations
    for c in result.citations:
        assert doc.text[c.start:c.end] == FACTS["revenue"]
        assert c.page == 2 == c.page_start
    job = next(j for r in result.rounds for j in r.jobs if j.verified)
    assert job.span == (result.citations[0].start, result.citations[0].end)


def test_rag_and_baseline_citations_carry_offsets():
    sample = load(ROOT / "datasets" / "sample" / "northwind_annual_report.md")
    result = RAG(None, FunctionClient.from_replies(["$2,847.3 million [C1]"], model="remote"), top_k=2).run(
        "What was Northwind's total revenue in fiscal 2024?", [sample])
    assert result.citations
    for c in result.citations:
        assert sample.text[c.start:c.end] == c.text and c.page == 1
    quoted = 'The report says "Total revenue for fiscal 2024 was $2,847.3 million".'
    result = get_protocol("remote-only", None, FunctionClient.from_replies([quoted], model="remote")).run(
        "What was Northwind's total revenue in fiscal 2024?", [sample])
    (c,) = result.citations
    assert sample.text[c.start:c.end] == "Total revenue for fiscal 2024 was $2,847.3 million"


def test_ask_json_carries_citation_offsets_that_slice_the_loaded_document(gateway, tmp_path):
    from tests.test_cli import _backend

    async def answer(_m, _o):
        return final()
    gateway.backend = _backend(answer)
    doc = tmp_path / "northwind.txt"
    doc.write_text("\n\n".join(PAGES))
    env = {**os.environ, "OPENAI_API_KEY": "sk-test", "OLLAMA_HOST": gateway.url, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "minions.cli", "ask", str(doc), "-q", "What was revenue in fiscal 2024?",
         "--protocol", "minions", "--local", "ollama/llama3.2:3b", "--remote", "openai/gpt-4o-mini",
         "--base-url", gateway.openai_url, "--max-rounds", "1", "--json"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    text = load(doc).text
    assert data["citations"]
    for c in data["citations"]:
        assert {"start", "end", "page"} <= set(c)
        assert text[c["start"]:c["end"]] == FACTS["revenue"]
