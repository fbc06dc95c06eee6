"""The source view: a citation's page, with its quote highlighted, so a reader can check the quote
in context (issue 20, item 4).

Every citation a run returns carries character offsets into its document's text (`Citation.start`,
`.end`, `.page`, computed where the quote was verified). The page's text is shown with exactly that
span marked. For a PDF the page itself is shown as well: rendered by pypdfium2 (in the `app` extra,
BSD/Apache licensed; PyMuPDF is AGPL), with the quote's boxes painted over it. pdfium extracts the
page's text with other line breaks and spacing than our loader, so the quote is found in pdfium's
text with the same matcher that verified it (whitespace-normalised), and painted from the char boxes.

Document text is untrusted: it is HTML-escaped before it is marked up, and never read as Markdown.
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass
from typing import Any

import streamlit as st

from minions.documents import Document
from minions.protocols.citations import match_citation
from minions.protocols.result import Citation

from .fmt import literal_md, pages_label

#: characters of the page shown around the quote (the rest is elided, with its length)
CONTEXT_CHARS = 1500
_MARK = "background: #ffe066; color: #1a1a1a; padding: 0 1px; border-radius: 2px;"
_BOX = ("white-space: pre-wrap; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.85rem; "
        "line-height: 1.45; max-height: 28rem; overflow-y: auto; padding: 0.75rem 1rem; border-radius: 0.5rem; "
        "border: 1px solid rgba(128, 128, 128, 0.35);")
_ELIDED = "color: #888; font-style: italic;"


@dataclass(frozen=True)
class PageView:
    """One page's text and the quote's [lo, hi) inside it (clipped to the page)."""

    page: int
    pages: int
    text: str
    lo: int
    hi: int

    @property
    def quote(self) -> str:
        return self.text[self.lo:self.hi]


def page_view(doc: Document, c: Citation) -> PageView | None:
    """The page holding the citation's quote, or None when the quote was not placed in `doc`."""
    if c.start is None or c.end is None or not 0 <= c.start <= c.end <= len(doc.text):
        return None
    number = c.page if c.page is not None else doc.page_of(c.start)
    span = next((p for p in doc.pages if p.number == number), None)
    if span is None:
        return None
    lo = min(max(c.start, span.start), span.end) - span.start
    hi = max(min(c.end, span.end) - span.start, lo)
    return PageView(page=number, pages=len(doc.pages), text=doc.text[span.start:span.end], lo=lo, hi=hi)


def highlighted_html(view: PageView, context: int = CONTEXT_CHARS) -> str:
    """The page's text around the quote (whole lines, `context` characters either side), escaped,
    with the quote in a <mark>."""
    text = view.text
    a = max(0, view.lo - context)
    a = text.rfind("\n", 0, a) + 1 if a > 0 else 0
    b = min(len(text), view.hi + context)
    nl = text.find("\n", b)
    b = len(text) if b >= len(text) or nl < 0 else nl
    parts = [f'<div class="minions-source" style="{_BOX}">']
    if a:
        parts.append(f'<span style="{_ELIDED}">… {a:,} characters of page {view.page} above …</span>\n')
    parts.append(html.escape(text[a:view.lo]))
    parts.append(f'<mark class="minions-quote" style="{_MARK}">{html.escape(view.quote)}</mark>')
    parts.append(html.escape(text[view.hi:b]))
    if b < len(text):
        parts.append(f'\n<span style="{_ELIDED}">… {len(text) - b:,} characters of page {view.page} below …</span>')
    parts.append("</div>")
    return "".join(parts)


def is_pdf(doc: Document, name: str = "") -> bool:
    return doc.metadata.get("format") == "pdf" or name.lower().endswith(".pdf")


def pdf_page_image(data: bytes, page: int, quote: str, scale: float = 1.5) -> tuple[Any, int] | None:
    """The PDF page rendered as a PIL image with the quote's boxes painted yellow, and how many
    boxes were painted (0: pdfium's text of the page does not hold the quote). None without
    pypdfium2 or when the page cannot be rendered."""
    from minions.documents.pdf_tables import PDFIUM_LOCK

    with PDFIUM_LOCK:  # PDFium is not thread-safe; the loader's table pass uses it from other sessions
        return _pdf_page_image(data, page, quote, scale)


def _pdf_page_image(data: bytes, page: int, quote: str, scale: float) -> tuple[Any, int] | None:
    try:
        import pypdfium2 as pdfium
        from PIL import Image, ImageDraw
    except ImportError:
        return None
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError:
        return None
    try:
        if not 1 <= page <= len(pdf):
            return None
        pg = pdf[page - 1]
        height = pg.get_height()
        image = pg.render(scale=scale).to_pil().convert("RGBA")
        textpage = pg.get_textpage()
        rects: list[tuple[float, float, float, float]] = []
        for start, end in quote_spans(quote, textpage.get_text_range()):
            n = textpage.count_rects(start, end - start)
            rects += [textpage.get_rect(i) for i in range(n)]
        overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        for left, bottom, right, top in rects:  # PDF points, origin bottom-left -> pixels, origin top-left
            draw.rectangle([left * scale - 1, (height - top) * scale - 1, right * scale + 1,
                            (height - bottom) * scale + 1], fill=(255, 214, 0, 110), outline=(230, 160, 0, 255))
        return Image.alpha_composite(image, overlay).convert("RGB"), len(rects)
    finally:
        pdf.close()


_CELLS = re.compile(r"[ \t]*\|[ \t]*|\n")


def quote_spans(quote: str, text: str) -> list[tuple[int, int]]:
    """Where `quote` (our loader's text) is in `text` (pdfium's text of the same page): the whole
    quote when it matches; else, for a quote holding table rows (written as Markdown rows by the
    table extractor, which pdfium's text is not), each cell of 3+ characters found in order."""
    if not quote.strip():
        return []
    m = match_citation(quote, text)
    if m.found and m.start is not None and m.end is not None and m.end > m.start:
        return [(m.start, m.end)]
    spans, pos = [], 0
    for cell in (c.strip() for c in _CELLS.split(quote)):
        if len(cell) < 3 or set(cell) <= set("-:| "):
            continue
        m = match_citation(cell, text[pos:], fuzzy=False)
        if m.found and m.start is not None and m.end is not None:
            spans.append((pos + m.start, pos + m.end))
            pos += m.end
    return spans


@st.cache_data(show_spinner=False, max_entries=32)
def _page_png(data: bytes, page: int, quote: str) -> tuple[bytes, int] | None:
    shot = pdf_page_image(data, page, quote)
    if shot is None:
        return None
    image, boxes = shot
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue(), boxes


def render_source(doc: Document | None, c: Citation, data: bytes | None = None, name: str = "") -> None:
    """The citation's page: the PDF page image (when the file's bytes are at hand) and the page's
    text, with the quote highlighted in both."""
    if doc is None:
        st.info("This document is no longer loaded, so its page cannot be shown.")
        return
    view = page_view(doc, c)
    if view is None:
        st.warning("This quote was not found in the document, so there is no page to show. Check it by hand "
                   "before trusting it.")
        return
    where = f"page {view.page} of {view.pages}" if view.pages > 1 else "the document (one page)"
    st.caption(f"{literal_md(doc.title)} · {where} · characters {c.start:,}–{c.end:,} "
               f"{pages_label(c.page_start, c.page_end) and '· cited as ' + pages_label(c.page_start, c.page_end)}")
    if data is not None and is_pdf(doc, name):
        shot = _page_png(data, view.page, view.quote)
        if shot is None:
            st.caption("The page image needs pypdfium2 (pip install 'minions[app]'); its text is below.")
        else:
            png, boxes = shot
            st.image(png, caption=f"Page {view.page}" + ("" if boxes else " (the quote could not be located "
                                                                           "on the image; it is marked in the text)"))
    st.html(highlighted_html(view))
