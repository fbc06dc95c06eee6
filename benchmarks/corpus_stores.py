"""SQLite (FTS5 + sqlite-vec) against LanceDB for the corpus index, on the same rows.

    python benchmarks/corpus.py --keep /tmp/fb.minions     # first: the SQLite index of the 74 filings
    python benchmarks/corpus_stores.py --store /tmp/fb.minions

Both stores get the same rows, read from the SQLite index: every page (with a full-text index) and every
3,000-character chunk's WordLlama embedding (embedding is the same cost for both, so it is not timed).
Printed for each: write time, size on disk, cold import time, the document-picking queries (full text
over the pages, nearest chunks to the question's embedding) and loading one filing's embeddings, per
question over 20 FinanceBench questions. Coverage is the same by construction when the vectors read
back are the stored float32 rows (checked): the run's BM25 is bm25s over stored tokens in both cases,
since neither store's own BM25 (FTS5's, LanceDB's) tokenizes as `BM25Index` does.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minions.documents.store import CorpusStore, fts_query, sqlite_modules  # noqa: E402


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def cold_import(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, required=True, help="a SQLite corpus index (benchmarks/corpus.py --keep)")
    ap.add_argument("--questions", type=int, default=20)
    args = ap.parse_args()
    try:
        import lancedb
        import pyarrow as pa
    except ImportError:
        print("Skipped: LanceDB is not installed (pip install lancedb); it is measured here only, not a dependency")
        return
    src = CorpusStore.open(args.store)
    ids = src.doc_ids()
    pages = src.db.execute("SELECT doc_id, number, head, text FROM pages ORDER BY rowid").fetchall()
    docs = src.documents(ids)
    vectors = {d.id: src.vectors([d], "chars", 3000) for d in docs}
    del docs
    root = ROOT.parent / "shared" / "datasets" / "financebench" / "questions.jsonl"
    rows = [json.loads(line) for line in root.read_text().splitlines()] if root.is_file() else []
    questions = [r["question"] for r in rows if r.get("doc_available") and r["doc_name"] in vectors][: args.questions]
    from minions.documents.embeddings import load_embedding_model

    enc = load_embedding_model()
    qvecs = [np.ascontiguousarray(enc.encode([q])[0], dtype=np.float32) for q in questions]
    n_vec = sum(len(v) for v in vectors.values() if v is not None)
    print(f"{len(ids)} filings: {len(pages):,} pages, {n_vec:,} chunk embeddings (256-d); {len(questions)} questions\n")

    with tempfile.TemporaryDirectory(prefix="minions-stores-") as tmp:
        results: dict[str, dict[str, float]] = {}

        # --- SQLite: FTS5 over the pages, sqlite-vec vec0 for the embeddings -------------------------
        sqlite3, sqlite_vec = sqlite_modules()
        path = Path(tmp) / "s.sqlite"
        t = time.perf_counter()
        db = sqlite3.connect(str(path))
        db.enable_load_extension(True)
        sqlite_vec.load(db)
        db.executescript("CREATE TABLE pages(rowid INTEGER PRIMARY KEY, doc_id TEXT, number INT, head TEXT, text TEXT);"
                         "CREATE VIRTUAL TABLE fts USING fts5(head, text, content='pages', content_rowid='rowid');"
                         "CREATE VIRTUAL TABLE vec USING vec0(embedding float[256]);"
                         "CREATE TABLE keys(key INTEGER PRIMARY KEY, doc_id TEXT);")
        with db:
            db.executemany("INSERT INTO pages(doc_id, number, head, text) VALUES (?, ?, ?, ?)", pages)
            db.execute("INSERT INTO fts(fts) VALUES ('rebuild')")
            key = 0
            for doc_id, v in vectors.items():
                for row in v if v is not None else ():
                    key += 1
                    db.execute("INSERT INTO keys VALUES (?, ?)", (key, doc_id))
                    db.execute("INSERT INTO vec(rowid, embedding) VALUES (?, ?)", (key, row.tobytes()))
        write = time.perf_counter() - t
        first = dict(db.execute("SELECT doc_id, min(key) FROM keys GROUP BY doc_id").fetchall())
        fts_s, knn_s, load_s = [], [], []
        for q, qv in zip(questions, qvecs, strict=True):
            t = time.perf_counter()
            db.execute("SELECT p.doc_id FROM pages p JOIN (SELECT rowid AS r, bm25(fts, 4.0, 1.0) AS s FROM fts "
                       "WHERE fts MATCH ? ORDER BY s LIMIT 400) ON p.rowid = r", (fts_query(q),)).fetchall()
            fts_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            hits = db.execute("SELECT k.doc_id FROM (SELECT rowid AS r, distance FROM vec WHERE embedding MATCH ? "
                              "AND k = 200) JOIN keys k ON k.key = r ORDER BY distance", (qv.tobytes(),)).fetchall()
            knn_s.append(time.perf_counter() - t)
            doc = hits[0][0]
            t = time.perf_counter()
            n = len(vectors[doc])  # type: ignore[arg-type]
            blobs = db.execute("SELECT embedding FROM vec WHERE rowid BETWEEN ? AND ? ORDER BY rowid",
                               (first[doc], first[doc] + n - 1)).fetchall()
            got = np.frombuffer(b"".join(b[0] for b in blobs), dtype=np.float32).reshape(n, -1)
            load_s.append(time.perf_counter() - t)
            assert np.array_equal(got, vectors[doc])
        db.close()
        results["SQLite FTS5 + sqlite-vec"] = {"write": write, "size": size(path), "import": cold_import("sqlite_vec"),
                                               "fts": statistics.mean(fts_s), "knn": statistics.mean(knn_s),
                                               "load": statistics.mean(load_s)}

        # --- LanceDB: a pages table with its full-text index, a chunks table with the vectors ---------
        ldir = Path(tmp) / "lance"
        t = time.perf_counter()
        ldb = lancedb.connect(str(ldir))
        ptab = ldb.create_table("pages", data=pa.table({
            "doc_id": [p[0] for p in pages], "number": [p[1] for p in pages], "text": [f"{p[2]} {p[3]}" for p in pages]}))
        ptab.create_fts_index("text")
        doc_col, idx_col, vec_rows = [], [], []
        for doc_id, v in vectors.items():
            for i, row in enumerate(v if v is not None else ()):
                doc_col.append(doc_id)
                idx_col.append(i)
                vec_rows.append(row)
        flat = pa.array(np.concatenate(vec_rows).astype(np.float32))
        ctab = ldb.create_table("chunks", data=pa.table({
            "doc_id": doc_col, "idx": idx_col, "vector": pa.FixedSizeListArray.from_arrays(flat, 256)}))
        write = time.perf_counter() - t
        fts_s, knn_s, load_s = [], [], []
        for q, qv in zip(questions, qvecs, strict=True):
            t = time.perf_counter()
            ptab.search(" ".join(w.strip('"') for w in fts_query(q).split(" OR ")), query_type="fts") \
                .limit(400).select(["doc_id"]).to_arrow()
            fts_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            hits = ctab.search(qv).limit(200).select(["doc_id"]).to_arrow()
            knn_s.append(time.perf_counter() - t)
            doc = hits.column("doc_id")[0].as_py()
            t = time.perf_counter()
            tab = ctab.search().where(f"doc_id = '{doc}'").select(["idx", "vector"]).limit(100_000).to_arrow()
            order = np.argsort(tab.column("idx").to_numpy())
            got = np.stack(tab.column("vector").to_numpy(zero_copy_only=False))[order]
            load_s.append(time.perf_counter() - t)
            assert np.array_equal(got.astype(np.float32), vectors[doc])
        results[f"LanceDB {lancedb.__version__}"] = {
            "write": write, "size": size(ldir), "import": cold_import("lancedb"), "fts": statistics.mean(fts_s),
            "knn": statistics.mean(knn_s), "load": statistics.mean(load_s)}
        shutil.rmtree(ldir, ignore_errors=True)

    print(f"{'store':<28}{'write':>9}{'size':>10}{'import':>9}{'full text':>11}{'nearest':>9}{'load 1 filing':>15}")
    for name, r in results.items():
        print(f"{name:<28}{r['write']:>8.1f}s{r['size'] / 1e6:>8.1f}MB{r['import']:>8.2f}s{1000 * r['fts']:>9.1f}ms"
              f"{1000 * r['knn']:>7.1f}ms{1000 * r['load']:>13.1f}ms")
    print("\nBoth read back the stored float32 embeddings exactly, so a run's ranking (and coverage) is the same "
          "from either; the choice rests on the figures above, the install and one file.")


if __name__ == "__main__":
    main()
