"""Rich rendering of protocol events and results, shared by `minions ask` and other front ends.

Model output, document ids and messages are untrusted: each goes through `safe_text` (control
sequences stripped, rich markup escaped) before it reaches the terminal.
"""

from __future__ import annotations

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from minions.cli.safe_text import markup, plain
from minions.documents.ocr import OcrProgress
from minions.protocols.clip import clip
from minions.protocols.events import FinalAnswer, JobFinished, JobsPlanned, MessageSent, Notice, RoundDone
from minions.protocols.result import RunResult

_SIDE = {"remote": ("cloud (remote)", "cyan"), "local": ("local", "green")}


class LiveView:
    """An event handler that prints the conversation and job progress as they happen."""

    def __init__(self, console: Console, *, max_chars: int = 600):
        self.console, self.max_chars = console, max_chars
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __call__(self, event) -> None:
        if isinstance(event, MessageSent):
            title, style = _SIDE[event.sender]
            content = plain(event.content)
            text = content if len(content) <= self.max_chars else content[: self.max_chars] + " …"
            self.console.print(Panel(Text(text), title=f"round {event.round} · {title} · {event.step}",
                                     border_style=style, title_align="left"))
        elif isinstance(event, JobsPlanned):
            self.console.print(f"[bold]round {event.round}[/]: {event.n_tasks} task(s) × {event.n_chunks} chunk(s) "
                               f"→ {event.n_jobs} local job(s)")
            for i, t in enumerate(event.plan.get("tasks", []), 1):
                self.console.print(f"  [dim]task {i}:[/] {markup(t.get('instruction', t))}")
            self._start_progress(event.n_jobs)
        elif isinstance(event, JobFinished):
            if self._progress is not None and self._task is not None:
                self._progress.update(self._task, completed=event.done, total=event.total or None)
            if event.kept and event.answer:
                p0, p1 = event.pages
                pages = f"p.{p0}" if p0 == p1 else f"pp.{p0}-{p1}"
                self.console.print(f"  [green]✓[/] {markup(event.chunk_id)} ({pages}) task {event.task_id}: "
                                   f"{markup(_clip(event.answer, 160))}")
        elif isinstance(event, RoundDone):
            self._stop_progress()
            usd = "?" if event.remote_usd is None else f"${event.remote_usd:.4f}"
            self.console.print(f"[dim]round {event.round} done: {markup(event.decision)}; remote so far {usd}, "
                               f"local tokens {event.local_tokens:,}[/]")
        elif isinstance(event, Notice):
            self.console.print(f"[yellow]{event.level}:[/] {markup(event.message)}")
        elif isinstance(event, FinalAnswer):
            self._stop_progress()
        elif isinstance(event, OcrProgress):
            if event.done == 0:
                self._start_progress(event.total, f"  OCR {event.source[-40:]}")
            if self._progress is not None and self._task is not None:
                self._progress.update(self._task, completed=event.done)
            if event.done == event.total:
                self._stop_progress()

    def close(self) -> None:
        """Stop any progress bar (e.g. after Ctrl-C), so what is printed next is not overwritten."""
        self._stop_progress()

    def _start_progress(self, total: int, label: str = "  local jobs") -> None:
        self._stop_progress()
        self._progress = Progress(TextColumn(markup(label).replace("{", "{{").replace("}", "}}")), BarColumn(), MofNCompleteColumn(),
                                  console=self.console, transient=True)
        self._progress.start()
        self._task = self._progress.add_task("jobs", total=total)

    def _stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress, self._task = None, None


def _clip(s: str, n: int) -> str:
    return clip(plain(s), n)


def _usd(x: float | None) -> str:
    return "unknown (no price)" if x is None else f"${x:.6f}"


def cost_table(result: RunResult) -> Table:
    rep = result.cost
    remote_label = result.remote_model or "-"
    if rep.remote_stand_in and rep.remote_model:
        remote_label = f"{result.remote_model} (stand-in, priced as {rep.remote_model})"
    table = Table(title=f"Usage and cost · {result.protocol} · {result.n_rounds} round(s) · {result.elapsed_s:.1f}s")
    reasoning = any(rep.role(r).usage.reasoning_tokens for r in ("local", "remote"))
    cols = ("role", "calls", "prompt tok", "cached tok", "output tok", *(("of which reasoning",) if reasoning else ()),
            "cost")
    for col in cols:
        table.add_column(col, justify="left" if col == "role" else "right")
    for role in ("local", "remote"):
        t = rep.role(role)
        u = t.usage
        table.add_row(role, str(u.requests), f"{u.prompt_tokens:,}", f"{u.cached_prompt_tokens:,}",
                      f"{u.completion_tokens:,}", *((f"{u.reasoning_tokens:,}",) if reasoning else ()),
                      _usd(t.cost_usd))
    lines = [f"local: {result.local_model or '-'}", f"remote: {remote_label}"]
    lines += [f"price of {k}: {src}" for k, src in rep.price_sources.items()]
    if result.coverage is not None:
        lines.append(result.coverage.line())
    if rep.remote_only_estimate_usd is not None:
        ratio = rep.savings_ratio
        saving = f" · {ratio:.1f}× cheaper" if ratio else ""
        lines.append(f"remote-only estimate: {_usd(rep.remote_only_estimate_usd)}{saving}")
    table.caption = "\n".join(lines)
    return table


def flag_lines(result: RunResult) -> list[str]:
    """What a user must know about how far to trust the answer, one line each."""
    lines = []
    if result.cancelled:
        lines.append("Cancelled: this is the partial result; the cost is what the run spent before it stopped.")
    if result.degraded:
        lines.append(f"Degraded answer: {result.degraded_reason}.")
    if result.grounded is False:
        lines.append("Not grounded: the answer's figures (or, without figures, its words) are not in what the "
                     "local model found in the documents. Check it before trusting it.")
    return lines


def print_result(console: Console, result: RunResult) -> None:
    answer = Text(plain(result.answer)) if result.answer else Text("no answer", style="red")
    console.print(Panel(answer, title="answer", border_style="bold"))
    for c in result.citations[:5]:
        pages = "" if c.page_start is None else (f" p.{c.page_start}" if c.page_start == c.page_end
                                                   else f" pp.{c.page_start}-{c.page_end}")
        console.print(f"  [dim]cited[/] {markup(c.doc_id)}{pages}: “{markup(_clip(c.text, 140))}”")
    console.print(cost_table(result))
    if result.egress is not None:  # what left this machine, in one line (issue 22)
        console.print(f"[dim]{markup(result.egress.line())}[/]")
    if result.budget_exhausted:
        console.print("[yellow]Stopped at the remote budget; the answer is the best found so far.[/]")
    if result.rounds_exhausted:
        console.print("[yellow]Reached the round limit; the remote was asked to answer with what it had.[/]")
    for line in flag_lines(result):
        console.print(f"[bold yellow]{line}[/]")
