"""Dataset loaders on fixtures in each official format, the bundled sample, and real FinanceBench."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from minions.errors import DatasetNotFoundError
from minions.eval.datasets import load_dataset, qasper_references

FIXTURES = Path(__file__).parent / "fixtures"
REAL_FINANCEBENCH = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "financebench"


def test_financebench_official_layout_loads_pdfs_and_skips_missing_filings() -> None:
    ds = load_dataset("financebench", FIXTURES / "financebench")
    assert [i.id for i in ds.items] == ["financebench_id_00001", "financebench_id_00002"]
    assert ds.skipped == 1  # GLOBEX_2022_10K has no PDF
    item = ds.items[0]
    assert item.gold == "$1577.00" and item.scorer == "financebench" and item.task == item.question
    assert item.metadata["doc_name"] == "ACME_2023_10K" and item.metadata["evidence_pages"] == [1]
    (doc,) = item.documents
    assert doc.id == "ACME_2023_10K" and len(doc.pages) == 3
    assert "Purchases of property, plant and equipment" in doc.page_text(2)
    assert item.documents[0] is doc  # loaded once, then kept
    item.release()
    assert item.documents[0] is not doc


def test_financebench_prepared_layout(tmp_path: Path) -> None:
    rows = [{"financebench_id": f"fb{i}", "company": "ACME", "doc_name": name, "question": f"Q{i}?",
             "answer": "$1.00", "evidence": [{"evidence_page_num": 0}], "doc_available": name == "ACME_10K"}
            for i, name in enumerate(["ACME_10K", "ACME_10K", "GONE_10K"])]
    (tmp_path / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with gzip.open(tmp_path / "docs.jsonl.gz", "wt") as f:
        f.write(json.dumps({"doc_name": "ACME_10K", "doc_type": "10k", "doc_period": 2023, "company": "ACME",
                            "pages": ["page one", "page two has capex"]}) + "\n")
    ds = load_dataset("financebench", tmp_path)
    assert (len(ds.items), ds.skipped) == (2, 1)
    (doc,) = ds.items[1].documents
    assert doc.id == "ACME_10K" and doc.title == "ACME 10K 2023" and doc.page_text(2) == "page two has capex"


def test_financebench_evidence_context_and_chosen_ids(tmp_path: Path) -> None:
    pages = [f"page {n} text" for n in range(1, 8)]
    rows = [{"financebench_id": f"fb{i}", "company": "ACME", "doc_name": "ACME_10K", "question": f"Q{i}?",
             "answer": "$1.00", "evidence": [{"evidence_page_num": p}]} for i, p in enumerate([3, 0])]
    (tmp_path / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with gzip.open(tmp_path / "docs.jsonl.gz", "wt") as f:
        f.write(json.dumps({"doc_name": "ACME_10K", "company": "ACME", "pages": pages}) + "\n")
    ds = load_dataset("financebench", tmp_path, ids=["fb1", "fb0"], context="evidence", neighbours=1)
    assert [i.id for i in ds.items] == ["fb1", "fb0"]
    first, second = ds.items[0].documents[0], ds.items[1].documents[0]
    assert [p.number for p in first.pages] == [1, 2]                   # evidence page 0 (1-based 1) and after
    assert [p.number for p in second.pages] == [3, 4, 5] and second.page_text(4) == "page 4 text"
    with pytest.raises(DatasetNotFoundError, match="fb9"):
        load_dataset("financebench", tmp_path, ids=["fb9"])


@pytest.mark.financebench
@pytest.mark.skipif(not REAL_FINANCEBENCH.is_dir(), reason="needs ../shared/datasets/financebench")
def test_real_financebench_129_load_21_skipped() -> None:
    ds = load_dataset("financebench", REAL_FINANCEBENCH)
    assert (len(ds.items), ds.skipped) == (129, 21)
    assert len({i.id for i in ds.items}) == 129
    first = ds.items[0]
    assert first.gold == "$1577.00" and first.metadata["doc_name"] == "3M_2018_10K"
    (doc,) = first.documents
    assert doc.id == "3M_2018_10K" and len(doc.pages) > 100
    assert "Purchases of property, plant and equipment" in doc.text


def test_real_financebench_is_the_default_location(monkeypatch: pytest.MonkeyPatch) -> None:
    if not REAL_FINANCEBENCH.is_dir():
        pytest.skip("needs ../shared/datasets/financebench")
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the repo root: ../shared/datasets/financebench
    monkeypatch.delenv("MINIONS_DATA", raising=False)
    assert load_dataset("financebench", limit=2).path.resolve() == REAL_FINANCEBENCH.resolve()


def test_missing_dataset_says_where_to_get_it_and_where_to_put_it(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINIONS_DATA", str(tmp_path / "data"))
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("longhealth")
    msg = str(e.value)
    assert "kbressem/LongHealth" in msg and "benchmark_v5.json" in msg and str(tmp_path / "data" / "longhealth") in msg
    with pytest.raises(DatasetNotFoundError, match="patronus-ai/financebench"):
        load_dataset("financebench", tmp_path / "nowhere")
    with pytest.raises(DatasetNotFoundError, match="choose one of"):
        load_dataset("mmlu")


def test_minions_data_env_var_is_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "longhealth").mkdir()
    (tmp_path / "longhealth" / "benchmark_v5.json").write_text((FIXTURES / "longhealth" / "benchmark_v5.json").read_text())
    monkeypatch.setenv("MINIONS_DATA", str(tmp_path))
    assert len(load_dataset("longhealth").items) == 3


def test_longhealth_official_format() -> None:
    ds = load_dataset("longhealth", FIXTURES / "longhealth")
    assert [i.id for i in ds.items] == ["patient_01-q1", "patient_01-q2", "patient_02-q1"]
    item = ds.items[0]
    assert item.gold == "Vincristine" and item.metadata["correct_letter"] == "D"
    assert item.metadata["options"]["A"] == "Rituximab" and item.metadata["answer_location"] == ["text_1"]
    assert "D: Vincristine" in item.task and item.task.startswith(item.question)
    assert [d.id for d in item.documents] == ["patient_01/text_0", "patient_01/text_1"]
    assert ds.items[2].documents[0].text.startswith("Cardiology report")


def test_qasper_official_format_and_reference_answers() -> None:
    ds = load_dataset("qasper", FIXTURES / "qasper")
    by_id = {i.id: i for i in ds.items}
    assert by_id["q-extractive"].gold == ["GLUE, SuperGLUE", "GLUE and SuperGLUE benchmarks"]
    assert by_id["q-yesno"].gold == ["Yes", "No"]
    assert by_id["q-unanswerable"].gold == ["Unanswerable"]
    assert by_id["q-free"].gold == ["12 layers"]
    item = by_id["q-free"]
    assert item.scorer == "qasper" and "Unanswerable" in item.task
    (doc,) = item.documents
    assert doc.id == "1909.00001" and "## Experiments" in doc.text and "Our model has 12 layers." in doc.text
    assert by_id["q-yesno"].documents[0] is doc  # one Document per paper
    assert qasper_references({"answers": []}) == []
    with pytest.raises(DatasetNotFoundError, match="qasper-test"):
        load_dataset("qasper", FIXTURES / "qasper", split="test")


def test_bundled_sample() -> None:
    ds = load_dataset("sample")
    assert len(ds.items) == 9 and ds.skipped == 0
    assert {i.metadata["doc"] for i in ds.items[:3]} == {"northwind_annual_report.md", "patient_record.md", "paper.md"}
    first = ds.items[0]
    assert first.question == "What was Northwind's total revenue in fiscal 2024?"
    (doc,) = first.documents
    assert 6000 <= len(doc.text) <= 12000 and "Total revenue for fiscal 2024 was $2,847.3 million" in doc.text
    for item in ds.items:  # every gold answer is stated in its document
        text = item.documents[0].text
        key = {"northwind-revenue": "2,847.3", "patient-cough-drug": "losartan 50 mg", "paper-test-f1": "71.4",
               "northwind-capex": "186.5", "patient-a1c-june": "HbA1c 7.2%", "paper-relay-tokens": "R = 16",
               "northwind-beverages-growth": "decreased 2.1%", "patient-penicillin": "Penicillin (hives",
               "paper-ablation-relay": "58.3"}[item.id]
        assert key.lower() in text.lower(), item.id


def test_limit_and_seeded_sample() -> None:
    assert [i.id for i in load_dataset("sample", limit=2).items] == ["northwind-revenue", "patient-cough-drug"]
    a = [i.id for i in load_dataset("sample", limit=4, seed=7).items]
    assert a == [i.id for i in load_dataset("sample", limit=4, seed=7).items] and len(a) == 4
    assert a != [i.id for i in load_dataset("sample", limit=4, seed=8).items]
