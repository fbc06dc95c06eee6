"""`minions batch QUESTIONS.jsonl DOCS... --out OUT.jsonl`: a question set over documents, resumable.

The run is `minions.batch.arun_batch` (the engine eval sweeps share); this module parses the flags
(the model and knob flags are `ask`'s, generated from the protocols' Config classes) and renders the
library's events as a rich progress bar with an ETA.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from minions.cli.safe_text import markup


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1 (got {text!r})")
    return n


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0 (got {text!r})")
    return v


def add_parser(sub) -> None:
    from minions.cli.ask import add_model_args, budget_flag
    from minions.cli.executor_flags import add_executor_args

    p = sub.add_parser("batch", help="answer a set of questions (JSONL) over documents, resumably",
                       description="Answer every question of QUESTIONS.jsonl (one JSON object a line: id, question, "
                       "optional documents) over DOCS, appending one JSON line per answer to --out. Run it again "
                       "to resume: answers already in --out are skipped.",
                       epilog="example: minions batch questions.jsonl 10k.pdf --out answers.jsonl --parallel 4 "
                       "--max-total-usd 5",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter, allow_abbrev=False)
    p.add_argument("questions", metavar="QUESTIONS.jsonl")
    p.add_argument("paths", nargs="*", metavar="DOCS", help="default documents for questions without a list")
    p.add_argument("--out", default=None, metavar="OUT.jsonl",
                   help="answers file, appended to and resumed from (default: QUESTIONS.answers.jsonl)")
    # not --concurrency: that is the protocols' knob (local jobs in flight within one question)
    p.add_argument("--parallel", type=_positive_int, default=4, metavar="N",
                   help="questions answered at once (with --executor ray: Ray tasks submitted at once)")
    p.add_argument("--max-total-usd", type=budget_flag, default=None,
                   help="stop starting questions once the run has spent this much (in flight ones finish)")
    p.add_argument("--max-seconds", type=_seconds, default=None,
                   help="stop starting questions after this long (in flight ones finish)")
    add_model_args(p)
    p.add_argument("--max-document-chars", type=int, default=None, metavar="N",
                   help="refuse documents with more characters of text")
    p.add_argument("--no-store-text", action="store_true", help="omit document text from the rows")
    p.add_argument("--quiet", action="store_true", help="no progress bar; the summary only")
    add_executor_args(p)
    p.set_defaults(func=run)


def default_out(questions: str) -> Path:
    q = Path(questions)
    return q.with_name(q.name.removesuffix(".jsonl") + ".answers.jsonl")


class ProgressView:
    """Renders the batch's events: a progress bar with the ETA, the spend, and the caps' notices."""

    def __init__(self, console: Console, enabled: bool = True):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = console
        self.progress = Progress(TextColumn("[bold]batch"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[spent]}"),
                                 console=console, disable=not enabled)
        self.task: Any = None

    def __call__(self, event: Any) -> None:
        from minions.batch import BatchStarted
        from minions.runlog import CapReached, UnitFinished

        if isinstance(event, BatchStarted):
            for w in event.warnings:
                self.console.print(f"[yellow]warning:[/] {markup(w)}")
            if event.done:
                self.console.print(f"resuming: {event.done} of {event.total} already answered")
            self.progress.start()
            self.task = self.progress.add_task("batch", total=event.total, completed=event.done, spent="")
        elif isinstance(event, UnitFinished):
            row = event.row
            if row.error:
                self.progress.console.print(f"[red]error[/] {markup(row.id)}: {markup(row.error_type or '')} "
                                            f"{markup(row.error)}")
            self.progress.update(self.task, completed=event.done, spent=f"${event.spent_usd:.4f}")
        elif isinstance(event, CapReached):
            self.progress.console.print(f"[yellow]stopping:[/] {markup(event.message)}")

    def close(self) -> None:
        self.progress.stop()


def run(args: argparse.Namespace, *, factory: Any = None) -> int:
    """The command. `factory`: a (role, spec, kwargs) -> Client builder instead of the registry's
    (scripted models in tests and benchmarks: dependency injection, no test switch)."""
    from minions.batch import run_batch
    from minions.cli.ask import settings_from_args
    from minions.cli.executor_flags import executor_from_args
    from minions.executors import open_executor

    err = Console(stderr=True)
    out = Path(args.out) if args.out else default_out(args.questions)
    settings = settings_from_args(args)
    executor = open_executor(executor_from_args(args, [m if isinstance(m, str) else None
                                                       for m in (settings.local, settings.remote)]))
    view = ProgressView(err, enabled=not args.quiet)
    try:
        outcome = run_batch(args.questions, args.paths, out, settings, concurrency=args.parallel,
                            max_total_usd=args.max_total_usd, max_seconds=args.max_seconds, factory=factory,
                            max_document_chars=args.max_document_chars, on_progress=view, executor=executor)
    finally:
        view.close()
        if executor is not None:
            executor.close()
    summary = {"out": str(outcome.out), "rows": len(outcome.rows), "new_rows": outcome.new_rows,
               "errors": outcome.errors, "spent_usd": round(outcome.spent_usd, 6), "stopped": outcome.stopped,
               "not_started": outcome.not_started}
    sys.stdout.write(json.dumps(summary) + "\n")
    if outcome.stopped:
        err.print(f"[yellow]stopped early:[/] {markup(outcome.stopped)}")
        return 3
    return 1 if outcome.errors else 0


__all__ = ["ProgressView", "add_parser", "default_out", "run"]
