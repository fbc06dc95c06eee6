"""`minions index DIR... --store PATH`: build or update a persistent corpus index.

Incremental: a file whose content hash is unchanged is not re-read, a changed one is re-read, and a
file gone from the folders given is removed. `minions ask -q ... --index PATH` (and serve, mcp, the
app, eval) then start from the index instead of loading, chunking and embedding the documents again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from minions.cli.safe_text import markup


def add_parser(sub) -> None:
    from minions.documents.loaders import SUPPORTED

    p = sub.add_parser("index", help="build or update a corpus index (documents, chunks, BM25, embeddings)",
                       description="Index the documents under folders (and files) into one store, incrementally "
                       f"by each file's content hash: unchanged files are not re-read, deleted ones are removed. "
                       f"Types: {SUPPORTED}. Needs the `index` extra (sqlite-vec).",
                       epilog="example: minions index filings/ --store filings.minions && "
                       "minions ask -q 'What was 3M capex in FY2018?' --index filings.minions",
                       allow_abbrev=False)
    p.add_argument("paths", nargs="+", metavar="DIR", help="folders (searched recursively) or files to index")
    p.add_argument("--store", required=True, metavar="PATH", help="the index file (created if missing)")
    p.add_argument("--chunking", action="append", default=None, metavar="STRATEGY:SIZE",
                   help="chunkings to store (repeatable; default chars:3000, MinionS's; add chars:1500 for RAG). "
                   "Fixed when the index is created")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from minions.documents.store import CHUNKINGS, CorpusStore, IndexProgress, parse_chunking

    err = Console(stderr=True)
    chunkings = None
    if args.chunking:
        chunkings = list(dict.fromkeys([*CHUNKINGS, *(parse_chunking(c) for c in args.chunking)]))
    store = CorpusStore.create(args.store, chunkings)
    try:
        if args.json:
            report = store.update([Path(p) for p in args.paths])
        else:
            with Progress(TextColumn("[bold]indexing[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          TextColumn("{task.description}"), console=err, transient=False) as bar:
                task = bar.add_task("", total=None)

                def show(e: IndexProgress) -> None:
                    name = Path(e.path).name if e.path else ""
                    what = {"read": "reading", "unchanged": "unchanged", "removed": "removed"}.get(e.stage, "")
                    bar.update(task, total=e.total or None, completed=e.done,
                               description=markup(f"{what} {name}".strip()))

                report = store.update([Path(p) for p in args.paths], on_progress=show)
        store.checkpoint()
        size = store.size_bytes()
        n_docs = len(store.doc_ids())
    finally:
        store.close()
    if args.json:
        sys.stdout.write(json.dumps({**report.model_dump(), "documents": n_docs, "store_bytes": size}, indent=2) + "\n")
    else:
        out = Console()
        out.print(f"{markup(str(args.store))}: {n_docs} documents, {size / 1e6:,.1f} MB — "
                  f"{len(report.added)} added, {len(report.changed)} re-read (changed), "
                  f"{len(report.unchanged)} unchanged, {len(report.removed)} removed in {report.seconds:.1f} s")
        for note in report.notes:
            err.print(f"[yellow]note:[/] {markup(note)}")
        for path, why in report.failed.items():
            err.print(f"[red]not indexed:[/] {markup(path)}: {markup(why)}")
    return 1 if report.failed else 0
