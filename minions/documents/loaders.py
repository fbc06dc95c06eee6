"""Loading paths, bytes and strings into Documents.

Every bad input raises DocumentError naming the file and the fix. Recoverable problems (a text file
that is not UTF-8) are recorded in `metadata["warnings"]`; documents never print.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from minions.documents import formats
from minions.documents.model import Document, content_id, default_title, slug
from minions.errors import DocumentError

KINDS: dict[str, str] = {".pdf": "pdf", ".txt": "text", ".text": "text", ".md": "markdown",
                         ".markdown": "markdown", ".html": "html", ".htm": "html", ".docx": "docx"}
SUPPORTED = ", ".join(KINDS)
# Suffixes that make a short string look like a file the user meant, not text to read.
_DOC_SUFFIXES = set(KINDS) | {".doc", ".rtf", ".odt", ".csv", ".tsv", ".json", ".xml", ".xls", ".xlsx",
                              ".ppt", ".pptx", ".epub", ".rst", ".log", ".png", ".jpg", ".jpeg", ".tif",
                              ".tiff", ".zip"}
_SUFFIX = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,7}$")
_MAX_PATH = 1024
_MD_TITLE = re.compile(r"^#[ \t]+(.+)$", re.M)

Source = str | Path | bytes


def load(source: Source, *, name: str | None = None, password: str | None = None) -> Document:
    """Load one document.

    source: a path (str or Path) to a .pdf/.txt/.md/.markdown/.html/.htm/.docx file; raw bytes, with
    `name` (e.g. "report.pdf") telling the type; or a string of text. A string that is not an existing
    file but looks like a path ("reports/q3.pdf") raises DocumentError rather than being read as text.
    password: for password-protected PDFs.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _load_bytes(bytes(source), name=name, password=password)
    if isinstance(source, os.PathLike):
        return _load_path(Path(source), password=password)
    if not isinstance(source, str):
        raise DocumentError(f"Cannot load a {type(source).__name__}: pass a file path, bytes or a string of "
                            "text.", source=repr(source)[:80])
    if _exists(source):
        return _load_path(Path(source).expanduser(), password=password)
    if looks_like_path(source):  # meant as a file, so say it is missing rather than index its name
        return _load_path(Path(source.strip()).expanduser(), password=password)
    if not source.strip():
        raise DocumentError("The text to load is empty: pass a non-empty string, a file path or bytes.",
                            source="<text>")
    text = _normalize_newlines(source)
    return Document.from_text(text, id=slug(Path(name).stem) if name else None,
                              title=Path(name).stem if name else None,
                              metadata={"format": "text", "warnings": []})


def load_many(sources: Iterable[Source], *, password: str | None = None) -> list[Document]:
    """Load several documents; ids are made unique ("report", "report-2", ...) within the call."""
    return unique_ids(load(source, password=password) for source in sources)


def unique_ids(documents: Iterable[Document]) -> list[Document]:
    """The documents, in order, with repeated ids suffixed ("report", "report-2", ...)."""
    docs: list[Document] = []
    seen: set[str] = set()
    for doc in documents:
        if doc.id in seen:
            n = 2
            while f"{doc.id}-{n}" in seen:
                n += 1
            doc = doc.model_copy(update={"id": f"{doc.id}-{n}"})
        seen.add(doc.id)
        docs.append(doc)
    return docs


def looks_like_path(text: str) -> bool:
    """Short, one line, ending in a file suffix: a file name the user meant, not text to read."""
    if "\n" in text or len(text) > _MAX_PATH or not _SUFFIX.search(text.strip()):
        return False
    stripped = text.strip()
    suffix = Path(stripped).suffix.lower()
    return suffix in _DOC_SUFFIXES or "/" in stripped or "\\" in stripped or " " not in stripped


def _exists(text: str) -> bool:
    if "\n" in text or "\0" in text or len(text) > _MAX_PATH:
        return False
    try:
        return Path(text).expanduser().exists()
    except (OSError, ValueError):  # e.g. a name too long for the file system
        return False


# --- paths and bytes -------------------------------------------------------------------------

def _load_path(path: Path, *, password: str | None) -> Document:
    where = str(path)
    if not path.exists():
        raise DocumentError(f"File not found: {where} (looked in {path.absolute().parent}). Check the "
                            "path and spelling; to load text rather than a file, pass a longer string.",
                            source=where)
    if path.is_dir():
        raise DocumentError(f"{where} is a directory, not a file: pass the files in it, e.g. "
                            f"load_many(sorted(Path({where!r}).glob('*.pdf'))).", source=where)
    kind = _kind(path.name, where)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"Cannot read {where}: {exc.strerror or exc}. Check its permissions.",
                            source=where) from exc
    return _parse(data, kind, source=where, stem=path.stem, password=password, size=len(data))


def _load_bytes(data: bytes, *, name: str | None, password: str | None) -> Document:
    label = f"<bytes{': ' + name if name else ''}>"
    if name:
        kind = _kind(name, label)
    else:  # sniff the two binary formats; anything else is text
        kind = "pdf" if data[:1024].lstrip().startswith(b"%PDF") else \
            "docx" if data.startswith(b"PK\x03\x04") and b"word/" in data[:4096] else "text"
    stem = Path(name).stem if name else None
    return _parse(data, kind, source="<bytes>", stem=stem, password=password, size=len(data), label=label)


def _kind(name: str, where: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix not in KINDS:
        raise DocumentError(f"Unsupported file type {suffix or '(no suffix)'!r} for {where}: supported types "
                            f"are {SUPPORTED}. Convert it to one of these, or pass its text as a string.",
                            source=where)
    return KINDS[suffix]


def _parse(data: bytes, kind: str, *, source: str, stem: str | None, password: str | None, size: int,
           label: str | None = None) -> Document:
    where = label or source
    if not data.strip():
        raise DocumentError(f"{where} is empty ({size} bytes" + (", only whitespace" if size else "") +
                            "): check that the file was fully written or downloaded.", source=source)
    warnings: list[str] = []
    meta: dict[str, Any] = {"format": kind, "size_bytes": size, "warnings": warnings}
    title: str | None = None
    if kind == "pdf":
        pages, pdf_meta = formats.read_pdf(data, where=where, password=password)
        warnings.extend(pdf_meta.pop("warnings", []))
        meta.update(pdf_meta)
        title = pdf_meta.get("pdf_title")
        doc_id = slug(stem) if stem else content_id(data)
        return Document.from_pages(pages, id=doc_id or content_id(data), title=title or stem or None,
                                   source=source, metadata=meta)
    if kind == "docx":
        text, title = formats.read_docx(io.BytesIO(data), where=where)
    elif kind == "html":
        text, title = formats.read_html(data)
    else:
        text = decode_text(data, where=where, warnings=warnings)
    text = _normalize_newlines(text)
    if kind == "markdown":  # a Markdown file's title is its first top-level heading
        heading = _MD_TITLE.search(text, 0, 4000)
        title = heading.group(1).strip() if heading else None
    if not text.strip():
        raise DocumentError(f"{where} has no text ({kind}): check that it is the file you meant.",
                            source=source)
    doc_id = (slug(stem) if stem else "") or content_id(data)
    return Document.from_text(text, id=doc_id, title=title or stem or default_title(text, doc_id),
                              source=source, metadata=meta)


def decode_text(data: bytes, *, where: str, warnings: list[str]) -> str:
    """UTF-8 (with or without BOM), UTF-16 with a BOM, else cp1252/latin-1 with a recorded warning."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8-sig")  # also plain UTF-8; drops a leading BOM
    except UnicodeDecodeError as exc:
        bad_at = exc.start
    try:
        text, used = data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        text, used = data.decode("latin-1", errors="replace"), "latin-1"
    warnings.append(f"{where} is not valid UTF-8 (first bad byte at offset {bad_at}); decoded it as {used}, "
                    "so some characters may be wrong. Re-save the file as UTF-8 to fix this.")
    return text


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text
