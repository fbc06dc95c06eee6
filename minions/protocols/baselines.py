"""Baselines behind the protocol interface: remote-only, local-only and RAG (hybrid top-k to the remote).

Also the helpers the protocols in this package share: prompt templates, document formatting,
fitting text into a model's context window (with a notice, never silently) and citations.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Sequence
from importlib import resources
from string import Template
from typing import ClassVar, Literal

from pydantic import Field

from minions import errors
from minions.clients.base import Message, Options
from minions.documents import Chunk, Document
from minions.protocols.base import Protocol, ProtocolConfig, RunContext
from minions.protocols.events import RoundDone
from minions.protocols.result import Citation, RoundRecord

#: window assumed for a local model that does not report one (llama.cpp's default context)
DEFAULT_LOCAL_WINDOW = 8192
#: tokens per chat message for role markers and template framing; a safe over-estimate
MESSAGE_FRAMING = 8
_CUT_NOTE = "\n[... the rest of the documents was cut to fit the model's context window ...]"
_CHUNK_REF = re.compile(r"\[C(\d+)\]")
_QUOTED = re.compile(r"[\"“]([^\"”\n]{8,500})[\"”]")


# --- prompts -----------------------------------------------------------------------------------

@functools.cache
def _template(name: str) -> Template:
    path = resources.files("minions.protocols").joinpath(f"prompts/{name}.txt")
    return Template(path.read_text(encoding="utf-8"))


def render(name: str, **values: object) -> str:
    """Fill the prompt template prompts/<name>.txt (`$field` placeholders).

    Values are inserted verbatim and never parsed, so braces or `$` in a document are safe.
    """
    return _template(name).substitute({k: str(v) for k, v in values.items()}).strip()


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


def show(ctx: RunContext, text: str) -> None:
    """Register document text put into a prompt, so `store_text=False` logs can omit it
    (also in its scrubbed form, which is what the remote's transcript holds)."""
    if not text:
        return
    ctx.shown_texts.append(text)
    privacy = ctx.protocol.privacy
    if privacy is not None:
        scrubbed = privacy.scrub(text)
        if scrubbed != text:
            ctx.shown_texts.append(scrubbed)


# --- context windows ---------------------------------------------------------------------------

def prompt_tokens(client, *texts: str) -> int:
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
        ctx.read.prefix(total, total)
        return context
    room = window - overhead - reserve
    if n <= room and len(context) == total:
        ctx.read.prefix(total, total)
        return context
    room -= client.count_tokens(_CUT_NOTE)
    kept = (context if n <= room else _cut(client, context, n, room)) if room > 0 else ""
    ctx.read.prefix(len(kept), total)
    share = 100.0 * len(kept) / max(1, total)
    await ctx.notice(
        f"{ctx.protocol.name}: the documents are {'over ' if len(context) < total else ''}{n:,} tokens but {client.spec} has room for {max(room, 0):,} "
        f"(window {window:,} less prompt and reply); kept the first {share:.0f}% of the text. "
        "Use the minions or rag protocol for documents this long, or raise the context limit.")
    return kept + _CUT_NOTE if kept else _CUT_NOTE.strip()


#: no tokenizer packs more characters than this into one token on average over a document
_MAX_CHARS_PER_TOKEN = 32


def _cut(client, text: str, n: int, room: int) -> str:
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


# --- citations and events ----------------------------------------------------------------------

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


async def round_done(ctx: RunContext, rec: RoundRecord, decision: str) -> None:
    rec.decision = decision
    await ctx.emit(RoundDone(round=rec.round, decision=decision,
                             remote_usd=ctx.meter.totals("remote").cost_usd,
                             local_tokens=ctx.meter.totals("local").usage.total_tokens))


def nonempty(text: str, who: str) -> str:
    text = text.strip()
    if not text:
        raise errors.ModelOutputError(f"The {who} model returned an empty reply; try again, or raise its "
                                      "max tokens if it stopped early.")
    return text


# --- the baselines -----------------------------------------------------------------------------

class BaselineConfig(ProtocolConfig):
    #: cap on the prompt's tokens; the model's own context window applies as well
    max_context_tokens: int | None = Field(None, ge=1, description="cap on the prompt's tokens")


class _WholeContext(Protocol):
    """Every document and the task in one prompt to one model."""

    role: ClassVar[Literal["local", "remote"]]
    Config = BaselineConfig

    async def _run(self, ctx: RunContext) -> str | None:
        cfg = self.config
        rec = ctx.new_round()
        client = ctx.client(self.role)
        max_tokens = cfg.remote_max_tokens if self.role == "remote" else cfg.local_max_tokens
        system = render("baseline_system")
        context = await fit_context(
            ctx, self.role, format_documents(ctx.documents),
            overhead=prompt_tokens(client, system, render("baseline_user", context="", task=ctx.task)),
            reserve=max_tokens, limit=cfg.max_context_tokens,
            default_window=DEFAULT_LOCAL_WINDOW if self.role == "local" else None)
        show(ctx, context)
        messages = [Message(role="system", content=system),
                    Message(role="user", content=render("baseline_user", context=context, task=ctx.task))]
        completion = await ctx.call(self.role, messages, Options(max_tokens=max_tokens, temperature=cfg.temperature),
                                    step="answer", announce=True)
        answer = nonempty(completion.text, self.role)
        ctx.best_answer = answer
        ctx.citations = locate_citations(answer, ctx.documents)
        await round_done(ctx, rec, "final_answer")
        return answer


class RemoteOnly(_WholeContext):
    """The whole context to the remote model: the quality and cost reference."""

    name = "remote-only"
    role = "remote"
    needs = ("remote",)


class LocalOnly(_WholeContext):
    """The whole context to the local model: free, and as good as the local model is."""

    name = "local-only"
    role = "local"
    needs = ("local",)


class RAGConfig(BaselineConfig):
    top_k: int = Field(5, ge=1, description="chunks retrieved for the remote")
    chunk_size: int = Field(1500, ge=1, description="chunk size, in the strategy's unit: characters, tokens, pages")
    chunk_strategy: Literal["chars", "tokens", "pages", "paragraphs", "sections"] = Field(
        "chars", description="how documents are cut into chunks")


class RAG(Protocol):
    """The top-k chunks (hybrid retrieval: BM25 + dense, BM25 alone without the `embeddings` extra), with
    their ids and pages, and the task to the remote model."""

    name = "rag"
    needs = ("remote",)
    Config = RAGConfig

    async def _run(self, ctx: RunContext) -> str | None:
        from minions.documents import chunk_documents
        from minions.documents.hybrid import HybridIndex

        cfg = self.config
        rec = ctx.new_round()
        client = ctx.client("remote")
        chunks = chunk_documents(ctx.documents, cfg.chunk_strategy, cfg.chunk_size)
        index = await asyncio.to_thread(HybridIndex.for_documents, ctx.documents, chunks)  # off the event loop
        if index.dense_missing is not None:
            await ctx.notice(f"rag: excerpts chosen by BM25 only: hybrid retrieval (BM25 + dense embeddings) "
                             f"needs the '{index.dense_missing.extra}' extra: pip install 'minions[embeddings]'",
                             level="info")
        hits = index.search(ctx.task, cfg.top_k)
        if not hits:
            await ctx.notice("rag: no passage of the documents matches the task's words; asking the remote "
                             "model without excerpts.", level="info")
        system = render("baseline_system")
        # Whole excerpts, best first, while they fit: a cut-off excerpt would cite text it lacks.
        known = [w for w in (client.context_window, cfg.max_context_tokens) if w]
        room = (min(known) - cfg.remote_max_tokens
                - prompt_tokens(client, system, render("rag_user", chunks="", task=ctx.task))) if known else None
        blocks: list[str] = []
        shown: list[Chunk] = []
        docs = {d.id: d for d in ctx.documents}
        for chunk in hits:
            # Each excerpt scrubbed as part of its whole document: a card number split across two
            # chunks is still found (with --privacy; otherwise this is chunk.text).
            text = ctx.redact_slice(docs[chunk.doc_id], chunk.start, chunk.end)
            if chunk.header:  # a table's header row, repeated for an excerpt that starts below it
                text = ctx.redact(chunk.header) + "\n" + text
            block = f"[C{len(shown) + 1}] {chunk.doc_id}, {_pages(chunk)}\n{text}"
            if room is not None:
                room -= client.count_tokens(block) + 2
                if room < 0:
                    await ctx.notice(f"rag: {len(hits) - len(shown)} of {len(hits)} excerpts left out to fit "
                                     f"{client.spec}'s context window.")
                    break
            blocks.append(block)
            shown.append(chunk)
            if text != chunk.text:
                ctx.shown_texts.append(text)  # the form the remote's transcript holds, for --no-store-text
        excerpts = "\n\n".join(blocks) or "(no excerpt matched the task)"
        ctx.read.chunks(shown, total=len(chunks))
        ctx.read.why = f"rag: the top {cfg.top_k} excerpts ({index.retriever.value} retrieval) that fit"
        for chunk in shown:
            show(ctx, chunk.text)
        messages = [Message(role="system", content=system),
                    Message(role="user", content=render("rag_user", chunks=excerpts, task=ctx.task))]
        completion = await ctx.call("remote", messages,
                                    Options(max_tokens=cfg.remote_max_tokens, temperature=cfg.temperature),
                                    step="answer", announce=True)
        answer = nonempty(completion.text, "remote")
        ctx.best_answer = answer
        cited = sorted({int(i) for i in _CHUNK_REF.findall(answer) if 1 <= int(i) <= len(shown)})
        # The excerpts the answer names; if it names none, all it was shown are its sources.
        ctx.citations = [chunk_citation(shown[i - 1]) for i in cited] or [chunk_citation(c) for c in shown]
        await round_done(ctx, rec, "final_answer")
        return answer


def _pages(chunk: Chunk) -> str:
    if chunk.page_start == chunk.page_end:
        return f"p. {chunk.page_start}"
    return f"pp. {chunk.page_start}-{chunk.page_end}"
