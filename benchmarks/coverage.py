"""Evidence coverage of chunk selection on FinanceBench, with no model at all.

    python benchmarks/coverage.py                  # all questions whose filing we hold (129)
    python benchmarks/coverage.py --limit 40       # a quicker look
    python benchmarks/coverage.py --minilm         # also all-MiniLM-L6-v2 (needs torch; slow)
    python benchmarks/coverage.py --index fb.minions   # also hybrid from a corpus index (benchmarks/corpus.py --keep)

With --index, "hybrid (index)" ranks with the HybridIndex rebuilt from the store (stored chunks, embeddings
and BM25 tokens) beside the in-memory hybrid: it must be within 1 point (it is the same ranking). It also
prints how often the question's filing is among the documents the index picks for it (the whole corpus,
no filing named: `minions ask -q ... --index`).

A question is *covered* when a chunk that was read holds a page of its gold evidence: otherwise no
model, however good, can answer it from what it read. For each retriever and reading budget (share of
the filing's characters) it prints the covered share of questions and the share actually read.

Baseline, in the same run: today's MinionS selection at the default cap (3,000-character chunks,
64 jobs per round, 3 tasks -> the 22 chunks BM25 ranks best for the question); issue 14 measured
76.0% covered at 27.9% read. Target: >= 95% covered reading <= 30%.

Retrievers: BM25 (minions.documents.BM25Index); "+ pages": each chunk also ranked by the BM25 score
of the pages starting in it, fused by reciprocal rank; "+ feedback": pseudo-relevance feedback (the
query run again with terms that mark out its first 3 hits); dense (the `embeddings` extra's
WordLlama, or all-MiniLM-L6-v2 with --minilm); hybrid = BM25 + pages + feedback fused with dense
(weight 0.3), what MinionS and RAG use; "+nb" adds the chunks next to the best hit (MinionS's
`neighbours=1`; off by default, as this table shows it costs coverage at 30%). The query is the question alone (a run adds the plan's task instructions
and keywords). Also: selection time per question (index build + query, as a run pays it) and
recall@k at the RAG baseline's chunking (1,500 characters), what `rag` shows the remote.

Measured (129 questions, 74 filings): baseline 76.0% covered at 28.3% read. At a 30% budget: BM25
89.9%, + pages 93.8%, + feedback 96.1%, dense (WordLlama) 81.4%, hybrid 95.3%, hybrid +nb 93.8%.
At 20%: 84.5 / 88.4 / 89.1 / 70.5 / 89.1 / 89.9%. RAG recall@5: BM25 41.9%, hybrid 49.6%.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minions.documents import Chunk, chunk_document  # noqa: E402
from minions.documents.hybrid import (  # noqa: E402
    HybridIndex,
    Retriever,
    complete,
    select_within,
    with_neighbours,
)
from minions.errors import DatasetNotFoundError  # noqa: E402
from minions.eval.datasets import load_financebench  # noqa: E402

BUDGETS = (0.10, 0.20, 0.30, 0.40, 0.50, 0.60)
DEFAULT_CAP_CHUNKS = -(-64 // 3)   # 64 jobs per round / 3 tasks -> 22 chunks
RAG_CHUNK, RAG_KS = 1500, (1, 3, 5, 10, 20)
TARGET_COVERED, TARGET_READ = 0.95, 0.30


def covered(chunks: list[Chunk], gold: set[int]) -> bool:
    return any(gold.intersection(c.pages) for c in chunks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None,
                    help="FinanceBench folder (default: $MINIONS_DATA/financebench, ../shared/datasets/...)")
    ap.add_argument("--limit", type=int, default=None, help="first N questions only")
    ap.add_argument("--minilm", action="store_true", help="also all-MiniLM-L6-v2 (sentence-transformers)")
    ap.add_argument("--index", type=Path, default=None, help="a corpus index of the filings (benchmarks/corpus.py --keep)")
    args = ap.parse_args()
    store = None
    if args.index is not None:
        from minions.documents.store import CorpusStore

        store = CorpusStore.open(args.index)
    try:
        ds = load_financebench(args.data)
    except DatasetNotFoundError as exc:
        print(f"Skipped: {exc}")
        return

    from minions.documents.embeddings import MiniLMEncoder, WordLlamaEncoder

    t = time.perf_counter()
    encoders: dict[str, object] = {"wordllama": WordLlamaEncoder()}
    load_s = {"wordllama": time.perf_counter() - t}
    if args.minilm:
        t = time.perf_counter()
        encoders["minilm"] = MiniLMEncoder()
        load_s["minilm"] = time.perf_counter() - t

    items = [i for i in ds.items if i.metadata["evidence_pages"]][: args.limit]
    by_doc: dict[str, list] = {}
    for item in items:
        by_doc.setdefault(item.metadata["doc_name"], []).append(item)

    # methods: name -> (index: None = plain BM25, "pages" = BM25 with page passages, else an encoder;
    #                    ranking function; neighbours of the best hit)
    Rank = Callable[[HybridIndex, str], np.ndarray]
    bm25: Rank = lambda ix, q: ix.lexical(q, feedback=False)  # noqa: E731
    methods: dict[str, tuple[str | None, Rank, bool]] = {
        "bm25": (None, bm25, False),
        "bm25 + pages": ("pages", bm25, False),
        "bm25 + pages + feedback": ("pages", lambda ix, q: ix.lexical(q), False)}
    for enc in encoders:
        methods[f"dense {enc}"] = (enc, lambda ix, q: ix.ranking(q, Retriever.dense), False)
        methods[f"hybrid {enc}"] = (enc, lambda ix, q: ix.ranking(q, Retriever.hybrid), False)
        methods[f"hybrid {enc} +nb"] = (enc, lambda ix, q: ix.ranking(q, Retriever.hybrid), True)
    if store is not None:
        methods["hybrid (index)"] = ("stored", lambda ix, q: ix.ranking(q), False)
    picked_at, not_held = {1: 0, 3: 0}, 0
    hit = {m: np.zeros(len(BUDGETS)) for m in methods}
    share = {m: [[] for _ in BUDGETS] for m in methods}
    build_s: dict[str, list[float]] = {"bm25": [], **{e: [] for e in encoders}}
    query_s: dict[str, list[float]] = {m: [] for m in methods}
    cap_hits, cap_share = 0, []
    recall = {m: np.zeros(len(RAG_KS)) for m in ("bm25", "bm25 + pages + feedback", *(f"hybrid {e}" for e in encoders))}
    n = 0

    for doc_items in by_doc.values():
        doc = doc_items[0].documents[0]
        total = len(doc.text)
        chunks = chunk_document(doc, "chars", 3000)
        rag_chunks = chunk_document(doc, "chars", RAG_CHUNK)
        t = time.perf_counter()
        bm25_only = HybridIndex(chunks, dense=False)
        build_s["bm25"].append(time.perf_counter() - t)
        indexes: dict[str | None, HybridIndex] = {
            None: bm25_only, "pages": HybridIndex.for_documents([doc], chunks, dense=False)}
        rag_indexes = {"bm25": HybridIndex(rag_chunks, dense=False),
                       "bm25 + pages + feedback": HybridIndex.for_documents([doc], rag_chunks, dense=False)}
        for enc, model in encoders.items():
            t = time.perf_counter()
            indexes[enc] = HybridIndex.for_documents([doc], chunks, encoder=model)
            build_s[enc].append(time.perf_counter() - t)
            rag_indexes[f"hybrid {enc}"] = HybridIndex.for_documents([doc], rag_chunks, encoder=model)
        if store is not None:  # a filing the store holds with other text (changed since) is ranked in memory
            stored = store.index([doc], "chars", 3000)
            not_held += stored is None
            indexes["stored"] = stored if stored is not None else indexes["wordllama"]
        for item in doc_items:
            n += 1
            gold = {p + 1 for p in item.metadata["evidence_pages"]}  # dataset pages are 0-based
            q = item.question
            if store is not None:
                ranked_docs = store.rank_documents(q)
                for k in picked_at:
                    picked_at[k] += doc.id in ranked_docs[:k]
            # today's selection: BM25's best 22 for the question, topped up in document order
            top = [chunks[i] for i in bm25(indexes[None], q)[:DEFAULT_CAP_CHUNKS].tolist()]
            rest = [c for c in chunks if c not in top][: DEFAULT_CAP_CHUNKS - len(top)]
            cap_hits += covered(top + rest, gold)
            cap_share.append(sum(len(c.text) for c in top + rest) / total)
            for m, (enc, rank, nb) in methods.items():
                t = time.perf_counter()
                order = complete(rank(indexes[enc], q), len(chunks))
                if nb:
                    order = with_neighbours(chunks, order)
                query_s[m].append(time.perf_counter() - t)
                for b, budget in enumerate(BUDGETS):
                    picked = select_within(chunks, order, budget * total)
                    hit[m][b] += covered(picked, gold)
                    share[m][b].append(sum(len(c.text) for c in picked) / total)
            for m, index in rag_indexes.items():
                ranked = [index.chunks[i] for i in (bm25(index, q) if m == "bm25" else index.ranking(q))[:max(RAG_KS)]]
                for j, k in enumerate(RAG_KS):
                    recall[m][j] += covered(ranked[:k], gold)
        for item in doc_items:
            item.release()
        print(f"\r{n}/{len(items)} questions", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    print(f"FinanceBench: {n} questions over {len(by_doc)} filings; 3,000-character chunks; query = the question\n")
    print(f"Baseline (today's MinionS, cap 64 jobs x 3 tasks -> {DEFAULT_CAP_CHUNKS} chunks, BM25): "
          f"{cap_hits / n:.1%} covered, {statistics.mean(cap_share):.1%} of the document read "
          "(issue 14: 76.0% at 27.9%)\n")
    head = "".join(f"{f'{b:.0%} budget':>16}" for b in BUDGETS)
    print(f"{'covered (read)':<28}{head}")
    for m in methods:
        cells = "".join(f"{hit[m][b] / n:>8.1%} ({statistics.mean(share[m][b]):>4.0%})" for b in range(len(BUDGETS)))
        print(f"{m:<28}{cells}")
    print()
    b30 = BUDGETS.index(TARGET_READ)
    best = max(methods, key=lambda m: hit[m][b30])
    used = next((m for m in methods if m.startswith("hybrid") and not m.endswith("+nb")), "bm25 + pages + feedback")

    def verdict(m: str) -> str:
        got = hit[m][b30] / n
        return (f"{m!r} {got:.1%} ({'met' if got >= TARGET_COVERED else f'{TARGET_COVERED - got:.1%} short'}, "
                f"{got - cap_hits / n:+.1%} points on the baseline)")

    print(f"Target >= {TARGET_COVERED:.0%} covered at <= {TARGET_READ:.0%} read: what MinionS and RAG use, "
          f"{verdict(used)}; best, {verdict(best)}; BM25 alone {hit['bm25'][b30] / n:.1%}.\n")

    if store is not None:
        gap = hit["hybrid (index)"][b30] / n - hit[used][b30] / n
        print(f"From the corpus index: hybrid {hit['hybrid (index)'][b30] / n:.1%} at 30% vs in memory "
              f"{hit[used][b30] / n:.1%} ({gap:+.1%} points; target within 1). The question's filing among the "
              f"documents the index picks from all {len(store.doc_ids())}: top 1 {picked_at[1] / n:.1%}, "
              f"top 3 {picked_at[3] / n:.1%}." + (f" ({not_held} filing(s) not held as loaded here: ranked in memory)"
                                                 if not_held else "") + "\n")

    ms: Callable[[list[float]], str] = lambda xs: f"{1000 * statistics.mean(xs):8.1f} ms"  # noqa: E731
    print("Selection time (mean): index build per filing, query per question; model load once")
    for enc, s in load_s.items():
        print(f"  load {enc:<22}{1000 * s:8.1f} ms")
    for k, xs in build_s.items():
        print(f"  build {k:<21}{ms(xs)}   ({statistics.mean(len(i) for i in by_doc.values()):.1f} questions per filing)")
    for m, xs in query_s.items():
        print(f"  query+order {m:<15}{ms(xs)}")
    per_q = {enc: sum(build_s[enc]) / n + statistics.mean(query_s[f"hybrid {enc}"]) for enc in encoders}
    bm25_q = sum(build_s["bm25"]) / n + statistics.mean(query_s["bm25"])
    for enc, s in per_q.items():
        print(f"  per question, hybrid {enc} (index build + query): {1000 * s:.0f} ms vs BM25 {1000 * bm25_q:.0f} ms "
              f"({s / bm25_q:.1f}x)")
    print()
    print(f"RAG baseline recall@k ({RAG_CHUNK:,}-character chunks: an evidence page among the top k)")
    print(f"{'':<28}" + "".join(f"{f'k={k}':>8}" for k in RAG_KS))
    for m, r in recall.items():
        print(f"{m:<28}" + "".join(f"{x / n:>8.1%}" for x in r))


if __name__ == "__main__":
    main()
