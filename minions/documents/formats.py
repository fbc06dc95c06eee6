"""Format readers: PDF (pypdf, page by page), HTML (BeautifulSoup, text only), DOCX (python-docx).

Headings in HTML and DOCX become Markdown "#" lines so the `sections` chunker works on them too.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import threading
import zipfile
from collections.abc import Iterator
from typing import Any

from minions.documents.limits import DOCX_XML_BYTES_PER_CHAR, check_inflation, too_big
from minions.errors import DocumentError, MissingDependencyError

_HTML_DROP = ("script", "style", "noscript", "template", "head", "svg", "iframe")
_HTML_BLOCKS = ("p", "div", "section", "article", "header", "footer", "main", "aside", "nav", "ul", "ol",
                "table", "tr", "blockquote", "pre", "figure", "figcaption", "dl", "dt", "dd", "form",
                "address", "hr")
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_BLANK_RUNS = re.compile(r"\n\s*\n(\s*\n)*")


# --- PDF -------------------------------------------------------------------------------------

class _Capture(logging.Handler):
    """Collects this thread's pypdf log records, so they land in metadata["warnings"] instead of
    reaching stderr through logging's last-resort handler (documents never print)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread and record.getMessage() not in self.messages:
            self.messages.append(record.getMessage())


@contextlib.contextmanager
def _pypdf_warnings() -> Iterator[list[str]]:
    logger, capture = logging.getLogger("pypdf"), _Capture()
    logger.addHandler(capture)
    try:
        yield capture.messages
    finally:
        logger.removeHandler(capture)


def read_pdf(data: bytes, *, where: str, password: str | None, max_chars: int | None = None
             ) -> tuple[list[str], dict[str, Any]]:
    """Page texts and metadata. Opens encrypted PDFs with the empty user password or `password`.
    Stops with DocumentError once the text passes `max_chars` characters. Pages without a text layer
    come back empty (the loader OCRs them, see minions.documents.ocr)."""
    with _pypdf_warnings() as messages:
        pages, meta = _read_pdf(data, where=where, password=password, max_chars=max_chars)
    _tables_as_markdown(data, pages, meta, password=password)
    if messages:
        meta.setdefault("warnings", []).extend(f"{where}: pypdf: {m}" for m in messages)
    return pages, meta


def _tables_as_markdown(data: bytes, pages: list[str], meta: dict[str, Any], *, password: str | None) -> None:
    """Pages holding tables re-read with one Markdown row per table row (the `pdf-tables` extra;
    without it pypdf's text stays). See minions.documents.pdf_tables."""
    from minions.documents import pdf_tables

    found = pdf_tables.table_pages(data, pages, password=password)
    for i, text in found.items():
        pages[i] = text
    if found:
        meta["table_pages"] = sorted(i + 1 for i in found)
    elif pdf_tables.backend() is None and pdf_tables.enabled() and any(map(pdf_tables.looks_tabular, pages)):
        meta.setdefault("warnings", []).append(
            "This PDF has tables, read without their columns: install the pdf-tables extra "
            "(pip install 'minions[pdf-tables]') to keep each table row on one line under its headers.")


def _safety_limit(where: str, exc: Exception, page: int | None = None) -> DocumentError:
    at = f" on page {page}" if page else ""
    return DocumentError(
        f"{where} hit a safety limit of the PDF reader{at} ({exc}): a stream decompresses to far more data "
        "than a document holds, as a decompression bomb does. If you trust the file, re-export it from its "
        "source (print to PDF) and load that.", source=where)


def _read_pdf(data: bytes, *, where: str, password: str | None, max_chars: int | None
              ) -> tuple[list[str], dict[str, Any]]:
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError, LimitReachedError

    try:
        reader = PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted
        if encrypted:
            try:
                opened = reader.decrypt(password or "")
            except DependencyError as exc:
                raise DocumentError(f"{where} is AES-encrypted and reading it needs the 'cryptography' "
                                    "package: pip install cryptography", source=where) from exc
            if opened == PasswordType.NOT_DECRYPTED:
                raise DocumentError(
                    f"{where} is password-protected and "
                    + ("the password given is wrong" if password else "no password was given")
                    + ": pass the right one, e.g. load(path, password='...').", source=where)
        n_pages = len(reader.pages)
    except DocumentError:
        raise
    except LimitReachedError as exc:
        raise _safety_limit(where, exc) from exc
    except Exception as exc:  # pypdf raises many types for damaged files
        raise DocumentError(f"{where} could not be read as a PDF ({type(exc).__name__}: {exc}); it may be "
                            "corrupt, truncated or not a PDF. Check that it opens in a PDF viewer, or "
                            "re-download / re-export it.", source=where) from exc
    if n_pages == 0:
        raise DocumentError(f"{where} is a PDF with no pages: re-export it from the original.", source=where)
    pages: list[str] = []
    failed: list[int] = []
    total = 0
    for i, page in enumerate(reader.pages):
        try:
            pages.append(page.extract_text() or "")
        except LimitReachedError as exc:  # not a damaged page: a bomb, say so (not "scanned")
            raise _safety_limit(where, exc, i + 1) from exc
        except Exception:  # one bad page should not lose the document
            pages.append("")
            failed.append(i + 1)
        total += len(pages[-1])
        if max_chars is not None and total > max_chars:
            raise too_big(where, f"over {total:,} characters of text in its first {i + 1} of {n_pages} pages",
                          max_chars, source=where)
    meta: dict[str, Any] = {"num_pages": n_pages, "encrypted": encrypted}
    if failed:
        meta["warnings"] = [f"{where}: could not extract text from page(s) {failed}; they are left empty."]
    try:
        title = reader.metadata.get("/Title") if reader.metadata else None
        if isinstance(title, str) and title.strip():
            meta["pdf_title"] = title.strip()
    except Exception:  # noqa: S110  broken metadata is not worth failing the document over
        pass
    return pages, meta


# --- HTML ------------------------------------------------------------------------------------

def read_html(data: bytes) -> tuple[str, str | None]:
    """Visible text with block structure kept as line breaks; title from <title> or the first <h1>."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else None
    for tag in soup.find_all(_HTML_DROP):
        tag.decompose()
    for tag in soup.find_all(["h1", "h2", "h3", "h4", "h5", "h6"]):
        title = title or tag.get_text(" ", strip=True)
        tag.insert_before("\n\n" + "#" * int(tag.name[1]) + " ")
        tag.insert_after("\n\n")
    for tag in soup.find_all("br"):
        tag.replace_with("\n")
    for tag in soup.find_all("li"):
        tag.insert_before("\n- ")
    for tag in soup.find_all(["td", "th"]):
        if tag.find_previous_sibling(["td", "th"]):
            tag.insert_before(" | ")
    for tag in soup.find_all(_HTML_BLOCKS):
        tag.insert_before("\n\n" if tag.name in ("p", "table", "pre", "blockquote") else "\n")
        tag.insert_after("\n")
    text = _SPACES.sub(" ", soup.get_text())
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip(), title or None


# --- DOCX ------------------------------------------------------------------------------------

def _check_archive(stream: io.BytesIO, *, where: str, max_chars: int) -> None:
    """Refuse a zip bomb, or XML past the size limit, from the zip directory alone (nothing is
    inflated). zipfile stops reading a member at its declared size, so a lying header cannot
    make python-docx read more than was checked here."""
    try:
        with zipfile.ZipFile(stream) as z:
            members = [i for i in z.infolist() if i.filename.endswith((".xml", ".rels"))]
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a zip: python-docx says so
    finally:
        stream.seek(0)
    check_inflation(members, where, "Word")
    expanded = sum(i.file_size for i in members)
    if expanded > DOCX_XML_BYTES_PER_CHAR * max_chars:
        raise too_big(where, f"its XML expands to {expanded:,} bytes (more than {DOCX_XML_BYTES_PER_CHAR} bytes "
                      "per allowed character)", max_chars, source=where)


def read_docx(stream: io.BytesIO, *, where: str, max_chars: int | None = None) -> tuple[str, str | None]:
    """Paragraphs and tables in document order; "Heading N" / "Title" styles become Markdown headings.
    With `max_chars`, refuses before parsing a zip bomb or an archive too large for that limit."""
    try:
        import docx
    except ImportError as exc:
        raise MissingDependencyError("python-docx", "docx") from exc
    if max_chars is not None:
        _check_archive(stream, where=where, max_chars=max_chars)
    try:
        document = docx.Document(stream)
    except Exception as exc:
        raise DocumentError(f"{where} could not be read as a .docx file ({type(exc).__name__}: {exc}); it may "
                            "be corrupt or an old .doc renamed: re-save it from Word as .docx.",
                            source=where) from exc
    blocks: list[str] = []
    for item in document.iter_inner_content():
        if hasattr(item, "rows"):  # a table: one line per row, cells separated by " | "
            rows = [" | ".join(cell.text.strip() for cell in row.cells) for row in item.rows]
            blocks.append("\n".join(rows))
            continue
        text = item.text.strip()
        if not text:
            continue
        style = (item.style.name if item.style is not None else "") or ""
        level = 1 if style == "Title" else int(style[8:]) if re.fullmatch(r"Heading [1-6]", style) else 0
        blocks.append("#" * level + " " + text if level else text)
    title = (document.core_properties.title or "").strip() or None
    return "\n\n".join(blocks), title
