"""Running a protocol while the page shows its events live.

The run happens on a worker thread (through `minions._sync.run_sync`, so SDK clients kept across
turns stay on the one shared event loop); its `on_event` handler only puts events on a queue. The
script thread drains the queue and renders each event, because Streamlit elements can only be
written from the script's own thread.

Stopping: pressing Stop (or any widget) while a run is going makes Streamlit stop the script at
its next Streamlit call — an exception in the script thread. The drain loop makes such a call at
least every `poll_s` (the elapsed-time label), so the exception arrives promptly; `run_live` then
sets the run's cancel token, waits for the run to return (it stops before its next model call)
and hands the partial result to `on_stopped` before letting the exception end the script.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from minions._sync import run_sync
from minions.documents import Document
from minions.protocols import CancelToken, Protocol, RunResult
from minions.protocols.events import FinalAnswer, JobFinished, JobsPlanned, MessageSent, Notice, RoundDone

from .fmt import DECISIONS, clip, literal_md, pages_label, safe_md, tokens, usd

_DONE = object()
SIDES = {"remote": "☁️ remote (supervisor)", "local": "💻 local (worker)"}


class LiveView:
    """Renders events into a `st.status` box: messages, planned jobs with a progress bar, worker
    answers with their pages, round summaries and notices."""

    def __init__(self, status: Any, *, max_chars: int = 800):
        self.status, self.max_chars = status, max_chars
        self.bar: Any = None
        self.events: list[Any] = []  # every event seen, in order (tests and the summary use it)
        self.label = "Running…"
        self.started = time.monotonic()

    def tick(self) -> None:
        """Show the elapsed time. Also a Streamlit call: a script Streamlit wants to stop stops here."""
        self.status.update(label=f"{self.label} ({time.monotonic() - self.started:.0f} s)")

    def __call__(self, ev: Any) -> None:
        self.events.append(ev)
        box = self.status
        if isinstance(ev, MessageSent):
            box.markdown(f"**Round {ev.round} · {SIDES[ev.sender]} · {ev.step}**")
            box.text(clip(ev.content, self.max_chars))
        elif isinstance(ev, JobsPlanned):
            box.markdown(f"**Round {ev.round} plan:** {ev.n_tasks} task(s) × {ev.n_chunks} chunk(s) → "
                         f"{ev.n_jobs} local job(s)")
            for i, t in enumerate(ev.plan.get("tasks", []) or [], 1):
                text = t.get("instruction", t) if isinstance(t, dict) else t
                box.markdown(f"- task {i}: {literal_md(clip(str(text), 300))}")
            self.bar = box.progress(0.0, text=f"local jobs 0/{ev.n_jobs}")
            self.label = f"Round {ev.round}: running {ev.n_jobs} local job(s)…"
            self.status.update(label=self.label)
        elif isinstance(ev, JobFinished):
            if self.bar is not None and ev.total:
                self.bar.progress(min(1.0, ev.done / ev.total), text=f"local jobs {ev.done}/{ev.total}")
            if ev.kept and ev.answer:
                line = (f"✅ {literal_md(ev.chunk_id)} ({pages_label(*ev.pages)}) · task {ev.task_id}: "
                        f"{literal_md(clip(ev.answer, 240))}")
                if ev.citation:
                    line += f" — “{literal_md(clip(ev.citation, 160))}”"
                box.markdown(line)
        elif isinstance(ev, RoundDone):
            self.bar = None
            box.caption(f"Round {ev.round} done: {DECISIONS.get(ev.decision, ev.decision)} · remote so far "
                        f"{usd(ev.remote_usd)} · local tokens {tokens(ev.local_tokens)}")
        elif isinstance(ev, Notice):
            (box.warning if ev.level == "warning" else box.info)(safe_md(ev.message))
        elif isinstance(ev, FinalAnswer):
            self.status.update(label="Answer ready" if ev.answer else "Finished without an answer")


def run_live(protocol: Protocol, task: str, docs: list[Document], view: LiveView, *,
             cancel: CancelToken | None = None, on_stopped: Callable[[RunResult], object] | None = None,
             poll_s: float = 0.5, grace_s: float = 600.0) -> RunResult:
    """Run the protocol, rendering its events as they arrive; returns the RunResult or raises what
    the run raised (typed minions errors are usually inside the result instead). If the script is
    stopped meanwhile (Stop pressed), the run is cancelled and its partial result goes to `on_stopped`."""
    cancel = cancel or CancelToken()
    events: queue.Queue[Any] = queue.Queue()
    out: dict[str, Any] = {}

    def work() -> None:
        try:
            out["result"] = run_sync(protocol.arun(task, docs, on_event=events.put, cancel=cancel))
        except BaseException as e:  # handed to the script thread, which shows it
            out["error"] = e
        finally:
            events.put(_DONE)

    # The run sees the caller's context: its egress sinks (the "What left this machine" recorder).
    worker = threading.Thread(target=contextvars.copy_context().run, args=(work,), name="minions-app-run", daemon=True)
    worker.start()
    try:
        while True:
            try:
                ev = events.get(timeout=poll_s)
            except queue.Empty:
                view.tick()
                continue
            if ev is _DONE:
                break
            view(ev)
    except BaseException:  # Streamlit stopped the script (Stop, or another widget): stop the run too
        cancel.cancel()
        worker.join(grace_s)  # returns before the run's next model call
        if on_stopped is not None and isinstance(out.get("result"), RunResult):
            on_stopped(out["result"])
        raise
    if "error" in out:
        raise out["error"]
    return out["result"]
