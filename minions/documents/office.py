"""Readers for the everyday formats beyond PDF/DOCX: spreadsheets (XLSX, CSV/TSV), slide decks (PPTX),
e-books (EPUB), OpenDocument text (ODT) and RTF.

Each returns page texts and a title. Spreadsheets become Markdown tables, one page per sheet, or per
`ROWS_PER_PAGE` rows with the header row repeated, so a chunk of a long sheet still names its columns.
A deck gives one page per slide, its speaker notes included; an e-book one page per spine document.

Safety, as for DOCX: zip archives are checked from their directory before anything inflates
(`check_archive`: per-member ratio, total size against the character limit, member count), XML
declaring entities is refused (billion laughs), spreadsheets stop at `MAX_CELLS` cells (padding
included: a single cell at XFD1048576 would otherwise mean 17 billion), text at `max_chars`.
XLSX, PPTX and RTF need the `formats` extra; CSV, EPUB and ODT use the standard library and
BeautifulSoup.
"""

from __future__ import annotations

import csv
import io
import posixpath
import re
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any
from xml.etree import ElementTree

from minions.documents.limits import DOCX_XML_BYTES_PER_CHAR, check_inflation, too_big
from minions.errors import DocumentError, MissingDependencyError

EXTRA = "formats"
#: rows of a sheet per page (each page repeats the header row)
ROWS_PER_PAGE = 200
#: cells read from one workbook or CSV, empty padding included, before it is refused
MAX_CELLS = 5_000_000
#: members in one archive before it is refused (a real deck or book has hundreds)
MAX_MEMBERS = 20_000
#: a cell's text is cut to this many characters in the table (the table stays readable)
MAX_CELL_CHARS = 2_000
_ENTITY = re.compile(rb"<!ENTITY", re.I)
_ENCRYPTED_TEXT = re.compile(rb"""URI=["'][^"']+\.x?html?["']""", re.I)

Pages = tuple[list[str], str | None]


# --- archives --------------------------------------------------------------------------------

def check_archive(data: bytes, *, where: str, max_chars: int | None, what: str) -> zipfile.ZipFile:
    """Open a zip-based document, refusing from its directory alone (nothing inflated) a zip bomb,
    more members than MAX_MEMBERS, or more XML than `max_chars` characters of text could need."""
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        members = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DocumentError(f"{where} could not be read as {what} ({type(exc).__name__}: {exc}): it is not a zip "
                            "archive, so it may be corrupt, truncated or another format renamed. Check that it "
                            "opens in its application and re-save it.", source=where) from exc
    if len(members) > MAX_MEMBERS:
        raise DocumentError(f"{where} hit a safety limit: {len(members):,} archive members (limit {MAX_MEMBERS:,}). "
                            "Re-save it from its application.", source=where)
    check_inflation(members, where, "its application")
    text_parts = [i for i in members if i.filename.lower().endswith((".xml", ".rels", ".xhtml", ".html", ".htm",
                                                                     ".opf", ".ncx"))]
    expanded = sum(i.file_size for i in text_parts)
    if max_chars is not None and expanded > DOCX_XML_BYTES_PER_CHAR * max_chars:
        raise too_big(where, f"its XML expands to {expanded:,} bytes (more than {DOCX_XML_BYTES_PER_CHAR} bytes "
                      "per allowed character)", max_chars, source=where)
    for i in text_parts:  # a DOCTYPE comes before the root element: its head is enough to look at
        with z.open(i) as f:
            head = f.read(8192)
        if _ENTITY.search(head):
            raise DocumentError(f"{where} hit a safety limit: its part {i.filename} declares XML entities, which "
                                "office documents never need and entity bombs use. Re-save it from its "
                                "application.", source=where)
    return z


def _read(z: zipfile.ZipFile, name: str, *, where: str) -> bytes:
    try:
        return z.read(name)
    except KeyError:
        raise DocumentError(f"{where} is missing its part {name}: it is damaged or not the format its name "
                            "says. Re-save it from its application.", source=where) from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:  # a damaged member (bad CRC, ...)
        raise DocumentError(f"{where} is damaged ({name}: {exc}). Re-save it from its application.",
                            source=where) from exc


# --- tables ----------------------------------------------------------------------------------

def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = " ".join(str(value).split()).replace("|", "\\|")
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


class _Cells:
    """Counts cells across a workbook; refuses past MAX_CELLS, and text past the character limit."""

    def __init__(self, where: str, max_chars: int | None):
        self.where, self.max_chars, self.cells, self.chars = where, max_chars, 0, 0

    def rows(self, rows: Iterable[Iterable[Any]]) -> Iterator[list[str]]:
        for row in rows:
            cells = []
            for value in row:
                self.cells += 1
                cells.append(_cell(value))
            if self.cells > MAX_CELLS:
                raise DocumentError(
                    f"{self.where} hit a safety limit: more than {MAX_CELLS:,} cells (empty padding counted). If "
                    "the sheet is real, split it or export the part you need to CSV.", source=self.where)
            while cells and not cells[-1]:
                cells.pop()
            self.chars += sum(len(c) + 3 for c in cells)
            if self.max_chars is not None and self.chars > self.max_chars:
                raise too_big(self.where, f"over {self.chars:,} characters of table text", self.max_chars,
                              source=self.where)
            yield cells


def table_pages(name: str, rows: Iterable[list[str]], *, label: str = "Sheet") -> list[str]:
    """Markdown table pages for one sheet: the first non-empty row is the header, repeated on every
    page; ROWS_PER_PAGE body rows a page. Empty rows are dropped; an empty sheet gives no page."""
    body = [r for r in rows if any(r)]
    if not body:
        return []
    width = max(len(r) for r in body)
    keep = [j for j in range(width) if any(j < len(r) and r[j] for r in body)]  # drop empty columns
    body = [[r[j] if j < len(r) else "" for j in keep] for r in body]
    header, body = body[0], body[1:]
    line = lambda cells: "| " + " | ".join(cells) + " |"  # noqa: E731
    head = [line(header), line(["---"] * len(header))]
    pages = []
    for start in range(0, max(len(body), 1), ROWS_PER_PAGE):
        part = body[start:start + ROWS_PER_PAGE]
        rows_note = f" (rows {start + 2}-{start + len(part) + 1})" if len(body) > ROWS_PER_PAGE else ""
        pages.append("\n".join([f"## {label}: {name}{rows_note}", "", *head, *map(line, part)]))
    return pages


def read_xlsx(data: bytes, *, where: str, max_chars: int | None = None) -> Pages:
    try:
        import openpyxl
    except ImportError as exc:
        raise MissingDependencyError("openpyxl", EXTRA) from exc
    check_archive(data, where=where, max_chars=max_chars, what="an .xlsx workbook").close()
    try:
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for damaged files
        raise DocumentError(f"{where} could not be read as an .xlsx workbook ({type(exc).__name__}: {exc}); it may "
                            "be corrupt or an old .xls renamed: re-save it from Excel as .xlsx.",
                            source=where) from exc
    cells = _Cells(where, max_chars)
    pages: list[str] = []
    try:
        for ws in wb.worksheets:
            if not hasattr(ws, "iter_rows"):  # a chart sheet
                continue
            pages += table_pages(ws.title, cells.rows(ws.iter_rows(values_only=True)))
        title = (wb.properties.title or "").strip() or None
    except DocumentError:
        raise
    except Exception as exc:
        raise DocumentError(f"{where} is damaged ({type(exc).__name__}: {exc}): re-save it from Excel.",
                            source=where) from exc
    finally:
        wb.close()
    return pages, title


def read_csv(text: str, *, where: str, name: str, delimiter: str | None = None,
             max_chars: int | None = None) -> Pages:
    """A CSV/TSV text as table pages. The delimiter is sniffed (, ; tab |) unless given."""
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(text[:65536], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    cells = _Cells(where, max_chars)
    try:
        pages = table_pages(name, cells.rows(csv.reader(io.StringIO(text), delimiter=delimiter)), label="Table")
    except csv.Error as exc:  # e.g. a field over csv.field_size_limit (128 KiB): not a table
        raise DocumentError(f"{where} could not be read as CSV ({exc}): check that it is a table of "
                            "delimited values, or load it as .txt.", source=where) from exc
    return pages, None


# --- slides ----------------------------------------------------------------------------------

def read_pptx(data: bytes, *, where: str, max_chars: int | None = None) -> Pages:
    """One page per slide: its title as a heading, text frames and tables in order, then its notes."""
    try:
        import pptx
    except ImportError as exc:
        raise MissingDependencyError("python-pptx", EXTRA) from exc
    check_archive(data, where=where, max_chars=max_chars, what="a .pptx deck").close()
    try:
        deck = pptx.Presentation(io.BytesIO(data))
        pages = [_slide_text(slide, n) for n, slide in enumerate(deck.slides, 1)]
        title = (deck.core_properties.title or "").strip() or None
    except DocumentError:
        raise
    except Exception as exc:
        raise DocumentError(f"{where} could not be read as a .pptx deck ({type(exc).__name__}: {exc}); it may be "
                            "corrupt or an old .ppt renamed: re-save it from PowerPoint as .pptx.",
                            source=where) from exc
    return pages, title


def _shape_texts(shapes: Iterable[Any]) -> Iterator[str]:
    for shape in shapes:
        if getattr(shape, "shape_type", None) == 6 and hasattr(shape, "shapes"):  # a group
            yield from _shape_texts(shape.shapes)
        elif getattr(shape, "has_table", False):
            rows = [[_cell(c.text) for c in row.cells] for row in shape.table.rows]
            if rows:
                yield "\n".join(["| " + " | ".join(rows[0]) + " |", "| " + " | ".join(["---"] * len(rows[0])) + " |",
                                 *("| " + " | ".join(r) + " |" for r in rows[1:])])
        elif getattr(shape, "has_text_frame", False) and shape.text_frame.text.strip():
            yield shape.text_frame.text.strip()


def _slide_text(slide: Any, n: int) -> str:
    title_shape = slide.shapes.title
    title = title_shape.text_frame.text.strip() if title_shape is not None and title_shape.has_text_frame else ""
    parts = [f"## Slide {n}" + (f": {' '.join(title.split())}" if title else "")]
    parts += [t for t in _shape_texts(slide.shapes) if t != title]
    if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
        notes = slide.notes_slide.notes_text_frame.text.strip()
        if notes:
            parts.append("Notes: " + notes)
    return "\n\n".join(parts)


# --- EPUB ------------------------------------------------------------------------------------

def read_epub(data: bytes, *, where: str, max_chars: int | None = None) -> Pages:
    """One page per document of the book's spine (its reading order), text as for HTML."""
    from minions.documents.formats import read_html

    z = check_archive(data, where=where, max_chars=max_chars, what="an .epub book")
    with z:
        if "META-INF/encryption.xml" in z.namelist() and _ENCRYPTED_TEXT.search(  # (obfuscated fonts are fine)
                _read(z, "META-INF/encryption.xml", where=where)):
            raise DocumentError(f"{where} is DRM-protected (its chapters are encrypted): export a DRM-free copy "
                                "from where you bought it, or load a PDF of it.", source=where)
        container = _xml(_read(z, "META-INF/container.xml", where=where), where=where)
        rootfile = next((e.get("full-path") for e in container.iter() if e.tag.endswith("rootfile")), None)
        if not rootfile:
            raise DocumentError(f"{where} names no package document in META-INF/container.xml: re-export the "
                                "book.", source=where)
        opf = _xml(_read(z, rootfile, where=where), where=where)
        base = posixpath.dirname(rootfile)
        manifest = {e.get("id"): e.get("href") for e in opf.iter() if e.tag.endswith("}item")}
        spine = [e.get("idref") for e in opf.iter() if e.tag.endswith("}itemref")]
        title = next((e.text.strip() for e in opf.iter() if e.tag.endswith("}title") and e.text and e.text.strip()),
                     None)
        pages, total = [], 0
        for idref in spine:
            href = manifest.get(idref)
            if not href:
                continue
            path = posixpath.normpath(posixpath.join(base, href.split("#")[0]))
            text, _ = read_html(_read(z, path, where=where))
            total += len(text)
            if max_chars is not None and total > max_chars:
                raise too_big(where, f"over {total:,} characters of text", max_chars, source=where)
            if text.strip():
                pages.append(text)
    return pages, title


def _xml(data: bytes, *, where: str) -> ElementTree.Element:
    if _ENTITY.search(data[:8192]):
        raise DocumentError(f"{where} declares XML entities, which documents never need and entity bombs use: "
                            "re-save it from its application.", source=where)
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise DocumentError(f"{where} has damaged XML ({exc}): re-save it from its application.",
                            source=where) from exc


# --- ODT -------------------------------------------------------------------------------------

_ODF_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
_ODF_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_ODF_OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"


def read_odt(data: bytes, *, where: str, max_chars: int | None = None) -> Pages:
    """Headings (as Markdown "#" lines), paragraphs, lists and tables of content.xml, in order."""
    z = check_archive(data, where=where, max_chars=max_chars, what="an .odt document")
    with z:
        root = _xml(_read(z, "content.xml", where=where), where=where)
        meta = _xml(z.read("meta.xml"), where=where) if "meta.xml" in z.namelist() else None
    body = root.find(f"{_ODF_OFFICE}body")
    blocks: list[str] = []
    _odf_blocks(body if body is not None else root, blocks)
    title = None
    if meta is not None:
        t = next((e.text for e in meta.iter() if e.tag.endswith("}title") and e.text), None)
        title = t.strip() if t and t.strip() else None
    return ["\n\n".join(b for b in blocks if b.strip())], title


def _odf_text(el: ElementTree.Element) -> str:
    """Text of a paragraph: <text:s c="n"/> spaces, tabs and line breaks kept; nested notes skipped."""
    out = [el.text or ""]
    for child in el:
        if child.tag == f"{_ODF_TEXT}s":
            out.append(" " * int(child.get(f"{_ODF_TEXT}c", "1") or 1))
        elif child.tag == f"{_ODF_TEXT}tab":
            out.append("\t")
        elif child.tag == f"{_ODF_TEXT}line-break":
            out.append("\n")
        elif child.tag != f"{_ODF_TEXT}note":
            out.append(_odf_text(child))
        out.append(child.tail or "")
    return "".join(out)


def _odf_blocks(el: ElementTree.Element, blocks: list[str]) -> None:
    """Headings, paragraphs and tables under `el` in document order (tables as "a | b" rows)."""
    for child in el:
        if child.tag == f"{_ODF_TEXT}h":
            level = min(int(child.get(f"{_ODF_TEXT}outline-level", "1") or 1), 6)
            blocks.append("#" * level + " " + _odf_text(child).strip())
        elif child.tag == f"{_ODF_TEXT}p":
            blocks.append(_odf_text(child).strip())
        elif child.tag == f"{_ODF_TABLE}table":
            rows = [[_cell(_odf_text(c)) for c in r.iter(f"{_ODF_TABLE}table-cell")]
                    for r in child.iter(f"{_ODF_TABLE}table-row")]
            blocks.append("\n".join(" | ".join(r) for r in rows if any(r)))
        else:
            _odf_blocks(child, blocks)


# --- RTF -------------------------------------------------------------------------------------

def read_rtf(text: str, *, where: str) -> Pages:
    try:
        from striprtf.striprtf import rtf_to_text
    except ImportError as exc:
        raise MissingDependencyError("striprtf", EXTRA) from exc
    if not text.lstrip().startswith("{\\rtf"):
        raise DocumentError(f"{where} is not RTF (it does not start with '{{\\rtf'): check that it is the file you "
                            "meant, or load it as .txt.", source=where)
    try:
        plain = rtf_to_text(text, errors="replace")
    except Exception as exc:
        raise DocumentError(f"{where} could not be read as RTF ({type(exc).__name__}: {exc}): re-save it from its "
                            "application.", source=where) from exc
    return [plain], None
