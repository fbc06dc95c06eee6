"""Tables kept as tables: PDF pages whose text holds a table are re-read from their character
positions, and each table row comes out on one line as a Markdown row under its column headers.

Financial statements are drawn cell by cell. pypdf's text puts a row's label, its "$" and each
year's value on separate lines (3M 2018 10-K: "Purchases of property, plant and equipment (PP&E)",
"$", "(1,577)"), so nothing ties a figure to its year. Here the page's words, with their positions,
are grouped into visual lines; runs of lines whose right-hand cells are figures become a table whose
columns are the clusters of those figures' right edges; the lines just above that align with the
columns ("2018 2017 2016", "Three Months Ended") become its header row:

    | (Millions) | 2018 | 2017 | 2016 |
    | --- | --- | --- | --- |
    | Purchases of property, plant and equipment (PP&E) | (1,577) | (1,373) | (1,420) |

Positions come from pypdfium2 (Apache-2.0/BSD-3, in the `pdf-tables` extra; ~20 ms a page), or from
pdfplumber if that is what is installed. Only pages whose pypdf text looks like a table (many
figures) are re-read; every other page keeps pypdf's text, so prose, two-column papers and the
cost of plain documents are unchanged. `minions.documents.formats.read_pdf` calls `table_pages`.
The chunkers keep these rows whole and repeat the header row (see minions.documents.chunking).
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any

# A figure as statements print it: 1,577  (1,577)  $5,363  12.5%  -3.2  — (nil)  n/m.
_FIGURE = re.compile(r"^[(\[]?[-−–+]?[$€£¥]?\s?[(]?[-−–+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?[)]?\s?[%x×)]?[)\]]?$")
_DASHES = {"—", "–", "-", "−", "——", "--", "n/a", "N/A", "n/m", "NM", "nm", "*"}
_YEAR = re.compile(r"^(?:FY\s?)?(?:19|20)\d\d[A-Za-z]?$")
_CURRENCY = {"$", "€", "£", "¥", "US$"}
_DIGIT = re.compile(r"\d")
# Figures as they sit in text: 1,577  (1,577)  12.5  (0.1)%  (373)  $ 58; and lines that are one figure.
_FIGURE_TOKEN = re.compile(r"(?<![\w.])[($]?\d{1,3}(?:,\d{3})+(?:\.\d+)?\)?|(?<![\w.])\(?\d+\.\d+\)?%?"
                           r"|(?<![\w.])\(\d+\)(?![\w])|\$\s?\d+|^[ \t]*\d+[ \t]*$", re.M)
MIN_FIGURES = 12  # figures in pypdf's page text before a page is worth re-reading
_DISABLE_ENV = "MINIONS_PDF_TABLES"  # "0" turns table extraction off
# PDFium is not thread-safe (pypdfium2's docs): the app and `minions serve` load files from several
# threads, so every use of it holds this lock (the app's page rendering too).
PDFIUM_LOCK = threading.Lock()


@dataclass
class Word:
    x0: float
    x1: float
    top: float
    bottom: float
    text: str


@dataclass
class Cell:
    x0: float
    x1: float
    text: str

    @property
    def is_figure(self) -> bool:
        return is_figure(self.text)


@dataclass
class Line:
    top: float
    bottom: float
    cells: list[Cell]

    @property
    def height(self) -> float:
        return self.bottom - self.top


@dataclass
class Table:
    header: list[str]          # one entry per column, label column first
    rows: list[list[str]]      # label, then one value per column ("" if none)

    def markdown(self) -> str:
        def row(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"
        out = [row(self.header), "| " + " | ".join("---" for _ in self.header) + " |"]
        out += [row(r) for r in self.rows]
        return "\n".join(out)


def is_figure(text: str) -> bool:
    t = text.strip()
    if not t:
        return False
    if t in _DASHES or t in _CURRENCY or t.lstrip("$€£¥(").rstrip(")").strip() in _DASHES:
        return True
    return bool(_DIGIT.search(t)) and bool(_FIGURE.match(t.replace(" ", "")))


def is_year(text: str) -> bool:
    return bool(_YEAR.match(text.strip()))


def looks_tabular(text: str) -> bool:
    """Cheap test on pypdf's page text: enough figures that the page may hold a table."""
    return len(_FIGURE_TOKEN.findall(text)) >= MIN_FIGURES


def enabled() -> bool:
    return os.environ.get(_DISABLE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


# --- words from a backend ----------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def backend() -> str | None:
    """The installed position backend: "pdfium" (preferred, fast), "pdfplumber", or None."""
    try:
        import pypdfium2  # noqa: F401
        return "pdfium"
    except ImportError:
        pass
    try:
        import pdfplumber  # noqa: F401
        return "pdfplumber"
    except ImportError:
        return None


def words_from_chars(chars: Iterable[tuple[str, float, float, float, float]]) -> list[Word]:
    """(char, x0, x1, top, bottom) in content order -> words: a new word at whitespace, a line change
    or a horizontal gap over a quarter of the font height."""
    words: list[Word] = []
    cur: list[Any] | None = None  # [x0, x1, top, bottom, [chars]]
    for ch, x0, x1, top, bottom in chars:
        if ch.isspace() or x1 <= x0 and bottom <= top:
            if cur:
                words.append(Word(cur[0], cur[1], cur[2], cur[3], "".join(cur[4])))
            cur = None
            continue
        if cur is not None:
            h = max(cur[3] - cur[2], bottom - top, 1.0)
            mid = (top + bottom) / 2
            same_line = cur[2] - h * 0.3 <= mid <= cur[3] + h * 0.3
            if not same_line or x0 - cur[1] > 0.25 * h or x0 < cur[0] - 0.5:
                words.append(Word(cur[0], cur[1], cur[2], cur[3], "".join(cur[4])))
                cur = None
        if cur is None:
            cur = [x0, x1, top, bottom, [ch]]
        else:
            cur[1] = max(cur[1], x1)
            cur[2], cur[3] = min(cur[2], top), max(cur[3], bottom)
            cur[4].append(ch)
    if cur:
        words.append(Word(cur[0], cur[1], cur[2], cur[3], "".join(cur[4])))
    return words


def pdfium_words(page: Any) -> list[Word]:
    """Words of a pypdfium2 PdfPage (y measured down from the top, as pdfplumber does)."""
    height = page.get_height()
    textpage = page.get_textpage()
    try:
        n = textpage.count_chars()
        text = textpage.get_text_range(0, n) if n else ""
        if len(text) != n:  # pdfium's text and char indices disagree: read char by char
            text = "".join(textpage.get_text_range(i, 1) or " " for i in range(n))
        chars = []
        for i, ch in enumerate(text):
            x0, y0, x1, y1 = textpage.get_charbox(i, loose=True)
            chars.append((ch, x0, x1, height - y1, height - y0))
    finally:
        textpage.close()
    return words_from_chars(chars)


def pdfplumber_words(page: Any) -> list[Word]:
    return [Word(w["x0"], w["x1"], w["top"], w["bottom"], w["text"])
            for w in page.extract_words(x_tolerance=1.5, keep_blank_chars=False, use_text_flow=False)]


# --- layout analysis ---------------------------------------------------------------------------

def group_lines(words: Sequence[Word]) -> list[Line]:
    """Words into visual lines, each line's words merged into cells: words closer than ~0.8 of the
    font height are one cell ("Net income"), figures only across a plain space ("1,577" and "2,023"
    stay two cells); a "$" joins the figure after it; superscript footnote marks after figures go."""
    if not words:
        return []
    rows: list[list[Word]] = []
    keys: list[tuple[float, float]] = []  # (middle, height) of each row's first full-size word
    for w in sorted(words, key=lambda w: ((w.top + w.bottom) / 2, w.x0)):
        mid, h = (w.top + w.bottom) / 2, w.bottom - w.top
        if rows:
            key_mid, key_h = keys[-1]
            small = h < 0.8 * key_h
            if abs(mid - key_mid) < (0.6 if small else 0.35) * max(key_h, 1.0):
                rows[-1].append(w)
                if h > 1.2 * key_h:  # the row's first word was a superscript: key on this one
                    keys[-1] = (mid, h)
                continue
        rows.append([w])
        keys.append((mid, h))
    rows = _merge_marks(rows)
    lines: list[Line] = []
    for row in rows:
        row.sort(key=lambda w: w.x0)
        h = median(w.bottom - w.top for w in row) or 1.0
        cells: list[Cell] = []
        for w in row:
            gap = w.x0 - cells[-1].x1 if cells else 0.0
            if cells and w.bottom - w.top < 0.85 * h and len(w.text) <= 4 and gap < 0.5 * h:
                # A footnote mark ("0.29 ³", "projects⁽¹⁾"): dropped from a figure, kept on a label
                # and as an ordinal ("1st").
                if not cells[-1].is_figure or w.text.isalpha():
                    cells[-1].text += w.text
                    cells[-1].x1 = max(cells[-1].x1, w.x1)
                continue
            if cells and w.text in ("%", ")", "%)") and gap < 0.5 * h:
                cells[-1].text += w.text
                cells[-1].x1 = max(cells[-1].x1, w.x1)
                continue
            figure = is_figure(w.text) or w.text in _CURRENCY or (cells and cells[-1].text in _CURRENCY)
            if cells and gap < (0.35 if figure else 0.8) * h:
                cells[-1].x1 = max(cells[-1].x1, w.x1)
                cells[-1].text += " " + w.text
            else:
                cells.append(Cell(w.x0, w.x1, w.text))
        line = Line(min(w.top for w in row), max(w.bottom for w in row), _fix_cells(cells))
        prev = lines[-1] if lines else None
        if prev is not None and line.top < prev.bottom - 0.1 * prev.height and _only_label(prev) \
                and all(c.is_figure for c in line.cells) and line.cells[0].x0 > prev.cells[-1].x1:
            # Figures set a little lower than their label (a taller ruled row): one row.
            prev.cells += line.cells
            prev.bottom = max(prev.bottom, line.bottom)
            continue
        lines.append(line)
    return lines


def _merge_marks(rows: list[list[Word]]) -> list[list[Word]]:
    """A row of one or two short words (a raised footnote mark, a superscript) that overlaps a
    neighbouring row by half its height belongs to that row."""
    def span(row: list[Word]) -> tuple[float, float]:
        return min(w.top for w in row), max(w.bottom for w in row)

    def overlap(a: list[Word], b: list[Word]) -> float:
        (t1, b1), (t2, b2) = span(a), span(b)
        return max(0.0, min(b1, b2) - max(t1, t2)) / max(b1 - t1, 1e-6)

    out: list[list[Word]] = []
    i = 0
    while i < len(rows):
        row = rows[i]
        if len(row) <= 2 and all(len(w.text) <= 4 for w in row):
            before = overlap(row, out[-1]) if out else 0.0
            after = overlap(row, rows[i + 1]) if i + 1 < len(rows) else 0.0
            if max(before, after) >= 0.5:
                if before >= after:
                    out[-1] = out[-1] + row
                else:
                    rows[i + 1] = row + rows[i + 1]
                i += 1
                continue
        out.append(row)
        i += 1
    return out


def _only_label(line: Line) -> bool:
    return bool(line.cells) and not any(c.is_figure for c in line.cells)


def _fix_cells(cells: list[Cell]) -> list[Cell]:
    """A lone currency sign joins the figure after it; a lone "%" or ")" joins the one before."""
    out: list[Cell] = []
    pending: Cell | None = None
    for c in cells:
        t = c.text.strip()
        if t in _CURRENCY:
            pending = c
            continue
        if pending is not None:
            if is_figure(t):
                c = Cell(pending.x0, c.x1, pending.text.strip() + t)
            else:
                out.append(pending)
            pending = None
        if t in ("%", ")", "%)") and out and out[-1].is_figure:
            out[-1] = Cell(out[-1].x0, c.x1, out[-1].text + t)
            continue
        out.append(c)
    if pending is not None:
        out.append(pending)
    return out


def _split(line: Line) -> tuple[list[Cell], list[Cell]]:
    """Label cells (left) and figure cells (the trailing run of figures)."""
    i = len(line.cells)
    while i > 0 and line.cells[i - 1].is_figure:
        i -= 1
    return line.cells[:i], line.cells[i:]


def _is_data(line: Line) -> bool:
    labels, figures = _split(line)
    if not figures or not any(_DIGIT.search(c.text) for c in figures):
        return False
    if not labels and all(is_year(c.text) for c in figures):
        return False  # "2018 2017 2016": a header
    if labels and all(is_year(c.text) for c in figures) and len(figures) >= 2:
        return False  # "(Millions) 2018 2017 2016"
    # a prose line ending in a number ("... in 2018.") has one figure and a long label
    return len(figures) >= 2 or (len(figures) == 1 and len(" ".join(c.text for c in labels)) < 120
                                 and (not labels or figures[0].x0 - labels[-1].x1 > 2 * line.height))


def _columns(data: Sequence[Line]) -> list[tuple[float, float]]:
    """Column spans [x0, x1] from the figure cells of the data lines, clustered by right edge."""
    cells = sorted((c for line in data for c in _split(line)[1]), key=lambda c: c.x1)
    if not cells:
        return []
    h = median(line.height for line in data) or 8.0
    groups: list[list[Cell]] = [[cells[0]]]
    for c in cells[1:]:
        if c.x1 - groups[-1][-1].x1 > 1.2 * h:
            groups.append([c])
        else:
            groups[-1].append(c)
    # Two clusters that overlap and never share a line are one column whose figures end differently
    # ("16.2%" under "100.0"): merge them.
    line_of = {id(c): k for k, line in enumerate(data) for c in _split(line)[1]}
    merged: list[list[Cell]] = [groups[0]]
    for g in groups[1:]:
        prev = merged[-1]
        overlap = min(c.x0 for c in g) < max(c.x1 for c in prev)
        shared = {line_of[id(c)] for c in prev} & {line_of[id(c)] for c in g}
        if overlap and not shared:
            prev.extend(g)
        else:
            merged.append(g)
    return [(min(c.x0 for c in g), max(c.x1 for c in g)) for g in merged]


def _column_of(cell: Cell, cols: Sequence[tuple[float, float]]) -> int:
    best, best_d = 0, float("inf")
    for j, (x0, x1) in enumerate(cols):
        d = abs(cell.x1 - x1)
        if cell.x1 < x0 or cell.x0 > x1:
            d += min(abs(cell.x1 - x0), abs(cell.x0 - x1))
        if d < best_d:
            best, best_d = j, d
    return best


def _header_cells(line: Line, cols: Sequence[tuple[float, float]], label_right: float
                  ) -> tuple[list[str], str] | None:
    """Texts per column for a header line, plus its label-column text; None if it is not one."""
    per_col = [""] * len(cols)
    label = ""
    hits = 0
    for k, c in enumerate(line.cells):
        if c.x0 < label_right - line.height and c.x1 > cols[0][0] + 2:
            return None  # a title or caption running from the label area over the columns
        heads_column = k > 0 and is_year(c.text)  # "(Millions)  2022" set a little left of its column
        if c.x1 <= label_right + 1 and c.x1 < cols[0][0] and not heads_column:
            label = (label + " " + c.text).strip()
            continue
        spanned = [j for j, (x0, x1) in enumerate(cols) if c.x0 - 2 <= (x0 + x1) / 2 <= c.x1 + 2 or
                   x0 - 2 <= c.x0 <= x1 + 2 or x0 - 2 <= c.x1 <= x1 + 2]
        if not spanned:
            if c.x1 < cols[0][0] and not heads_column:
                label = (label + " " + c.text).strip()
                continue
            # Between columns ("to Sales" over a narrow percent column): the nearest column, if close.
            centre = (c.x0 + c.x1) / 2
            j = min(range(len(cols)), key=lambda j: abs((cols[j][0] + cols[j][1]) / 2 - centre))
            if abs((cols[j][0] + cols[j][1]) / 2 - centre) > 2 * max(c.x1 - c.x0, cols[j][1] - cols[j][0]):
                return None
            spanned = [j]
        hits += 1
        for j in spanned:
            per_col[j] = (per_col[j] + " " + c.text).strip()
    if not hits and not label or len(line.cells) > len(cols) + 2:
        return None
    return per_col, label


def find_tables(lines: Sequence[Line]) -> list[tuple[int, int, Table]]:
    """Tables in a page's lines, as (first line, end line, table)."""
    out: list[tuple[int, int, Table]] = []
    i, n = 0, len(lines)
    prev_end = 0
    while i < n:
        if not _is_data(lines[i]):
            i += 1
            continue
        # Extend over data lines, allowing up to 2 label-only lines between them (headings, wrapped labels).
        j, last_data = i, i
        while j + 1 < n:
            gap = lines[j + 1].top - lines[j].bottom
            if gap > 3 * max(lines[j].height, 1.0):
                break
            if _is_data(lines[j + 1]):
                last_data = j + 1
            elif j + 1 - last_data > 2 or len(_split(lines[j + 1])[0]) > 1 and _wide(lines[j + 1], lines):
                break
            j += 1
        data = [ln for ln in lines[i:last_data + 1] if _is_data(ln)]
        if len(data) < 2:
            i = last_data + 1
            continue
        cols = _columns(data)
        label_right = min(c.x0 for c in (_split(ln)[1][0] for ln in data)) - 1
        # Header lines: up to 5 lines above, aligned with the columns, stopping at prose or a big gap.
        # Label-only lines between the header and the first figures ("Cash Flows from Operating
        # Activities") join the table as rows once a header is found above them.
        header_lines: list[tuple[list[str], str]] = []
        start = i
        k = i - 1
        pending = i
        while k >= prev_end and i - k <= 5:
            if lines[k + 1].top - lines[k].bottom > 2.5 * max(lines[k].height, 1.0):
                break
            got = _header_cells(lines[k], cols, label_right)
            if got is None:
                break
            if not any(got[0]):  # label only
                if header_lines:
                    break  # a caption above the header ("Years ended December 31")
                pending = k
                k -= 1
                continue
            header_lines.insert(0, got)
            start = k
            k -= 1
        first = pending if header_lines else i
        header = [" ".join(h[1] for h in header_lines if h[1]).strip()]
        header += [" ".join(h[0][j] for h in header_lines if h[0][j]).strip() for j in range(len(cols))]
        rows: list[list[str]] = []
        for ln in lines[first:last_data + 1]:
            labels, figures = _split(ln) if _is_data(ln) else (ln.cells, [])
            row = [" ".join(c.text for c in labels)] + [""] * len(cols)
            for c in figures:
                j = _column_of(c, cols)
                row[j + 1] = (row[j + 1] + " " + c.text).strip()
            if rows and _continues(rows[-1], row):  # a label wrapped onto this line: one row
                row[0] = rows.pop()[0] + " " + row[0]
            rows.append(row)
        out.append((start, last_data + 1, Table(header, rows)))
        prev_end = last_data + 1
        i = last_data + 1
    return out


_CONNECTORS = ("of", "and", "to", "the", "for", "in", "from", "on", "by", "before", "including", "net", "or",
               "at", "with", "less", "per", "attributable")


def _continues(prev: list[str], row: list[str]) -> bool:
    """Is `row`'s label the rest of `prev`'s, a label-only row ("NET INCOME ATTRIBUTABLE TO SHAREOWNERS
    OF" / "THE COCA-COLA COMPANY  $1,248")? Only when the first part cannot end a label: a trailing
    connector word or comma, or a continuation starting in lower case."""
    if any(prev[1:]) or not prev[0] or not row[0]:
        return False
    last = prev[0].rstrip().rsplit(" ", 1)[-1].lower()
    return prev[0].rstrip().endswith((",", "-", "—")) or last in _CONNECTORS or row[0][0].islower()


def _wide(line: Line, lines: Sequence[Line]) -> bool:
    """A line of prose: its text runs across most of the page width."""
    left = min(ln.cells[0].x0 for ln in lines if ln.cells)
    right = max(ln.cells[-1].x1 for ln in lines if ln.cells)
    return any(c.x1 - c.x0 > 0.7 * (right - left) for c in line.cells)


def page_text(words: Sequence[Word], carry: list[str] | None = None) -> tuple[str, int]:
    """The page's text with tables as Markdown, and the number of tables found. `carry`: the header
    of the previous page's last table, given to this page's first table when it has none (a table
    continued over a page break keeps its years)."""
    text, n, _ = page_tables(words, carry)
    return text, n


def page_tables(words: Sequence[Word], carry: list[str] | None = None) -> tuple[str, int, list[str] | None]:
    """page_text, plus the header of the page's last table (for the next page's `carry`)."""
    lines = group_lines(words)
    if _two_columns(lines):
        return "", 0, None  # a two-column page: reading it line by line would interleave the columns
    tables = find_tables(lines)
    if not tables:
        return "", 0, None
    first = tables[0][2]
    if carry and len(carry) == len(first.header) and not any(first.header[1:]) \
            and not any(_plain(ln).strip() for ln in lines[:tables[0][0]] if not _is_page_furniture(ln)):
        first.header = list(carry)
    parts: list[str] = []
    pos = 0
    for start, end, table in tables:
        if pos < start:
            parts.append("\n".join(_plain(ln) for ln in lines[pos:start]))
        parts.append(table.markdown())
        pos = end
    if pos < len(lines):
        parts.append("\n".join(_plain(ln) for ln in lines[pos:]))
    return "\n\n".join(p for p in parts if p.strip()), len(tables), tables[-1][2].header


def _two_columns(lines: Sequence[Line]) -> bool:
    """Prose set in two columns: many lines hold two long runs of words either side of the middle."""
    cells = [c for ln in lines for c in ln.cells]
    if len(lines) < 6 or not cells:
        return False
    mid = (min(c.x0 for c in cells) + max(c.x1 for c in cells)) / 2
    split = 0
    for ln in lines:
        left = [c for c in ln.cells if c.x1 < mid and len(c.text) >= 20 and not c.is_figure]
        right = [c for c in ln.cells if c.x0 > mid and len(c.text) >= 20 and not c.is_figure]
        split += bool(left and right)
    return split >= 0.25 * len(lines)


def _is_page_furniture(line: Line) -> bool:
    """A short running head above the table ("Table of Contents", "3M Company", a page number)."""
    return len(_plain(line)) < 60


def _plain(line: Line) -> str:
    return "  ".join(c.text for c in line.cells)


# --- the loader hook ---------------------------------------------------------------------------

def table_pages(data: bytes, texts: Sequence[str], *, password: str | None = None) -> dict[int, str]:
    """For the pages (0-based) whose pypdf text looks tabular, their text with tables as Markdown.
    Empty when no position backend is installed, when disabled (MINIONS_PDF_TABLES=0), or when the
    backend cannot open the file (pypdf's text is kept: this is an improvement, never a new failure)."""
    wanted = [i for i, t in enumerate(texts) if looks_tabular(t)]
    if not wanted or not enabled():
        return {}
    kind = backend()
    if kind is None:
        return {}
    out: dict[int, str] = {}
    try:
        if kind == "pdfium":
            import pypdfium2

            with PDFIUM_LOCK:
                pdf = pypdfium2.PdfDocument(data, password=password)
                carry: list[str] | None = None
                try:
                    for i in wanted:
                        page = pdf[i]
                        try:  # a rotated page's boxes are in unrotated space: leave it to pypdf
                            words = pdfium_words(page) if not page.get_rotation() else []
                        finally:
                            page.close()
                        text, n, header = page_tables(words, carry if i - 1 in out else None)
                        if n:
                            out[i] = text
                            carry = header
                finally:
                    pdf.close()
        else:
            import io

            import pdfplumber

            with pdfplumber.open(io.BytesIO(data), password=password or "") as pdf:
                carry = None
                for i in wanted:
                    text, n, header = page_tables(pdfplumber_words(pdf.pages[i]), carry if i - 1 in out else None)
                    if n:
                        out[i] = text
                        carry = header
    except Exception:  # noqa: BLE001  a page the backend cannot read keeps pypdf's text
        return out
    return out
