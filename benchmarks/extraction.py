"""PDF table extraction: speed and row integrity of today's pypdf against the candidates (issue 20).

    python benchmarks/extraction.py [--full-load]

Extractors, all measured in this run on the same pages:
  pypdf            today's loader text (`page.extract_text()`)
  pypdf-layout     pypdf's layout mode (spaces by position; also the source of the real filings' gold rows,
                   so its row integrity there is 100% by construction and is not a result)
  pdfium-text      pypdfium2's own page text (rows on a line, no columns or headers)
  pdfplumber+md    pdfplumber's words through minions.documents.pdf_tables (Markdown rows + headers)
  pdfium+md        pypdfium2's characters through minions.documents.pdf_tables (what the loader uses)

Figures:
  pages/s          pages extracted per second (best of 2), statement pages only;
  row integrity    share of table rows whose label and every value land on one line, in order;
  gold figures     FinanceBench-style probes (row label, year, figure): the figure on the label's line AND
                   under the right year (the figure's place among the line's figures = the year's place
                   among the years of the nearest header line above; for Markdown, the header row's cells).

Sources:
  generated        PDFs made here (tests/table_pdf.py): ruled, unruled, drawn column by column, and a
                   3-page table; gold rows are the rows drawn.
  real filings     the PDFs in ../shared/datasets/financebench/pdfs and, read from the fetched repository
                   patronus-ai/financebench (git object store, never copied into this repo), COCACOLA_2017_10K,
                   3M_2022_10K, ULTABEAUTY_2023Q4_EARNINGS and 3M_2018_10K. Only the financial-statement
                   pages are used (pages whose first 1,500 characters name a statement, e.g. "Consolidated
                   Balance Sheet", and that hold >= 12 figures), to keep the run short. Gold rows: lines of pypdf's layout text whose cells are a
                   label followed only by figures.
With --full-load: each whole filing as the loader reads it: pypdf's time on every page, and the added
time of the table pass (pdf_tables.table_pages), which re-reads only the pages that look tabular.

Measured 2026-12-03 (2 shared cores; 96 statement pages, 1,644 gold rows in 8 filings):
  row integrity, all real filings: pypdf 28.8% (0% on Coca-Cola 2017, 3M 2018, 3M 2022, Ulta Q4 2023,
  Pfizer 2021; 100% on Amcor, Best Buy, J&J), pdfium-text 97.0%, pdfplumber+md 98.4%, pdfium+md 99.8%
  (every filing >= 99.3%); gold figures on the line / under the right year (of 18): pypdf 4/4,
  pdfium-text 18/17, pdfplumber+md 18/18, pdfium+md 18/18. Statement pages/s (load varies between runs):
  pypdf 2.8-5.7, pdfplumber+md 1.6-3.0, pdfium+md 37-56. Whole filings: the table pass adds 5-17% to
  pypdf's load time (3M 2022: 252 pages, pypdf 50.5 s, tables +6.6 s).
  Chosen: pypdfium2 + pdf_tables (the `pdf-tables` extra).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minions.documents import pdf_tables as pt  # noqa: E402
from tests.table_pdf import GenTable, cash_flow_table, make_pdf, table_pages  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets" / "financebench" / "pdfs"
FB_REPO = Path(os.environ.get("FINANCEBENCH_REPO", "/work/.mirror/patronus-ai+financebench/repo"))
FB_NAMES = ["COCACOLA_2017_10K", "3M_2022_10K", "ULTABEAUTY_2023Q4_EARNINGS", "3M_2018_10K"]
# Matched on the page's first 1,500 characters with all whitespace removed: some filings break words
# with kerning gaps ("Balance Shee t").
_STATEMENT = re.compile(r"statements?of(?:consolidated)?(?:income|operations|earnings|cashflows?|comprehensive|"
                        r"financialposition|changesin\w{0,20}equity|(?:share|stock)\w{0,12}equity)|balancesheets?",
                        re.I)
_FIG = re.compile(r"\(?-?\$?\d[\d,]*(?:\.\d+)?\s?%?\)?%?|[—–]|(?<![\w-])-(?![\w-])")
_YEARS = re.compile(r"(?<!\d)(?:19|20)\d\d(?!\d)")
_WS = re.compile(r"\s+")

# FinanceBench-style probes: (filing, statement page 0-based, row label, year, figure). The first is
# FinanceBench question financebench_id_03029 (3M FY2018 capital expenditure, "$1577.00"); the others
# are the same kind of question (a statement line item for a fiscal year), read off the filings.
GOLD: list[tuple[str, int, str, str, str]] = [
    ("3M_2018_10K", 59, "Purchases of property, plant and equipment (PP&E)", "2018", "(1,577)"),
    ("3M_2018_10K", 59, "Depreciation and amortization", "2017", "1,544"),
    ("3M_2018_10K", 59, "Cash and cash equivalents at end of period", "2016", "2,398"),
    ("COCACOLA_2017_10K", 73, "NET OPERATING REVENUES", "2017", "35,410"),
    ("COCACOLA_2017_10K", 73, "Other income (loss) — net", "2016", "(1,234)"),
    ("COCACOLA_2017_10K", 73, "Income taxes from continuing operations", "2015", "2,239"),
    ("ULTABEAUTY_2023Q4_EARNINGS", 5, "Cost of sales", "2023", "2,014,270"),
    ("ULTABEAUTY_2023Q4_EARNINGS", 5, "Income tax expense", "2022", "85,789"),
    ("3M_2022_10K", 47, "Net sales", "2021", "35,355"),
    ("3M_2022_10K", 49, "Total assets", "2022", "46,455"),
    ("3M_2022_10K", 51, "Cash and cash equivalents at end of period", "2020", "4,634"),
    ("AMCOR_2023_10K", 49, "Net sales", "2022", "14,544"),
    ("AMCOR_2023_10K", 51, "Total assets", "2023", "17,003"),
    ("BESTBUY_2023_10K", 38, "Total assets", "2023", "15,803"),
    ("BESTBUY_2023_10K", 39, "Net earnings", "2022", "2,454"),
    ("PFIZER_2021_10K", 56, "Revenues", "2021", "81,288"),
    ("PFIZER_2021_10K", 58, "Total assets", "2020", "154,229"),
    ("PFIZER_2021_10K", 60, "Cash and cash equivalents and restricted cash and cash equivalents, at end of period",
     "2019", "1,350"),
]


# --- extractors --------------------------------------------------------------------------------

def ex_pypdf(data: bytes, pages: list[int]) -> list[str]:
    from pypdf import PdfReader
    reader = PdfReader(io.BytesIO(data))
    return [reader.pages[i].extract_text() or "" for i in pages]


def ex_pypdf_layout(data: bytes, pages: list[int]) -> list[str]:
    from pypdf import PdfReader
    reader = PdfReader(io.BytesIO(data))
    return [reader.pages[i].extract_text(extraction_mode="layout") or "" for i in pages]


def ex_pdfium_text(data: bytes, pages: list[int]) -> list[str]:
    import pypdfium2
    pdf = pypdfium2.PdfDocument(data)
    out = []
    for i in pages:
        tp = pdf[i].get_textpage()
        out.append(tp.get_text_range().replace("\r\n", "\n"))
        tp.close()
    pdf.close()
    return out


def ex_pdfium_md(data: bytes, pages: list[int]) -> list[str]:
    import pypdfium2
    pdf = pypdfium2.PdfDocument(data)
    out = [pt.page_text(pt.pdfium_words(pdf[i]))[0] for i in pages]
    pdf.close()
    return out


def ex_pdfplumber_md(data: bytes, pages: list[int]) -> list[str]:
    import pdfplumber
    with pdfplumber.open(io.BytesIO(data)) as pdf:
        return [pt.page_text(pt.pdfplumber_words(pdf.pages[i]))[0] for i in pages]


EXTRACTORS: dict[str, tuple[Callable[[bytes, list[int]], list[str]], str | None]] = {
    "pypdf": (ex_pypdf, None), "pypdf-layout": (ex_pypdf_layout, None), "pdfium-text": (ex_pdfium_text, "pypdfium2"),
    "pdfplumber+md": (ex_pdfplumber_md, "pdfplumber"), "pdfium+md": (ex_pdfium_md, "pypdfium2")}


def available(module: str | None) -> bool:
    if module is None:
        return True
    try:
        __import__(module)
        return True
    except ImportError:
        return False


# --- scoring -----------------------------------------------------------------------------------

def _norm(text: str) -> str:
    return _WS.sub(" ", text.replace("|", " ").replace("$", " ").replace("\u2019", "'")).strip()


def _figures(text: str) -> list[str]:
    return [f.replace("$", "").replace(" ", "") for f in _FIG.findall(text)]


def _label_pattern(label: str) -> re.Pattern[str]:
    """The label with any spacing between its characters (extractors differ on "outstanding – basic")."""
    chars = [c for c in _norm(label) if not c.isspace()]
    return re.compile(r"\s*".join(re.escape(c) for c in chars))


def row_line(text: str, label: str, values: list[str]) -> str | None:
    """The line of `text` holding `label` followed by every value in order, or None."""
    want = [v.replace("$", "").replace(" ", "") for v in values]
    pattern = _label_pattern(label)
    for line in text.splitlines():
        norm = _norm(line)
        m = pattern.search(norm)
        if m is None:
            continue
        got = _figures(norm[m.end():])
        k = 0
        for f in got:
            if k < len(want) and f == want[k]:
                k += 1
        if k == len(want):
            return line
    return None


def under_year(text: str, line: str, figure: str, year: str, label: str) -> bool:
    """Is `figure` on `line` in the column of `year` (by the nearest header line above with >= 2 years)?"""
    lines = text.splitlines()
    idx = lines.index(line)
    if line.lstrip().startswith("|"):  # Markdown: the header row above the table's rule line
        rule = next((k for k in range(idx - 1, 0, -1) if lines[k].startswith("| ---")), None)
        header = lines[rule - 1] if rule else None
    else:  # the nearest line above naming >= 2 years and no other figures
        header = next((h for h in reversed(lines[:idx]) if len(_YEARS.findall(h)) >= 2
                       and not re.search(r"\d,\d", _YEARS.sub("", h))), None)
    if header is None:
        return False
    fig = figure.replace("$", "")
    if line.lstrip().startswith("|") and header.lstrip().startswith("|"):
        cells = [c.strip().replace("$", "") for c in line.strip().strip("|").split("|")]
        heads = [c.strip() for c in header.strip().strip("|").split("|")]
        return any(c == fig and j < len(heads) and year in heads[j] for j, c in enumerate(cells))
    norm = _norm(line)
    m = _label_pattern(label).search(norm)
    figs = _figures(norm[m.end():]) if m else []
    years = _YEARS.findall(header)
    return fig in figs and year in years and figs.index(fig) == years.index(year)


def gold_rows(layout_pages: list[str]) -> list[tuple[int, str, list[str]]]:
    """(page index, label, values) from layout text: a label cell followed only by figure cells."""
    rows = []
    for p, text in enumerate(layout_pages):
        for line in text.splitlines():
            cells = [c for c in re.split(r"\s{2,}", line.strip()) if c]
            merged: list[str] = []
            for c in cells:  # "$" cells join the next one
                if merged and merged[-1] in ("$", "$ "):
                    merged[-1] = "$" + c
                else:
                    merged.append(c)
            if len(merged) < 2 or not re.search(r"[A-Za-z]{3}", merged[0]) or len(merged[0]) > 150:
                continue
            values = merged[1:]
            if all(pt.is_figure(v) and re.search(r"\d", v) or v.strip("$ ") in ("—", "–", "-") for v in values):
                if all(_YEARS.fullmatch(v) for v in values):
                    continue  # a header line
                rows.append((p, merged[0], values))
    return rows


# --- sources -----------------------------------------------------------------------------------

def generated() -> list[tuple[str, bytes, list[tuple[int, str, list[str]]]]]:
    out = []
    small = cash_flow_table(20)
    for layout in ("ruled", "unruled", "columns"):
        pdf = make_pdf(table_pages(small, layout))  # type: ignore[arg-type]
        out.append((f"gen-{layout}", pdf, [(0, label, values) for label, values in small.rows]))
    big: GenTable = cash_flow_table(90)
    pdf = make_pdf(table_pages(big, "columns", rows_per_page=35))
    out.append(("gen-3-pages", pdf, [(i // 35, label, values) for i, (label, values) in enumerate(big.rows)]))
    return out


def filing_bytes(name: str) -> bytes | None:
    local = DATA / f"{name}.pdf"
    if local.exists():
        return local.read_bytes()
    if not FB_REPO.exists():
        return None
    got = subprocess.run(["git", f"--git-dir={FB_REPO}", "show", f"HEAD:pdfs/{name}.pdf"], capture_output=True,
                         check=False)
    return got.stdout if got.returncode == 0 and got.stdout.startswith(b"%PDF") else None


def statement_pages(data: bytes) -> list[int]:
    """Pages naming a financial statement in their first 1,500 characters and holding >= 12 figures
    (found with pdfium's text, the fastest reader, so selection costs ~1 s a filing)."""
    import pypdfium2
    pdf = pypdfium2.PdfDocument(data)
    out = []
    for i in range(len(pdf)):
        tp = pdf[i].get_textpage()
        text = tp.get_text_range()
        tp.close()
        if _STATEMENT.search(_WS.sub("", text[:1500])) and pt.looks_tabular(text):
            out.append(i)
    pdf.close()
    return out


def best_of(fn: Callable[[], list[str]], repeat: int = 2) -> tuple[float, list[str]]:
    best, result = float("inf"), []
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full-load", action="store_true", help="also time the loader's table pass on whole filings")
    args = ap.parse_args()
    names = [n for n, (_, mod) in EXTRACTORS.items() if available(mod)]
    missing = [n for n in EXTRACTORS if n not in names]
    print(f"extractors: {', '.join(names)}" + (f" (not installed: {', '.join(missing)})" if missing else ""))

    sources: list[tuple[str, bytes, list[int], list[tuple[int, str, list[str]]] | None]] = []
    for name, pdf, rows in generated():
        from pypdf import PdfReader
        sources.append((name, pdf, list(range(len(PdfReader(io.BytesIO(pdf)).pages))), rows))
    filings = sorted(p.stem for p in DATA.glob("*.pdf")) + FB_NAMES
    for name in filings:
        data = filing_bytes(name)
        if data is None:
            print(f"  {name}: not found, skipped")
            continue
        sources.append((name, data, statement_pages(data), None))

    header = f"{'source':28} {'pages':>5} {'rows':>5} " + " ".join(f"{n:>22}" for n in names)
    print("\nrow integrity (rows on one line) and pages/s; real filings: statement pages only")
    print(header)
    totals = {n: [0, 0, 0.0, 0] for n in names}  # ok rows, rows, seconds, pages (real filings)
    texts: dict[tuple[str, str], list[str]] = {}
    for name, data, pages, rows in sources:
        results = {}
        for n in names:
            secs, out = best_of(lambda n=n, data=data, pages=pages: EXTRACTORS[n][0](data, pages))
            results[n] = (secs, out)
            texts[(name, n)] = out
        if rows is None:
            rows = gold_rows(ex_pypdf_layout(data, pages))
        cells = []
        for n in names:
            secs, out = results[n]
            ok = sum(row_line(out[p], label, values) is not None for p, label, values in rows)
            cells.append(f"{100 * ok / max(len(rows), 1):6.1f}% {len(pages) / secs:8.1f} p/s")
            if not name.startswith("gen-"):
                t = totals[n]
                t[0] += ok
                t[1] += len(rows)
                t[2] += secs
                t[3] += len(pages)
        print(f"{name:28} {len(pages):>5} {len(rows):>5} " + " ".join(f"{c:>22}" for c in cells))
    first = next(iter(totals.values()))
    print(f"{'all real filings':28} {first[3]:>5} {first[1]:>5} " + " ".join(
        f"{f'{100 * t[0] / max(t[1], 1):6.1f}% {t[3] / max(t[2], 1e-9):8.1f} p/s':>22}" for t in totals.values()))

    print("\ngold figures: on the label's line / under the right year")
    score = {n: [0, 0] for n in names}
    for name, _page, label, year, figure in GOLD:
        src = next((s for s in sources if s[0] == name), None)
        if src is None:
            continue
        idx = src[2].index(_page) if _page in src[2] else None
        marks = []
        for n in names:
            if idx is None:
                marks.append("page not selected")
                continue
            text = texts[(name, n)][idx]
            line = row_line(text, label, [figure])
            right = bool(line) and under_year(text, line, figure, year, label)
            score[n][0] += bool(line)
            score[n][1] += right
            marks.append(("line " if line else "---- ") + ("year" if right else "----"))
        print(f"  {name} p{_page + 1} {label[:40]!r} {year} {figure}")
        print("    " + "  ".join(f"{n}: {m}" for n, m in zip(names, marks, strict=True)))
    print("  totals (on the line / under the right year, of " + f"{len(GOLD)}): " +
          ", ".join(f"{n} {a}/{b}" for n, (a, b) in score.items()))

    if args.full_load:
        from pypdf import PdfReader
        print("\nwhole filings, as the loader reads them: pypdf on every page (today), then the table pass on\n"
              "the pages whose pypdf text looks tabular (>= 12 figures)")
        for name, data, _, rows in sources:
            if rows is not None:
                continue
            t = time.perf_counter()
            texts = [p.extract_text() or "" for p in PdfReader(io.BytesIO(data)).pages]
            base = time.perf_counter() - t
            t = time.perf_counter()
            found = pt.table_pages(data, texts)
            extra = time.perf_counter() - t
            wanted = sum(pt.looks_tabular(x) for x in texts)
            print(f"  {name:32} {len(texts):>4} pages  pypdf {base:6.2f} s ({len(texts) / base:5.1f} p/s)  "
                  f"tables +{extra:5.2f} s (+{100 * extra / base:4.1f}%): {wanted} pages re-read, "
                  f"{len(found)} with tables")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
