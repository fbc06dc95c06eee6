"""minions document Q&A: ask questions over your documents; watch the remote plan and the local read.

    streamlit run apps/streamlit_app.py     (or: minions app)

Works with no keys and no Ollama: the embedded SmolLM2 is preselected as the local model and as a
stand-in remote, priced as openai/gpt-4o so the cost panel shows what the cloud would charge.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The app's modules live next to this file; `streamlit run` puts this folder on sys.path, Streamlit's
# AppTest does not, so make it explicit.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import streamlit as st  # noqa: E402
from minions_app import docs as doc_picker  # noqa: E402
from minions_app import sidebar  # noqa: E402
from minions_app.config import PROTOCOL_LABELS, Settings, build_protocol, native_multi_turn  # noqa: E402
from minions_app.egress import Recorder, outbound  # noqa: E402
from minions_app.export import run_log, scrub  # noqa: E402
from minions_app.fmt import safe_md  # noqa: E402
from minions_app.live import LiveView, run_live  # noqa: E402
from minions_app.turns import OPEN_SOURCE, Turn, explain_exception, follow_up, render_turn  # noqa: E402

from minions.clients import Client, get_client  # noqa: E402
from minions.documents import Document  # noqa: E402
from minions.egress import capture  # noqa: E402
from minions.protocols import CancelToken, Protocol, RunResult  # noqa: E402


@st.cache_resource(show_spinner=False)
def embedded_client(spec: str, price_as: str | None) -> Client:
    """llama.cpp clients hold a loaded model: one per (spec, price_as) for the whole server."""
    return get_client(spec, price_as=price_as) if price_as else get_client(spec)


def current_protocol(settings: Settings, secrets: dict[str, str]) -> Protocol:
    """The session's protocol, rebuilt only when settings or keys change, so a multi-turn protocol
    keeps its conversation across follow-up questions."""
    fingerprint = settings.fingerprint(secrets)
    kept = st.session_state.get("protocol_instance")
    if kept is None or kept[0] != fingerprint:
        kept = (fingerprint, build_protocol(settings, secrets, embedded=embedded_client))
        st.session_state["protocol_instance"] = kept
    return kept[1]


def new_conversation() -> None:
    st.session_state["turns"] = []
    st.session_state.pop("protocol_instance", None)
    st.session_state.pop(OPEN_SOURCE, None)  # a source view open in the old conversation


def ask(question: str, protocol: Protocol, docs: list[Document], settings: Settings,
        secrets: dict[str, str]) -> None:
    turns: list[Turn] = st.session_state["turns"]
    with st.chat_message("user"):
        st.markdown(safe_md(question))
    with st.chat_message("assistant"):
        status = st.status(f"Running {settings.protocol} on {len(docs)} document(s)…", expanded=True)
        task = question if native_multi_turn(protocol) else follow_up(question, turns)
        # Stop: clicking it makes Streamlit stop this script, and run_live then cancels the run before
        # its next model call; the partial result is kept as a turn (on_stopped). The token is in the
        # session so the button's callback (and tests) can reach the running run.
        cancel = CancelToken()
        st.session_state["run_cancel"] = cancel
        stop = st.empty()  # emptied when the run ends: a Stop button for a finished run would do nothing
        stop.button("Stop", key="stop_run", on_click=cancel.cancel, help="Cancel the run before its next model call")

        sent = Recorder()  # every request that leaves for the remote during this run

        def record(result: RunResult | None, error: str | None) -> Turn:
            turn = Turn(question=question, settings=settings.model_dump(), result=result, error=error,
                        log=run_log(question=question, settings=settings.model_dump(), result=result, error=error,
                                    secrets=secrets.values()),
                        sent=outbound(sent.records, docs))
            turns.append(turn)
            st.session_state["last_result"] = result  # the meter behind the cost panel (tests read it)
            return turn

        result, error = None, None
        try:
            with capture(sent):
                result = run_live(protocol, task, docs, LiveView(status), cancel=cancel,
                                  on_stopped=lambda r: record(r, None))
        except Exception as e:  # shown as a message with its fix, never a traceback
            error = scrub(explain_exception(e), secrets.values())
        stop.empty()
        failed = error is not None or result is None or result.answer is None
        label = ("Stopped" if result is not None and result.cancelled else
                 "Failed" if failed or result is None else f"Answered in {result.elapsed_s:.1f} s")
        status.update(label=label, state="error" if failed else "complete", expanded=False)
        turn = record(result, error)
        render_turn(turn, len(turns) - 1, {d.id: d.title for d in docs}, {d.id: d for d in docs},
                    st.session_state.get(doc_picker.FILES))


def main() -> None:
    st.set_page_config(page_title="minions · document Q&A", page_icon="🧠", layout="wide")
    st.session_state.setdefault("turns", [])
    settings, secrets, problem = sidebar.render()
    st.sidebar.button("New conversation", on_click=new_conversation, key="new_conversation")

    st.title("Document Q&A with minions")
    st.caption("A small local model reads your documents; a remote model plans and aggregates. "
               f"Protocol: {PROTOCOL_LABELS.get(settings.protocol, settings.protocol)}.")
    turns: list[Turn] = st.session_state["turns"]
    with st.expander("Documents", expanded=not turns):
        docs = doc_picker.render()
    docs_key = tuple((d.id, len(d.text)) for d in docs)
    if docs and st.session_state.get("docs_key") not in (None, docs_key) and turns:
        new_conversation()
        turns = st.session_state["turns"]
        st.info("The documents changed, so this is a new conversation.")
    if docs:
        st.session_state["docs_key"] = docs_key

    protocol = None
    if problem:
        st.error(problem)
    else:
        try:
            protocol = current_protocol(settings, secrets)
        except Exception as e:  # missing key, bad spec, missing package: say how to fix it
            st.error(scrub(explain_exception(e), secrets.values()))

    titles = {d.id: d.title for d in docs}
    by_id, files = {d.id: d for d in docs}, st.session_state.get(doc_picker.FILES)
    for i, turn in enumerate(turns):
        with st.chat_message("user"):
            st.markdown(safe_md(turn.question))
        with st.chat_message("assistant"):
            render_turn(turn, i, titles, by_id, files)

    placeholder = "Ask a follow-up question" if turns else "Ask a question about your documents"
    readable = bool(docs) or settings.index is not None  # with an index, the run picks its documents
    question = st.chat_input(placeholder, disabled=protocol is None or not readable, key="question")
    if question and protocol is not None and readable:
        ask(question, protocol, docs, settings, secrets)


main()
