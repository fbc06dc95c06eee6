"""A persistent corpus index over the 74 FinanceBench filings: build, start, incremental re-index.

    python benchmarks/corpus.py                       # the 74 filings (../shared/datasets/financebench)
    python benchmarks/corpus.py --limit 10            # a quicker look
    python benchmarks/corpus.py --keep /tmp/fb.minions   # keep the store (benchmarks/coverage.py --index)

Prints:
- index build time and store size (`CorpusStore.update`, what `minions index DIR --store PATH` runs);
- the time from the start of a process running `minions ask`'s recipe with `--index` (RunSettings(index=)
  -> build_protocol -> run with no documents: pick the filings, their stored chunks and embeddings) to its
  first local job;
- the same start without the index (baseline, in the same run): the 74 filings loaded from their files,
  chunked, indexed and embedded in memory, as `minions ask FILES...` does today (issue 23: 28.5 s);
- an incremental re-index after changing one file (re-read, re-chunked, re-embedded), and after touching
  one (same content, new mtime: hashed, not re-read).

Targets: first local job < 2 s from the index; re-index of one changed file < 5 s.

The filings' text is already extracted (docs.jsonl.gz: pages from pypdf), as in the issue's figure: each
filing is written to a temporary folder as a JSON file of its pages, read by a loader passed to
`update` (the CLI reads PDFs and the other formats with `minions.documents.load`). Models are scripted
(the first local call ends the process): the figures are the documents' cost, not a model's.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minions.documents import Document  # noqa: E402
from minions.errors import DatasetNotFoundError  # noqa: E402
from minions.eval.datasets import find_data  # noqa: E402

TARGET_START_S, TARGET_REINDEX_S = 2.0, 5.0
QUESTION = "What is the FY2018 capital expenditure amount (in USD millions) for 3M?"

# The child process: `minions ask`'s recipe (RunSettings -> build_protocol -> run) with scripted models;
# the first local job prints the time since the parent started it and ends the process.
CHILD = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, {root!r})
    sys.path.insert(0, {bench!r})
    from pathlib import Path
    from minions.clients.function import FunctionClient
    from minions.protocols.build import build_protocol
    from minions.protocols.settings import RunSettings

    t0 = float(sys.argv[1])
    def local(messages, options):
        print(json.dumps({{"first_local_job_s": time.time() - t0, "cpu_s": time.process_time()}}), flush=True)
        os._exit(0)
    def remote(messages, options):
        return json.dumps({{"tasks": [{{"instruction": {question!r}}}]}})
    index = sys.argv[2] if sys.argv[2] != "-" else None
    settings = RunSettings(local=FunctionClient(local, model="scripted-local"),
                           remote=FunctionClient(remote, model="scripted-remote"), index=index)
    protocol = build_protocol(settings)
    if index:
        docs = []
    else:  # the baseline reads the filings from their files (the benchmark's loader)
        from corpus import load_json
        docs = [load_json(p) for p in sorted(Path(sys.argv[3]).glob("*.json"))]
    protocol.run({question!r}, docs)
    print(json.dumps({{"error": "no local job ran"}}))
""")


def load_json(path: Path) -> Document:
    """A filing written by this script: its pages, as extracted."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return Document.from_pages(data["pages"], id=path.stem, title=data.get("title") or path.stem, source=str(path))


def write_filings(root: Path, folder: Path, limit: int | None) -> int:
    n = 0
    with gzip.open(root / "docs.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            title = f"{d.get('company', '')} {d.get('doc_type', '')} {d.get('doc_period', '')}".strip()
            (folder / f"{d['doc_name']}.json").write_text(json.dumps({"title": title, "pages": d["pages"]}),
                                                         encoding="utf-8")
            n += 1
            if limit and n >= limit:
                break
    return n


def start(index: Path | None, folder: Path) -> tuple[float, float]:
    """(wall seconds from launching the process to its first local job, CPU seconds it used by then):
    on a shared machine the wall time also counts waiting for a core; the CPU time does not."""
    code = CHILD.format(root=str(ROOT), bench=str(ROOT / "benchmarks"), question=QUESTION)
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", code, str(t0), str(index or "-"), str(folder)],
                         capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            got = json.loads(line)
            if "first_local_job_s" in got:
                return float(got["first_local_job_s"]), float(got["cpu_s"])
    raise SystemExit(f"the start did not reach a local job:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")


def mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="FinanceBench folder (default ../shared/datasets/...)")
    ap.add_argument("--limit", type=int, default=None, help="first N filings only")
    ap.add_argument("--keep", type=Path, default=None, help="build the store here and keep it")
    ap.add_argument("--no-baseline", action="store_true", help="skip the start without the index (slow)")
    ap.add_argument("--repeat", type=int, default=3, help="starts from the index measured (the median is shown)")
    args = ap.parse_args()
    try:
        root = find_data("financebench", args.data, marker=lambda p: (p / "docs.jsonl.gz").is_file())
    except DatasetNotFoundError as exc:
        print(f"Skipped: {exc}")
        return
    try:
        from minions.documents.store import CorpusStore, IndexProgress
        CorpusStore.create(":memory:").close()
    except Exception as exc:  # MissingDependencyError naming the `index` extra
        print(f"Skipped: {exc}")
        return

    with tempfile.TemporaryDirectory(prefix="minions-corpus-") as tmp:
        folder = Path(tmp) / "filings"
        folder.mkdir()
        n = write_filings(root, folder, args.limit)
        chars = sum(len(p) for f in folder.glob("*.json") for p in json.loads(f.read_text())["pages"])
        store_path = args.keep or Path(tmp) / "corpus.minions"
        for p in (store_path, Path(f"{store_path}-wal"), Path(f"{store_path}-shm")):
            p.unlink(missing_ok=True)
        print(f"FinanceBench: {n} filings, {chars / 1e6:.1f}M characters (text already extracted); "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start\n")

        def progress(e: IndexProgress) -> None:
            if e.stage in ("read", "unchanged") and e.done:
                print(f"\r  indexed {e.done}/{e.total}", end="", file=sys.stderr, flush=True)

        store = CorpusStore.create(store_path)
        t = time.perf_counter()
        report = store.update([folder], loader=load_json, on_progress=progress, suffixes=[".json"])
        build_s = time.perf_counter() - t
        print(file=sys.stderr)
        store.checkpoint()
        size = store.size_bytes()
        print(f"index build: {build_s:.1f} s for {len(report.added)} filings ({chars / 1e6 / build_s:.2f}M chars/s); "
              f"store {mb(size)} ({size / chars:.2f} bytes per character of text)")
        for note in report.notes:
            print(f"  note: {note}")
        store.close()

        starts = sorted(start(store_path, folder) for _ in range(max(1, args.repeat)))
        with_index, cpu = starts[len(starts) // 2]
        print(f"first local job from the index (`ask --index`):   {with_index:6.2f} s, {cpu:.2f} s CPU (median of "
              f"{len(starts)}: {', '.join(f'{x:.2f}' for x, _ in starts)} s) "
              f"(target < {TARGET_START_S:.0f} s: {'met' if with_index < TARGET_START_S else 'missed'})")
        if not args.no_baseline:
            without, cpu_without = start(None, folder)
            print(f"first local job without it (load, chunk, embed): {without:6.2f} s, {cpu_without:.2f} s CPU "
                  f"({without / with_index:.0f}x the indexed start)")

        store = CorpusStore.open(store_path)
        victim = sorted(folder.glob("*.json"))[n // 2]
        original = victim.read_text()
        data = json.loads(original)
        data["pages"][-1] += "\n\nAmended: this page was changed for the re-index benchmark."
        victim.write_text(json.dumps(data))
        t = time.perf_counter()
        report = store.update([folder], loader=load_json, suffixes=[".json"])
        changed_s = time.perf_counter() - t
        assert report.changed == [str(victim.resolve())], report
        print(f"re-index after changing one filing ({victim.stem}): {changed_s:6.2f} s "
              f"(target < {TARGET_REINDEX_S:.0f} s: {'met' if changed_s < TARGET_REINDEX_S else 'missed'}); "
              f"{len(report.unchanged)} unchanged not re-read")
        os.utime(victim)
        t = time.perf_counter()
        report = store.update([folder], loader=load_json, suffixes=[".json"])
        touched_s = time.perf_counter() - t
        assert not report.changed and not report.added, report
        print(f"re-index after touching one (same content, new mtime): {touched_s:6.2f} s (hashed, not re-read)")
        victim.write_text(original)  # a kept store holds the filings as published (benchmarks/coverage.py --index)
        store.update([folder], loader=load_json, suffixes=[".json"])
        store.close()


if __name__ == "__main__":
    main()
