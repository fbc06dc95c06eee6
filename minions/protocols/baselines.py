"""Baselines behind the protocol interface: remote-only, local-only and RAG (hybrid top-k to the remote)."""

from __future__ import annotations

import asyncio
import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from minions.clients.base import Message, Options
from minions.documents import Chunk
from minions.egress.budget import MaxVerbatim
from minions.protocols.base import Protocol, ProtocolConfig, RunContext
from minions.protocols.context import (
    DEFAULT_LOCAL_WINDOW,
    chunk_citation,
    fit_context,
    format_documents,
    locate_citations,
    nonempty,
    prompt_tokens,
)
from minions.protocols.result import RoundDecision
from minions.protocols.templates import render

_CHUNK_REF = re.compile(r"\[C(\d+)\]")


# --- the baselines -----------------------------------------------------------------------------

class BaselineConfig(ProtocolConfig):
    #: cap on the prompt's tokens; the model's own context window applies as well
    max_context_tokens: int | None = Field(None, ge=1, description="cap on the prompt's tokens")


class DocumentsConfig(BaselineConfig):
    """The knobs of a protocol whose remote reads the documents' text by design (remote-only, RAG). A
    verbatim budget cannot hold there, so it is refused where knobs are checked (a 400, an exit 2),
    naming the protocols that keep one, rather than answering without the documents."""

    sends_documents: ClassVar[bool] = True

    @field_validator("max_verbatim")
    @classmethod
    def _no_budget(cls, v: MaxVerbatim | None) -> MaxVerbatim | None:
        if v is not None and not v.unlimited:
            raise ValueError(_cannot_hold(f"max_verbatim={v}"))
        return v

    @field_validator("quotes")
    @classmethod
    def _quotes_on(cls, v: str) -> str:
        if v == "off":
            raise ValueError(_cannot_hold("quotes=off"))
        return v


def _cannot_hold(what: str) -> str:
    return (f"this protocol sends the documents' text to the remote by design, so {what} cannot hold; use "
            "--protocol minions or minion (the local model reads the documents; only its answers, and the quotes "
            "the budget allows, leave), or drop the verbatim budget")


class _WholeContext(Protocol[BaselineConfig]):
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
        ctx.show(context)
        messages = [Message(role="system", content=system),
                    Message(role="user", content=render("baseline_user", context=context, task=ctx.task))]
        completion = await ctx.call(self.role, messages, Options(max_tokens=max_tokens, temperature=cfg.temperature),
                                    step="answer", announce=True)
        answer = nonempty(completion.text, self.role)
        ctx.state.conclude(answer, locate_citations(answer, ctx.documents))
        await ctx.round_done(rec, RoundDecision.FINAL_ANSWER)
        return answer


class RemoteOnly(_WholeContext):
    """The whole context to the remote model: the quality and cost reference."""

    name = "remote-only"
    role = "remote"
    Config = DocumentsConfig
    needs = ("remote",)


class LocalOnly(_WholeContext):
    """The whole context to the local model: free, and as good as the local model is."""

    name = "local-only"
    role = "local"
    needs = ("local",)


class RAGConfig(DocumentsConfig):
    top_k: int = Field(5, ge=1, description="chunks retrieved for the remote")
    chunk_size: int = Field(1500, ge=1, description="chunk size, in the strategy's unit: characters, tokens, pages")
    chunk_strategy: Literal["chars", "tokens", "pages", "paragraphs", "sections"] = Field(
        "chars", description="how documents are cut into chunks")


class RAG(Protocol[RAGConfig]):
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
        # A corpus index holding these documents gives the same index without re-embedding; off the event loop.
        index = await asyncio.to_thread(self.corpus.index, ctx.documents, cfg.chunk_strategy, cfg.chunk_size) \
            if self.corpus is not None else None
        if index is None:
            chunks = chunk_documents(ctx.documents, cfg.chunk_strategy, cfg.chunk_size)
            index = await asyncio.to_thread(HybridIndex.for_documents, ctx.documents, chunks)
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
                ctx.state.show(text)  # the form the remote's transcript holds, for --no-store-text
        excerpts = "\n\n".join(blocks) or "(no excerpt matched the task)"
        ctx.state.read.chunks(shown, total=len(index.chunks),
                              why=f"rag: the top {cfg.top_k} excerpts ({index.retriever.value} retrieval) that fit")
        for chunk in shown:
            ctx.show(chunk.text)
        messages = [Message(role="system", content=system),
                    Message(role="user", content=render("rag_user", chunks=excerpts, task=ctx.task))]
        completion = await ctx.call("remote", messages,
                                    Options(max_tokens=cfg.remote_max_tokens, temperature=cfg.temperature),
                                    step="answer", announce=True)
        answer = nonempty(completion.text, "remote")
        cited = sorted({int(i) for i in _CHUNK_REF.findall(answer) if 1 <= int(i) <= len(shown)})
        # The excerpts the answer names; if it names none, all it was shown are its sources.
        ctx.state.conclude(answer, [chunk_citation(shown[i - 1]) for i in cited] or [chunk_citation(c) for c in shown])
        await ctx.round_done(rec, RoundDecision.FINAL_ANSWER)
        return answer


def _pages(chunk: Chunk) -> str:
    if chunk.page_start == chunk.page_end:
        return f"p. {chunk.page_start}"
    return f"pp. {chunk.page_start}-{chunk.page_end}"
