"""Generated PDFs with known tables, drawn the way filings draw them: one text object per cell,
the "$" apart from its figure, optionally column by column (so a content-order extractor such as
pypdf's default puts every cell on its own line). Used by tests/test_pdf_tables.py and
benchmarks/extraction.py. No reportlab: a minimal PDF writer with Helvetica's widths.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Literal

# Helvetica advance widths (1/1000 em) for the characters figures use; letters default to 556.
_WIDTHS = {**dict.fromkeys("0123456789$", 556), ",": 278, ".": 278, "(": 333, ")": 333, "-": 333, " ": 278,
           "%": 889, "\u2014": 1000}
SIZE = 9.0
LEADING = 13.0
Layout = Literal["ruled", "unruled", "columns"]


@dataclass
class GenTable:
    """A table: column headers (e.g. years) over rows of (label, values); "$" marks money rows."""

    title: str
    header: list[str]
    rows: list[tuple[str, list[str]]]
    dollar_rows: set[int] = field(default_factory=set)
    caption: str = ""  # a line spanning the value columns, e.g. "Years ended December 31,"


def text_width(text: str, size: float = SIZE) -> float:
    return sum(_WIDTHS.get(ch, 556) for ch in text) * size / 1000


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _put(x: float, y: float, text: str, size: float = SIZE) -> str:
    return f"BT /F1 {size:g} Tf 1 0 0 1 {x:.2f} {y:.2f} Tm ({_esc(text)}) Tj ET"


def table_pages(table: GenTable, layout: Layout = "unruled", rows_per_page: int = 40,
                repeat_header: bool = False) -> list[str]:
    """Content streams for `table`, split over pages of `rows_per_page` rows."""
    col_right = [380.0 + 80.0 * j for j in range(len(table.header))]
    pages: list[str] = []
    for p0 in range(0, len(table.rows), rows_per_page):
        ops: list[str] = []
        y = 740.0
        if p0 == 0 or repeat_header:
            ops.append(_put(72, y, table.title + (" (continued)" if p0 else ""), 11))
            y -= 2 * LEADING
            if table.caption:
                ops.append(_put(col_right[0] - 40, y, table.caption))
                y -= LEADING
            for j, h in enumerate(table.header):
                ops.append(_put(col_right[j] - text_width(h), y, h))
            y -= LEADING * 1.3
        rows = table.rows[p0:p0 + rows_per_page]
        ys = [y - LEADING * i for i in range(len(rows))]
        cells: list[list[str]] = [[] for _ in range(len(table.header) + 1)]
        for i, (label, values) in enumerate(rows):
            cells[0].append(_put(72, ys[i], label))
            for j, v in enumerate(values):
                if (p0 + i) in table.dollar_rows:
                    cells[j + 1].append(_put(col_right[j] - 62, ys[i], "$"))
                cells[j + 1].append(_put(col_right[j] - text_width(v), ys[i], v))
        if layout == "columns":  # all labels, then each column's figures: content order != reading order
            ops += [op for column in cells for op in column]
        else:  # row by row, one text object per cell
            for i in range(len(rows)):
                per_row = [op for column in cells for op in column
                           if f" {ys[i]:.2f} Tm" in op]
                ops += per_row
        if layout == "ruled":
            left, right = 66.0, col_right[-1] + 6
            for yy in [ys[0] + LEADING - 3] + [r - 3 for r in ys]:
                ops.append(f"{left:.2f} {yy:.2f} m {right:.2f} {yy:.2f} l S")
            for x in [left, col_right[0] - 70] + [c + 6 for c in col_right]:
                ops.append(f"{x:.2f} {ys[-1] - 3:.2f} m {x:.2f} {ys[0] + LEADING - 3:.2f} l S")
        ops.append(_put(72, 60, f"Page {len(pages) + 1}"))
        pages.append("\n".join(ops))
    return pages


def make_pdf(streams: list[str]) -> bytes:
    """A valid PDF whose page i draws content stream i (Helvetica as /F1)."""
    objects: dict[int, bytes] = {1: b"<< /Type /Catalog /Pages 2 0 R >>",
                                 3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"}
    page_ids = [4 + 2 * i for i in range(len(streams))]
    objects[2] = f"<< /Type /Pages /Kids [{' '.join(f'{p} 0 R' for p in page_ids)}] /Count {len(streams)} >>".encode()
    for pid, stream in zip(page_ids, streams, strict=True):
        content = stream.encode("cp1252")
        objects[pid] = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                        b"/Contents %d 0 R >>" % (pid + 1))
        objects[pid + 1] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content)
    return serialize(objects)


def cash_flow_table(n_rows: int = 24, years: tuple[str, ...] = ("2018", "2017", "2016")) -> GenTable:
    """A cash-flow-like statement with deterministic figures, negatives in parentheses, dashes."""
    labels = ["Net income including noncontrolling interest", "Depreciation and amortization",
              "Company pension and postretirement contributions", "Stock-based compensation expense",
              "Gain on sale of businesses", "Deferred income taxes", "Accounts receivable", "Inventories",
              "Accounts payable", "Accrued income taxes (current and long-term)", "Other - net",
              "Purchases of property, plant and equipment (PP&E)", "Proceeds from sale of PP&E and other assets",
              "Acquisitions, net of cash acquired", "Purchases of marketable securities and investments",
              "Change in short-term debt - net", "Repayment of debt (maturities greater than 90 days)",
              "Proceeds from debt (maturities greater than 90 days)", "Purchases of treasury stock",
              "Dividends paid to shareholders", "Effect of exchange rate changes on cash",
              "Net increase (decrease) in cash and cash equivalents"]
    rows: list[tuple[str, list[str]]] = []
    for i in range(n_rows):
        label = labels[i % len(labels)] + (f" ({i // len(labels) + 1})" if i >= len(labels) else "")
        values = []
        for j in range(len(years)):
            v = (i * 7919 + j * 104729) % 9000 + 3
            text = f"{v:,}"
            values.append("\u2014" if (i + j) % 11 == 5 else f"({text})" if (i + j) % 3 == 1 else text)
        rows.append((label, values))
    return GenTable("Consolidated Statement of Cash Flows", list(years), rows, dollar_rows={0, n_rows - 1},
                    caption="Years ended December 31")


def serialize(objects: dict[int, bytes]) -> bytes:
    """A PDF file from numbered objects (1 is the catalog), with a correct xref table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for num in sorted(objects):
        offsets[num] = out.tell()
        out.write(b"%d 0 obj\n%s\nendobj\n" % (num, objects[num]))
    xref = out.tell()
    size = max(objects) + 1
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % size)
    for num in range(1, size):
        out.write(b"%010d 00000 n \n" % offsets[num])
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref))
    return out.getvalue()
