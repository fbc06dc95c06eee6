"""Hybrid retrieval (BM25 + dense, fused by reciprocal rank) and reading-budget selection.

    index = HybridIndex(chunks)                     # dense part only with the `embeddings` extra
    order = index.ranking("capital expenditure 2018 ...")   # every chunk position, best first
    picked = select_within(chunks, order, budget=0.3 * total_chars)

The lexical ranking is BM25 over the chunks fused with BM25 over the pages (a chunk also ranks by the
pages that start in it), after pseudo-relevance feedback; the dense ranking (WordLlama, the
`embeddings` extra) is fused with it at weight DENSE_WEIGHT. Reciprocal-rank fusion (Cormack et al.,
2009) adds w / (k + rank) from each ranking, so BM25 scores and cosine similarities need no
calibration. `benchmarks/coverage.py` measures each part on FinanceBench (129 questions, evidence
page inside a chunk read, 30% of each filing read): BM25 89.9%, + pages 93.8%, + feedback 96.1%,
dense alone 81.4%, hybrid 95.3% — against 76.0% for the old selection (BM25, a cap of 22 chunks).

Without the extra the index is BM25-only and says so in `dense_missing` (once, for the caller to
turn into a notice); it never fails for lack of it.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from enum import Enum
from typing import NamedTuple

import numpy as np

from minions.documents.model import Chunk, Document
from minions.documents.retrieval import BM25Index
from minions.errors import MissingDependencyError

RRF_K = 60            # the constant of Cormack et al.; rank 1 scores 1/61, rank 60 half that
# WordLlama's ranking alone trails BM25 on FinanceBench (81% vs 90% covered at 30% read); at full
# weight it pulls the fusion down, at 0.3 it costs 0.8 points at 30% (95.3% vs 96.1%) and gains 0.7 at
# 10%, and it finds chunks that say the question's words in other words. See benchmarks/coverage.py.
DENSE_WEIGHT = 0.3
FEEDBACK_CHUNKS, FEEDBACK_TERMS = 3, 10   # pseudo-relevance feedback: first hits read, terms added
FEEDBACK_MIN_CHUNKS = 30   # below this, three hits are a large part of the text: feedback only drifts


_WORD = re.compile(r"[a-z]{3,}")
_STOP = frozenset("the and for with that this from are was were have has had not but its their which our all any can "
                  "may will would also other than such into more these those been being each per they them there "
                  "about under over".split())


def feedback_terms(text: str) -> Counter[str]:
    """The words of a chunk pseudo-relevance feedback may add to a query, with their counts."""
    return Counter(w for w in _WORD.findall(text.lower()) if w not in _STOP)


class StoredLexical(NamedTuple):
    """The lexical parts of a `HybridIndex` rebuilt from a corpus index's stored tokens (identical to
    what the index computes from the texts): BM25 over the chunks and the passages, feedback terms."""

    bm25: BM25Index
    passages: BM25Index | None
    terms: list[Counter[str]]


class Retriever(str, Enum):
    bm25 = "bm25"
    dense = "dense"
    hybrid = "hybrid"


def rrf(rankings: Sequence[np.ndarray], n: int, k: int = RRF_K, *, listed_only: bool = False,
        weights: Sequence[float] | None = None) -> np.ndarray:
    """Reciprocal-rank fusion of rankings (arrays of positions, best first) over n items: the fused
    order, best first. Items missing from a ranking get nothing from it; ties keep position order.
    `listed_only`: leave out items no ranking lists. `weights`: one per ranking (default 1)."""
    fused = np.zeros(n, dtype=np.float64)
    for w, ranking in zip(weights or [1.0] * len(rankings), rankings, strict=True):
        fused[np.asarray(ranking, dtype=np.int64)] += w / (k + 1 + np.arange(len(ranking)))
    order = np.lexsort((np.arange(n), -fused))
    return order[fused[order] > 0] if listed_only else order


def _order(scores: np.ndarray, *, matched_only: bool) -> np.ndarray:
    order = np.lexsort((np.arange(len(scores)), -scores))
    return order[scores[order] > 0] if matched_only else order


class HybridIndex:
    """BM25 and, when the `embeddings` extra is installed, dense embeddings over the same chunks.

    `passages` (optional, e.g. one per page: `chunk_document(doc, "pages", 1)`) are scored by BM25 too,
    and each chunk also gets the best score of the passages it overlaps: a page that matches the
    question well lifts both chunks it straddles. On FinanceBench (3,000-character chunks) that lifts
    coverage at a 30% reading budget from 88% to 92% (benchmarks/coverage.py).

    `encoder` may be passed (tests, benchmarks); by default the bundled WordLlama model is loaded.
    `dense=False` builds a BM25-only index on purpose. `vectors`: the chunks' embeddings stored by a
    corpus index (minions.documents.store), so they are not computed again.
    """

    def __init__(self, chunks: Sequence[Chunk], *, passages: Sequence[Chunk] = (), encoder: object | None = None,
                 dense: bool = True, vectors: np.ndarray | None = None, lexical: StoredLexical | None = None):
        from minions.documents.embeddings import EmbeddingIndex

        self.chunks: list[Chunk] = list(chunks)
        self.bm25 = lexical.bm25 if lexical is not None else BM25Index(self.chunks)
        self._passages = (lexical.passages if lexical is not None else BM25Index(passages)) if passages else None
        self._owners = _owners(self.chunks, list(passages)) if passages else []
        self._terms: list[Counter[str]] | None = lexical.terms if lexical is not None else None
        self._df: Counter[str] = Counter(w for t in self._terms for w in t) if self._terms is not None else Counter()
        self.dense: EmbeddingIndex | None = None
        self.dense_missing: MissingDependencyError | None = None
        if dense and self.chunks:
            try:
                self.dense = EmbeddingIndex(self.chunks, model=encoder, vectors=vectors)
            except MissingDependencyError as exc:
                self.dense_missing = exc

    @classmethod
    def for_documents(cls, docs: Sequence[Document], chunks: Sequence[Chunk], **kw: object) -> HybridIndex:
        """An index over `chunks` with the pages of the paged documents as passages."""
        from minions.documents.chunking import chunk_document

        pages = [p for d in docs if len(d.pages) > 1 for p in chunk_document(d, "pages", 1)]
        return cls(chunks, passages=pages, **kw)  # type: ignore[arg-type]

    @property
    def retriever(self) -> Retriever:
        return Retriever.hybrid if self.dense is not None else Retriever.bm25

    def lexical(self, query: str, feedback: bool = True) -> np.ndarray:
        """BM25 ranking of the chunks (fused with the passage ranking when there are passages), after
        pseudo-relevance feedback when `feedback`: the query is run again with the terms that best mark
        out its first hits (RM3-style, Lavrenko & Croft 2001). A question says "quick ratio"; the page
        that answers it says "current assets", "inventories", "receivables" — and so do the first hits.
        On FinanceBench it lifts coverage at 30% read from 93.8% to 95.3% (benchmarks/coverage.py).
        Documents of fewer than FEEDBACK_MIN_CHUNKS chunks skip it."""
        first = self._lexical(query)
        if not feedback or not len(first) or len(self.chunks) < FEEDBACK_MIN_CHUNKS:
            return first
        extra = self._feedback_terms(query, first[:FEEDBACK_CHUNKS])
        return self._lexical(query + " " + " ".join(extra)) if extra else first

    def _feedback_terms(self, query: str, hits: np.ndarray) -> list[str]:
        if self._terms is None:  # per-chunk term counts and document frequencies, built on first use
            self._terms = [feedback_terms(c.text) for c in self.chunks]
            self._df = Counter(w for t in self._terms for w in t)
        n, asked = len(self.chunks), set(_WORD.findall(query.lower()))
        weight: dict[str, float] = {}
        for i in hits.tolist():
            for w, tf in self._terms[i].items():
                if w not in asked:
                    weight[w] = weight.get(w, 0.0) + (1 + math.log(tf)) * math.log(n / self._df[w])
        best = sorted(weight.items(), key=lambda kv: kv[1], reverse=True)[:FEEDBACK_TERMS]  # as Counter.most_common
        return [w for w, score in best if score > 0]

    def _lexical(self, query: str) -> np.ndarray:
        bm25 = _order(self.bm25.scores(query), matched_only=True)
        if self._passages is None:
            return bm25
        by_passage = np.zeros(len(self.chunks), dtype=np.float64)
        scores = self._passages.scores(query)
        for p, owners in enumerate(self._owners):
            if scores[p] > 0:
                by_passage[owners] = np.maximum(by_passage[owners], scores[p])
        return rrf([_order(by_passage, matched_only=True), bm25], len(self.chunks), listed_only=True)

    def ranking(self, query: str, retriever: Retriever | None = None) -> np.ndarray:
        """Positions of chunks in `self.chunks`, best first. BM25 (`lexical`) lists only chunks sharing
        a term with the query; dense and hybrid list every chunk."""
        retriever = retriever or self.retriever
        if retriever is Retriever.bm25 or self.dense is None:
            return self.lexical(query)
        dense = _order(self.dense.scores(query), matched_only=False)
        if retriever is Retriever.dense:
            return dense
        return rrf([self.lexical(query), dense], len(self.chunks), weights=[1.0, DENSE_WEIGHT])

    def search(self, query: str, k: int = 10, retriever: Retriever | None = None) -> list[Chunk]:
        if k <= 0 or not query.strip():
            return []
        return [self.chunks[i] for i in self.ranking(query, retriever)[:k].tolist()]


def _owners(chunks: list[Chunk], passages: list[Chunk]) -> list[np.ndarray]:
    """For each passage, the position of the chunk of the same document holding its start. (Giving
    the score to every chunk a page overlaps spends the budget on page tails: 85% covered at 30%
    read on FinanceBench, against 92% this way.)"""
    starts: dict[str, tuple[list[int], list[int]]] = {}
    for i, c in enumerate(chunks):
        pos, idx = starts.setdefault(c.doc_id, ([], []))
        pos.append(c.start)
        idx.append(i)
    out = []
    for p in passages:
        pos, idx = starts.get(p.doc_id, ([], []))
        k = bisect_right(pos, p.start) - 1
        out.append(np.asarray([idx[k]] if k >= 0 else [], dtype=np.int64))
    return out


def complete(order: Sequence[int] | np.ndarray, n: int) -> list[int]:
    """`order` followed by the positions it leaves out, in document order (BM25 ranks only the chunks
    sharing a term with the query; a budget may reach past them)."""
    listed = [int(i) for i in order]
    seen = set(listed)
    return listed + [i for i in range(n) if i not in seen]


def with_neighbours(chunks: Sequence[Chunk], order: Sequence[int], strong: int = 1) -> list[int]:
    """`order` with the chunks just before and after each of the first `strong` hits moved up to
    follow it: evidence often runs over a chunk boundary (a table's header and its rows, a note
    continued on the next page)."""
    out: list[int] = []
    seen: set[int] = set()

    def add(i: int) -> None:
        if i not in seen:
            seen.add(i)
            out.append(i)

    for rank, i in enumerate(order):
        add(i)
        if rank < strong:
            for j in (i + 1, i - 1):
                if 0 <= j < len(chunks) and chunks[j].doc_id == chunks[i].doc_id:
                    add(j)
    return out


def select_within(chunks: Sequence[Chunk], order: Sequence[int], budget: float,
                  size: Callable[[Chunk], float] = lambda c: len(c.text)) -> list[Chunk]:
    """The chunks in `order` that fit within `budget` (in `size` units, characters by default), best
    first; a chunk that does not fit is skipped and smaller later ones may still fit. The best chunk
    is always read, even when it alone is over the budget (a short filing cut in three chunks has
    none under 30%): a budget limits reading, it never stops it."""
    picked: list[Chunk] = []
    used = 0.0
    for i in order:
        cost = size(chunks[i])
        if used + cost <= budget or not picked:
            picked.append(chunks[i])
            used += cost
    return picked
