"""minions.documents on files the tests write themselves: loading, bad input, chunking, retrieval."""

from __future__ import annotations

import io
import sys
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pypdf import PdfReader, PdfWriter

from minions.documents import (
    STRATEGIES,
    BM25Index,
    Chunk,
    Document,
    EmbeddingIndex,
    PageSpan,
    ScoredChunk,
    chunk_document,
    chunk_documents,
    load,
    load_many,
)
from minions.errors import ConfigError, DocumentError, MissingDependencyError
from minions.tokens import count_tokens
from tests.table_pdf import serialize

PAGES = [
    "Acme Corporation annual report\nRevenue grew to 120 million dollars in fiscal 2024.",
    "Page two: capital expenditures were 15 million, mostly new warehouses (Ohio).",
    "Page three: the board approved a dividend of 0.42 per share.",
]


# --- a tiny PDF writer (no reportlab here): one Helvetica text stream per page ----------------

def make_pdf(pages: list[str | None]) -> bytes:
    """A valid PDF; a page of None is image-only (a 2x2 grey bitmap, no text), like a scan."""
    objects: dict[int, bytes] = {}
    page_ids = [4 + 3 * i for i in range(len(pages))]
    objects[1] = b"<< /Type /Catalog /Pages 2 0 R >>"
    kids = " ".join(f"{p} 0 R" for p in page_ids)
    objects[2] = f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode()
    objects[3] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    for pid, text in zip(page_ids, pages, strict=True):
        if text is None:
            content = b"q 400 0 0 400 100 200 cm /Im1 Do Q"
            objects[pid + 2] = (b"<< /Type /XObject /Subtype /Image /Width 2 /Height 2 /ColorSpace /DeviceGray"
                                b" /BitsPerComponent 8 /Length 4 >>\nstream\n\x00\xff\xff\x00\nendstream")
            resources = f"<< /XObject << /Im1 {pid + 2} 0 R >> >>"
        else:
            lines = [ln.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for ln in text.split("\n")]
            body = " T* ".join(f"({ln}) Tj" for ln in lines)
            content = f"BT /F1 12 Tf 14 TL 72 720 Td {body} ET".encode("cp1252")
            objects[pid + 2] = b"<< >>"  # unused filler keeps object numbers regular
            resources = "<< /Font << /F1 3 0 R >> >>"
        objects[pid] = (f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources {resources} "
                        f"/Contents {pid + 1} 0 R >>").encode()
        objects[pid + 1] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content)
    return serialize(objects)


def encrypt(pdf: bytes, user: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password=user, owner_password="owner-secret", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.fixture
def pdf_path(tmp_path: Path) -> Path:
    path = tmp_path / "acme-2024.pdf"
    path.write_bytes(make_pdf(PAGES))
    return path


def check_chunks(doc: Document, chunks: list[Chunk]) -> None:
    """The provenance invariants every chunker must keep."""
    assert chunks, "no chunks"
    for i, c in enumerate(chunks):
        assert doc.text[c.start:c.end] == c.text and c.text == c.text.strip() and c.text
        assert (c.id, c.doc_id, c.index) == (f"{doc.id}#{i}", doc.id, i)
        assert (c.page_start, c.page_end) == doc.page_range(c.start, c.end)
        assert i == 0 or c.start > chunks[i - 1].start
    # every non-blank character of the document is in some chunk
    covered = [False] * len(doc.text)
    for c in chunks:
        covered[c.start:c.end] = [True] * (c.end - c.start)
    missed = [ch for ch, cov in zip(doc.text, covered, strict=True) if not cov and not ch.isspace()]
    assert not missed, f"{len(missed)} characters not in any chunk"


# --- loading ---------------------------------------------------------------------------------

def test_pdf_loads_page_by_page(pdf_path: Path) -> None:
    doc = load(pdf_path)
    assert doc.id == "acme-2024" and doc.source == str(pdf_path)
    assert [p.number for p in doc.pages] == [1, 2, 3]
    assert doc.metadata["num_pages"] == 3 and doc.metadata["warnings"] == []
    for number, expected in enumerate(PAGES, 1):
        span = doc.pages[number - 1]
        assert doc.text[span.start:span.end].split() == expected.split()
        assert doc.page_of(span.start) == doc.page_of(span.end - 1) == number
    assert "(Ohio)" in doc.page_text(2)
    assert load(str(pdf_path)).text == doc.text  # str path too
    assert load(pdf_path.read_bytes(), name="acme-2024.pdf").text == doc.text
    assert load(pdf_path.read_bytes()).pages == doc.pages  # sniffed without a name


def test_pdf_parser_warnings_go_to_metadata_not_stderr(pdf_path: Path, capfd: pytest.CaptureFixture) -> None:
    damaged = pdf_path.read_bytes().replace(b"startxref\n", b"startxref\n1")  # recoverable damage
    doc = load(damaged, name="damaged.pdf")
    assert len(doc.pages) == 3 and doc.source == "<bytes>" and doc.id == "damaged"
    assert any("startxref" in w and "damaged.pdf" in w for w in doc.metadata["warnings"])
    assert capfd.readouterr() == ("", "")


def test_document_model() -> None:
    doc = Document.from_pages(["abc", "", "defg"], id="d", title="D", metadata={"k": 1})
    assert doc.text == "abc\n\n\n\ndefg"
    assert [(p.start, p.end) for p in doc.pages] == [(0, 3), (5, 5), (7, 11)]
    assert [doc.page_of(i) for i in (0, 2, 3, 4, 5, 6, 7, 10)] == [1, 1, 1, 1, 2, 2, 3, 3]
    assert doc.page_text(3) == "defg" and doc.metadata == {"k": 1}
    single = Document.from_text("# Title\nbody")
    assert single.title == "Title" and single.pages == [PageSpan(number=1, start=0, end=12)]
    assert single.page_of(5) == 1 and single.id == Document.from_text("# Title\nbody").id
    with pytest.raises(ValueError, match="outside the text"):
        Document(id="x", title="x", source="<text>", text="abc", pages=[PageSpan(number=1, start=0, end=9)])


def test_aes_pdf_with_empty_user_password_opens(tmp_path: Path) -> None:
    path = tmp_path / "aes.pdf"
    path.write_bytes(encrypt(make_pdf(PAGES), user=""))
    doc = load(path)
    assert doc.metadata["encrypted"] is True and len(doc.pages) == 3
    assert "dividend of 0.42" in doc.text


def test_password_protected_pdf(tmp_path: Path) -> None:
    path = tmp_path / "locked.pdf"
    path.write_bytes(encrypt(make_pdf(PAGES), user="s3cret"))
    with pytest.raises(DocumentError, match="password-protected") as err:
        load(path)
    assert str(path) in str(err.value) and "password=" in str(err.value) and err.value.source == str(path)
    with pytest.raises(DocumentError, match="wrong"):
        load(path, password="guess")
    assert "capital expenditures" in load(path, password="s3cret").text


def test_scanned_pdf_says_ocr(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    path.write_bytes(make_pdf([None, None]))
    with pytest.raises(DocumentError, match="scanned") as err:
        load(path)
    assert str(path) in str(err.value) and "OCR" in str(err.value)


def test_corrupt_pdf(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 8)
    with pytest.raises(DocumentError, match="corrupt") as err:
        load(path)
    assert str(path) in str(err.value) and "re-download" in str(err.value)


def test_text_markdown_html(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("Line one.\r\nLine two.\n", encoding="utf-8")
    (tmp_path / "paper.md").write_text("# Results\n\nAccuracy was 91%.\n", encoding="utf-8")
    (tmp_path / "page.html").write_text(
        "<html><head><title>Q3 update</title><style>p {color: red}</style><script>var x = 1;</script></head>"
        "<body><h1>Highlights</h1><p>Sales rose <b>12%</b>.</p><ul><li>North</li><li>South</li></ul>"
        "<table><tr><td>Q3</td><td>$5M</td></tr></table></body></html>", encoding="utf-8")
    txt, md, html = load_many([tmp_path / "notes.txt", tmp_path / "paper.md", tmp_path / "page.html"])
    assert txt.text == "Line one.\nLine two.\n" and txt.id == "notes" and txt.metadata["format"] == "text"
    assert md.title == "Results" and md.pages == [PageSpan(number=1, start=0, end=len(md.text))]
    assert html.title == "Q3 update" and "# Highlights" in html.text and "Sales rose 12%." in html.text
    assert "- North" in html.text and "Q3 | $5M" in html.text
    assert "color" not in html.text and "var x" not in html.text


def test_cp1252_text_is_decoded_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "legacy.txt"
    path.write_bytes("Café “quoted” – 10€".encode("cp1252"))
    doc = load(path)
    assert doc.text == "Café “quoted” – 10€"
    [warning] = doc.metadata["warnings"]
    assert str(path) in warning and "UTF-8" in warning and "cp1252" in warning


def test_utf8_bom_is_dropped() -> None:
    doc = load("hello".encode("utf-8-sig"), name="x.txt")
    assert doc.text == "hello" and doc.metadata["warnings"] == []


@pytest.mark.parametrize("content", [b"", b"  \n\t\n"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    with pytest.raises(DocumentError, match="empty") as err:
        load(path)
    assert str(path) in str(err.value) and "check that the file" in str(err.value)


@pytest.mark.parametrize("missing", ["reports/q3-10k.pdf", "My Report.docx", "data.txt"])
def test_missing_file(missing: str) -> None:
    with pytest.raises(DocumentError, match="File not found") as err:
        load(missing)
    assert missing in str(err.value) and "Check the path" in str(err.value) and err.value.source == missing
    with pytest.raises(DocumentError, match="File not found"):
        load(Path(missing))


def test_unsupported_suffix_lists_supported(tmp_path: Path) -> None:
    path = tmp_path / "sheet.xls"  # the binary Excel format before 2007 (.xlsx is supported)
    path.write_bytes(b"\xd0\xcf\x11\xe0 not really")
    with pytest.raises(DocumentError, match="Unsupported file type '.xls'") as err:
        load(path)
    assert str(path) in str(err.value) and ".pdf" in str(err.value) and ".docx" in str(err.value)
    with pytest.raises(DocumentError, match="Unsupported"):
        load(b"abc", name="data.bin")


def test_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="is a directory") as err:
        load(tmp_path)
    assert "load_many" in str(err.value)


def test_plain_strings_are_text() -> None:
    doc = load("The quick brown fox.\nJumps over the dog.")
    assert doc.text.startswith("The quick") and doc.source == "<text>" and doc.id.startswith("doc-")
    assert doc.id == load("The quick brown fox.\nJumps over the dog.").id  # stable
    assert load("Revenue grew 5.2 percent in the U.S. last year.").text.startswith("Revenue")
    with pytest.raises(DocumentError, match="empty"):
        load("   ")


def test_load_many_makes_ids_unique(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "report.md").write_text(f"# Report {sub}\n", encoding="utf-8")
    docs = load_many([tmp_path / "a" / "report.md", tmp_path / "b" / "report.md", "same text", "same text"])
    assert [d.id for d in docs][:2] == ["report", "report-2"]
    assert len({d.id for d in docs}) == 4


def test_docx(tmp_path: Path) -> None:
    docx = pytest.importorskip("docx")
    d = docx.Document()
    d.add_heading("Annual review", level=1)
    d.add_paragraph("Revenue was strong.")
    d.add_heading("Risks", level=2)
    table = d.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "FX", "high"
    path = tmp_path / "review.docx"
    d.save(path)
    doc = load(path)
    assert doc.text == "# Annual review\n\nRevenue was strong.\n\n## Risks\n\nFX | high"
    assert [c.section for c in chunk_document(doc, "sections")] == ["Annual review", "Annual review > Risks"]
    broken = tmp_path / "broken.docx"
    broken.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DocumentError, match="re-save it") as err:
        load(broken)
    assert str(broken) in str(err.value)


def test_docx_without_python_docx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "docx", None)  # makes `import docx` raise ImportError
    path = tmp_path / "a.docx"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(MissingDependencyError, match=r"minions\[docx\]") as err:
        load(path)
    assert err.value.extra == "docx"


# --- chunking --------------------------------------------------------------------------------

MARKDOWN = """Preamble line.

# Intro
Some intro text.

## Background
Background text here.

```python
# not a heading: inside a code fence
x = 1
```

## Method
Method text.

# Results
Final numbers: 91%.
"""


def sample_docs(pdf_path: Path) -> list[Document]:
    prose = " ".join(f"Sentence {i} about revenue, costs and café prices – ok." for i in range(400))
    paragraphs = "\n\n".join(f"Paragraph {i}. " + "word " * (i % 40) for i in range(120))
    return [load(pdf_path), Document.from_text(MARKDOWN, id="md"), Document.from_text(prose, id="prose"),
            Document.from_text(paragraphs, id="paras"),
            Document.from_pages(["one " * 300, "", "   ", "two " * 50, "three"], id="paged")]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("size", [7, 120, 3000])
def test_every_chunker_keeps_provenance(pdf_path: Path, strategy: str, size: int) -> None:
    for doc in sample_docs(pdf_path):
        check_chunks(doc, chunk_document(doc, strategy, 3 if strategy == "pages" else size))


def test_chars_chunks_break_at_whitespace_and_overlap() -> None:
    doc = Document.from_text(" ".join(f"word{i:04d}" for i in range(2000)), id="w")
    chunks = chunk_document(doc, "chars", size=500, overlap=100)
    assert all(len(c.text) <= 500 for c in chunks)
    assert all(c.text.startswith("word") and c.text[-1].isdigit() for c in chunks)  # no cut words
    for a, b in pairwise(chunks):
        assert 80 <= a.end - b.start <= 110  # ~overlap characters shared, snapped to a word
    check_chunks(doc, chunks)


def test_token_chunks_fit_the_token_budget() -> None:
    text = "Ünïcödé revenue → 12 345 €; " * 300 + "日本語のテキスト。" * 50
    doc = Document.from_text(text, id="u")
    chunks = chunk_document(doc, "tokens", size=64, overlap=8)
    check_chunks(doc, chunks)
    assert all(count_tokens(c.text).n <= 64 + 2 for c in chunks)  # +2: re-tokenizing at the cut
    assert len(chunks) > len(text) // (64 * 4)


def test_page_chunks() -> None:
    doc = Document.from_pages([f"page {i} text" for i in range(1, 6)], id="p")
    chunks = chunk_document(doc, "pages", size=2)
    assert [(c.page_start, c.page_end) for c in chunks] == [(1, 2), (3, 4), (5, 5)]
    assert chunks[1].text == "page 3 text\n\npage 4 text"
    overlapping = chunk_document(doc, "pages", size=2, overlap=1)
    assert [(c.page_start, c.page_end) for c in overlapping] == [(1, 2), (2, 3), (3, 4), (4, 5)]


def test_paragraph_chunks_keep_paragraphs_whole() -> None:
    paras = [f"Paragraph {i} " + "x" * (50 + 13 * i) for i in range(16)]  # each fits in 300
    doc = Document.from_text("\n\n".join(paras) + "\n\n" + "long " * 200, id="p")
    chunks = chunk_document(doc, "paragraphs", size=300)
    check_chunks(doc, chunks)
    for c in chunks:
        assert len(c.text) <= 300
        if "Paragraph" in c.text:  # packed whole: every paragraph it holds is complete
            assert all(p in paras for p in c.text.split("\n\n"))
    assert sum("long" in c.text for c in chunks) >= 4  # the 1000-char paragraph was split


def test_section_chunks_carry_heading_paths() -> None:
    doc = Document.from_text(MARKDOWN, id="md")
    chunks = chunk_document(doc, "sections")
    assert [c.section for c in chunks] == [None, "Intro", "Intro > Background", "Intro > Method", "Results"]
    assert "# not a heading" in chunks[2].text
    small = chunk_document(doc, "sections", size=20)
    assert {c.section for c in small} == {c.section for c in chunks} and all(len(c.text) <= 20 for c in small)


def test_chunk_documents_and_bad_arguments(pdf_path: Path) -> None:
    docs = sample_docs(pdf_path)
    chunks = chunk_documents(docs, "chars", 200)
    assert len({c.id for c in chunks}) == len(chunks)
    assert [c.doc_id for c in chunks] == sorted((c.doc_id for c in chunks), key=[d.id for d in docs].index)
    with pytest.raises(ConfigError, match="use one of chars, tokens"):
        chunk_document(docs[0], "words")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="overlap < size"):
        chunk_document(docs[0], "chars", size=100, overlap=100)
    with pytest.raises(ConfigError, match="size >= 1"):
        chunk_document(docs[0], "pages", size=0)


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet=st.sampled_from("ab é\n\t#€日"), max_size=400), size=st.integers(1, 60),
       overlap=st.integers(0, 59), strategy=st.sampled_from(STRATEGIES))
def test_chunkers_on_arbitrary_text(text: str, size: int, overlap: int, strategy: str) -> None:
    doc = Document.from_pages(text.split("#"), id="h")
    overlap = overlap % size if strategy in ("chars", "tokens", "pages") else overlap
    chunks = chunk_document(doc, strategy, size, overlap)
    if doc.text.strip():
        check_chunks(doc, chunks)
    else:
        assert all(c.text.strip() for c in chunks)


# --- retrieval -------------------------------------------------------------------------------

def test_bm25_finds_the_right_chunk(pdf_path: Path) -> None:
    chunks = chunk_document(load(pdf_path), "pages")
    index = BM25Index(chunks)
    hits = index.search("How large were capital expenditures?", k=2)
    assert isinstance(hits[0], ScoredChunk) and hits[0].chunk.page_start == 2 and hits[0].score > 0
    assert [h.chunk.page_start for h in index.search("dividend per share")][:1] == [3]
    assert index.search("FY2024 revenue")[0].chunk.page_start == 1  # "FY2024" matches "2024"
    assert len(index.search("page", k=50)) == 2  # k > chunks: only chunks that match, best first
    assert index.search("") == [] and index.search("the of and") == [] and index.search("zebra") == []
    assert BM25Index([]).search("anything") == []


def test_bm25_ranks_by_score() -> None:
    docs = [Document.from_text(t, id=f"d{i}") for i, t in enumerate(
        ["apples apples apples", "apples and pears", "pears only", "nothing relevant here"])]
    hits = BM25Index(chunk_documents(docs)).search("apples", k=10)
    assert [h.chunk.doc_id for h in hits] == ["d0", "d1"]
    assert hits[0].score > hits[1].score


def test_embedding_index(pdf_path: Path) -> None:
    pytest.importorskip("wordllama", reason="the 'embeddings' extra is not installed")
    index = EmbeddingIndex(chunk_document(load(pdf_path), "pages"))
    assert index.search("money paid to shareholders", k=1)[0].chunk.page_start == 3
    assert len(index.search("warehouse spending", k=10)) == 3 and index.search(" ") == []


def test_embedding_index_without_the_extra(no_dense) -> None:
    with pytest.raises(MissingDependencyError, match=r"minions\[embeddings\]"):
        EmbeddingIndex([])


def test_hybrid_index_falls_back_to_bm25_without_the_extra(no_dense) -> None:
    from minions.documents.hybrid import HybridIndex, Retriever

    chunks = chunk_documents([Document.from_text(t, id=f"d{i}") for i, t in enumerate(
        ["apples apples apples", "apples and pears", "pears only"])])
    index = HybridIndex(chunks)
    assert index.retriever is Retriever.bm25 and index.dense_missing.extra == "embeddings"
    assert [c.doc_id for c in index.search("apples", 5)] == ["d0", "d1"]


def test_rrf_fuses_rankings_and_neighbours_follow_the_best_hit() -> None:
    import numpy as np

    from minions.documents.hybrid import complete, rrf, select_within, with_neighbours

    # 2 is first in one ranking and second in the other: it wins; 3 is listed by neither
    assert rrf([np.array([2, 0, 1]), np.array([1, 2, 0])], 4).tolist()[:2] == [2, 1]
    assert rrf([np.array([2, 0])], 4, listed_only=True).tolist() == [2, 0]
    assert complete([2, 0], 4) == [2, 0, 1, 3]
    chunks = chunk_documents([Document.from_text("a " * 50, id="x"), Document.from_text("b " * 50, id="y")], size=30)
    n = len(chunks)
    first_y = next(i for i, c in enumerate(chunks) if c.doc_id == "y")
    order = with_neighbours(chunks, [first_y, 0], strong=1)
    assert order[:2] == [first_y, first_y + 1] and first_y - 1 not in order[:3]  # never crosses documents
    assert len(set(order)) == len(order) <= n
    assert select_within(chunks, order, budget=2 * 30) == [chunks[i] for i in order[:2]]
