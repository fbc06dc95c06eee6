"""The app's source view (issue 20, item 4): a citation clicked shows its page — the PDF page
image with the quote's boxes painted, and the page's text with the quote marked — and the
answer is shown once and the Stop button goes when the run ends. Driven by Streamlit's AppTest
with a scripted remote over real HTTP (tests/gateway.py); the real browser test is in test_browser.py."""

from __future__ import annotations

import html
import sys
from pathlib import Path

import numpy as np
import pytest

from minions.documents import Document, load
from minions.protocols.citations import place_citations
from minions.protocols.result import Citation
from tests.test_app import remote_only_answer
from tests.test_documents import PAGES, make_pdf

APP = Path(__file__).resolve().parents[1] / "apps" / "streamlit_app.py"
sys.path.insert(0, str(APP.parent))

from minions_app.fmt import without_repeats  # noqa: E402
from minions_app.sources import highlighted_html, page_view, pdf_page_image  # noqa: E402

QUOTE = "capital expenditures were 15 million, mostly new warehouses (Ohio)"


def _cited(doc: Document, text: str, page: int) -> Citation:
    (c,) = place_citations([Citation(doc_id=doc.id, page_start=page, page_end=page, text=text)], [doc])
    return c


def test_the_page_view_marks_exactly_the_cited_span_escaped():
    doc = Document.from_pages(["First page <b>bold</b>.", "Second & last: " + QUOTE + ". <script>x</script>"],
                              id="d")
    c = _cited(doc, QUOTE.upper(), 2)
    view = page_view(doc, c)
    assert view is not None and view.page == 2 and view.quote == QUOTE
    out = highlighted_html(view)
    assert f">{html.escape(QUOTE)}</mark>" in out
    assert "<script>" not in out and "&lt;script&gt;" in out and "Second &amp; last" in out
    assert page_view(doc, Citation(doc_id="d", text="not in it")) is None  # unplaced: no page


def test_a_long_page_shows_whole_lines_around_the_quote_and_says_what_is_elided():
    lines = [f"Line {i}: filler text about the company and its stores." for i in range(400)]
    lines[200] = "Revenue was 120 million dollars in fiscal 2024."
    doc = Document.from_text("\n".join(lines), id="long")
    view = page_view(doc, _cited(doc, "Revenue was 120 million dollars in fiscal 2024", 1))
    out = highlighted_html(view, context=300)
    assert "characters of page 1 above" in out and "characters of page 1 below" in out
    assert "Line 199:" in out and "Line 100:" not in out
    assert "<mark" in out and "Revenue was 120 million dollars in fiscal 2024</mark>" in out


def _yellow(image) -> int:
    px = np.asarray(image.convert("RGB")).astype(int)
    return int(((px[..., 0] > 200) & (px[..., 1] > 170) & (px[..., 2] < 150)).sum())


def test_a_pdf_page_is_rendered_with_the_quote_painted():
    pytest.importorskip("pypdfium2")
    data = make_pdf(PAGES)
    image, boxes = pdf_page_image(data, 2, QUOTE)
    assert boxes >= 1 and image.size[0] > 600
    assert _yellow(image) > 500  # the painted box, on a white page with black text
    plain, none = pdf_page_image(data, 2, "a sentence that is not on this page at all")
    assert none == 0 and _yellow(plain) == 0
    assert pdf_page_image(data, 9, QUOTE) is None and pdf_page_image(b"not a pdf", 1, QUOTE) is None


def test_a_looping_answer_is_shown_once():
    assert without_repeats("The revenue was $5.\n\nThe revenue was $5.\n \nOther.") == \
        ("The revenue was $5.\n\nOther.", 1)


def test_clicking_a_citation_shows_its_pdf_page_with_the_quote_highlighted(gateway):
    pytest.importorskip("pypdfium2")
    answer = f'The report says "{QUOTE}".\n\nThe report says "{QUOTE}".'
    at = remote_only_answer(gateway, answer)
    r = at.session_state["last_result"]
    (c,) = r.citations
    doc = load(make_pdf(PAGES), name="acme.pdf")
    assert doc.text[c.start:c.end] == QUOTE and c.page == 2
    assert not any(b.key == "stop_run" for b in at.button)            # the run is over: no Stop button
    assert sum("The report says" in m for m in (e.value for e in at.markdown)) == 1  # the answer, once
    assert any("repeated 1 paragraph" in e.value for e in at.caption)
    assert not at.get("image") and "<mark" not in str(at.get("html"))
    source = next(b for b in at.button if b.key == "src.0.0")
    assert "p\\. 2" in source.label  # Markdown-escaped: a document's text is never read as Markdown
    source.click().run()
    assert not at.exception, at.exception
    marked = [h.proto.body for h in at.get("html")]
    assert any('<mark class="minions-quote" style' in h and f">{html.escape(QUOTE)}</mark>" in h for h in marked)
    (img,) = at.get("image")
    assert img.captions == ["Page 2"], "the PDF page image, the quote located on it"
    assert any("page 2 of 3" in e.value for e in at.caption)
    next(b for b in at.button if b.key == "src.0.0").click().run()   # a second click hides it
    # the source view is gone (the egress panel's own <mark>s, of what was sent, are another element)
    assert "minions-quote" not in str([h.proto.body for h in at.get("html")])


def test_without_pypdfium2_there_is_no_page_image_only_its_text(monkeypatch):
    monkeypatch.setitem(sys.modules, "pypdfium2", None)  # what an install without the app extra has
    assert pdf_page_image(make_pdf(PAGES), 2, QUOTE) is None


def test_a_table_row_is_painted_cell_by_cell_on_the_pdf_page():
    """The table extractor writes a row as one Markdown line, which pdfium's text of the page is not:
    each cell is found and painted instead."""
    pytest.importorskip("pypdfium2")
    from tests.table_pdf import cash_flow_table, table_pages
    from tests.table_pdf import make_pdf as make_table_pdf

    data = make_table_pdf(table_pages(cash_flow_table(), "columns"))
    row = next(line for line in load(data, name="cf.pdf").text.splitlines() if "Purchases of property" in line)
    if not row.startswith("|"):
        pytest.skip("tables are read as Markdown rows with the pdf-tables extra")
    cells = [c.strip() for c in row.strip("|").split("|")]
    image, boxes = pdf_page_image(data, 1, row)
    assert boxes >= len(cells) == 4 and _yellow(image) > 300
