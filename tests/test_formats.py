"""XLSX, CSV/TSV, PPTX, EPUB, ODT and RTF: a normal file's text is found, and empty, corrupt and huge
(bomb) files are refused with a message naming the problem. Plus: every door accepts exactly the
loader registry's suffixes."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from minions.documents import load
from minions.documents.loaders import KINDS, SUPPORTED
from minions.documents.office import MAX_CELLS, ROWS_PER_PAGE
from minions.errors import DocumentError, MissingDependencyError

ROOT = Path(__file__).resolve().parents[1]
needs = {m: pytest.mark.skipif(importlib.util.find_spec(m) is None, reason=f"{m} is not installed "
                               "(pip install 'minions[formats]')") for m in ("openpyxl", "pptx", "striprtf")}


def zipped(members: dict[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def bomb(part: str) -> bytes:
    """A zip whose one member inflates 12 MB of spaces from ~12 KB (1000x)."""
    return zipped({part: b"<a>" + b" " * 12_000_000 + b"</a>"})


def entity_bomb(part: str, extra: dict[str, str] | None = None) -> bytes:
    lol = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
           "<r>&b;</r>")
    return zipped({**(extra or {}), part: lol})


# --- spreadsheets -----------------------------------------------------------------------------

def xlsx(sheets: dict[str, list[list[object]]]) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
    wb.properties.title = "Quarterly figures"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


@needs["openpyxl"]
def test_xlsx_sheets_become_markdown_table_pages() -> None:
    long = [["Month", "Units"]] + [[f"M{i}", i] for i in range(ROWS_PER_PAGE + 5)]
    doc = load(xlsx({"Income": [["Item", "2023", "2022"], ["Revenue", 4200.0, 3900], [None, None, None],
                                ["Net income", 610, "n/a"]], "Volumes": long}), name="figures.xlsx")
    assert doc.title == "Quarterly figures" and len(doc.pages) == 3  # one sheet, one sheet over two pages
    first = doc.page_text(1)
    assert first.startswith("## Sheet: Income") and "| Item | 2023 | 2022 |" in first
    assert "| Revenue | 4200 | 3900 |" in first and "| Net income | 610 | n/a |" in first
    assert "| Month | Units |" in doc.page_text(2) and "| Month | Units |" in doc.page_text(3)  # header repeated
    assert f"| M{ROWS_PER_PAGE + 4} | {ROWS_PER_PAGE + 4} |" in doc.page_text(3)


@needs["openpyxl"]
def test_xlsx_empty_corrupt_and_huge(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="has no text"):
        load(xlsx({"Blank": []}), name="blank.xlsx")
    with pytest.raises(DocumentError, match="could not be read as an .xlsx") as err:
        load(b"PK\x03\x04 truncated", name="broken.xlsx")
    assert "<bytes: broken.xlsx>" in str(err.value)
    with pytest.raises(DocumentError, match="zip bomb"):
        load(bomb("xl/worksheets/sheet1.xml"), name="bomb.xlsx")
    with pytest.raises(DocumentError, match="declares XML entities"):
        load(entity_bomb("xl/workbook.xml"), name="lol.xlsx")
    with pytest.raises(DocumentError, match="too large"):
        load(xlsx({"S": [["a", "b"]] + [["x" * 50, i] for i in range(100)]}), name="big.xlsx", max_chars=2000)


@needs["openpyxl"]
def test_xlsx_one_far_cell_stops_at_the_cell_cap() -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active["A1"], wb.active["XFD1048576"] = "top", "bottom"  # 17 billion cells once padded
    buf = io.BytesIO()
    wb.save(buf)
    with pytest.raises(DocumentError, match=f"more than {MAX_CELLS:,} cells"):
        load(buf.getvalue(), name="far.xlsx")


def test_csv_and_tsv_tables(tmp_path: Path) -> None:
    (tmp_path / "rates.csv").write_text('Region;Rate\n"North; East";4,5\nSouth;3,1\n', encoding="utf-8")
    doc = load(tmp_path / "rates.csv")
    assert doc.metadata["format"] == "csv" and doc.id == "rates"
    assert doc.text.splitlines()[:5] == ["## Table: rates", "", "| Region | Rate |", "| --- | --- |",
                                         "| North; East | 4,5 |"]
    doc = load(b"name\tvalue\nalpha\t1\n", name="t.tsv")
    assert "| alpha | 1 |" in doc.text


def test_csv_empty_corrupt_and_huge(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="is empty"):
        load(b"\n\n", name="empty.csv")
    with pytest.raises(DocumentError, match="has no text"):
        load(b",,,\n,,\n", name="commas.csv")
    with pytest.raises(DocumentError, match="binary data"):
        load(b"a,b\n\x00\x01\x02\x03" * 100, name="binary.csv")
    with pytest.raises(DocumentError, match="could not be read as CSV"):
        load(b'a,b\n"' + b"x" * 200_000 + b'",1\n', name="field.csv")
    with pytest.raises(DocumentError, match="too large"):
        load(b"a,b\n" + b"xxxxxxxx,1\n" * 1000, name="big.csv", max_chars=1000)
    path = tmp_path / "huge.csv"  # refused by its size before it is read
    path.write_bytes(b"a,b\n" * 300)
    with pytest.raises(DocumentError, match="bytes of csv"):
        load(path, max_chars=100)


# --- slides ----------------------------------------------------------------------------------

def pptx_deck(slides: list[tuple[str, str, str]]) -> bytes:
    from pptx import Presentation

    deck = Presentation()
    for title, body, notes in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
        if notes:
            slide.notes_slide.notes_text_frame.text = notes
    buf = io.BytesIO()
    deck.save(buf)
    return buf.getvalue()


@needs["pptx"]
def test_pptx_one_page_per_slide_with_notes() -> None:
    doc = load(pptx_deck([("Q3 results", "Revenue up 12%", "Mention the currency effect"),
                          ("Outlook", "Guidance unchanged", "")]), name="deck.pptx")
    assert len(doc.pages) == 2
    assert doc.page_text(1) == "## Slide 1: Q3 results\n\nRevenue up 12%\n\nNotes: Mention the currency effect"
    assert doc.page_text(2) == "## Slide 2: Outlook\n\nGuidance unchanged"


@needs["pptx"]
def test_pptx_empty_corrupt_and_huge() -> None:
    with pytest.raises(DocumentError, match="has no text"):
        load(pptx_deck([]), name="empty.pptx")
    with pytest.raises(DocumentError, match="could not be read as a .pptx"):
        load(zipped({"hello.txt": "not a deck"}), name="broken.pptx")
    with pytest.raises(DocumentError, match="zip bomb"):
        load(bomb("ppt/slides/slide1.xml"), name="bomb.pptx")
    with pytest.raises(DocumentError, match="declares XML entities"):
        load(entity_bomb("ppt/presentation.xml"), name="lol.pptx")
    with pytest.raises(DocumentError, match="too large"):
        load(pptx_deck([("t", "x" * 3000, "")]), name="big.pptx", max_chars=100)


# --- EPUB and ODT ----------------------------------------------------------------------------

CONTAINER = ('<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
             '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
             "</rootfiles></container>")


def epub(chapters: list[str]) -> bytes:
    items = "".join(f'<item id="c{i}" href="text/c{i}.xhtml" media-type="application/xhtml+xml"/>'
                    for i in range(len(chapters)))
    spine = "".join(f'<itemref idref="c{i}"/>' for i in range(len(chapters)))
    opf = ('<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
           '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Clinical Notes</dc:title></metadata>'
           f"<manifest>{items}</manifest><spine>{spine}</spine></package>")
    members: dict[str, bytes | str] = {"mimetype": "application/epub+zip", "META-INF/container.xml": CONTAINER,
                                       "OEBPS/content.opf": opf}
    for i, body in enumerate(chapters):
        members[f"OEBPS/text/c{i}.xhtml"] = (f'<html xmlns="http://www.w3.org/1999/xhtml"><head><title>c{i}</title>'
                                             f"</head><body>{body}</body></html>")
    return zipped(members)


def test_epub_one_page_per_chapter_in_spine_order() -> None:
    doc = load(epub(["<h1>Admission</h1><p>Blood pressure 140/90.</p>", "<h2>Discharge</h2><p>Stable.</p>"]),
               name="notes.epub")
    assert doc.title == "Clinical Notes" and len(doc.pages) == 2
    assert doc.page_text(1) == "# Admission\n\nBlood pressure 140/90." and doc.page_text(2) == "## Discharge\n\nStable."
    assert load(epub(["<p>sniffed</p>"])).metadata["format"] == "epub"  # bytes without a name


def test_epub_empty_corrupt_and_huge() -> None:
    with pytest.raises(DocumentError, match="has no text"):
        load(epub(["", "<p> </p>"]), name="empty.epub")
    with pytest.raises(DocumentError, match="missing its part META-INF/container.xml"):
        load(zipped({"mimetype": "application/epub+zip"}), name="broken.epub")
    with pytest.raises(DocumentError, match="not a zip archive"):
        load(b"%not an epub at all", name="corrupt.epub")
    with pytest.raises(DocumentError, match="zip bomb"):
        load(bomb("OEBPS/text/c0.xhtml"), name="bomb.epub")
    with pytest.raises(DocumentError, match="declares XML entities"):
        load(entity_bomb("OEBPS/content.opf", {"META-INF/container.xml": CONTAINER}), name="lol.epub")
    with pytest.raises(DocumentError, match="too large"):
        load(epub(["<p>" + "word " * 400 + "</p>"] * 3), name="big.epub", max_chars=1000)
    drm = zipfile.ZipFile(io.BytesIO(epub(["<p>x</p>"])))
    members = {i.filename: drm.read(i) for i in drm.infolist()}
    members["META-INF/encryption.xml"] = '<encryption><CipherReference URI="OEBPS/font.otf"/></encryption>'
    assert load(zipped(members), name="fonts.epub").text == "x"  # obfuscated fonts only: readable
    members["META-INF/encryption.xml"] = '<encryption><CipherReference URI="OEBPS/text/c0.xhtml"/></encryption>'
    with pytest.raises(DocumentError, match="DRM-protected"):
        load(zipped(members), name="drm.epub")


ODF = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
       'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
       'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"')


def odt(body: str) -> bytes:
    content = f'<?xml version="1.0"?><office:document-content {ODF}><office:body><office:text>{body}' \
              "</office:text></office:body></office:document-content>"
    meta = ('<?xml version="1.0"?><office:document-meta xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/"><office:meta><dc:title>Trial protocol</dc:title>'
            "</office:meta></office:document-meta>")
    return zipped({"mimetype": "application/vnd.oasis.opendocument.text", "content.xml": content, "meta.xml": meta})


def test_odt_headings_paragraphs_lists_and_tables() -> None:
    doc = load(odt('<text:h text:outline-level="2">Dosage</text:h><text:p>Take<text:s text:c="2"/>850 mg'
                   "<text:line-break/>twice daily.</text:p><text:list><text:list-item><text:p>With food"
                   "</text:p></text:list-item></text:list><table:table><table:table-row><table:table-cell>"
                   "<text:p>Week</text:p></table:table-cell><table:table-cell><text:p>Dose</text:p>"
                   "</table:table-cell></table:table-row><table:table-row><table:table-cell><text:p>1</text:p>"
                   "</table:table-cell><table:table-cell><text:p>500 mg</text:p></table:table-cell>"
                   "</table:table-row></table:table>"), name="protocol.odt")
    assert doc.title == "Trial protocol"
    assert doc.text == "## Dosage\n\nTake  850 mg\ntwice daily.\n\nWith food\n\nWeek | Dose\n1 | 500 mg"


def test_odt_empty_corrupt_and_huge() -> None:
    with pytest.raises(DocumentError, match="has no text"):
        load(odt("<text:p/>"), name="empty.odt")
    with pytest.raises(DocumentError, match="damaged XML"):
        load(zipped({"content.xml": "<office:document-content"}), name="broken.odt")
    with pytest.raises(DocumentError, match="zip bomb"):
        load(bomb("content.xml"), name="bomb.odt")
    with pytest.raises(DocumentError, match="declares XML entities"):
        load(entity_bomb("content.xml"), name="lol.odt")
    with pytest.raises(DocumentError, match="too large"):
        load(odt("<text:p>" + "word " * 400 + "</text:p>"), name="big.odt", max_chars=1000)


# --- RTF -------------------------------------------------------------------------------------

@needs["striprtf"]
def test_rtf_text_is_found(tmp_path: Path) -> None:
    path = tmp_path / "letter.rtf"
    path.write_bytes(rb"{\rtf1\ansi{\fonttbl\f0 Times;}\f0 Dear Dr. Smith,\par The {\b HbA1c} was 6.8%.\par}")
    doc = load(path)
    assert "Dear Dr. Smith," in doc.text and "The HbA1c was 6.8%." in doc.text and "Times" not in doc.text


@needs["striprtf"]
def test_rtf_empty_corrupt_and_huge(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="has no text"):
        load(rb"{\rtf1\ansi }", name="empty.rtf")
    with pytest.raises(DocumentError, match="is not RTF"):
        load(b"plain words, not rtf", name="fake.rtf")
    with pytest.raises(DocumentError, match="too large"):
        load(rb"{\rtf1 " + b"word " * 1000 + b"}", name="big.rtf", max_chars=1000)
    path = tmp_path / "huge.rtf"
    path.write_bytes(rb"{\rtf1 " + b"x" * 2000 + b"}")
    with pytest.raises(DocumentError, match="bytes of rtf"):
        load(path, max_chars=100)


@pytest.mark.parametrize(("module", "name"), [("openpyxl", "a.xlsx"), ("pptx", "a.pptx"), ("striprtf.striprtf", "a.rtf")])
def test_without_the_formats_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch, module: str, name: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes the import raise ImportError
    data = rb"{\rtf1 hello}" if name.endswith(".rtf") else zipped({"x.xml": "<x/>"})
    with pytest.raises(MissingDependencyError, match=r"pip install 'minions\[formats\]'"):
        load(data, name=name)


# --- the doors -------------------------------------------------------------------------------

def test_every_door_accepts_exactly_the_loader_registry(tmp_path: Path) -> None:
    suffixes = set(KINDS)
    assert {".xlsx", ".csv", ".pptx", ".epub", ".odt", ".rtf"} <= suffixes
    # the CLI's help
    out = subprocess.run([sys.executable, "-m", "minions.cli", "ask", "--help"], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert all(s in out for s in suffixes)
    # serve's file parts: both refusals name the registry's list, and no suffix is refused by type
    pytest.importorskip("fastapi")
    from minions.serve.chat import _text
    from minions.serve.errors import InvalidRequest
    from minions.serve.schemas import ChatMessage
    from minions.serve.store import parse_upload

    with pytest.raises(InvalidRequest) as err:
        asyncio.run(parse_upload(b"x", "", param="file"))
    assert SUPPORTED in str(err.value)
    with pytest.raises(InvalidRequest) as err:
        _text(ChatMessage(role="user", content=[{"type": "image_url", "image_url": {"url": "x"}}]), 0)
    assert SUPPORTED in str(err.value)
    for suffix in suffixes:
        with pytest.raises(InvalidRequest) as err:  # empty files: refused for being empty, not for their type
            asyncio.run(parse_upload(b"", "x" + suffix, param="file"))
        assert "is empty" in str(err.value)
    # the MCP listing: one file per suffix under a root, plus one unsupported
    pytest.importorskip("mcp")
    from minions.serve.mcp import Roots

    for suffix in suffixes:
        (tmp_path / f"f{suffix}").write_bytes(b"x")
    (tmp_path / "f.xls").write_bytes(b"x")
    assert {Path(f["path"]).suffix for f in Roots([tmp_path]).files()} == suffixes
    # the app's uploader
    pytest.importorskip("streamlit")
    sys.path.insert(0, str(ROOT / "apps"))
    from minions_app.docs import UPLOAD_TYPES

    assert {"." + t for t in UPLOAD_TYPES} == suffixes


def test_the_core_install_stays_lean() -> None:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    extras = project["optional-dependencies"]
    for package, extra in [("openpyxl", "formats"), ("python-pptx", "formats"), ("striprtf", "formats"),
                           ("pytesseract", "ocr"), ("pillow", "ocr")]:
        assert package not in core and any(d.lower().startswith(package) for d in extras[extra])
    code = "import sys, minions.documents; print(sorted({'openpyxl', 'pptx', 'striprtf', 'pytesseract', 'PIL'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"  # imported when a file of that kind is loaded, not before


@needs["pptx"]
def test_pptx_tables_and_grouped_shapes_are_read() -> None:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[5])  # title only
    slide.shapes.title.text = "Segments"
    table = slide.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    for (r, c), text in {(0, 0): "Segment", (0, 1): "Sales", (1, 0): "Health", (1, 1): "8,431"}.items():
        table.cell(r, c).text = text
    group = slide.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(1), Inches(4), Inches(3), Inches(1)).text_frame.text = "Grouped caption"
    buf = io.BytesIO()
    deck.save(buf)
    text = load(buf.getvalue(), name="segments.pptx").text
    assert text.startswith("## Slide 1: Segments")
    assert "| Segment | Sales |\n| --- | --- |\n| Health | 8,431 |" in text and "Grouped caption" in text
