"""Documents: loading (PDF with OCR of scanned pages, text, Markdown, HTML, DOCX, XLSX, CSV, PPTX, EPUB, ODT,
RTF: see `SUPPORTED`), chunking with provenance, retrieval.

    doc = load("acme-10k.pdf")                       # or bytes with name=, or a string of text
    chunks = chunk_document(doc, "chars", size=3000)  # each chunk knows doc id, pages, offsets
    hits = BM25Index(chunks).search("capital expenditure 2023", k=5)
    best = HybridIndex.for_documents([doc], chunks).search("capital expenditure 2023", k=5)  # + dense

Never calls a model and never prints (an embedding model is not a language model). `EmbeddingIndex`
needs the `embeddings` extra (imported only when one is built); `HybridIndex` falls back to BM25
without it.
"""

from __future__ import annotations

from minions.documents.chunking import STRATEGIES, ChunkStrategy, chunk_document, chunk_documents
from minions.documents.embeddings import EmbeddingIndex
from minions.documents.hybrid import HybridIndex, Retriever
from minions.documents.loaders import SUPPORTED, load, load_many, unique_ids
from minions.documents.model import Chunk, Document, PageSpan
from minions.documents.ocr import OcrProgress
from minions.documents.retrieval import BM25Index, ScoredChunk

__all__ = [
    "STRATEGIES", "SUPPORTED", "BM25Index", "Chunk", "ChunkStrategy", "Document", "EmbeddingIndex",
    "HybridIndex", "OcrProgress", "PageSpan", "Retriever", "ScoredChunk", "chunk_document", "chunk_documents", "load", "load_many",
    "unique_ids",
]

