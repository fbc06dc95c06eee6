"""Evaluation datasets: FinanceBench, LongHealth, QASPER (official layouts) and the bundled sample.

    items, skipped = load_dataset("financebench")          # default location, see `find_data`
    item.task          # what the protocol is asked (question + answer-format hint)
    item.documents     # loaded on first access (FinanceBench filings are large), then kept

Where data is looked for, in order: the path the caller gives; $MINIONS_DATA/<name>;
./datasets/<name>; ../shared/datasets/<name> (relative to the working directory); and, for
`sample`, the `datasets/sample` folder of a source checkout. A missing dataset raises
`DatasetNotFoundError` saying where to get it and where to put it.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minions.documents import Document, load
from minions.errors import DatasetNotFoundError

Gold = str | list[str]

SOURCES = {
    "financebench": "the FinanceBench repository (github.com/patronus-ai/financebench): put its `data/` and "
                    "`pdfs/` folders in {where}",
    "longhealth": "the LongHealth repository (github.com/kbressem/LongHealth): put `data/benchmark_v5.json` "
                  "in {where}",
    "qasper": "the QASPER release (allenai.org/data/qasper): put `qasper-test-v0.3.json` (and/or "
              "`qasper-dev-v0.3.json`) in {where}",
    "sample": "the bundled sample (datasets/sample in the minions source tree): copy that folder to {where}",
}
QASPER_HINT = ("Answer briefly, quoting the paper where possible. For a yes/no question answer 'Yes' or 'No'. "
               "If the paper does not answer the question, answer 'Unanswerable'.")
LONGHEALTH_HINT = "Answer with the letter and the text of the correct option, e.g. 'C: Acute bronchitis'."


@dataclass
class EvalItem:
    """One question. `documents` are loaded on first access (and can be released with `release`)."""

    id: str
    dataset: str
    question: str
    gold: Gold
    scorer: str
    loader: Callable[[], list[Document]] = field(repr=False)
    task: str = ""                      # what the protocol is asked; defaults to the question
    metadata: dict[str, Any] = field(default_factory=dict)
    _docs: list[Document] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.task = self.task or self.question

    @property
    def documents(self) -> list[Document]:
        if self._docs is None:
            self._docs = self.loader()
        return self._docs

    def release(self) -> None:
        """Drop loaded documents (a sweep does this once every configuration has run the item)."""
        self._docs = None


@dataclass
class LoadedDataset:
    name: str
    path: Path
    items: list[EvalItem]
    skipped: int = 0                    # items whose documents are unavailable
    skipped_reason: str = ""


# --- locating data -------------------------------------------------------------------------------

def repo_datasets_dir() -> Path:
    """`datasets/` of a source checkout (this file is minions/eval/datasets.py)."""
    return Path(__file__).resolve().parents[2] / "datasets"


def find_data(name: str, path: str | Path | None = None, *, marker: Callable[[Path], bool]) -> Path:
    if path is not None:
        candidates = [Path(path).expanduser()]
    else:
        candidates = []
        if os.environ.get("MINIONS_DATA"):
            candidates.append(Path(os.environ["MINIONS_DATA"]).expanduser() / name)
        candidates += [Path("datasets") / name, Path("..") / "shared" / "datasets" / name]
        if name == "sample":
            candidates.append(repo_datasets_dir() / "sample")
    for c in candidates:
        if c.is_dir() and marker(c):
            return c
    where = str(candidates[0]) if path is not None else f"$MINIONS_DATA/{name} or ./datasets/{name}"
    raise DatasetNotFoundError(
        f"Dataset {name!r} not found (looked in: {', '.join(str(c) for c in candidates)}). "
        f"Get it from {SOURCES[name].format(where=where)}, or pass its folder with --data {name}=PATH. "
        "See datasets/README.md.")


# --- FinanceBench --------------------------------------------------------------------------------

class _GzipDocStore:
    """Filings of the prepared copy (docs.jsonl.gz, 34M chars). One pass reads the names; each filing
    is kept zlib-compressed in memory (~10 MB in all) and decoded when an item asks for it."""

    def __init__(self, path: Path):
        self.path = path
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()
        with gzip.open(path, "rb") as f:
            for line in f:
                if line.strip():
                    m = re.search(rb'"doc_name"\s*:\s*"([^"]+)"', line[:400])
                    name = m.group(1).decode() if m else json.loads(line)["doc_name"]
                    self._blobs[name] = zlib.compress(line, 1)

    def names(self) -> set[str]:
        return set(self._blobs)

    def document(self, name: str, pages: list[int] | None = None) -> Document:
        """The filing; with `pages` (0-based), only those pages, keeping their page numbers."""
        with self._lock:
            rec = json.loads(zlib.decompress(self._blobs[name]))
        title = f"{rec.get('company', '')} {rec.get('doc_type', '').upper()} {rec.get('doc_period', '')}".strip()
        meta = {k: rec.get(k) for k in ("company", "doc_type", "doc_period")}
        if pages is None:
            return Document.from_pages(rec["pages"], id=name, title=title or name,
                                       source=f"financebench:{name}", metadata=meta)
        kept = [i for i in pages if 0 <= i < len(rec["pages"])]
        doc = Document.from_pages([rec["pages"][i] for i in kept], id=name, title=title or name,
                                  source=f"financebench:{name}", metadata={**meta, "pages_kept": [i + 1 for i in kept]})
        doc.pages = [span.model_copy(update={"number": i + 1}) for span, i in zip(doc.pages, kept, strict=True)]
        return doc


def evidence_pages(evidence_pages: list[int], neighbours: int) -> list[int]:
    """Evidence pages (0-based) and `neighbours` pages either side, sorted, without repeats."""
    return sorted({p + d for p in evidence_pages for d in range(-neighbours, neighbours + 1) if p + d >= 0})


def load_financebench(path: str | Path | None = None, *, context: str = "full", neighbours: int = 1) -> LoadedDataset:
    """Prepared copy (questions.jsonl + docs.jsonl.gz) or the official repository layout
    (data/financebench_open_source.jsonl + pdfs/<doc_name>.pdf), detected from the files present.
    `context="evidence"` (prepared copy only): each item's document is its evidence pages and
    `neighbours` pages either side, not the whole filing."""
    def marker(p: Path) -> bool:
        return (p / "questions.jsonl").is_file() or (p / "data" / "financebench_open_source.jsonl").is_file()

    root = find_data("financebench", path, marker=marker)
    if (root / "questions.jsonl").is_file() and (root / "docs.jsonl.gz").is_file():
        rows = _read_jsonl(root / "questions.jsonl")
        store = _GzipDocStore(root / "docs.jsonl.gz")
        available = store.names()

        def loader_for(name: str, pages: list[int] | None = None) -> Callable[[], list[Document]]:
            return lambda: [store.document(name, pages)]
    else:
        if context != "full":
            raise DatasetNotFoundError("context=\"evidence\" needs the prepared FinanceBench copy "
                                       "(questions.jsonl + docs.jsonl.gz); use context=\"full\" with the PDFs.")

        rows = _read_jsonl(root / "data" / "financebench_open_source.jsonl")
        pdfs = root / "pdfs"
        available = {p.stem for p in pdfs.glob("*.pdf")} if pdfs.is_dir() else set()

        def loader_for(name: str, pages: list[int] | None = None) -> Callable[[], list[Document]]:
            return lambda: [load(pdfs / f"{name}.pdf").model_copy(update={"id": name})]  # pages: prepared copy only
    items, skipped = [], 0
    for r in rows:
        if r["doc_name"] not in available:
            skipped += 1
            continue
        meta: dict[str, Any] = {k: r.get(k) for k in ("company", "doc_name", "question_type", "question_reasoning",
                                      "justification")}
        meta["evidence_pages"] = sorted({e.get("evidence_page_num") for e in r.get("evidence") or []
                                         if e.get("evidence_page_num") is not None})
        pages = evidence_pages(meta["evidence_pages"], neighbours) if context == "evidence" else None
        items.append(EvalItem(id=r["financebench_id"], dataset="financebench", question=r["question"],
                              gold=r["answer"], scorer="financebench",
                              loader=loader_for(r["doc_name"], pages) if pages else loader_for(r["doc_name"]),
                              metadata=meta))
    return LoadedDataset("financebench", root, items, skipped, "filing not available")


# --- LongHealth ----------------------------------------------------------------------------------

def load_longhealth(path: str | Path | None = None) -> LoadedDataset:
    """benchmark_v5.json: {patient_id: {name, birthday, diagnosis, texts: {text_id: text},
    questions: [{No, question, answer_a..answer_e, correct (the option's text), answer_location}]}}."""
    def marker(p: Path) -> bool:
        return (p / "benchmark_v5.json").is_file() or (p / "data" / "benchmark_v5.json").is_file()

    root = find_data("longhealth", path, marker=marker)
    file = root / "benchmark_v5.json" if (root / "benchmark_v5.json").is_file() else root / "data" / "benchmark_v5.json"
    data = json.loads(file.read_text(encoding="utf-8"))
    items: list[EvalItem] = []
    for pid, patient in data.items():
        docs = [Document.from_text(text, id=f"{pid}/{tid}", title=f"{pid} {tid}", source=f"longhealth:{pid}/{tid}")
                for tid, text in patient["texts"].items()]
        for i, q in enumerate(patient["questions"]):
            options = {letter: q[f"answer_{letter.lower()}"] for letter in "ABCDE"}
            correct = q["correct"]
            letter = next((k for k, v in options.items() if v == correct), None)
            if letter is None and correct.strip().upper() in options:  # a letter instead of the text
                letter = correct.strip().upper()
            listed = "\n".join(f"{k}: {v}" for k, v in options.items())
            items.append(EvalItem(
                id=f"{pid}-q{q.get('No', i + 1)}", dataset="longhealth", question=q["question"],
                gold=options.get(letter, correct) if letter else correct, scorer="longhealth",
                loader=_constant(docs), task=f"{q['question']}\n\n{listed}\n\n{LONGHEALTH_HINT}",
                metadata={"patient": pid, "options": options, "correct_letter": letter,
                          "answer_location": list((q.get("answer_location") or {}).keys())}))
    return LoadedDataset("longhealth", root, items)


# --- QASPER --------------------------------------------------------------------------------------

def qasper_references(qa: dict[str, Any]) -> list[str]:
    """Gold answers as the official QASPER evaluator builds them (one per annotation)."""
    refs = []
    for annotation in qa.get("answers", []):
        a = annotation["answer"]
        if a.get("unanswerable"):
            refs.append("Unanswerable")
        elif a.get("extractive_spans"):
            refs.append(", ".join(a["extractive_spans"]))
        elif a.get("free_form_answer"):
            refs.append(a["free_form_answer"])
        elif a.get("yes_no") is not None:
            refs.append("Yes" if a["yes_no"] else "No")
    return refs


def _paper_document(pid: str, paper: dict[str, Any]) -> Document:
    parts = [f"# {paper.get('title', pid)}", "## Abstract", paper.get("abstract", "")]
    for sec in paper.get("full_text") or []:
        parts.append(f"## {sec.get('section_name') or 'Section'}")
        parts += [p for p in sec.get("paragraphs") or [] if p]
    return Document.from_text("\n\n".join(parts), id=pid, title=paper.get("title", pid), source=f"qasper:{pid}")


def load_qasper(path: str | Path | None = None, split: str | None = None) -> LoadedDataset:
    """Official JSON: {paper_id: {title, abstract, full_text: [{section_name, paragraphs}], qas: [...]}}.
    `split` picks qasper-<split>-v*.json; by default test, else dev, else the only JSON file."""
    root = find_data("qasper", path, marker=lambda p: any(p.glob("*.json")))
    files = sorted(root.glob(f"qasper-{split}-v*.json")) if split else \
        sorted(root.glob("qasper-test-v*.json")) or sorted(root.glob("qasper-dev-v*.json")) or sorted(root.glob("*.json"))
    if not files:
        raise DatasetNotFoundError(f"No qasper-{split}-v*.json in {root}. {SOURCES['qasper'].format(where=root)}")
    data = json.loads(files[-1].read_text(encoding="utf-8"))
    items = []
    for pid, paper in data.items():
        cache: list[Document] = []

        def loader(pid=pid, paper=paper, cache=cache) -> list[Document]:
            if not cache:  # questions of one paper share its Document
                cache.append(_paper_document(pid, paper))
            return list(cache)

        for qa in paper.get("qas", []):
            refs = qasper_references(qa)
            if refs:
                items.append(EvalItem(id=qa["question_id"], dataset="qasper", question=qa["question"], gold=refs,
                                      scorer="qasper", loader=loader, task=f"{qa['question']}\n\n{QASPER_HINT}",
                                      metadata={"paper_id": pid, "file": files[-1].name}))
    return LoadedDataset("qasper", root, items)


# --- the bundled sample --------------------------------------------------------------------------

def load_sample(path: str | Path | None = None) -> LoadedDataset:
    """datasets/sample: Markdown documents and questions.jsonl ({id, doc, question, answer, scorer})."""
    root = find_data("sample", path, marker=lambda p: (p / "questions.jsonl").is_file())
    docs: dict[str, Document] = {}

    def loader_for(name: str) -> Callable[[], list[Document]]:
        def get() -> list[Document]:
            if name not in docs:
                docs[name] = load(root / name)
            return [docs[name]]
        return get

    items = [EvalItem(id=r["id"], dataset="sample", question=r["question"], gold=r["answer"],
                      scorer=r.get("scorer", "financebench"), loader=loader_for(r["doc"]),
                      metadata={"doc": r["doc"], **r.get("metadata", {})})
             for r in _read_jsonl(root / "questions.jsonl")]
    missing = sorted({i.metadata["doc"] for i in items if not (root / i.metadata["doc"]).is_file()})
    if missing:
        raise DatasetNotFoundError(f"The sample dataset in {root} lacks {', '.join(missing)}: restore "
                                   "datasets/sample from the minions source tree.")
    return LoadedDataset("sample", root, items)


LOADERS: dict[str, Callable[..., LoadedDataset]] = {
    "financebench": load_financebench, "longhealth": load_longhealth, "qasper": load_qasper, "sample": load_sample,
}
DATASET_NAMES = tuple(LOADERS)


def load_dataset(name: str, path: str | Path | None = None, *, limit: int | None = None,
                 seed: int | None = None, ids: list[str] | None = None, **kw: Any) -> LoadedDataset:
    """Load a dataset; `ids` keeps those items in that order; `limit` keeps the first N items, or N
    sampled with `seed` (order kept)."""
    if name not in LOADERS:
        raise DatasetNotFoundError(f"Unknown dataset {name!r}; choose one of: {', '.join(DATASET_NAMES)}")
    ds = LOADERS[name](path, **kw)
    if ids is not None:
        by_id = {it.id: it for it in ds.items}
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise DatasetNotFoundError(f"{name} has no item(s) {', '.join(unknown[:5])} (or their documents are "
                                       "unavailable); check the ids in the sweep config.")
        ds.items = [by_id[i] for i in ids]
    if limit is not None and limit < len(ds.items):
        if seed is None:
            ds.items = ds.items[:limit]
        else:
            keep = set(random.Random(seed).sample(range(len(ds.items)), limit))
            ds.items = [it for i, it in enumerate(ds.items) if i in keep]
    return ds


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _constant(docs: list[Document]) -> Callable[[], list[Document]]:
    """A loader for documents already in memory."""
    return lambda: docs
