"""Loading paths, bytes and strings into Documents.

Every bad input raises DocumentError naming the file and the fix. Recoverable problems (a text file
that is not UTF-8) are recorded in `metadata["warnings"]`; documents never print. Protocols copy
those warnings into `RunResult.warnings` at the start of a run.

Documents over the size limit (`max_chars`, see minions.documents.limits) are refused, before
they are read into memory where the file's size already says so.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from minions.documents import formats, ocr, office
from minions.documents.limits import MARKUP_BYTES_PER_CHAR, TEXT_BYTES_PER_CHAR, max_document_chars, too_big
from minions.documents.model import Document, content_id, default_title, slug
from minions.documents.ocr import ProgressHandler
from minions.errors import DocumentError

#: The loader registry: every suffix a document may have, and its kind. Every door (the CLI, the app's
#: uploader, serve's file parts, the MCP file listing) takes its accepted types from here.
KINDS: dict[str, str] = {".pdf": "pdf", ".txt": "text", ".text": "text", ".md": "markdown",
                         ".markdown": "markdown", ".html": "html", ".htm": "html", ".docx": "docx",
                         ".xlsx": "xlsx", ".xlsm": "xlsx", ".csv": "csv", ".tsv": "tsv", ".pptx": "pptx",
                         ".epub": "epub", ".odt": "odt", ".rtf": "rtf"}
SUPPORTED = ", ".join(KINDS)
#: Kinds read page by page (a PDF page, a sheet or N rows of one, a slide, a book's chapter).
_PAGED = {"xlsx": office.read_xlsx, "pptx": office.read_pptx, "epub": office.read_epub, "odt": office.read_odt}
#: Text-based kinds read into pages (decoded as text files are first).
_TEXT_PAGED = ("csv", "tsv", "rtf")
#: Zip-based kinds, told apart by their members' names when bytes come without a file name.
_ZIP_MARKERS = (("word/", "docx"), ("xl/", "xlsx"), ("ppt/", "pptx"), ("META-INF/container.xml", "epub"),
                ("content.xml", "odt"))
# Suffixes that make a short string look like a file the user meant, not text to read.
_DOC_SUFFIXES = set(KINDS) | {".doc", ".json", ".xml", ".xls", ".ppt", ".rst", ".log", ".png", ".jpg", ".jpeg",
                              ".tif", ".tiff", ".zip"}
_SUFFIX = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,7}$")
_MAX_PATH = 1024
_MD_TITLE = re.compile(r"^#[ \t]+(.+)$", re.M)

# Binary sniffing: a NUL early on, or many control characters, is not a text document.
_SNIFF_CHARS = 65_536
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f]")

Source = str | Path | bytes


def load(source: Source, *, name: str | None = None, password: str | None = None,
         max_chars: int | None = None, on_progress: ProgressHandler | None = None) -> Document:
    """Load one document.

    source: a path (str or Path) to a file of a type in `SUPPORTED` (.pdf, .docx, .xlsx, .csv, ...); raw bytes, with
    `name` (e.g. "report.pdf") telling the type; or a string of text. A string that is not an existing
    file but looks like a path ("reports/q3.pdf") raises DocumentError rather than being read as text;
    a short one-line string loaded as text carries a warning saying so. A Path is always a file.
    password: for password-protected PDFs.
    max_chars: refuse documents with more characters of text (default: see `max_document_chars`).
    on_progress: called with an `OcrProgress` event after each scanned PDF page is OCR'd (the
    `ocr` extra); the pages read that way are marked `PageSpan.ocr`.
    """
    limit = max_document_chars(max_chars)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _load_bytes(bytes(source), name=name, password=password, limit=limit, on_progress=on_progress)
    if isinstance(source, os.PathLike):
        return _load_path(Path(source), password=password, limit=limit, on_progress=on_progress)
    if not isinstance(source, str):
        raise DocumentError(f"Cannot load a {type(source).__name__}: pass a file path, bytes or a string of "
                            "text.", source=repr(source)[:80])
    if _exists(source):
        return _load_path(Path(source).expanduser(), password=password, limit=limit, on_progress=on_progress)
    if looks_like_path(source):  # meant as a file, so say it is missing rather than index its name
        return _load_path(Path(source.strip()).expanduser(), password=password, limit=limit, from_string=True,
                          on_progress=on_progress)
    if not source or source.isspace():  # (not strip(): that would copy a long text)
        raise DocumentError("The text to load is empty: pass a non-empty string, a file path or bytes.",
                            source="<text>")
    if len(source) > limit:
        raise too_big("The text", f"{len(source):,} characters", limit, source="<text>")
    warnings: list[str] = []
    if len(source) <= _MAX_PATH and "\n" not in source.strip():
        # One short line: perhaps a file name with a typo. Loading it as text is the documented
        # behaviour, so say so where the user will see it (RunResult.warnings, the CLI).
        warnings.append(f"{source.strip()[:80]!r} is not an existing file, so it was read as the text of the "
                        "document; pass a pathlib.Path to require a file.")
    text = check_text(_normalize_newlines(source), where="The text", source="<text>", warnings=warnings)
    return Document.from_text(text, id=slug(Path(name).stem) if name else None,
                              title=Path(name).stem if name else None,
                              metadata={"format": "text", "warnings": warnings})


def load_many(sources: Iterable[Source], *, password: str | None = None,
              max_chars: int | None = None, on_progress: ProgressHandler | None = None) -> list[Document]:
    """Load several documents; ids are made unique ("report", "report-2", ...) within the call.
    `max_chars` applies to each document."""
    return unique_ids(load(source, password=password, max_chars=max_chars, on_progress=on_progress)
                      for source in sources)


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
    try:  # lexists: a broken or looping symlink is a file the user meant, to be reported as such
        return os.path.lexists(Path(text).expanduser())
    except (OSError, ValueError):  # e.g. a name too long for the file system
        return False


# --- paths and bytes -------------------------------------------------------------------------

def _load_path(path: Path, *, password: str | None, limit: int, from_string: bool = False,
               on_progress: ProgressHandler | None = None) -> Document:
    where = str(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise _stat_error(path, exc, from_string=from_string) from None
    if path.is_dir():
        raise DocumentError(f"{where} is a directory, not a file: pass the files in it, e.g. "
                            f"load_many(sorted(Path({where!r}).glob('*.pdf'))).", source=where)
    _check_regular(st, where)  # a FIFO would block forever, /dev/zero would never end
    kind = _kind(path.name, where)
    _check_size(st.st_size, kind, where=where, limit=limit)
    try:  # the holder is the only reference, so _parse can free the bytes once they are decoded
        holder = [_read_regular(path, where)]
    except OSError as exc:
        raise DocumentError(f"Cannot read {where}: {exc.strerror or exc}. Check its permissions.",
                            source=where) from exc
    return _parse(holder, kind, source=where, stem=path.stem, password=password, size=len(holder[0]),
                  limit=limit, on_progress=on_progress)


def _check_regular(st: os.stat_result, where: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else "a device" if
                stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a socket" if
                stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise DocumentError(f"{where} is {kind}, not a regular file: only regular files are read. Copy its "
                            "contents to a file and pass that.", source=where)


def _read_regular(path: Path, where: str) -> bytes:
    """The bytes of `path`, opened without blocking and checked again on the open descriptor, so a
    file swapped for a FIFO or a device after the first check is still refused, never read."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(fd, "rb") as f:
        _check_regular(os.fstat(fd), where)
        return f.read()


def _stat_error(path: Path, exc: OSError, *, from_string: bool) -> DocumentError:
    where = str(path)
    if exc.errno == errno.ELOOP:
        return DocumentError(f"{where} is a symlink loop (a link that leads back to itself): fix or remove "
                             f"the link (see `ls -l {where}`), or pass the file it should point to.",
                             source=where)
    if path.is_symlink():
        return DocumentError(f"{where} is a symbolic link to {os.readlink(path)}, which does not exist: fix "
                             "the link or pass the real file.", source=where)
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        hint = "; to load text rather than a file, pass a longer string" if from_string else ""
        return DocumentError(f"File not found: {where} (looked in {path.absolute().parent}). Check the path "
                             f"and spelling{hint}.", source=where)
    return DocumentError(f"Cannot open {where}: {exc.strerror or exc}. Check the path and its permissions.",
                         source=where)


def _check_size(size: int, kind: str, *, where: str, limit: int) -> None:
    """Refuse, before reading, a file that cannot fit the character limit."""
    per_char = {"text": TEXT_BYTES_PER_CHAR, "markdown": TEXT_BYTES_PER_CHAR, "csv": TEXT_BYTES_PER_CHAR, "tsv": TEXT_BYTES_PER_CHAR,
                "html": MARKUP_BYTES_PER_CHAR, "rtf": MARKUP_BYTES_PER_CHAR}.get(kind)
    if per_char and size > per_char * limit:
        raise too_big(where, f"{size:,} bytes of {kind}", limit, source=where)


def _load_bytes(data: bytes, *, name: str | None, password: str | None, limit: int,
                on_progress: ProgressHandler | None = None) -> Document:
    label = f"<bytes{': ' + name if name else ''}>"
    if name:
        kind = _kind(name, label)
    else:  # sniff the binary formats; anything else is text
        kind = _sniff(data)
    _check_size(len(data), kind, where=label, limit=limit)
    stem = Path(name).stem if name else None
    return _parse([data], kind, source="<bytes>", stem=stem, password=password, size=len(data), label=label,
                  limit=limit, on_progress=on_progress)


def _sniff(data: bytes) -> str:
    if data[:1024].lstrip().startswith(b"%PDF"):
        return "pdf"
    if data.startswith(b"{\\rtf"):
        return "rtf"
    if data.startswith(b"PK\x03\x04"):
        try:
            names = zipfile.ZipFile(io.BytesIO(data)).namelist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            return "text"  # refused as binary data
        return next((kind for marker, kind in _ZIP_MARKERS if any(n.startswith(marker) for n in names)), "text")
    return "text"


def _kind(name: str, where: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix not in KINDS:
        raise DocumentError(f"Unsupported file type {suffix or '(no suffix)'!r} for {where}: supported types "
                            f"are {SUPPORTED}. Convert it to one of these, or pass its text as a string.",
                            source=where)
    return KINDS[suffix]


def _parse(holder: list[bytes], kind: str, *, source: str, stem: str | None, password: str | None, size: int,
           limit: int, label: str | None = None, on_progress: ProgressHandler | None = None) -> Document:
    """Parse the bytes in `holder` (a one-item list, emptied once they are no longer needed, so a
    large text file is never held as bytes and text and a copy at once)."""
    where = label or source
    data = holder[0]
    if not data or data.isspace():
        raise DocumentError(f"{where} is empty ({size} bytes" + (", only whitespace" if size else "") +
                            "): check that the file was fully written or downloaded.", source=source)
    warnings: list[str] = []
    meta: dict[str, Any] = {"format": kind, "size_bytes": size, "warnings": warnings}
    title: str | None = None
    fallback_id = "" if stem and slug(stem) else content_id(data)
    doc_id = (slug(stem) if stem else "") or fallback_id
    if kind == "pdf":
        pages, pdf_meta = formats.read_pdf(data, where=where, password=password, max_chars=limit)
        warnings.extend(pdf_meta.pop("warnings", []))
        meta.update(pdf_meta)
        ocred = ocr.ocr_pages(data, pages, where=where, password=password, on_progress=on_progress,
                              warnings=warnings)
        _check_pages(pages, kind, where=where, source=source, limit=limit)
        return Document.from_pages(pages, id=doc_id, title=pdf_meta.get("pdf_title") or stem or None, source=source,
                                   metadata=meta, ocr_pages=ocred)
    if kind in _PAGED or kind in _TEXT_PAGED:
        if kind in _PAGED:
            pages, title = _PAGED[kind](data, where=where, max_chars=limit)
        else:
            text = check_text(_normalize_newlines(decode_text(data, where=where, warnings=warnings)), where=where,
                              source=source, warnings=warnings)
            pages, title = office.read_rtf(text, where=where) if kind == "rtf" else office.read_csv(
                text, where=where, name=stem or "table", max_chars=limit, delimiter="\t" if kind == "tsv" else None)
        holder.clear()
        del data
        pages = [_normalize_newlines(p).strip() for p in pages]
        _check_pages(pages, kind, where=where, source=source, limit=limit)
        return Document.from_pages([p for p in pages if p], id=doc_id, title=title or stem or None, source=source,
                                   metadata=meta)
    if kind == "docx":
        text, title = formats.read_docx(io.BytesIO(data), where=where, max_chars=limit)
    elif kind == "html":
        text, title = formats.read_html(data)
    else:
        if b"\0" in data[:8000] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
            check_text(data[:8000].decode("latin-1"), where=where, source=source, warnings=warnings)  # refuses
        text = decode_text(data, where=where, warnings=warnings)
    holder.clear()
    del data
    if len(text) > limit:
        raise too_big(where, f"{len(text):,} characters of text", limit, source=source)
    text = check_text(_normalize_newlines(text), where=where, source=source, warnings=warnings)
    if kind == "markdown":  # a Markdown file's title is its first top-level heading
        heading = _MD_TITLE.search(text, 0, 4000)
        title = heading.group(1).strip() if heading else None
    if not text or text.isspace():
        raise DocumentError(f"{where} has no text ({kind}): check that it is the file you meant.",
                            source=source)
    return Document.from_text(text, id=doc_id, title=title or stem or default_title(text, doc_id),
                              source=source, metadata=meta)


def _check_pages(pages: list[str], kind: str, *, where: str, source: str, limit: int) -> None:
    """A paged document must have some text, and no more than the limit."""
    total = sum(len(p) for p in pages)
    if total > limit:
        raise too_big(where, f"{total:,} characters of text", limit, source=source)
    if not any(p.strip() for p in pages):
        what = f"in its {len(pages)} page(s)" if kind == "pdf" else f"({kind})"
        raise DocumentError(f"{where} has no text {what}: check that it is the file you meant"
                            + (" (a scanned page with no text found by OCR is blank or unreadable)" if kind == "pdf"
                               else "") + ".", source=source)


def check_text(text: str, *, where: str, source: str, warnings: list[str]) -> str:
    """Refuse binary data loaded as text; drop stray NUL characters with a warning.

    Like git and grep: a NUL in the first 8,000 characters, NULs in more than 1% of the text, or
    more than 10% control characters in the first 64K characters mean it is not a text document.
    """
    nul = text.count("\0")
    sample = text[:_SNIFF_CHARS]
    controls = len(_CONTROL_CHARS.findall(sample))
    if "\0" in text[:8000] or nul * 100 > len(text) or controls * 10 > len(sample):
        raise DocumentError(
            f"{where} looks like binary data, not text ({nul:,} NUL and {controls:,} other control "
            f"characters in its first {len(sample):,}): check that it is the file you meant. A document in "
            f"another format must be converted to one of {SUPPORTED}; UTF-16 text without a byte-order mark "
            "must be re-saved as UTF-8.", source=source)
    if nul:
        warnings.append(f"{where} contains {nul:,} NUL character(s); they were removed.")
        text = text.replace("\0", "")
    return text


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
