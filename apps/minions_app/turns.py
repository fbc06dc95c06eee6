"""One question and its outcome, and how a finished turn is shown: errors with their fix, the
answer, its citations, the cost panel (overall and per round), how it was answered, the run log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from minions.documents import Document
from minions.errors import MinionsError
from minions.protocols import history
from minions.protocols.result import Citation, RunResult

from .egress import Outbound
from .egress import render_panel as render_egress
from .fmt import (
    DECISIONS,
    citation_label,
    citation_line,
    clip,
    jobs_table,
    literal_md,
    plan_tasks,
    rounds_table,
    safe_md,
    saving,
    tokens,
    usd,
    without_repeats,
)
from .sources import render_source

# What to do about an error, in the app's terms (library messages name the library's fix).
HINTS = {
    "MissingAPIKeyError": "Paste the key under “API keys” in the sidebar (kept in this session only), "
                          "or set the variable before starting the app.",
    "AuthenticationError": "Check the API key in the sidebar or the environment.",
    "ServerUnreachableError": "Check the “Ollama host” or “Remote server URL” in the sidebar.",
    "ContextTooLongError": "Lower the chunk size, or use MinionS so the local model reads one chunk at a time.",
    "UnknownProviderError": "Fix the model spec in the sidebar.",
    "ModelNotFoundError": "Pick another model in the sidebar, or install/pull the one named.",
}


def explain(message: str, error_type: str | None) -> str:
    """The error message (which names the library's fix) plus the fix in the app."""
    message = message.replace("Raise --max-remote-usd", "Raise “Remote budget” in the sidebar")
    hint = HINTS.get(error_type or "")
    return safe_md(f"{message} {hint}" if hint else message)


def explain_exception(e: BaseException) -> str:
    if isinstance(e, MinionsError):
        return explain(str(e), type(e).__name__)
    return safe_md(f"Unexpected error ({type(e).__name__}: {e}). This is a bug in minions; please report "
                   "it with the run log.")


@dataclass
class Turn:
    question: str
    settings: dict[str, Any]
    result: RunResult | None
    error: str | None   # shown as st.error; already explained and scrubbed
    log: bytes          # the downloadable run log, built when the run ended (secrets removed)
    sent: list[Outbound] = field(default_factory=list)  # what left this machine, spans measured

    @property
    def answer(self) -> str | None:
        return self.result.answer if self.result else None


#: earlier answered turns a follow-up shows to a protocol that does not remember turns itself
FOLLOW_UP_TURNS = 3


def follow_up(question: str, turns: Sequence[Turn]) -> str:
    """The task for a follow-up: the last few answered turns (a failed run has nothing to build on),
    then the question, in the one history format every door uses."""
    answered = [history.Turn(question=t.question, answer=t.answer) for t in turns if t.answer]
    return history.with_history(question, answered, keep=FOLLOW_UP_TURNS)


def render_turn(turn: Turn, index: int, titles: dict[str, str], docs: Mapping[str, Document] | None = None,
                files: Mapping[str, tuple[str, bytes]] | None = None) -> None:
    """One finished turn. `docs` (by id) and `files` (id -> file name and bytes) let a click on a
    citation show its page; without them the citations are listed only."""
    if turn.error:
        st.error(turn.error)
    r = turn.result
    if r is not None:
        if r.budget_exhausted:
            st.error("The remote budget stopped this run" + (": the answer below is the best found so far. "
                     if r.answer else " before an answer was found. ") + explain(r.error or "", r.error_type))
        elif r.error and not r.degraded:
            st.error(explain(r.error, r.error_type))
        if r.cancelled:
            st.warning("Stopped: the run was cancelled. " + ("The answer below is the best it had; " if r.answer
                       else "No answer yet; ") + "the cost below is what it spent before stopping.")
        if r.degraded:
            st.warning(safe_md(f"Degraded answer: {r.degraded_reason}. It comes from the local model's verified "
                               "work, not from the remote's synthesis."))
        if r.grounded is False:
            st.warning("Not grounded: this answer's figures (or, without figures, its words) are not in what "
                       "the local model found in the documents. Check it before trusting it.")
        if r.answer:
            answer, repeats = without_repeats(r.answer)
            st.markdown(safe_md(answer))
            if repeats:
                st.caption(f"The model repeated {repeats} paragraph(s) word for word; each is shown once "
                           "(the run log keeps its reply as written).")
        elif not (r.error or turn.error):
            st.warning("The models did not produce an answer. Try more rounds or another protocol.")
        if r.citations:
            sources(r.citations[:MAX_SOURCES], index, titles, docs or {}, files or {})
        if r.rounds_exhausted:
            st.caption("Reached the round limit: the remote answered with what it had.")
        cost_panel(r)
        details(r)
        render_egress(r, turn.sent)
    st.download_button("Download run log (JSON)", data=turn.log, file_name=f"minions-run-{index + 1}.json",
                       mime="application/json", key=f"log.{index}", on_click="ignore")


MAX_SOURCES = 8
OPEN_SOURCE = "source_open"  # session key: the citation whose page is shown ("src.<turn>.<i>")


def _toggle_source(key: str) -> None:
    st.session_state[OPEN_SOURCE] = None if st.session_state.get(OPEN_SOURCE) == key else key


def sources(citations: list[Citation], index: int, titles: dict[str, str], docs: Mapping[str, Document],
            files: Mapping[str, tuple[str, bytes]]) -> None:
    """The citations, each a button that shows (or hides) its page with the quote highlighted."""
    if not docs:
        st.markdown("**Sources**\n\n" + "\n".join("- " + citation_line(c, titles) for c in citations))
        return
    st.markdown("**Sources** · click one to see it on its page")
    for i, c in enumerate(citations):
        key = f"src.{index}.{i}"
        shown = st.session_state.get(OPEN_SOURCE) == key
        st.button(("▾ " if shown else "▸ ") + citation_label(c, titles), key=key, type="tertiary",
                  on_click=_toggle_source, args=(key,),
                  help="Hide the page" if shown else "Show this quote on its page, highlighted")
        if shown:
            with st.container(border=True, key=f"source.{index}.{i}"):
                name, data = files.get(c.doc_id, ("", None))
                render_source(docs.get(c.doc_id), c, data, name)


def cost_panel(r: RunResult) -> None:
    rep = r.cost
    remote, local = rep.role("remote"), rep.role("local")
    cols = st.columns(5)
    cols[0].metric("Remote spent", usd(remote.cost_usd))
    cols[1].metric("Local tokens", tokens(local.usage.total_tokens))
    cols[2].metric("Remote-only estimate", usd(rep.remote_only_estimate_usd))
    value, note = saving(rep)
    cols[3].metric("Saving", value, delta=note, delta_color="normal" if value != "none" else "inverse")
    cov = r.coverage
    cols[4].metric("Document read", "—" if cov is None else f"{cov.share:.0%}",
                   delta=None if cov is None else f"{cov.chunks_read} of {cov.chunks_total} chunks",
                   delta_color="off", help=None if cov is None else safe_md(cov.line() + (f" · {cov.why}" if cov.why else "")))
    remote_label = r.remote_model or "none"
    if rep.remote_stand_in and rep.remote_model:
        remote_label += f" (stand-in, priced as {rep.remote_model})"
    st.caption(safe_md(f"Remote: {remote_label} · local: {r.local_model or 'none'} · {r.n_rounds} round(s) · "
                       f"{r.elapsed_s:.1f} s"))
    rows = rounds_table(r.calls)
    if rows:
        st.dataframe(rows, hide_index=True, column_config={
            "remote $": st.column_config.NumberColumn(format="$%.6f")})


def details(r: RunResult) -> None:
    n_jobs = sum(len(rnd.jobs) for rnd in r.rounds)
    with st.expander(f"How it was answered: {r.n_rounds} round(s), {n_jobs} local job(s)"):
        for rnd in r.rounds:
            st.markdown(f"**Round {rnd.round}** · {DECISIONS.get(rnd.decision, rnd.decision.value) if rnd.decision else '—'}")
            for i, task in enumerate(plan_tasks(rnd.plan), 1):
                st.markdown(f"- task {i}: {literal_md(clip(task, 300))}")
            if rnd.jobs:
                st.dataframe(jobs_table(rnd), hide_index=True)
            for m in rnd.messages:
                if m.role == "assistant":  # replies only: prompts hold document text
                    sender = "☁️ remote" if m.to == "local" else "💻 local"
                    st.markdown(f"{sender} · {m.step}")
                    st.text(clip(m.content, 1500))
