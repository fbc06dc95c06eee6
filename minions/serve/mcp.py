"""`create_mcp(service, roots)`: the MCP server (official `mcp` SDK, v2 `MCPServer`).

Tools: `ask(question, documents, protocol)` -> answer, citations with pages, cost; and
`list_documents()`. Corpus documents are also resources (minions://documents/{id}). Paths are
confined to the roots given at start: a path that resolves (symlinks followed) outside every
root is refused before anything opens it. Long runs send progress notifications.
"""

# No `from __future__ import annotations`: the SDK reads the tool signatures at runtime.

import asyncio
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from minions import __version__, errors
from minions.documents import Document, load, unique_ids
from minions.documents.loaders import KINDS
from minions.protocols.events import JobFinished, JobsPlanned, MessageSent, Notice, RoundDone
from minions.protocols.knobs import request_model
from minions.protocols.result import Citation
from minions.serve.deps import require
from minions.serve.errors import ServeError
from minions.serve.service import RunPlan, Service, log_fields, log_request

require("mcp", "mcp")

from mcp.server.mcpserver import Context, MCPServer  # noqa: E402
from mcp.server.mcpserver.exceptions import ToolError  # noqa: E402
from mcp.server.mcpserver.resources.types import TextResource  # noqa: E402

MAX_LISTED_FILES = 500
#: the ask tool's `knobs` argument: every protocol's knobs, generated from their Config classes
Knobs = request_model()


class PathRefused(ServeError):
    pass


class Roots:
    """The directories the MCP server may read documents from."""

    def __init__(self, dirs: Iterable[str | Path]):
        self.dirs: list[Path] = []
        for d in dirs:
            path = Path(d).expanduser().resolve()
            if not path.is_dir():
                raise errors.ConfigError(f"--root {d}: not a directory. Give directories the server may read.")
            self.dirs.append(path)
        if not self.dirs:
            raise errors.ConfigError("Give at least one --root directory.")

    def resolve(self, name: str) -> Path:
        """The real path of `name` (relative: to the first root holding it), if inside a root.
        Only path metadata is consulted here; nothing outside the roots is ever opened."""
        raw = Path(name).expanduser()
        candidates = [raw] if raw.is_absolute() else [d / raw for d in self.dirs]
        for candidate in candidates:
            real = candidate.resolve()
            if any(real.is_relative_to(d) for d in self.dirs):
                if real.exists() or candidate is candidates[-1]:
                    self._refuse_hidden(name, candidate, real)
                    return real
        raise PathRefused(f"{name!r} is outside the allowed roots ({', '.join(map(str, self.dirs))}); it was not "
                          "read. Pass a path inside a root, or restart with --root for its directory.",
                          param="documents")

    def _hidden(self, path: Path) -> bool:
        """Whether `path` is a dot-file or under a dot-directory below a root (.env, .git, .ssh)."""
        absolute = path if path.is_absolute() else Path.cwd() / path
        return any(absolute.is_relative_to(d) and any(part.startswith(".") for part in absolute.relative_to(d).parts)
                   for d in self.dirs)

    def _refuse_hidden(self, name: str, *paths: Path) -> None:
        """What `files` does not list is not read either: an agent must not send a secret to the
        remote by naming it (or a link to it)."""
        if any(self._hidden(p) for p in paths):
            raise PathRefused(f"{name!r} is a hidden file or inside a hidden directory; it was not read. "
                              "Only the files list_documents lists can be asked about.", param="documents")

    def files(self, limit: int = MAX_LISTED_FILES) -> list[dict[str, Any]]:
        """Supported documents under the roots (names and sizes only; hidden directories skipped)."""
        out: list[dict[str, Any]] = []
        for root in self.dirs:
            for folder, subdirs, names in os.walk(root):
                subdirs[:] = sorted(s for s in subdirs if not s.startswith("."))
                for name in sorted(names):
                    path = Path(folder) / name
                    if path.suffix.lower() not in KINDS or name.startswith("."):
                        continue
                    real = path.resolve()  # a symlink out of the roots is not listed (ask refuses it)
                    if not any(real.is_relative_to(d) for d in self.dirs) or not real.is_file() or \
                            self._hidden(real):
                        continue
                    out.append({"path": str(path), "bytes": real.stat().st_size})
                    if len(out) >= limit:
                        return out
        return out


class DocumentInfo(BaseModel):
    id: str
    title: str
    pages: int
    chars: int
    uri: str


class DocumentList(BaseModel):
    corpus: list[DocumentInfo] = Field(description="documents loaded at start; pass their ids to ask")
    files: list[dict[str, Any]] = Field(description="readable files under the roots; pass their paths to ask")
    roots: list[str]


class AskResult(BaseModel):
    answer: str | None
    protocol: str
    citations: list[Citation] = Field(description="where the answer appears: document id, pages, text, and "
                                      "start/end character offsets into the document's text, with their page")
    cost_usd: dict[str, float | None] = Field(description="remote and local dollars, and what remote-only "
                                              "would have cost")
    usage: dict[str, Any]
    rounds: int
    documents: list[str]
    error: str | None = None
    settings: dict[str, Any] | None = Field(None, description="what ran: resolved knobs, models, stand-in status, "
                                            "price sources (RunSettings.from_record reproduces the run)")


def _uri(doc_id: str) -> str:
    return f"minions://documents/{doc_id}"


def _describe(event: Any) -> str | None:
    if isinstance(event, JobsPlanned):
        return f"round {event.round}: {event.n_jobs} jobs planned over {event.n_chunks} chunks"
    if isinstance(event, JobFinished):
        return f"round {event.round}: job {event.done}/{event.total} done"
    if isinstance(event, MessageSent):
        return f"round {event.round}: {event.sender} model replied ({event.step})"
    if isinstance(event, RoundDone):
        return f"round {event.round}: {event.decision}"
    if isinstance(event, Notice):
        return event.message
    return None


def create_mcp(service: Service, roots: Roots) -> MCPServer:
    # log_level: the SDK configures the root logger; WARNING keeps other libraries' INFO chatter off stderr
    server = MCPServer("minions", version=__version__, log_level="WARNING", instructions=(
        "Answer questions over long documents: a local model reads them, a remote model plans and "
        "aggregates and never sees them. Call list_documents, then ask with document ids or paths."))
    for doc in service.store.corpus.values():
        server.add_resource(TextResource(uri=_uri(doc.id), name=doc.id, title=doc.title, text=doc.text,
                                         description=f"{len(doc.pages)} page(s), {len(doc.text)} characters"))

    async def load_documents(refs: list[str]) -> list[Document]:
        paths: list[Path | Document] = []
        refs = list(dict.fromkeys(refs))  # a repeated path or id is one document
        service.settings.ceilings.check_documents(len(refs), param="documents")
        for ref in refs:  # every path is checked before any is read
            paths.append(service.store.corpus[ref] if ref in service.store.corpus else roots.resolve(ref))
        docs = []
        for item in paths:
            if isinstance(item, Document):
                docs.append(item)
                continue
            try:
                docs.append(await asyncio.to_thread(load, item))
            except errors.DocumentError as e:
                raise ToolError(str(e)) from e
        return unique_ids(docs)

    @server.tool(description="Answer a question over documents (corpus ids from list_documents, or file paths "
                 "under the server's roots; none: the whole corpus). protocol: minions (default), minion, rag, "
                 "remote-only, local-only. knobs: the protocol's settings (each protocol takes its own; an unknown "
                 "one is an error). Returns the answer, citations with pages, and the cost.")
    async def ask(question: str, ctx: Context, documents: list[str] | None = None,
                  protocol: str | None = None, knobs: Knobs | None = None) -> AskResult:  # type: ignore[valid-type]
        try:
            name = service.protocol_name(protocol)
            checked = service.check_knobs(name, knobs.model_dump(exclude_none=True) if knobs is not None else {})
            if not question.strip():
                raise ToolError("The question is empty: ask something about the documents.")
            docs = await load_documents(documents) if documents else list(service.store.corpus.values())
            if not docs and service.run_settings.index is None:  # with --index the run picks from the index
                raise ToolError("No documents: pass paths under the roots or ids from list_documents.")
            plan = RunPlan(protocol=name, task=question, documents=docs, knobs=checked)
            ticket = service.admit(plan)
            step = {"n": 0}

            async def progress(event: Any) -> None:
                if (message := _describe(event)) is not None:
                    step["n"] += 1
                    await ctx.report_progress(step["n"], None, message)

            finished = await service.run(plan, ticket, on_event=progress)
        except ServeError as e:
            log_request({"tool": "ask", "error_type": type(e).__name__})
            raise ToolError(e.message) from e
        log_request({"tool": "ask", **log_fields(finished)})
        r = finished.result
        if r.answer is None and r.error:
            raise ToolError(f"The {name} run failed ({r.error_type}): {r.error}")
        summary = r.summary()
        return AskResult(answer=r.answer, protocol=name, citations=r.citations, cost_usd=summary["cost_usd"],
                         usage=summary["usage"], rounds=r.n_rounds, documents=[d.id for d in docs], error=r.error,
                         settings=summary["settings"])

    @server.tool(description="The corpus documents (ids for ask) and the readable files under the roots.")
    async def list_documents() -> DocumentList:
        corpus = [DocumentInfo(id=d.id, title=d.title, pages=len(d.pages), chars=len(d.text), uri=_uri(d.id))
                  for d in service.store.corpus.values()]
        files = await asyncio.to_thread(roots.files)
        return DocumentList(corpus=corpus, files=files, roots=[str(d) for d in roots.dirs])

    return server
