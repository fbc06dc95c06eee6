"""Documents for the app: uploaded files or a bundled sample, parsed once per session."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, MutableMapping
from pathlib import Path

import streamlit as st

from minions.documents import Document, load
from minions.documents.loaders import KINDS
from minions.errors import DocumentError, MissingDependencyError

from .fmt import safe_md

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "datasets" / "sample"
UPLOAD_TYPES = sorted({s.lstrip(".") for s in KINDS})
SAMPLE, UPLOAD = "Bundled sample", "Upload files"
FILES = "doc_files"  # session key: document id -> (file name, bytes) of the documents on the page


def list_samples(folder: Path = SAMPLES_DIR) -> list[Path]:
    return sorted(p for p in folder.glob("*") if p.suffix.lower() in KINDS) if folder.is_dir() else []


def load_files(files: Iterable[tuple[str, bytes]], cache: MutableMapping[str, Document] | None = None,
               before: Callable[[str, int, int], None] | None = None) -> tuple[list[Document], list[str]]:
    """Parse (file name, bytes) pairs. Returns the documents (ids unique) and one message per bad
    file; a bad file never stops the others. `cache` (by name and content hash) skips re-parsing on
    Streamlit reruns; `before(name, i, n)` is called before each file that really gets parsed."""
    cache = {} if cache is None else cache
    files = list(files)
    todo = [(name, data) for name, data in files if _key(name, data) not in cache]
    problems: list[str] = []
    for i, (name, data) in enumerate(todo):
        if before:
            before(name, i, len(todo))
        try:
            cache[_key(name, data)] = load(data, name=name)
        except (DocumentError, MissingDependencyError) as e:  # a format whose extra is not installed
            problems.append(f"{name}: {e}" if isinstance(e, MissingDependencyError) else str(e))
    docs = [cache[k] for k in (_key(n, d) for n, d in files) if k in cache]
    return _unique_ids(docs), problems


def _key(name: str, data: bytes) -> str:
    return f"{name}\0{hashlib.sha256(data).hexdigest()}"


def _unique_ids(docs: list[Document]) -> list[Document]:
    """Same rule as `minions.documents.load_many`: report, report-2, ..."""
    seen: set[str] = set()
    out = []
    for doc in docs:
        new_id, n = doc.id, 2
        while new_id in seen:
            new_id, n = f"{doc.id}-{n}", n + 1
        seen.add(new_id)
        out.append(doc if new_id == doc.id else doc.model_copy(update={"id": new_id}))
    return out


def describe(doc: Document) -> str:
    n, ocr = len(doc.pages), len(doc.ocr_pages)
    return (f"{doc.title} · {n} page{'s' if n != 1 else ''} · {len(doc.text):,} characters"
            + (f" · {ocr} page{'s' if ocr != 1 else ''} read by OCR" if ocr else ""))


def render() -> list[Document]:
    """The document picker. Returns the loaded documents (possibly none)."""
    samples = list_samples()
    source = st.radio("Documents", [SAMPLE, UPLOAD], index=0 if samples else 1, horizontal=True,
                      key="doc_source", label_visibility="collapsed")
    if source == UPLOAD:
        uploaded = st.file_uploader(f"Upload documents ({', '.join(UPLOAD_TYPES)})", type=UPLOAD_TYPES,
                                    accept_multiple_files=True, key="uploads")
        files = [(f.name, f.getvalue()) for f in uploaded or []]
    elif samples:
        name = str(st.selectbox("Sample", [p.name for p in samples], key="sample"))  # never None: options given
        files = [(name, (SAMPLES_DIR / name).read_bytes())]
    else:
        st.info(f"No bundled samples in {SAMPLES_DIR}: upload files instead.")
        files = []
    if not files:
        st.info("Upload one or more documents (or pick a bundled sample) to start asking questions.")
        return []
    cache = st.session_state.setdefault("doc_cache", {})
    bar = None

    def before(name: str, i: int, n: int) -> None:
        nonlocal bar
        bar = bar or st.progress(0.0)
        bar.progress(i / n, text=f"Reading {name} ({i + 1} of {n})…")

    with st.spinner("Reading documents…"):
        docs, problems = load_files(files, cache, before)
    if bar is not None:
        bar.empty()
    for p in problems:
        st.error(f"Could not read a file: {safe_md(p)}")
    for d in docs:
        st.caption("📄 " + safe_md(describe(d)))
    # The files behind the documents, for the source view (a PDF's page is shown as rendered). Same
    # order as `docs`: load_files keeps the files that loaded, in order.
    loaded = [(n, data) for n, data in files if _key(n, data) in cache]
    st.session_state[FILES] = {d.id: f for d, f in zip(docs, loaded, strict=False)}
    return docs
