"""What a run read of its documents, for `RunResult.coverage`.

Protocols report what they put in front of a model: MinionS and RAG the chunks, the whole-context
protocols (remote-only, local-only, Minion) the part of the documents that fit the window. Character
ranges are merged per document, so chunkings that change between rounds are not counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from minions.documents import Chunk, Document
from minions.protocols.result import Coverage, DocumentCoverage


class ReadLog:
    def __init__(self, documents: Sequence[Document]):
        self._docs = list(documents)
        self._spans: dict[str, list[tuple[int, int]]] = {d.id: [] for d in self._docs}
        self._chunk_ids: set[str] = set()
        self.chunks_total = 0
        self.why = ""

    def chunks(self, chunks: Iterable[Chunk], total: int, why: str | None = None) -> None:
        """`chunks` were read, out of `total` at this chunking (the largest total is reported);
        `why`: the reason those were chosen, for the report."""
        self.chunks_total = max(self.chunks_total, total)
        if why is not None:
            self.why = why
        for c in chunks:
            self._chunk_ids.add(c.id)
            self._spans.setdefault(c.doc_id, []).append((c.start, c.end))

    def prefix(self, kept: int, total: int) -> None:
        """The first `kept` of `total` characters of the documents, joined in order, were read (the
        whole-context protocols cut the end off to fit a window). Each document counts as one chunk."""
        self.chunks_total = max(self.chunks_total, len(self._docs))
        share = 1.0 if total <= 0 else min(1.0, kept / total)
        left = int(round(share * sum(len(d.text) for d in self._docs)))
        for d in self._docs:
            n = min(len(d.text), left)
            left -= n
            if n > 0:
                self._chunk_ids.add(d.id)
                self._spans[d.id].append((0, n))

    def report(self) -> Coverage | None:
        """None only when there are no documents; a run that showed them to no model read 0 of them."""
        if not self._docs:
            return None
        if not self.chunks_total:
            self.chunks_total = len(self._docs)
            self.why = self.why or "no model was shown the documents"
        docs = [DocumentCoverage(doc_id=d.id, chars_read=_union(self._spans.get(d.id, [])), chars_total=len(d.text))
                for d in self._docs]
        return Coverage(chunks_read=len(self._chunk_ids), chunks_total=self.chunks_total, documents=docs,
                        why=self.why)


def _union(spans: list[tuple[int, int]]) -> int:
    total, end = 0, -1
    for s, e in sorted(spans):
        if e <= end:
            continue
        total += e - max(s, end)
        end = e
    return total
