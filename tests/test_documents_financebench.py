"""minions.documents on real 10-K filings from ../shared/datasets/financebench (skipped when absent).

For a fixed sample of questions: the gold evidence page is where the Document says it is, the chunks
whose provenance names that page hold its text, and BM25 over the filing ranks an evidence chunk in the
top 10 for most questions.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from minions.documents import BM25Index, Chunk, Document, chunk_document

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "financebench"
SAMPLE = 30
CHUNK_CHARS = 3000

pytestmark = [
    pytest.mark.financebench,
    pytest.mark.skipif(not (DATA / "docs.jsonl.gz").exists(),
                       reason=f"FinanceBench data not found at {DATA} (only on development and CI machines)"),
]
_DOC_NAME = re.compile(r'"doc_name":\s*"([^"]+)"')
_WORDS = re.compile(r"\w+")


@pytest.fixture(scope="module")
def sample() -> list[dict]:
    with open(DATA / "questions.jsonl", encoding="utf-8") as f:
        questions = [q for q in map(json.loads, f) if q["doc_available"]]
    return random.Random(0).sample(questions, SAMPLE)


@pytest.fixture(scope="module")
def filings(sample: list[dict]) -> dict[str, Document]:
    """Only the filings the sample needs, streamed from the gzip (the name is read before parsing)."""
    wanted = {q["doc_name"] for q in sample}
    docs: dict[str, Document] = {}
    with gzip.open(DATA / "docs.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            m = _DOC_NAME.search(line, 0, 300)
            if m and m.group(1) in wanted:
                record = json.loads(line)
                docs[record["doc_name"]] = Document.from_pages(
                    record["pages"], id=record["doc_name"], title=record["doc_name"], source=str(DATA),
                    metadata={"company": record["company"], "doc_type": record["doc_type"]})
    assert set(docs) == wanted
    return docs


@pytest.fixture(scope="module")
def chunks(filings: dict[str, Document]) -> dict[str, list[Chunk]]:
    return {name: chunk_document(doc, "chars", CHUNK_CHARS) for name, doc in filings.items()}


def word_overlap(a: str, b: str) -> float:
    wa, wb = Counter(_WORDS.findall(a.lower())), Counter(_WORDS.findall(b.lower()))
    return sum((wa & wb).values()) / max(sum(wa.values()), sum(wb.values()), 1)


def anchor(evidence: str, page_text: str) -> str | None:
    """The longest line of the evidence that occurs verbatim on the page (extractions differ in spacing)."""
    lines = sorted({ln.strip() for ln in evidence.split("\n") if len(ln.strip()) >= 20}, key=len, reverse=True)
    return next((ln for ln in lines if ln in page_text), None)


def test_gold_evidence_page_is_in_the_chunks_that_name_it(sample, filings, chunks) -> None:
    anchored = total = 0
    for q in sample:
        doc, doc_chunks = filings[q["doc_name"]], chunks[q["doc_name"]]
        for ev in q["evidence"]:
            number = ev["evidence_page_num"] + 1  # the dataset is 0-based, PageSpan numbers 1-based
            span = doc.pages[number - 1]
            page_text = doc.page_text(number)
            total += 1
            # the Document's page is the dataset's gold page (their extractions differ only in spacing)
            assert word_overlap(page_text, ev["evidence_text_full_page"]) > 0.9, (q["doc_name"], number)
            naming = [c for c in doc_chunks if c.page_start <= number <= c.page_end]
            assert naming, f"no chunk names page {number} of {doc.id}"
            assert all(c.start < span.end and c.end > span.start for c in naming)  # no false claims
            # together they hold all of the page's text
            covered = [(max(c.start, span.start), min(c.end, span.end)) for c in naming]
            held = "".join(doc.text[s:e] for s, e in covered)
            assert "".join(page_text.split()) in "".join(held.split())
            # and the chunk holding the evidence itself names the page
            line = anchor(ev["evidence_text"], page_text)
            if line is not None:
                offset = span.start + page_text.index(line)
                [holder] = [c for c in doc_chunks if c.start <= offset < c.end]
                assert holder.page_start <= number <= holder.page_end
                anchored += 1
    print(f"\nevidence located verbatim: {anchored}/{total}")
    assert anchored >= 0.8 * total, f"only {anchored}/{total} evidence passages located verbatim"


def test_bm25_ranks_an_evidence_chunk_in_the_top_10(sample, filings, chunks) -> None:
    indexes = {name: BM25Index(doc_chunks) for name, doc_chunks in chunks.items()}
    found = 0
    for q in sample:
        gold = {ev["evidence_page_num"] + 1 for ev in q["evidence"]}
        hits = indexes[q["doc_name"]].search(q["question"], k=10)
        found += any(gold.intersection(h.chunk.pages) for h in hits)
    rate = found / len(sample)
    print(f"\nBM25 evidence chunk in top 10: {found}/{len(sample)} = {rate:.0%} "
          f"({CHUNK_CHARS}-character chunks, {len(filings)} filings)")
    assert rate > 0.5, f"BM25 put an evidence chunk in the top 10 for only {rate:.0%} of questions"
