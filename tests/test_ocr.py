"""OCR of scanned PDF pages (the `ocr` extra: pytesseract + the tesseract-ocr program)."""

from __future__ import annotations

import importlib.util
import io
import shutil
import sys

import pytest
from pypdf import PdfReader, PdfWriter

from minions.documents import load
from minions.documents.ocr import OcrProgress
from minions.errors import DocumentError
from tests.test_documents import make_pdf

PIL = pytest.importorskip("PIL", reason="the ocr extra needs Pillow")
needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None or importlib.util.find_spec("pytesseract") is None,
    reason="the ocr extra is not installed (pip install 'minions[ocr]'; apt-get install tesseract-ocr)")
LINES = ["Discharge summary for the patient", "Metformin dosage was raised to 850 mg", "Follow-up visit in March 2024"]


def scanned_page(lines: list[str] = LINES) -> bytes:
    """Text rendered to a 200 dpi grey image and wrapped in a PDF: no text layer, like a scan."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("L", (1700, 2200), 255)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=34)
    for i, line in enumerate(lines):
        draw.text((200, 200 + 60 * i), line, fill=0, font=font)
    buf = io.BytesIO()
    img.save(buf, "PDF", resolution=200)
    return buf.getvalue()


def joined(*pdfs: bytes) -> bytes:
    writer = PdfWriter()
    for pdf in pdfs:
        writer.append(PdfReader(io.BytesIO(pdf)))
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


@needs_tesseract
def test_a_scanned_page_is_read_by_ocr_and_marked() -> None:
    assert PdfReader(io.BytesIO(scanned_page())).pages[0].extract_text().strip() == ""  # really no text layer
    events: list[OcrProgress] = []
    doc = load(scanned_page(), name="letter.pdf", on_progress=events.append)
    for word in ("Discharge", "Metformin", "850", "March", "2024"):
        assert word in doc.text
    assert doc.pages[0].ocr is True and doc.ocr_pages == [1]
    assert [(e.page, e.done, e.total) for e in events] == [(1, 0, 1), (1, 1, 1)]


@needs_tesseract
def test_only_pages_without_text_are_ocrd() -> None:
    pdf = joined(make_pdf(["Revenue was 4.2 billion in fiscal 2023."]), scanned_page(), make_pdf(["Closing page."]))
    events: list[OcrProgress] = []
    doc = load(pdf, name="mixed.pdf", on_progress=events.append)
    assert [p.ocr for p in doc.pages] == [False, True, False] and doc.ocr_pages == [2]
    assert "Revenue was 4.2 billion" in doc.page_text(1) and "Metformin" in doc.page_text(2)
    assert [(e.page, e.done, e.total) for e in events] == [(2, 0, 1), (2, 1, 1)]


def test_without_the_extra_a_scan_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pytesseract", None)  # makes `import pytesseract` raise ImportError
    with pytest.raises(DocumentError) as err:
        load(scanned_page(), name="scan.pdf")
    message = str(err.value)
    assert "pip install 'minions[ocr]'" in message and "scanned" in message and "<bytes: scan.pdf>" in message
    assert "ocrmypdf" not in message


def test_without_the_extra_a_partly_scanned_pdf_loads_its_text_with_a_warning(monkeypatch: pytest.MonkeyPatch
                                                                                ) -> None:
    monkeypatch.setitem(sys.modules, "pytesseract", None)
    doc = load(joined(make_pdf(["Revenue was 4.2 billion."]), scanned_page()), name="mixed.pdf")
    assert "Revenue was 4.2 billion." in doc.text and doc.ocr_pages == [] and doc.page_text(2) == ""
    assert any("page(s) [2]" in w and "minions[ocr]" in w for w in doc.metadata["warnings"])


def test_a_huge_image_is_refused_before_decoding() -> None:
    pdf = make_pdf([None]).replace(b"/Width 2 /Height 2", b"/Width 99999 /Height 99999")
    with pytest.raises(DocumentError, match="safety limit") as err:
        load(pdf, name="bomb.pdf")
    assert "9,999,800,001 pixels" in str(err.value)


@needs_tesseract
def test_a_short_text_layer_is_kept_above_the_ocr_text() -> None:
    stamped = PdfReader(io.BytesIO(scanned_page()))
    writer = PdfWriter()
    page = writer.add_page(stamped.pages[0])
    page.merge_page(PdfReader(io.BytesIO(make_pdf(["p. 7"]))).pages[0])  # a page number over the scan
    buf = io.BytesIO()
    writer.write(buf)
    doc = load(buf.getvalue(), name="stamped.pdf")
    assert doc.ocr_pages == [1] and doc.text.startswith("p. 7\n") and "Metformin" in doc.text


def test_the_cli_view_draws_ocr_progress_and_clears_it() -> None:
    from rich.console import Console

    from minions.cli.render import LiveView

    view = LiveView(Console(file=io.StringIO(), force_terminal=True))
    view(OcrProgress(source="scan[1].pdf", page=2, done=0, total=3))
    assert view._progress is not None and view._progress.tasks[0].total == 3
    view(OcrProgress(source="scan[1].pdf", page=2, done=1, total=3))
    assert view._progress.tasks[0].completed == 1
    view(OcrProgress(source="scan[1].pdf", page=5, done=3, total=3))
    assert view._progress is None
