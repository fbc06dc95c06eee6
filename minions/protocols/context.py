"""Prompt and context helpers every protocol shares: documents as one prompt block, fitting text into
a model's context window (with a notice, never silently), citations found in the documents, the
empty-reply check.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from minions import errors
from minions.clients.base import Client
from minions.documents import Chunk, Document
from minions.protocols.base import RunContext
from minions.protocols.result import Citation

#: window assumed for a local model that does not report one (llama.cpp's default context)
DEFAULT_LOCAL_WINDOW = 8192
#: tokens per chat message for role markers and template framing; a safe over-estimate
MESSAGE_FRAMING = 8
_CUT_NOTE = "\n[... the rest of the documents was cut to fit the model's context window ...]"
_QUOTED = re.compile(r"[\"“]([^\"”\n]{8,500})[\"”]")


# --- prompts -----------------------------------------------------------------------------------

def format_documents(docs: Sequence[Document]) -> str:
    """All documents as one prompt block, with page markers for paged documents (for citations)."""
    parts = []
    for d in docs:
        if len(d.pages) > 1:
            body = "\n\n".join(f"[Page {p.number}]\n{d.text[p.start:p.end]}" for p in d.pages)
        else:
            body = d.text
        parts.append(f"=== Document {d.id}: {d.title} ===\n{body}")
    return "\n\n".join(parts)


# --- context windows ---------------------------------------------------------------------------

def prompt_tokens(client: Client, *texts: str) -> int:
    return sum(client.count_tokens(t) + MESSAGE_FRAMING for t in texts)


async def fit_context(ctx: RunContext, role: str, context: str, *, overhead: int, reserve: int,
                      limit: int | None, default_window: int | None) -> str:
    """`context`, cut at the end (with a notice) if it does not fit the model's window.

    The window is the smaller of the client's own (`context_window`, which an embedded model learns
    when counting loads it) and `limit`; `default_window` when neither is known, no cut when that is
    None. `overhead` is the prompt around the context, `reserve` what the reply (and later turns) need.
    """
    client = ctx.client(role)
    if role == "remote":  # scrub before any cut: a cut must not split personal data out of sight
        context = ctx.redact(context)
    total = len(context)
    known = [w for w in (client.context_window, limit) if w]
    if known and total > min(known) * _MAX_CHARS_PER_TOKEN:
        # Far more text than the window can hold: what cannot fit is dropped before it is counted
        # (counting 300 MB of text would take longer than the run).
        context = context[:min(known) * _MAX_CHARS_PER_TOKEN]
    n = client.count_tokens(context)  # first: may load an embedded model and so learn its window
    known = [w for w in (client.context_window, limit) if w]
    window = min(known) if known else default_window
    if window is None:
        ctx.state.read.prefix(total, total)
        return context
    room = window - overhead - reserve
    if n <= room and len(context) == total:
        ctx.state.read.prefix(total, total)
        return context
    room -= client.count_tokens(_CUT_NOTE)
    kept = (context if n <= room else _cut(client, context, n, room)) if room > 0 else ""
    ctx.state.read.prefix(len(kept), total)
    share = 100.0 * len(kept) / max(1, total)
    await ctx.notice(
        f"{ctx.protocol.name}: the documents are {'over ' if len(context) < total else ''}{n:,} tokens but {client.spec} has room for {max(room, 0):,} "
        f"(window {window:,} less prompt and reply); kept the first {share:.0f}% of the text. "
        "Use the minions or rag protocol for documents this long, or raise the context limit.")
    return kept + _CUT_NOTE if kept else _CUT_NOTE.strip()


#: no tokenizer packs more characters than this into one token on average over a document
_MAX_CHARS_PER_TOKEN = 32


def _cut(client: Client, text: str, n: int, room: int) -> str:
    chars = int(len(text) * room / n)
    for _ in range(30):  # proportional steps converge in two or three; the bound is a backstop
        piece = text[:chars]
        m = client.count_tokens(piece)
        if m <= room:
            return piece
        chars = min(chars - 1, int(chars * room / m * 0.98))
        if chars <= 0:
            break
    return ""


# --- citations ----------------------------------------------------------------------

def chunk_citation(chunk: Chunk) -> Citation:
    return Citation(doc_id=chunk.doc_id, chunk_id=chunk.id, page_start=chunk.page_start,
                    page_end=chunk.page_end, text=chunk.text)


def locate_citations(answer: str | None, docs: Sequence[Document], limit: int = 3) -> list[Citation]:
    """Cite the pages where the answer, or a passage it quotes, appears verbatim in a document."""
    if not answer:
        return []
    found: list[Citation] = []
    for cand in [answer.strip()] + [q.strip() for q in _QUOTED.findall(answer)]:
        if not 8 <= len(cand) <= 2000 or any(c.text == cand for c in found):
            continue
        for d in docs:
            i = d.text.find(cand)
            if i >= 0:
                first, last = d.page_range(i, i + len(cand))
                found.append(Citation(doc_id=d.id, page_start=first, page_end=last, text=cand))
                break
        if len(found) >= limit:
            break
    return found


def nonempty(text: str, who: str) -> str:
    text = text.strip()
    if not text:
        raise errors.ModelOutputError(f"The {who} model returned an empty reply; try again, or raise its "
                                      "max tokens if it stopped early.")
    return text
