"""Issue 22: what left this machine. The verbatim measure, the record taken at the transport (through
the strict gateway with the official SDKs, and around the protocol door on purpose), the run's
`egress` summary, and the hash-chained ledger with `minions audit`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random

import pytest

from minions.clients.function import FunctionClient
from minions.documents import Document
from minions.egress import capture
from minions.egress.ledger import ChainError, Ledger, read
from minions.egress.record import sent_text
from minions.egress.verbatim import VerbatimIndex, normalize, verbatim
from minions.protocols.baselines import RemoteOnly
from tests.gateway import ANTHROPIC, OPENAI, ScriptedBackend
from tests.test_protocol_minions import final, honest_local, make_doc, plan, run, scripted_remote

WORDS = ("revenue margin segment quarter fiscal operating income capital lease goodwill asset liability "
         "equity cash flow dividend share buyback inventory tariff freight").split()


def prose(n_words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n_words)) + "."


# --- the verbatim measure -------------------------------------------------------------------------

def test_a_quote_is_found_as_one_span_and_counted_in_the_document():
    doc = prose(400)
    quote = doc[1000:1100]
    index = VerbatimIndex(doc)
    out = "The worker cites:<" + quote + ">and says so."  # '<' and '>' are not in the document
    spans = index.spans(out)
    assert spans == [(len("The worker cites:<"), len("The worker cites:<") + 100)]
    assert index.chars >= 100 and index.chars < 200  # the quote, plus any repeat of it elsewhere
    assert index.share == index.chars / len(normalize(doc))


def test_overlapping_and_adjacent_hits_merge_into_one_span():
    doc = prose(300, seed=1)
    out = doc[200:420]  # every 40-char window of it hits: one span, not 181
    assert VerbatimIndex(doc).spans(out) == [(0, 220)]


def test_two_quotes_separated_by_new_text_stay_two_spans():
    doc = prose(300, seed=2)
    a, b = doc[100:160], doc[900:990]
    spans = VerbatimIndex(doc).spans(a + "<the remote's own words here>" + b)
    assert [(e - s) for s, e in spans] == [60, 90]


def test_whitespace_is_normalised_on_both_sides():
    doc = "Revenue  grew\n\nto $12.4 million in fiscal 2024,\tup from $10.1 million last year."
    out = "revenue? Revenue grew to $12.4 million in fiscal 2024, up from $10.1\n   million last year."
    chars, share = verbatim(doc, out)
    assert chars == len(normalize(doc)) and share == 1.0


def test_spans_shorter_than_the_threshold_are_ignored():
    doc = prose(200, seed=3)
    out = "|".join(doc[i:i + 39] for i in range(0, 600, 100))  # six 39-char quotes; '|' is not in it
    assert verbatim(doc, out) == (0, 0.0)
    assert verbatim(doc, out, min_chars=30)[0] >= 6 * 39 - 30  # the knob: shorter spans count
    assert verbatim(doc, doc[:40]) [0] >= 40


def test_the_word_knob_counts_runs_of_whole_words():
    doc = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"
    assert verbatim(doc, "x alpha beta gamma delta epsilon zeta eta y", min_words=8)[0] == 0  # 7 words
    chars, _ = verbatim(doc, "x alpha beta gamma delta epsilon zeta eta theta y", min_words=8)
    assert chars == len("alpha beta gamma delta epsilon zeta eta theta")


def test_no_text_sent_and_empty_documents():
    assert verbatim("", "anything at all, long enough to make a window of forty characters") == (0, 0.0)
    assert verbatim(prose(100), []) == (0, 0.0)


# --- the run's summary: remote-only sends everything, MinionS a little ------------------------------

def test_remote_only_sends_the_whole_document_verbatim():
    doc = Document.from_text(prose(600, seed=4), id="report")
    remote = FunctionClient.from_replies(["an answer"], model="scripted-remote")
    result = RemoteOnly(None, remote).run("What is the margin?", [doc])
    eg = result.egress
    assert eg is not None and eg.requests == len(remote.calls) == 1
    assert eg.hosts[0].host == "in-process" and eg.hosts[0].prompt_tokens > 600
    (d,) = eg.documents
    assert d.doc_id == "report" and d.verbatim_share > 0.99 and d.verbatim_chars == d.chars
    assert result.summary()["egress"]["documents"][0]["verbatim_share"] > 0.99


def test_minions_with_scripted_clients_sends_a_small_share():
    pages = [prose(250, seed=10 + i) for i in range(8)]
    pages[5] += " The revenue was $42 million in fiscal 2024, up from $37 million."
    doc = Document.from_pages(pages, id="nw")
    local = FunctionClient(honest_local, model="scripted-local")
    remote = scripted_remote([plan("Find the revenue figure")], [final()])
    result = run(local, remote, doc=doc)
    assert result.answer == "$42 million"
    eg = result.egress
    assert eg.requests == len(remote.calls) >= 2  # the local model's calls never count
    (d,) = eg.documents
    assert 0 < d.verbatim_chars < 200  # the worker's citation, quoted to the remote
    assert d.verbatim_share < 0.05
    # the figure agrees with measuring every message the remote got, independently
    sent = [m.content for msgs, _ in remote.calls for m in msgs]
    assert verbatim(doc.text, sent) == (d.verbatim_chars, pytest.approx(d.verbatim_share, abs=1e-6))


def test_a_local_only_run_sends_nothing():
    from minions.protocols.baselines import LocalOnly

    local = FunctionClient.from_replies(["an answer"], model="scripted-local")
    result = LocalOnly(local, None).run("q?", [prose(300)])
    assert result.egress.requests == 0 and result.egress.documents[0].verbatim_chars == 0
    assert result.egress.line() == "egress: nothing left this machine"


# --- the record at the transport, through the strict gateway with the official SDKs ------------------

def _remote_script(protocol: str):
    """The gateway backend's reply function for `protocol`'s remote."""
    if protocol == "minions":
        return scripted_remote([plan("Find the revenue figure")], [final()]).fn
    if protocol == "minion":
        from tests.test_protocol_minion import ask
        from tests.test_protocol_minion import final as minion_final

        return FunctionClient.from_replies([ask("What was revenue in fiscal 2024?"),
                                            minion_final("$42 million")]).fn
    return lambda _m, _o: "$42 million"


def _requests(path) -> list[dict]:
    return [e for e in read(path) if e["kind"] == "request"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("protocol", ["minions", "minion", "remote-only", "rag"])
def test_every_body_the_gateway_received_is_in_the_ledger_byte_for_byte(gateway, tmp_path, provider, protocol):
    from minions.protocols import get_protocol

    gateway.backend = ScriptedBackend(_remote_script(protocol))
    remote = gateway.client(provider)
    local = FunctionClient(lambda m, o: honest_local(m, o) if "<excerpt>" in m[-1].content
                           else "The revenue was $42 million in fiscal 2024.", model="scripted-local")
    ledger = tmp_path / "egress.jsonl"
    proto = get_protocol(protocol, local, remote, **({"ask_question": False} if protocol == "minions" else {}))
    with capture(Ledger(ledger)):
        result = proto.run("What was revenue in fiscal 2024?", [make_doc()])
    assert result.error is None, result.error
    received = [r for r in gateway.requests if r.route in (OPENAI, ANTHROPIC)]
    lines = _requests(ledger)
    assert received and len(lines) == len(received) == result.egress.requests
    assert sorted(hashlib.sha256(r.raw).hexdigest() for r in received) == sorted(e["sha256"] for e in lines)
    by_hash = {e["sha256"]: e for e in lines}
    for r in received:
        e = by_hash[hashlib.sha256(r.raw).hexdigest()]
        assert e["bytes"] == len(r.raw) and e["text"] == sent_text(r.raw) and e["status"] == 200
        assert e["host"] == gateway.url.split("//")[1] and e["run_id"] == result.egress.run_id
        assert e["prompt_tokens"] > 0 and e["completion_tokens"] > 0
    assert "sk-test" not in ledger.read_text() and "sk-ant-test" not in ledger.read_text()
    (run_line,) = [e for e in read(ledger) if e["kind"] == "run"]
    assert run_line["egress"]["documents"] == [d.model_dump(mode="json") for d in result.egress.documents]
    remote_texts = [e["text"] for e in lines]
    doc_text = make_doc().text
    assert result.egress.documents[0].verbatim_chars == verbatim(doc_text, remote_texts)[0]
    if protocol == "remote-only":
        assert result.egress.documents[0].verbatim_share > 0.99


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_request_around_the_protocol_door_is_still_recorded(gateway, tmp_path, monkeypatch, provider):
    """No protocol, no run: the client is called directly, on purpose. The env ledger still gets it."""
    ledger = tmp_path / "env.jsonl"
    monkeypatch.setenv("MINIONS_EGRESS_LOG", str(ledger))
    gateway.backend = ScriptedBackend(lambda m, o: "ok")
    client = gateway.client(provider)
    try:
        await client.complete("The vault code is ZEBRA-7741, please repeat it.", max_tokens=10)
    finally:
        await client.aclose()
    (received,) = gateway.requests
    (line,) = _requests(ledger)
    assert line["sha256"] == hashlib.sha256(received.raw).hexdigest() and line["run_id"] is None
    assert "ZEBRA-7741" in line["text"]


def test_hashes_only_ledger_keeps_no_text(gateway, tmp_path):
    gateway.backend = ScriptedBackend(lambda m, o: "ok")
    ledger = tmp_path / "h.jsonl"
    with capture(Ledger(ledger, text=False)):
        gateway.client("openai").complete_sync("SECRET-PARAGRAPH-991 of the filing", max_tokens=5)
    assert "SECRET-PARAGRAPH-991" not in ledger.read_text()
    (line,) = _requests(ledger)
    assert line["text"] is None and line["sha256"] == hashlib.sha256(gateway.requests[0].raw).hexdigest()


def test_a_local_worker_on_loopback_is_not_egress(gateway, tmp_path):
    """A protocol's local model on this machine (vLLM on localhost) reads documents by design."""
    gateway.backend = ScriptedBackend(lambda m, o: "$42 million")
    local = gateway.client("openai", model="local-worker")
    remote = FunctionClient.from_replies(["$42 million"], model="scripted-remote")
    from minions.protocols.baselines import LocalOnly

    result = LocalOnly(local, None).run("Revenue?", [make_doc()])
    assert gateway.requests and result.egress.requests == 0
    assert remote.calls == []


# --- the ledger's chain and `minions audit` -------------------------------------------------------

def _ledger(tmp_path, n_runs: int = 2):
    """A ledger of `n_runs` remote-only runs with a scripted in-process remote (3+ lines each)."""
    path = tmp_path / "egress.jsonl"
    with capture(Ledger(path)):
        for i in range(n_runs):
            remote = FunctionClient.from_replies([f"answer {i}"], model="scripted-remote")
            RemoteOnly(None, remote).run(f"question {i}?", [Document.from_text(prose(200, seed=i), id=f"d{i}")])
    return path


def test_audit_verifies_the_chain_and_reports_each_run(tmp_path, capsys):
    from minions.cli import main

    path = _ledger(tmp_path)
    assert len(read(path)) == 4  # a request and a closing line per run
    assert main(["audit", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and data["lines"] == 4 and len(data["runs"]) == 2
    run0 = data["runs"][0]
    assert run0["requests"] == 1 and run0["hosts"][0]["host"] == "in-process" and run0["complete"]
    assert run0["documents"][0]["doc_id"] == "d0" and run0["documents"][0]["verbatim_share"] > 0.99
    assert main(["audit", str(path)]) == 0
    text = capsys.readouterr().out
    assert "chain ok" in text and "d1:" in text and "(100.0%)" in text


def _tamper_and_audit(path, edit, capsys) -> tuple[int, str]:
    from minions.cli import main

    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(edit(lines)))
    code = main(["audit", str(path)])
    return code, capsys.readouterr().err


def test_a_deleted_line_is_detected_and_named(tmp_path, capsys):
    path = _ledger(tmp_path)
    code, err = _tamper_and_audit(path, lambda ls: ls[:1] + ls[2:], capsys)
    assert code == 1 and "line 2: does not follow line 1" in err


def test_an_edited_line_is_detected_and_named(tmp_path, capsys):
    path = _ledger(tmp_path)

    def edit(ls):
        entry = json.loads(ls[2])
        entry["bytes"] -= 1000  # understate what left
        return [*ls[:2], (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode(), *ls[3:]]

    code, err = _tamper_and_audit(path, edit, capsys)
    assert code == 1 and "line 3: its content does not match its own hash" in err


def test_an_edit_that_recomputes_its_own_hash_breaks_the_next_line(tmp_path):
    from minions.egress.ledger import _canonical, _self_hash

    path = _ledger(tmp_path)
    ls = path.read_bytes().splitlines(keepends=True)
    entry = json.loads(ls[0])
    entry["host"] = "somewhere-else.example"
    entry["self"] = _self_hash(entry)
    path.write_bytes(_canonical(entry) + b"\n" + b"".join(ls[1:]))
    with pytest.raises(ChainError, match="line 2: does not follow line 1") as e:
        read(path)
    assert e.value.line == 2


def test_a_reordered_line_is_detected_and_named(tmp_path, capsys):
    path = _ledger(tmp_path)
    code, err = _tamper_and_audit(path, lambda ls: [ls[0], ls[2], ls[1], ls[3]], capsys)
    assert code == 1 and "line 2: does not follow line 1" in err


def test_the_first_lines_deleted_is_detected(tmp_path, capsys):
    path = _ledger(tmp_path)
    code, err = _tamper_and_audit(path, lambda ls: ls[2:], capsys)
    assert code == 1 and "line 1: is not the ledger's first line" in err


def test_audit_of_a_missing_file_exits_2(tmp_path, capsys):
    from minions.cli import main

    assert main(["audit", str(tmp_path / "nope.jsonl")]) == 2
    assert "cannot read the egress log" in capsys.readouterr().err


def test_ask_with_egress_log_records_the_remote_not_the_local_worker_and_audits(gateway, tmp_path):
    """The CLI end to end: MinionS with an Ollama worker on loopback and an OpenAI remote, both through
    the gateway. The remote's bodies are in the ledger by hash; the local worker's are not."""
    import subprocess
    import sys

    from tests.test_cli import ROOT, _backend, _gateway_cli

    async def answer(_m, _o):
        return final()

    gateway.backend = _backend(answer)
    ledger = tmp_path / "egress.jsonl"
    out, err = _gateway_cli(gateway, tmp_path, "--egress-log", str(ledger)).communicate(timeout=180)
    data = json.loads(out)
    assert data["answer"] == "$42 million", err
    remote = [r for r in gateway.requests if r.route == OPENAI]
    local = [r for r in gateway.requests if r.route == "/api/chat"]
    lines = _requests(ledger)
    assert remote and local and len(lines) == len(remote) == data["egress"]["requests"]
    assert {e["sha256"] for e in lines} == {hashlib.sha256(r.raw).hexdigest() for r in remote}
    assert data["egress"]["documents"][0]["verbatim_share"] < 0.5
    audit_out = subprocess.run([sys.executable, "-m", "minions.cli", "audit", str(ledger), "--json"],
                               capture_output=True, text=True, cwd=ROOT, timeout=120,
                               env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert audit_out.returncode == 0, audit_out.stderr
    report = json.loads(audit_out.stdout)
    (run_report,) = report["runs"]
    assert run_report["requests"] == len(remote) and run_report["hosts"][0]["bytes"] == sum(len(r.raw) for r in remote)


def test_one_engine_as_local_and_as_priced_remote_records_only_the_remote_calls():
    """The embedded model plays both roles through a priced_as wrapper sharing its engine: the
    wrapper's calls are egress, the same engine's calls as the local model are not."""
    from minions.protocols.budget import priced_as

    script = scripted_remote([plan("Find the revenue figure")], [final()])

    def both(msgs, opts):
        return honest_local(msgs, opts) if "<excerpt>" in msgs[-1].content else script.fn(msgs, opts)

    engine = FunctionClient(both, model="engine")
    remote = priced_as(engine, "openai/gpt-4o")
    result = run(engine, remote)
    assert result.answer == "$42 million"
    n_remote = sum(1 for e in result.calls if e.role == "remote")
    assert n_remote >= 2 and result.egress.requests == n_remote < len(engine.calls)


def test_a_cached_remote_over_http_is_recorded_once_per_request_sent(gateway, tmp_path):
    from minions.clients.cache import CachedClient, LMCache

    gateway.backend = ScriptedBackend(lambda m, o: "$42 million")
    remote = CachedClient(gateway.client("openai"), LMCache(tmp_path / "cache"))
    proto = RemoteOnly(None, remote)
    first = proto.run("Revenue?", [make_doc()])
    again = proto.run("Revenue?", [make_doc()])  # answered from the cache: nothing leaves
    assert len(gateway.requests) == 1 and first.egress.requests == 1 and again.egress.requests == 0


@pytest.mark.real_model
def test_embedded_stand_in_remote_is_recorded_at_the_call(tmp_path):
    """The embedded model as the remote (in-process, no HTTP): each call is recorded where it is
    made, and remote-only on the bundled sample sends the whole document verbatim."""
    from pathlib import Path

    from minions.clients.llamacpp import LlamaCppClient
    from minions.documents import load

    sample = load(Path(__file__).resolve().parents[1] / "datasets" / "sample" / "northwind_annual_report.md")
    remote = LlamaCppClient("smollm2", n_threads=1, price_as="openai/gpt-4o")
    ledger = tmp_path / "e.jsonl"
    try:
        with capture(Ledger(ledger)):
            result = RemoteOnly(None, remote, remote_max_tokens=24).run("What was total revenue?", [sample])
    finally:
        asyncio.run(remote.aclose())
    assert result.error is None, result.error
    (line,) = _requests(ledger)
    assert line["via"] == "in-process" and line["host"] == "in-process" and line["cost_usd"] > 0
    assert result.egress.requests == 1 and result.egress.documents[0].verbatim_share > 0.99
    assert result.egress.hosts[0].cost_usd == pytest.approx(result.cost.role("remote").cost_usd)


def test_personal_data_scrubbed_is_counted_by_type_and_never_leaves():
    from minions.protocols.privacy import Scrubber

    text = (prose(120, seed=7) + " Contact jane.roe@example.com or 555-867-5309 about Maria Gonzalez. "
            + prose(120, seed=8))
    remote = FunctionClient.from_replies(["an answer"], model="scripted-remote")
    result = RemoteOnly(None, remote, privacy=Scrubber(names=["Maria Gonzalez"])).run("q?", [
        Document.from_text(text, id="memo")])
    (d,) = result.egress.documents
    assert d.scrubbed == {"[EMAIL]": 1, "[PHONE]": 1, "[NAME]": 1}
    sent = "\n".join(m.content for msgs, _ in remote.calls for m in msgs)
    assert "jane.roe@example.com" not in sent and "[EMAIL]" in sent
    assert 0.9 < d.verbatim_share < 1.0  # everything but the scrubbed items and the text around them


def test_concurrent_appends_keep_one_unbroken_chain(tmp_path):
    """Threads (and processes) share a ledger: each append locks the file and reads its last line."""
    from concurrent.futures import ThreadPoolExecutor

    from minions.egress.record import EgressRecord

    path = tmp_path / "shared.jsonl"

    def write(i: int) -> None:
        ledger = Ledger(path)
        for j in range(25):
            ledger.add(EgressRecord(time="t", via="in-process", host="in-process", provider="p", model="m",
                                    bytes=i * 100 + j, sha256="0" * 64, text=f"{i}-{j}"))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(4)))
    entries = read(path)
    assert len(entries) == 100 and len({e["text"] for e in entries}) == 100


def test_text_with_lone_surrogates_is_measured():
    """Model output is untrusted: a lone surrogate in a message must not break the measure."""
    doc = prose(100, seed=9)
    assert verbatim(doc, "\ud800" + doc[:80] + "\udfff")[0] >= 80


def test_the_ledger_takes_any_text_sent(tmp_path):
    from minions.egress.record import EgressRecord

    path = tmp_path / "odd.jsonl"
    odd = "caf\u00e9 \ud800 \U0001f600 \x1b[2J"
    Ledger(path).add(EgressRecord(time="t", via="in-process", host="in-process", provider="p", model="m",
                                  bytes=1, sha256="0" * 64, text=odd))
    (entry,) = read(path)
    assert entry["text"] == odd


def test_an_api_key_inside_the_text_sent_is_not_written_down(gateway, tmp_path, monkeypatch):
    monkeypatch.setenv("ACME_API_KEY", "acme-secret-key-123456")
    gateway.backend = ScriptedBackend(lambda m, o: "ok")
    ledger = tmp_path / "k.jsonl"
    with capture(Ledger(ledger)):
        gateway.client("openai", api_key="sk-test-key-987654").complete_sync(
            "config: acme-secret-key-123456 and sk-test-key-987654", max_tokens=5)
    text = ledger.read_text()
    assert "acme-secret-key-123456" not in text and "sk-test-key-987654" not in text
    (line,) = _requests(ledger)
    assert "[redacted]" in line["text"]
    assert line["sha256"] == hashlib.sha256(gateway.requests[0].raw).hexdigest()  # the hash is of what left
