"""Server-side ceilings on what one request may ask for: each request knob that multiplies work
or memory (chunk counts, reply tokens, concurrency, documents) has a ceiling the server sets, and a
request above it is refused at admission with a 400 naming the ceiling — before any work starts.

The server's own knobs (CLI flags) are the operator's choice and are not capped here; a request
may lower them, or raise them up to the ceilings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from minions.documents import Document
from minions.serve.errors import InvalidRequest

#: characters per token assumed when estimating a `tokens` chunking's chunk count (an upper bound)
_CHARS_PER_TOKEN_LOW = 3


class Ceilings(BaseModel):
    """Per-request ceilings of one server (ServeSettings.ceilings)."""

    model_config = ConfigDict(extra="forbid")

    max_chunks: int = Field(1000, ge=1, description="most chunks a request's chunk_size may cut its documents into")
    local_max_tokens: int = Field(4096, ge=1, description="largest local_max_tokens a request may set")
    remote_max_tokens: int = Field(32_768, ge=1, description="largest remote_max_tokens a request may set")
    concurrency: int = Field(16, ge=1, description="largest concurrency (local jobs at once) a request may set")
    max_documents: int = Field(64, ge=1, description="most distinct documents one request may name")
    top_k: int = Field(200, ge=1, description="largest top_k / retrieval_top_k a request may set")

    def check_documents(self, count: int, *, param: str) -> None:
        if count > self.max_documents:
            raise InvalidRequest(f"{count} distinct documents in one request is above this server's ceiling of "
                                 f"{self.max_documents} (ceilings.max_documents): ask over fewer documents.",
                                 param=param)

    def check(self, protocol: str, knobs: Mapping[str, Any], effective: Mapping[str, Any],
              documents: Iterable[Document]) -> None:
        """`knobs`: what the request set; `effective`: the run's config values (server + request)."""
        docs = list(documents)
        self.check_documents(len(docs), param="minions.documents")
        for knob, ceiling in (("local_max_tokens", self.local_max_tokens),
                              ("remote_max_tokens", self.remote_max_tokens),
                              ("concurrency", self.concurrency), ("top_k", self.top_k),
                              ("retrieval_top_k", self.top_k)):
            value = knobs.get(knob)
            if isinstance(value, int | float) and value > ceiling:
                raise InvalidRequest(f"{knob}={value} is above this server's ceiling of {ceiling} "
                                     f"(ceilings.{'top_k' if 'top_k' in knob else knob}); ask for at most {ceiling}.",
                                     param=f"minions.knobs.{knob}")
        if {"chunk_size", "chunk_strategy"} & set(knobs) and "chunk_size" in effective:
            strategy = str(effective.get("chunk_strategy") or "chars")
            size = int(effective["chunk_size"])
            n = estimated_chunks(docs, strategy, size)
            if n > self.max_chunks:
                raise InvalidRequest(f"chunk_size={size} ({strategy}) would cut these documents into about {n:,} "
                                     f"chunks, above this server's ceiling of {self.max_chunks:,} "
                                     f"(ceilings.max_chunks): use a chunk_size of at least "
                                     f"{min_chunk_size(docs, strategy, self.max_chunks):,}.",
                                     param="minions.knobs.chunk_size")


def estimated_chunks(docs: list[Document], strategy: str, size: int) -> int:
    """How many chunks a chunking makes, estimated from sizes alone (no chunking is done)."""
    size = max(size, 1)
    if strategy == "pages":
        return sum(math.ceil(len(d.pages) / size) for d in docs)
    per_chunk = size * (_CHARS_PER_TOKEN_LOW if strategy == "tokens" else 1)
    return sum(math.ceil(len(d.text) / per_chunk) for d in docs)


def min_chunk_size(docs: list[Document], strategy: str, max_chunks: int) -> int:
    lo, hi = 1, 1 << 40
    while lo < hi:
        mid = (lo + hi) // 2
        if estimated_chunks(docs, strategy, mid) <= max_chunks:
            hi = mid
        else:
            lo = mid + 1
    return lo
