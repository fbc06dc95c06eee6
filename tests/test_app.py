"""The Streamlit app (apps/streamlit_app.py), driven by Streamlit's own AppTest.

Cloud and Ollama paths go over real HTTP to the loopback gateway (tests/gateway.py) with a scripted
backend, so they are fast and deterministic; one end-to-end test runs MinionS on the embedded model.
"""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from minions.cost import add_costs
from minions.protocols.result import RunResult
from tests.gateway import OPENAI, ScriptedBackend
from tests.test_documents import PAGES, make_pdf

APP = Path(__file__).resolve().parents[1] / "apps" / "streamlit_app.py"
sys.path.insert(0, str(APP.parent))  # the app's own modules, as `streamlit run` would see them

from minions_app.config import STAND_IN_PRICE  # noqa: E402
from minions_app.docs import load_files  # noqa: E402
from minions_app.export import REMOVED, run_log, scrub  # noqa: E402
from minions_app.fmt import rounds_table, safe_md, usd  # noqa: E402
from minions_app.turns import Turn, follow_up  # noqa: E402

SECRET = "sk-app-test-7f3a9c1e5b2d4f6a8c0e"
QUESTION = "What was Acme's revenue in fiscal 2024?"


@pytest.fixture(autouse=True)
def _no_ambient_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for env in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OLLAMA_HOST"):
        monkeypatch.delenv(env, raising=False)


def app(timeout: float = 120) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=timeout)
    at.run()
    assert not at.exception, at.exception
    return at


def upload(at: AppTest, *files: tuple[str, bytes]) -> None:
    at.radio(key="doc_source").set_value("Upload files").run()
    at.file_uploader(key="uploads").set_value([(n, d, "application/octet-stream") for n, d in files]).run()


def ask(at: AppTest, question: str) -> None:
    at.chat_input(key="question").set_value(question).run()
    assert not at.exception, at.exception


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def use_gateway_remote(at: AppTest, gateway, protocol: str) -> None:
    """Remote openai/gpt-4o-mini served by the gateway; the key typed in the sidebar, required by it."""
    gateway.api_key = SECRET
    at.selectbox(key="protocol").set_value(protocol).run()
    at.selectbox(key="remote_preset").set_value("openai/gpt-4o-mini").run()
    at.text_input(key="base_url").set_value(gateway.openai_url)
    at.text_input(key="key.OPENAI_API_KEY").set_value(SECRET).run()


def remote_only_answer(gateway, answer: str = "Revenue grew to 120 million dollars in fiscal 2024.") -> AppTest:
    """The app after one remote-only question over the uploaded Acme PDF, `answer`ed by the gateway."""
    gateway.backend = ScriptedBackend(lambda m, o: answer)
    at = app()
    upload(at, ("acme.pdf", make_pdf(PAGES)))
    use_gateway_remote(at, gateway, "remote-only")
    ask(at, QUESTION)
    return at


def check_cost_panel(at: AppTest, r) -> None:
    """The panel's numbers are the result's meter: totals per role and the per-round table."""
    metrics = {m.label: m.value for m in at.metric}
    remote = add_costs(e.cost_usd for e in r.calls if e.role == "remote")
    local_tokens = sum(e.usage.total_tokens for e in r.calls if e.role == "local")
    assert remote == pytest.approx(r.cost.role("remote").cost_usd)
    assert metrics["Remote spent"] == usd(remote)
    assert float(metrics["Remote spent"].lstrip("$")) == pytest.approx(remote, abs=5e-7)
    assert metrics["Local tokens"] == f"{local_tokens:,}"
    assert metrics["Remote-only estimate"] == usd(r.cost.remote_only_estimate_usd)
    assert r.coverage is not None and metrics["Document read"] == f"{r.coverage.share:.0%}"
    table = next(df for df in (d.value for d in at.dataframe) if "remote $" in df.columns)
    rows = table.to_dict("records")
    assert [row["round"] for row in rows] == [row["round"] for row in rounds_table(r.calls)]
    assert sum(row["remote $"] for row in rows) == pytest.approx(remote)
    assert sum(row["local tokens"] for row in rows) == local_tokens


# --- pure parts ----------------------------------------------------------------------------------

def test_load_files_parses_bytes_reports_bad_files_and_caches() -> None:
    parsed: list[str] = []
    cache: dict = {}
    files = [("acme.pdf", make_pdf(PAGES)), ("broken.pdf", b"%PDF-1.4\nnot really a pdf"),
             ("notes.md", b"# Notes\nThe dividend was 0.42 per share."), ("acme.pdf", make_pdf(PAGES[:1]))]
    docs, problems = load_files(files, cache, before=lambda name, i, n: parsed.append(name))
    assert [d.id for d in docs] == ["acme", "notes", "acme-2"] and len(docs[0].pages) == 3
    assert len(problems) == 1 and "broken.pdf" in problems[0]
    assert parsed == ["acme.pdf", "broken.pdf", "notes.md", "acme.pdf"]
    parsed.clear()
    again, _ = load_files(files, cache, before=lambda name, i, n: parsed.append(name))
    assert parsed == ["broken.pdf"] and [d.id for d in again] == ["acme", "notes", "acme-2"]


def test_scrub_removes_typed_keys_and_key_shapes() -> None:
    text = f'error: Incorrect API key provided: {SECRET}; also "sk-proj-abcdefghijklmnop****wxyz" and p@ss"w0rd!'
    out = scrub(text, [SECRET, 'p@ss"w0rd!', ""])
    assert SECRET not in out and "sk-proj-" not in out and "p@ss" not in out and out.count(REMOVED) == 3
    log = run_log(question="q", settings={"remote": "openai/gpt-4o"}, result=None,
                  error=f"401 for key {SECRET}", secrets=[SECRET]).decode()
    assert SECRET not in log and json.loads(log)["error"] == f"401 for key {REMOVED}"


def test_model_output_cannot_make_links_or_images() -> None:
    assert safe_md("![x](https://evil.example/?q=1) <b>$5</b>") == \
        r"!\[x\](https://evil.example/?q=1) \<b\>\$5\</b\>"


def test_follow_ups_carry_earlier_answered_turns_for_protocols_without_memory() -> None:
    def turn(q: str, answer: str | None) -> Turn:
        result = RunResult.model_construct(answer=answer) if answer is not None else None
        return Turn(question=q, settings={}, result=result, error=None if result else "failed", log=b"")

    assert follow_up("and 2023?", []) == "and 2023?"
    task = follow_up("and 2023?", [turn("revenue 2024?", "120 million"), turn("unanswered", None)])
    assert "1. Question: revenue 2024?\n   Answer: 120 million" in task and task.endswith("and 2023?")
    assert "unanswered" not in task  # a failed run has nothing to build on


# --- the app -------------------------------------------------------------------------------------

def test_opens_with_a_bundled_sample_and_the_embedded_models() -> None:
    at = app()
    assert at.radio(key="doc_source").value == "Bundled sample"
    assert at.selectbox(key="sample").value.endswith(".md")
    assert at.selectbox(key="protocol").value == "minions"
    assert at.selectbox(key="local_preset").value == "llamacpp/smollm2"
    assert at.selectbox(key="remote_preset").value == "llamacpp/smollm2"
    assert at.text_input(key="price_as.llamacpp").value == STAND_IN_PRICE
    assert "stand-in" in at.selectbox(key="remote_preset").options[0]
    assert not at.error and not at.chat_input(key="question").proto.disabled
    assert any("pages" in c or "page" in c for c in texts(at.caption))  # the document summary


@pytest.mark.real_model
def test_minions_end_to_end_on_an_uploaded_pdf_with_the_embedded_model() -> None:
    at = app(timeout=600)
    upload(at, ("acme-report.pdf", make_pdf(PAGES)))
    assert any("acme-report · 3 pages" in c for c in texts(at.caption))
    for knob, value in {"max_rounds": 1, "tasks_per_round": 1, "samples_per_task": 1, "chunk_size": 1200,
                        "max_jobs_per_round": 2, "local_max_tokens": 96, "remote_max_tokens": 160}.items():
        at.number_input(key=f"knob.minions.{knob}").set_value(value)
    ask(at, QUESTION)
    r = at.session_state["last_result"]
    assert r.protocol == "minions" and r.answer, (r.error_type, r.error)
    md = texts(at.markdown)
    assert safe_md(r.answer) in md                                            # the answer
    jobs = r.rounds[0].jobs
    assert jobs and any(m.startswith("**Round 1 plan:**") and f"→ {len(jobs)} local job(s)" in m for m in md)
    table = next(df for df in (d.value for d in at.dataframe) if "job" in df.columns)
    assert list(table["job"]) == [j.job_id for j in jobs]                     # the jobs
    assert set(table["pages"]) <= {"p. 1", "p. 2", "p. 3", "pp. 1–2", "pp. 1–3", "pp. 2–3"}
    check_cost_panel(at, r)                                                   # the meter
    assert r.cost.remote_stand_in and any(f"stand-in, priced as {STAND_IN_PRICE}" in c for c in texts(at.caption))
    (egress,) = [e for e in at.expander if e.label.startswith("What left this machine")]  # each request as sent
    assert len(egress.get("html")) == r.egress.requests >= 2                  # the plan and the synthesis at least
    assert not at.error


def test_remote_key_typed_in_the_sidebar_is_used_and_never_exported(gateway) -> None:
    at = remote_only_answer(gateway)
    r = at.session_state["last_result"]
    assert r.answer == "Revenue grew to 120 million dollars in fiscal 2024." and r.error is None
    assert safe_md(r.answer) in texts(at.markdown)
    # the typed key reached the server (the gateway rejects any other), and nothing else
    headers = {k.lower(): v for k, v in gateway.requests[-1].headers.items()}
    assert headers["authorization"] == f"Bearer {SECRET}"
    check_cost_panel(at, r)
    assert r.citations and any("p\\. 1" in b.label for b in at.button if b.key.startswith("src."))
    turn = at.session_state["turns"][-1]
    log = turn.log.decode()
    assert SECRET not in log and json.loads(log)["result"]["answer"] == r.answer
    assert at.download_button(key="log.0").label == "Download run log (JSON)"
    # nothing but the password widget holds the key: not the result, the turns or the page
    assert SECRET not in r.model_dump_json() and SECRET not in repr(at.session_state["turns"])
    assert not any(SECRET in t for t in texts(at.markdown) + texts(at.caption) + texts(at.error))


def test_follow_up_questions_reuse_the_protocol_and_its_memory(gateway) -> None:
    gateway.backend = ScriptedBackend(
        lambda m, o: '{"decision": "provide_final_answer", "message": "", "answer": "120 million dollars."}')
    at = app()
    upload(at, ("acme.pdf", make_pdf(PAGES)))
    use_gateway_remote(at, gateway, "minion")
    ask(at, QUESTION)
    protocol = at.session_state["protocol_instance"][1]
    ask(at, "And the year before?")
    assert at.session_state["protocol_instance"][1] is protocol                # same instance, same memory
    assert [(t.question, t.answer) for t in protocol.history] == \
        [(QUESTION, "120 million dollars."), ("And the year before?", "120 million dollars.")]
    second = gateway.bodies(OPENAI)[-1]["messages"][0]["content"]
    assert QUESTION in second and "And the year before?" in second            # the remote saw the history
    assert [t.question for t in at.session_state["turns"]] == [QUESTION, "And the year before?"]
    assert len(at.chat_message) == 4 and len(at.download_button) == 2


def test_read_budget_knob_is_checked_in_the_sidebar() -> None:
    at = app()
    assert at.text_input(key="knob.minions.read").value == ""          # empty: from the measured speed
    assert at.number_input(key="knob.minions.max_jobs_per_round").value == 0  # 0: no cap
    at.text_input(key="knob.minions.read").set_value("alll").run()
    errors = texts(at.error)
    assert len(errors) == 1 and "'all', a share like '30%'" in errors[0]
    assert at.chat_input(key="question").proto.disabled and not at.exception
    at.text_input(key="knob.minions.read").set_value("30%").run()
    assert not at.error and not at.chat_input(key="question").proto.disabled


def test_missing_api_key_names_the_variable() -> None:
    at = app()
    at.selectbox(key="remote_preset").set_value("openai/gpt-4o-mini").run()
    errors = texts(at.error)
    assert len(errors) == 1 and "OPENAI_API_KEY" in errors[0] and "sidebar" in errors[0]
    assert at.chat_input(key="question").proto.disabled
    assert not at.exception


def test_unreachable_ollama_says_how_to_start_it() -> None:
    at = app()
    at.selectbox(key="protocol").set_value("local-only").run()
    at.selectbox(key="local_preset").set_value("ollama/llama3.2:3b").run()
    host = f"http://127.0.0.1:{closed_port()}"
    at.text_input(key="ollama_host").set_value(host).run()
    ask(at, "What is in the report?")
    r = at.session_state["last_result"]
    assert r.error_type == "ServerUnreachableError" and r.answer is None
    errors = texts(at.error)
    assert any("ollama serve" in e and host in e and "Ollama host" in e for e in errors), errors
    assert not at.exception


def test_bad_file_shows_the_document_error_and_keeps_the_good_ones() -> None:
    at = app()
    upload(at, ("scan.pdf", b"%PDF-1.7\n\x00\x01 garbage, no xref"), ("notes.txt", b"The dividend was 0.42."))
    errors = texts(at.error)
    assert len(errors) == 1 and "scan.pdf" in errors[0] and "Could not read a file" in errors[0]
    assert any(c.startswith("📄 notes") for c in texts(at.caption))
    assert not at.chat_input(key="question").proto.disabled and not at.exception


def test_budget_reached_says_the_budget_stopped_the_run() -> None:
    at = app()
    at.number_input(key="budget").set_value(0.000001)
    ask(at, "What was Northwind's revenue?")
    r = at.session_state["last_result"]
    assert r.budget_exhausted and r.error_type == "BudgetExceededError"
    errors = texts(at.error)
    assert len(errors) == 1 and errors[0].startswith("The remote budget stopped this run")
    assert "Remote budget" in errors[0] and "sidebar" in errors[0] and "--max-remote-usd" not in errors[0]
    assert re.search(r"\\\$0\.0000", errors[0])  # the cap, as the meter saw it (escaped for Markdown)
    assert not at.exception


# --- issue 13: Stop, degraded and ungrounded answers --------------------------------------------

def _minions_backend(synthesis: str, on_job=None):
    from tests.scripted import schema_title
    from tests.test_protocol_minions import plan

    def reply(msgs, opts):  # by the schema asked for: the remote's plan or synthesis, else a worker job
        title = schema_title(opts)
        if title == "JobPlan":
            return plan("Find the revenue")
        if title in ("Synthesis", "LastSynthesis"):
            return synthesis
        last = msgs[-1].content if msgs else ""  # an Ollama warm-up request has no messages
        if on_job is not None and "<excerpt>" in last:
            on_job()
        found = "Revenue grew to 120 million dollars in fiscal 2024." in last
        return json.dumps({"explanation": "stated", "citation": "Revenue grew to 120 million dollars" if found
                           else None, "answer": "120 million dollars" if found else None})
    return ScriptedBackend(reply)


def _minions_over_gateway(at: AppTest, gateway) -> None:
    use_gateway_remote(at, gateway, "minions")
    at.selectbox(key="local_preset").set_value("ollama/llama3.2:3b").run()
    at.text_input(key="ollama_host").set_value(gateway.url).run()
    at.number_input(key="knob.minions.max_rounds").set_value(1).run()


def test_stop_cancels_the_run_and_shows_the_partial_result_and_its_cost(gateway) -> None:
    at = app()
    upload(at, ("acme.pdf", make_pdf(PAGES)))
    # What the Stop button's callback does, done from the server side while the first local job runs.
    gateway.backend = _minions_backend('{"decision": "provide_final_answer", "answer": "never"}',
                                       on_job=lambda: at.session_state["run_cancel"].cancel())
    _minions_over_gateway(at, gateway)
    ask(at, QUESTION)
    r = at.session_state["last_result"]
    assert r.cancelled and r.answer != "never"
    planned = len(r.rounds[0].plan["tasks"]) * 3                   # 2 tasks x 3 pages; 4 run at once
    assert sum(e.role == "local" for e in r.calls) <= 4 < planned  # no job started after the cancel
    assert not any(e.step == "synthesize" for e in r.calls)
    assert r.cost.role("remote").cost_usd > 0                       # the plan it paid for is on the bill
    assert any(w.startswith("Stopped: the run was cancelled") for w in texts(at.warning))
    check_cost_panel(at, r)
    assert not any(b.key == "stop_run" for b in at.button) and not at.exception  # gone with the run


def test_a_degraded_answer_is_shown_with_its_reason(gateway) -> None:
    at = app()
    upload(at, ("acme.pdf", make_pdf(PAGES)))
    gateway.backend = _minions_backend('{"decision": "provide_final_answer", "explanation": "", "answer": ""}')
    _minions_over_gateway(at, gateway)
    ask(at, QUESTION)
    r = at.session_state["last_result"]
    assert r.degraded and r.answer == "120 million dollars", (r.error, r.answer)
    assert any(w.startswith("Degraded answer:") and "backed with a quote" in w for w in texts(at.warning))
    assert safe_md(r.answer) in texts(at.markdown) and not at.error


def test_run_live_cancels_the_run_when_streamlit_stops_the_script() -> None:
    """Streamlit stops a script (Stop pressed) by raising at its next call: here, the first event."""
    import time

    from minions_app.live import LiveView, run_live

    from minions.clients.function import FunctionClient
    from minions.documents import Document
    from minions.protocols import CancelToken, get_protocol

    class Stopped(Exception):
        pass

    class Box:
        def __getattr__(self, name):
            def stop(*a, **k):
                raise Stopped
            return stop

    def slow(msgs, opts):
        time.sleep(0.3)
        return '{"decision": "request_additional_info", "message": "Q?", "answer": null}'
    remote = FunctionClient(slow, model="remote")
    local = FunctionClient.from_replies(["A"], model="local")
    proto = get_protocol("minion", local, remote, max_rounds=5)
    token, stopped = CancelToken(), []
    with pytest.raises(Stopped):
        run_live(proto, "Q", [Document.from_text("text", id="d")], LiveView(Box()), cancel=token,
                 on_stopped=stopped.append, poll_s=0.05)
    assert token.cancelled and len(stopped) == 1 and stopped[0].cancelled
    assert len(remote.calls) <= 2 and stopped[0].cost.role("remote").usage.requests == len(remote.calls)


def test_privacy_widget_scrubs_a_private_name_from_what_the_remote_receives(gateway) -> None:
    at = remote_only_answer(gateway)
    plain = json.dumps(gateway.bodies(OPENAI)[-1]["messages"])
    assert "Acme" in plain                                           # without privacy the remote reads the name
    at.text_area(key="private_names").set_value("Acme\n").run()      # listing a name turns scrubbing on
    ask(at, QUESTION)
    scrubbed = json.dumps(gateway.bodies(OPENAI)[-1]["messages"])
    assert "acme" not in scrubbed.lower() and "120 million" in scrubbed  # the name goes; the figures stay
    turn = at.session_state["turns"][-1]
    assert turn.result.settings.privacy and "Acme" not in json.dumps(turn.settings)  # recorded, names not exported


def test_with_a_corpus_index_and_no_upload_the_app_answers_from_the_documents_it_picks(gateway, tmp_path) -> None:
    import shutil

    from minions.documents.store import CorpusStore

    folder = tmp_path / "docs"
    shutil.copytree(APP.parents[1] / "datasets" / "sample", folder, ignore=shutil.ignore_patterns("*.jsonl"))
    path = tmp_path / "corpus.minions"
    store = CorpusStore.create(path)
    store.update([folder])
    store.close()
    gateway.backend = ScriptedBackend(lambda m, o: "Losartan replaced it.")
    at = app()
    at.radio(key="doc_source").set_value("Upload files").run()  # nothing uploaded
    use_gateway_remote(at, gateway, "remote-only")
    assert at.chat_input(key="question").proto.disabled          # no document and no index: nothing to ask of
    at.text_input(key="index").set_value(str(path)).run()
    assert not at.chat_input(key="question").proto.disabled
    ask(at, "Which medication replaced lisinopril after the patient developed a dry cough?")
    turn = at.session_state["turns"][-1]
    assert turn.result.error is None and turn.result.answer == "Losartan replaced it."
    sent = json.dumps(gateway.bodies(OPENAI)[-1]["messages"])
    assert "Margaret Anne Ellison" in sent                          # the indexed record was read from the store
    assert turn.settings["index"] == str(path)                       # the exported settings say where it came from


def test_minions_app_index_hands_the_store_to_the_app(tmp_path, monkeypatch) -> None:
    import subprocess as sp

    from minions.cli import main

    seen: dict = {}
    monkeypatch.setattr(sp, "call", lambda cmd, env: seen.update(cmd=cmd, env=env) or 0)
    assert main(["app", "--index", str(tmp_path / "c.minions"), "--port", "8599"]) == 0
    assert seen["env"]["MINIONS_INDEX"] == str((tmp_path / "c.minions").resolve()) and "8599" in seen["cmd"]
