"""Chunking and BM25 speed and memory on all 74 FinanceBench filings, against plain baselines.

    python benchmarks/documents.py

Baselines, measured in the same run: raw `str` slicing for chunking (no provenance, no whitespace
breaks), and rank_bm25's BM25Okapi over the same tokens for retrieval.
Targets (issue 3): chunking all filings < 2 s; BM25 query on the largest filing < 10 ms;
peak memory < 3x the text size.
"""

from __future__ import annotations

import gc
import gzip
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minions.documents import BM25Index, Document, chunk_document  # noqa: E402
from minions.documents.retrieval import bm25_tokenizer  # noqa: E402
from minions.tokens import count_tokens  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "financebench"
CHUNKERS = [("chars", 3000, 0), ("chars", 3000, 300), ("tokens", 750, 0), ("pages", 1, 0),
            ("paragraphs", 3000, 0), ("sections", 3000, 0)]
TARGET_CHUNK_S, TARGET_QUERY_MS, TARGET_MEMORY_X = 2.0, 10.0, 3.0


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def peak_bytes(fn: Callable[[], object]) -> int:
    """Peak Python-heap bytes (numpy included) allocated while fn runs and its result is alive."""
    gc.collect()
    tracemalloc.start()
    result = fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del result
    return peak


def load_filings() -> list[Document]:
    docs = []
    with gzip.open(DATA / "docs.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            docs.append(Document.from_pages(r["pages"], id=r["doc_name"], title=r["doc_name"]))
    return docs


def slice_baseline(docs: list[Document], size: int = 3000) -> list[str]:
    return [d.text[i:i + size] for d in docs for i in range(0, len(d.text), size)]


def ours(docs: list[Document], strategy: str, size: int, overlap: int) -> list:
    return [c for d in docs for c in chunk_document(d, strategy, size, overlap)]  # type: ignore[arg-type]


def main() -> int:
    if not (DATA / "docs.jsonl.gz").exists():
        print(f"skipped: FinanceBench data not found at {DATA} (it lives on development and CI machines)")
        return 0
    from bm25s import __version__ as bm25s_version
    from rank_bm25 import BM25Okapi

    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, bm25s {bm25s_version}")
    t = time.perf_counter()
    docs = load_filings()
    n_chars = sum(len(d.text) for d in docs)
    mb = sum(len(d.text.encode("utf-8")) for d in docs) / 1e6
    text_bytes = sum(sys.getsizeof(d.text) for d in docs)
    print(f"loaded {len(docs)} filings in {time.perf_counter() - t:.1f} s: {n_chars / 1e6:.1f}M chars, "
          f"{mb:.1f} MB UTF-8, {text_bytes / 1e6:.1f} MB as Python str\n")

    print("chunking all filings (best of 5; tokens once)")
    print(f"  {'chunker':<24}{'chunks':>8}{'seconds':>10}{'MB/s':>9}{'vs slicing':>12}")
    base_s = best_of(lambda: slice_baseline(docs), repeat=5)
    n_base = len(slice_baseline(docs))
    print(f"  {'baseline str slicing':<24}{n_base:>8}{base_s:>10.3f}{mb / base_s:>9.0f}{1:>11.1f}x")
    fast_total = 0.0
    for strategy, size, overlap in CHUNKERS:
        label = f"{strategy} {size}" + (f" +{overlap}" if overlap else "")
        secs = best_of(lambda s=strategy, z=size, o=overlap: ours(docs, s, z, o),
                       repeat=1 if strategy == "tokens" else 5)
        n = len(ours(docs, strategy, size, overlap)) if strategy != "tokens" else "-"
        if strategy in ("chars", "pages", "paragraphs") and not overlap:
            fast_total += secs
        print(f"  {label:<24}{n!s:>8}{secs:>10.3f}{mb / secs:>9.0f}{secs / base_s:>11.1f}x")
    verdict = "OK" if fast_total < TARGET_CHUNK_S else "MISSED"
    print(f"  chars + pages + paragraphs together: {fast_total:.2f} s (target < {TARGET_CHUNK_S:.0f} s: {verdict})")

    print("\npeak memory (tracemalloc) relative to the text (Python str bytes)")
    base_peak = peak_bytes(lambda: slice_baseline(docs))
    chunk_peak = peak_bytes(lambda: ours(docs, "chars", 3000, 0))
    full_peak = peak_bytes(lambda: [BM25Index(chunk_document(d, "chars", 3000)) for d in docs])
    print(f"  baseline str slicing:            {base_peak / 1e6:7.1f} MB = {base_peak / text_bytes:.2f}x text")
    print(f"  chars 3000 chunks:               {chunk_peak / 1e6:7.1f} MB = {chunk_peak / text_bytes:.2f}x text "
          f"({chunk_peak / base_peak:.2f}x baseline)")
    verdict = "OK" if full_peak / text_bytes < TARGET_MEMORY_X else "MISSED"
    print(f"  chunks + BM25 index per filing:  {full_peak / 1e6:7.1f} MB = {full_peak / text_bytes:.2f}x text "
          f"(target < {TARGET_MEMORY_X:.0f}x: {verdict}); {full_peak / 1e6 / mb:.2f}x the UTF-8 size "
          "(every filing holds a non-Latin-1 character, so CPython stores it at 2 bytes/char)")
    if sys.platform.startswith("linux"):
        import resource
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(f"  process max RSS (all of the above, JSON loading included): {rss / 1e6:.0f} MB")

    largest = max(docs, key=lambda d: len(d.text))
    with open(DATA / "questions.jsonl", encoding="utf-8") as f:
        queries = [q["question"] for q in map(json.loads, f) if q["doc_available"]]
    chunks = chunk_document(largest, "chars", 3000)
    print(f"\nBM25 over the largest filing, {largest.id}: {len(largest.text) / 1e6:.2f}M chars, "
          f"{count_tokens(largest.text).n / 1e3:.0f}k tokens, {len(chunks)} chunks of 3000 chars; "
          f"{len(queries)} FinanceBench questions as queries, k=10")
    build = best_of(lambda: BM25Index(chunks))
    index = BM25Index(chunks)
    tokenizer = bm25_tokenizer()

    def okapi_build() -> BM25Okapi:  # same tokens, so the difference is the scorer
        return BM25Okapi(tokenizer.tokenize([c.text for c in chunks], return_as="string", show_progress=False))

    okapi_s = best_of(okapi_build)
    okapi = okapi_build()

    def okapi_search(q: str) -> list[int]:
        terms = tokenizer.tokenize([q], update_vocab=False, return_as="string", show_progress=False)[0]
        return np.argsort(-okapi.get_scores(terms))[:10].tolist()

    def latencies(search: Callable[[str], object]) -> list[float]:
        for q in queries[:5]:  # warm up
            search(q)
        out = []
        for q in queries:
            t = time.perf_counter()
            search(q)
            out.append((time.perf_counter() - t) * 1e3)
        return out

    ours_ms = latencies(lambda q: index.search(q, k=10))
    base_ms = latencies(okapi_search)
    p50, p95 = statistics.median(ours_ms), float(np.percentile(ours_ms, 95))
    b50, b95 = statistics.median(base_ms), float(np.percentile(base_ms, 95))
    print(f"  {'':<22}{'build s':>9}{'p50 ms':>9}{'p95 ms':>9}")
    print(f"  {'bm25s (ours)':<22}{build:>9.3f}{p50:>9.3f}{p95:>9.3f}")
    print(f"  {'rank_bm25 BM25Okapi':<22}{okapi_s:>9.3f}{b50:>9.3f}{b95:>9.3f}")
    verdict = "OK" if p95 < TARGET_QUERY_MS else "MISSED"
    print(f"  query speed-up over rank_bm25: {b50 / p50:.1f}x at p50, {b95 / p95:.1f}x at p95; "
          f"build {okapi_s / build:.2f}x; p95 target < {TARGET_QUERY_MS:.0f} ms: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
