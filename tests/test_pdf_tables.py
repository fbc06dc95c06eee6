"""PDF tables kept as tables (issue 20): generated statements load with each row on one Markdown line
under its year headers, and the chunkers keep rows whole and repeat the header."""

from __future__ import annotations

import re

import pytest

from minions.documents import Document, chunk_document, load, pdf_tables
from minions.documents.model import Chunk
from minions.errors import DocumentError
from tests.table_pdf import GenTable, cash_flow_table, make_pdf, table_pages
from tests.test_documents import encrypt

pytest.importorskip("pypdfium2")

YEARS = ("2018", "2017", "2016")


def row_of(text: str, label: str) -> list[str]:
    """The cells of the Markdown row whose label is `label` (exactly one such line)."""
    lines = [ln for ln in text.splitlines() if ln.startswith(f"| {label} |")]
    assert len(lines) == 1, f"{label!r}: {lines}"
    return [c.strip() for c in lines[0].strip().strip("|").split("|")]


def header_of(text: str) -> list[str]:
    lines = text.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("| ---"))
    return [c.strip() for c in lines[i - 1].strip().strip("|").split("|")]


def assert_rows(text: str, table: GenTable, rows: range | None = None) -> None:
    header = header_of(text)
    for year in table.header:  # each year heads its own column
        assert sum(year in h for h in header) == 1, header
    for label, values in (table.rows[i] for i in rows or range(len(table.rows))):
        cells = row_of(text, label)
        assert [c.replace("$", "") for c in cells[1:]] == values, (label, cells)
        for year, value in zip(table.header, values, strict=True):  # each value under its year
            assert year in header[cells.index(next(c for c in cells[1:] if c.replace("$", "") == value))]


@pytest.mark.parametrize("layout", ["ruled", "unruled", "columns"])
def test_generated_tables_load_one_row_per_line_under_their_years(layout: str) -> None:
    table = cash_flow_table(20)
    doc = load(make_pdf(table_pages(table, layout)), name="statement.pdf")  # type: ignore[arg-type]
    assert doc.metadata["table_pages"] == [1]
    assert "Consolidated Statement of Cash Flows" in doc.text  # the text around the table stays
    assert_rows(doc.text, table)


def test_pypdf_alone_splits_the_column_ordered_table() -> None:
    """The case the extractor exists for: without it each cell is a line of its own."""
    import io

    from pypdf import PdfReader

    table = cash_flow_table(8)
    text = PdfReader(io.BytesIO(make_pdf(table_pages(table, "columns")))).pages[0].extract_text()
    label, values = table.rows[1]
    assert not any(label in ln and values[0] in ln for ln in text.splitlines())


def test_a_table_over_three_pages_keeps_its_header_on_every_page() -> None:
    table = cash_flow_table(70)
    doc = load(make_pdf(table_pages(table, "columns", rows_per_page=25)), name="long.pdf")
    assert doc.metadata["table_pages"] == [1, 2, 3]
    for n, rows in zip((1, 2, 3), (range(0, 25), range(25, 50), range(50, 70)), strict=True):
        assert_rows(doc.page_text(n), table, rows)


def test_password_protected_table_pdf_is_read_with_the_password() -> None:
    table = cash_flow_table(6)
    doc = load(encrypt(make_pdf(table_pages(table, "columns")), "pw"), name="locked.pdf", password="pw")
    assert_rows(doc.text, table)


def test_prose_pages_keep_pypdf_text_and_the_switch_turns_tables_off(monkeypatch: pytest.MonkeyPatch) -> None:
    table = cash_flow_table(6)
    prose = "\n".join(f"BT /F1 11 Tf 1 0 0 1 72 {700 - 14 * i} Tm (Plain prose line {i} of the report.) Tj ET"
                      for i in range(5))
    pdf = make_pdf([prose] + table_pages(table, "columns"))
    doc = load(pdf, name="mixed.pdf")
    assert doc.metadata["table_pages"] == [2]
    assert doc.page_text(1).startswith("Plain prose line 0 of the report.")
    monkeypatch.setenv("MINIONS_PDF_TABLES", "0")
    off = load(pdf, name="mixed.pdf")
    assert "table_pages" not in off.metadata and "| ---" not in off.text


def test_a_backend_failure_keeps_pypdf_text(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(page: object) -> list[pdf_tables.Word]:
        raise RuntimeError("pdfium cannot read this page")

    monkeypatch.setattr(pdf_tables, "pdfium_words", boom)
    table = cash_flow_table(6)
    doc = load(make_pdf(table_pages(table, "columns")), name="t.pdf")
    assert "table_pages" not in doc.metadata and table.rows[0][0] in doc.text


def test_corrupt_and_empty_pdfs_still_say_so() -> None:
    with pytest.raises(DocumentError, match="could not be read as a PDF"):
        load(b"%PDF-1.7\n" + bytes(range(256)) * 8, name="broken.pdf")
    with pytest.raises(DocumentError, match="empty"):
        load(b"", name="empty.pdf")
    with pytest.raises(DocumentError, match="no pages"):
        load(make_pdf([]), name="nopages.pdf")


def test_figures_and_cells() -> None:
    for text in ("1,577", "(1,577)", "$5,363", "$(4,243)", "12.5%", "(0.1%)", "—", "$—", "-", "0.29", "2018"):
        assert pdf_tables.is_figure(text), text
    for text in ("Net income", "31,", "Q3", "FY", "(Millions)", ""):
        assert not pdf_tables.is_figure(text), text
    words = [pdf_tables.Word(72, 120, 100, 109, "Purchases"), pdf_tables.Word(122, 140, 100, 109, "of"),
             pdf_tables.Word(300, 305, 100, 109, "$"), pdf_tables.Word(330, 360, 100, 109, "(1,577)"),
             pdf_tables.Word(360.5, 364, 99, 104, "1"),  # a footnote mark on the figure
             pdf_tables.Word(400, 430, 100.5, 109.5, "(1,373)")]
    (line,) = pdf_tables.group_lines(words)
    assert [c.text for c in line.cells] == ["Purchases of", "$(1,577)", "(1,373)"]


# --- chunking --------------------------------------------------------------------------------

def table_doc() -> tuple[Document, GenTable]:
    table = cash_flow_table(44)  # one page
    return load(make_pdf(table_pages(table, "unruled", rows_per_page=44)), name="cf.pdf"), table


@pytest.mark.parametrize(("strategy", "size", "overlap"), [
    ("chars", 400, 0), ("chars", 400, 90), ("paragraphs", 400, 0), ("sections", 400, 0),
    ("tokens", 96, 0), ("tokens", 96, 16)])
def test_chunks_keep_rows_whole_and_repeat_the_header(strategy: str, size: int, overlap: int) -> None:
    doc, table = table_doc()
    chunks = chunk_document(doc, strategy, size, overlap)  # type: ignore[arg-type]
    header = doc.text[doc.text.index("|  |"):doc.text.index("| --- |")] + "| --- | --- | --- | --- |"
    assert len([c for c in chunks if "| ---" not in c.text and c.text.startswith("|")]) >= 3
    rows = {label for label, _ in table.rows}
    for c in chunks:
        assert doc.text[c.start:c.end] == c.text  # the provenance invariant holds
        for line in c.text.splitlines():  # never a partial row
            assert not line.startswith("|") or (line.endswith("|") and line.count("|") == 5), (c.id, line)
        first = c.text.splitlines()[0]
        if first.startswith("| ") and not first.startswith("|  |") and "| ---" not in c.text:
            assert c.header == header, c.id
            assert c.text_with_header.startswith(header + "\n")
            assert all(year in c.text_with_header.splitlines()[0] for year in YEARS)
        else:
            assert c.header is None or not c.text.startswith("| ---")
    seen = {re.match(r"\| (.+?) \|", ln).group(1) for c in chunks for ln in c.text.splitlines()  # type: ignore[union-attr]
            if ln.startswith("| ") and not ln.startswith("|  |")}
    assert rows <= seen


def test_text_without_tables_chunks_as_before() -> None:
    doc = Document.from_text("word " * 2000)
    assert all(c.header is None for c in chunk_document(doc, "chars", 500))
    assert Chunk(id="a#0", doc_id="a", index=0, text="x", start=0, end=1, page_start=1,
                 page_end=1).text_with_header == "x"


def test_worker_prompt_shows_the_repeated_header() -> None:
    from minions.protocols.citations import excerpt
    from minions.protocols.minions_jobs import job_prefix

    doc, _ = table_doc()
    chunk = next(c for c in chunk_document(doc, "chars", 400) if c.header)
    prompt = job_prefix(chunk)  # the worker sees the header above the chunk's text
    assert chunk.header in prompt and prompt.index(chunk.header) < prompt.index(excerpt(chunk.text))


def test_a_two_column_page_keeps_pypdf_text() -> None:
    """Papers: a table in one column of a two-column page must not interleave the columns' prose."""
    from tests.table_pdf import _put

    ops = []
    for i in range(30):
        ops.append(_put(40, 740 - 12 * i, f"Left column sentence number {i} about methods."))
        ops.append(_put(320, 740 - 12 * i, f"Right column sentence number {i} on results."))
    for i in range(8):  # a small table of figures under the left column's prose
        ops += [_put(40, 360 - 12 * i, f"Model {i}"), _put(150, 360 - 12 * i, f"{i + 71}.{i}"),
                _put(200, 360 - 12 * i, f"{i + 60}.{i}"), _put(250, 360 - 12 * i, f"1,{i}00")]
    doc = load(make_pdf(["\n".join(ops)]), name="paper.pdf")
    assert "table_pages" not in doc.metadata
    assert "Left column sentence number 3 about methods." in doc.text


def test_loads_from_several_threads_agree() -> None:
    """PDFium is not thread-safe; the app and serve load files from threads."""
    from concurrent.futures import ThreadPoolExecutor

    pdf = make_pdf(table_pages(cash_flow_table(30), "columns"))
    with ThreadPoolExecutor(4) as pool:
        texts = list(pool.map(lambda _: load(pdf, name="t.pdf").text, range(8)))
    assert len(set(texts)) == 1 and "| ---" in texts[0]


def test_a_rotated_page_keeps_pypdf_text() -> None:
    import io

    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(table_pages(cash_flow_table(10), "columns")))))
    writer.pages[0].rotate(90)
    out = io.BytesIO()
    writer.write(out)
    doc = load(out.getvalue(), name="rotated.pdf")
    assert "table_pages" not in doc.metadata and cash_flow_table(10).rows[0][0] in doc.text


def test_without_the_extra_the_warning_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdf_tables, "backend", lambda: None)
    doc = load(make_pdf(table_pages(cash_flow_table(10), "columns")), name="t.pdf")
    assert "table_pages" not in doc.metadata
    assert any("minions[pdf-tables]" in w for w in doc.metadata["warnings"])
    assert not load(make_pdf(["BT /F1 12 Tf 72 700 Td (Just prose.) Tj ET"]), name="p.pdf").metadata["warnings"]


def test_pdfplumber_backend_reads_the_same_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pdfplumber")
    monkeypatch.setattr(pdf_tables, "backend", lambda: "pdfplumber")
    table = cash_flow_table(12)
    doc = load(make_pdf(table_pages(table, "columns")), name="t.pdf")
    assert doc.metadata["table_pages"] == [1]
    assert_rows(doc.text, table)


def test_a_wrapped_label_joins_its_figures_but_a_heading_does_not() -> None:
    W = pdf_tables.Word

    def line(y: float, *cells: tuple[float, str]) -> list[pdf_tables.Word]:
        return [W(x, x + 6 * len(t), y, y + 9, t) for x, t in cells]

    words = (line(100, (72, "(Millions)"), (330, "2018"), (410, "2017"))
             + line(115, (72, "Operating activities"))
             + line(130, (72, "Net income"), (330, "5,363"), (410, "4,869"))
             + line(145, (72, "NET INCOME ATTRIBUTABLE TO SHAREOWNERS OF"))
             + line(160, (72, "THE COMPANY"), (330, "1,248"), (410, "6,527")))
    text, n = pdf_tables.page_text(words)
    assert n == 1
    assert "| Operating activities |  |  |" in text  # a heading stays a row of its own
    assert "| NET INCOME ATTRIBUTABLE TO SHAREOWNERS OF THE COMPANY | 1,248 | 6,527 |" in text
    assert "| (Millions) | 2018 | 2017 |" in text
