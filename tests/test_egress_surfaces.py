"""Issue 22, item 5: what left this machine, shown where users look — `minions serve`'s /metrics (with
the official `openai` SDK against the server, its remote behind the strict gateway), the eval
summary's "verbatim sent" column and privacy plot, and the app's "What left this machine" panel."""

from __future__ import annotations

import hashlib

import pytest

from tests import test_app  # noqa: F401  (puts the app's modules on sys.path, as `streamlit run` does)
from tests.gateway import OPENAI, ScriptedBackend

# --- minions serve: /metrics ----------------------------------------------------------------------


def test_serve_metrics_count_the_requests_and_bytes_that_left(gateway):
    from tests.test_serve import ANSWER, CORPUS, metric, serving

    gateway.backend = ScriptedBackend(lambda _m, _o: ANSWER)
    remote = gateway.client("openai")
    host = gateway.url.split("//")[1]
    with serving(remote) as (srv, _, client):
        assert metric(srv, "minions_egress_bytes_total", host=host) == 0
        outs = [client.chat.completions.create(model="remote-only", messages=[
            {"role": "user", "content": f"What was revenue in fiscal 2024? ({i})"}]) for i in range(2)]
        received = [r for r in gateway.requests if r.route == OPENAI]
        assert len(received) == 2
        # counted at the transport: exactly the bodies the gateway received, byte for byte
        assert metric(srv, "minions_egress_requests_total", host=host) == 2
        assert metric(srv, "minions_egress_bytes_total", host=host) == sum(len(r.raw) for r in received)
        exts = [o.model_extra["minions"]["egress"] for o in outs]
        assert [e["bytes"] for e in exts] == [len(r.raw) for r in received]
        # remote-only sends the whole document: all of it left verbatim, in each run
        doc_chars = exts[0]["documents"][0]["chars"]
        assert exts[0]["documents"][0]["verbatim_chars"] == doc_chars > 0
        assert doc_chars >= len(" ".join(CORPUS.text.split())) - 1
        assert metric(srv, "minions_egress_verbatim_chars_total") == 2 * doc_chars


# --- the eval summary: "verbatim sent" and privacy.png --------------------------------------------


def test_eval_summary_shows_verbatim_sent_and_a_cached_rerun_shows_the_same(tmp_path):
    from minions.eval.report import COLUMNS
    from minions.eval.runner import run_sweep
    from tests.eval_scripted_sweep import config, factory

    cache = tmp_path / "lm_cache.sqlite"
    first = run_sweep(config(tmp_path / "a", cache_path=str(cache)), clients_factory=factory())
    by = {s.config: s for s in first.summary}
    ro, lo, rag, ms = by["remote-only"], by["local-only"], by["rag"], by["minions (tasks_per_round=1)"]
    # remote-only sends every document whole; local-only sends nothing; RAG its retrieved chunks
    assert ro.verbatim_share == pytest.approx(1.0) and ro.verbatim_chars_per_query > 1000
    assert lo.verbatim_share == 0 and lo.verbatim_chars_per_query == 0
    assert 0 < rag.verbatim_share < 1
    assert ms.verbatim_share < 0.05  # the scripted workers cite nothing: plans and short answers only
    for r in first.rows:
        assert r.verbatim_chars is not None and 0 <= r.verbatim_share <= 1
    md = (tmp_path / "a" / "summary.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| dataset"))
    assert "| verbatim sent |" in header and COLUMNS.index("verbatim sent") == COLUMNS.index("read") + 1
    ro_line = next(line for line in md.splitlines() if line.startswith("| sample | remote-only |"))
    assert f"| 100% ({ro.verbatim_chars_per_query:,.0f} ch) |" in ro_line
    assert "| 0% (0 ch) |" in next(line for line in md.splitlines() if line.startswith("| sample | local-only |"))
    assert "verbatim_share" in (tmp_path / "a" / "summary.csv").read_text().splitlines()[0]
    assert (tmp_path / "a" / "privacy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The same sweep in a new directory over the same LM cache: no request leaves, but a configuration
    # is as private as what it sends, so the column is unchanged.
    second = run_sweep(config(tmp_path / "b", cache_path=str(cache)), clients_factory=factory())
    assert second.model_calls == 0 and second.cache_hits > 0
    assert sorted((r.key, r.verbatim_chars) for r in second.rows) == sorted((r.key, r.verbatim_chars)
                                                                           for r in first.rows)


# --- the app: "What left this machine" ----------------------------------------------------------------

QUOTE = "Revenue grew to 120 million dollars in fiscal 2024."  # 51 chars, page 1 of PAGES
NEVER_SENT = "capital expenditures were 15 million"              # page 2: read locally, never quoted


def test_app_panel_spans_map_back_to_the_message_as_sent():
    from minions_app.egress import highlighted_html, outbound

    from minions.documents import Document
    from minions.egress.model import EgressRecord

    doc = Document.from_text("Intro.\n" + QUOTE.replace(" million", "\n  million") + "\nOther text.", id="d")
    sent = 'Worker said: "' + QUOTE.replace("grew to", "grew\tto") + '" <b>ok</b>'
    rec = EgressRecord(time="t", via="http", host="api.example", provider="openai", model="m", bytes=1,
                       sha256="0" * 64, text=sent)
    (o,) = outbound([rec], [doc])
    (a, b), = o.spans
    assert sent[a:b] == QUOTE.replace("grew to", "grew\tto") and o.verbatim_chars == len(QUOTE)
    page = highlighted_html(sent, o.spans)
    assert "<mark>" + QUOTE.replace("grew to", "grew\tto") + "</mark>" in page
    assert "&lt;b&gt;ok&lt;/b&gt;" in page and "<b>" not in page  # what was sent is shown, never rendered


def test_app_panel_lists_what_left_and_marks_the_quote(gateway):
    import json

    from tests.scripted import schema_title
    from tests.test_app import _minions_over_gateway, app, ask, upload
    from tests.test_documents import PAGES, make_pdf
    from tests.test_protocol_minions import plan

    def reply(msgs, opts):
        title = schema_title(opts)
        if title == "JobPlan":
            return plan("Find the revenue")
        if title in ("Synthesis", "LastSynthesis"):
            return '{"decision": "provide_final_answer", "explanation": "quoted", "answer": "120 million dollars"}'
        found = bool(msgs) and QUOTE in msgs[-1].content
        return json.dumps({"explanation": "stated", "citation": QUOTE if found else None,
                           "answer": "120 million dollars" if found else None})

    gateway.backend = ScriptedBackend(reply)
    at = app()
    upload(at, ("acme.pdf", make_pdf(PAGES)))
    _minions_over_gateway(at, gateway)
    ask(at, "What was Acme's revenue in fiscal 2024?")
    r = at.session_state["last_result"]
    assert r.answer and r.error is None, (r.error_type, r.error)
    remote_bodies = [b for b in gateway.requests if b.route == OPENAI]  # the Ollama worker's are local
    n = len(remote_bodies)
    assert n == r.egress.requests >= 2  # the plan and the synthesis
    (panel,) = [e for e in at.expander if e.label.startswith("What left this machine")]
    assert panel.label.startswith(f"What left this machine: {n} requests")
    messages = [h.value for h in panel.get("html")]
    assert len(messages) == n
    # each message shown is the text the gateway received, and the worker's quote is marked in the synthesis's
    turn = at.session_state["turns"][-1]
    assert [o.record.sha256 for o in turn.sent] == [hashlib.sha256(b.raw).hexdigest()
                                                     for b in remote_bodies]
    marked = [m for m in messages if f"<mark>{QUOTE}</mark>" in m]
    assert len(marked) >= 1 and all(NEVER_SENT not in m for m in messages)
    assert sum(o.verbatim_chars for o in turn.sent) >= len(QUOTE)
    assert r.egress.documents[0].verbatim_chars >= len(QUOTE)
    assert not at.exception
