"""`minions serve`: the real server on loopback, driven by the official `openai` SDK.

Scripted clients (FunctionClient) make every answer, usage figure and error deterministic; one
test runs the real CLI with the embedded model end to end.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest

from minions.clients.function import FunctionClient
from minions.cost import Price, PriceTable
from minions.documents import Document
from minions.serve.app import create_app
from minions.serve.server import BackgroundServer
from minions.serve.service import ServeSettings, Service
from tests.test_documents import PAGES, make_pdf

ROOT = Path(__file__).resolve().parents[1]
PRICES = PriceTable({"function/remote": Price(input=1.0, output=2.0), "function/local": Price(input=0.0, output=0.0)})
CORPUS = Document.from_pages(PAGES, id="acme", title="Acme annual report")
ANSWER = "Revenue grew to 120 million dollars in fiscal 2024."  # verbatim on page 1 of PAGES
CAPEX = "capital expenditures were 15 million"                  # verbatim on page 2


def remote_answering(answer: str = ANSWER, **kw) -> FunctionClient:
    return FunctionClient(lambda _m, _o: answer, model="remote", **kw)


def local_client() -> FunctionClient:
    return FunctionClient(lambda _m, _o: "nothing relevant", model="local")


@contextmanager
def serving(remote: FunctionClient | None = None, local: FunctionClient | None = None, corpus=(CORPUS,),
            **settings) -> Iterator[tuple[BackgroundServer, Service, openai.OpenAI]]:
    settings.setdefault("default_protocol", "remote-only")
    service = Service(ServeSettings(**settings), local=local or local_client(), remote=remote or remote_answering(),
                      corpus=list(corpus), prices=PRICES)
    with BackgroundServer(create_app(service)) as srv:
        key = settings["api_key"] if "api_key" in settings else "unused"
        yield srv, service, openai.OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0)


def words(client: FunctionClient) -> tuple[int, int]:
    """Prompt and completion words a scripted client saw: its usage, counted the same way."""
    prompt = sum(len(m.content.split()) for msgs, _ in client.calls for m in msgs)
    return prompt, len(ANSWER.split()) * len(client.calls)


def error_of(exc: openai.APIStatusError) -> dict:
    body = exc.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in exc.response.text
    return body["error"]


def metric(srv: BackgroundServer, name: str, **labels: str) -> float:
    text = httpx.get(srv.url + "/metrics", headers={"Authorization": "Bearer k"}).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))  # exposition sorts labels
    for line in text.splitlines():
        if line.startswith(name + ("{" + want + "}" if want else " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --- answers -------------------------------------------------------------------------------------

def test_models_are_the_protocols_the_server_can_run():
    with serving() as (_, _, client):
        assert [m.id for m in client.models.list()] == ["minion", "minions", "remote-only", "local-only", "rag"]
        assert client.models.retrieve("rag").id == "rag"
    service = Service(ServeSettings(default_protocol="rag"), local=None, remote=remote_answering(), prices=PRICES)
    assert service.protocols() == ["remote-only", "rag"]  # no local model: no protocol that needs one


def test_completion_over_a_corpus_document():
    remote = remote_answering()
    with serving(remote) as (_, _, client):
        out = client.chat.completions.create(model="remote-only", messages=[
            {"role": "user", "content": "What was revenue in fiscal 2024?"}])
    assert out.object == "chat.completion" and out.model == "remote-only"
    assert out.choices[0].message.content == ANSWER and out.choices[0].finish_reason == "stop"
    (messages, _), = remote.calls
    assert "Revenue grew to 120 million" in messages[-1].content  # the corpus document reached the model
    prompt, completion = words(remote)
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (prompt, completion)
    ext = out.model_extra["minions"]
    assert ext["protocol"] == "remote-only" and ext["rounds"] == 1
    assert ext["cost_usd"]["remote"] == pytest.approx((prompt + 2 * completion) / 1e6)
    assert ext["cost_usd"]["remote_only_estimate"] > 0
    assert [(c["doc_id"], c["page_start"]) for c in ext["citations"]] == [("acme", 1)]


def test_streamed_completion_sends_progress_then_answer_deltas():
    long_answer = ANSWER + " " + " ".join(f"word{i}" for i in range(40))
    with serving(remote_answering(long_answer)) as (_, _, client):
        chunks = list(client.chat.completions.create(
            model="remote-only", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "What was revenue in fiscal 2024?"}]))
    assert len({c.id for c in chunks}) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    progress = [c.model_extra["minions"]["event"]["kind"] for c in chunks
                if (c.model_extra or {}).get("minions") and "event" in c.model_extra["minions"]]
    assert progress == ["message", "round_done"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == long_answer
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 3  # in pieces
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(finals) == 1 and finals[0].model_extra["minions"]["rounds"] == 1
    assert finals[0].model_extra["minions"]["cost_usd"]["remote"] > 0
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(long_answer.split())


def test_streamed_minions_run_reports_its_jobs_as_progress():
    from tests.test_protocol_minions import final, honest_local, make_doc, plan, scripted_remote

    remote = scripted_remote([plan("Find the revenue")], [final("$42 million")])
    with serving(remote, FunctionClient(honest_local, model="local"), corpus=(make_doc(),)) as (_, _, client):
        chunks = list(client.chat.completions.create(model="minions", stream=True, messages=[
            {"role": "user", "content": "What was revenue in fiscal 2024?"}]))
    events = [c.model_extra["minions"]["event"] for c in chunks
              if (c.model_extra or {}).get("minions") and "event" in c.model_extra["minions"]]
    kinds = [e["kind"] for e in events]
    assert kinds.index("jobs_planned") < kinds.index("job_finished") and kinds[-1] == "round_done"
    planned = events[kinds.index("jobs_planned")]
    finished = [e for e in events if e["kind"] == "job_finished"]
    assert len(finished) == planned["n_jobs"] > 1 and finished[-1]["done"] == finished[-1]["total"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "$42 million"


def pdf_part(data: bytes, filename: str = "acme-2024.pdf") -> dict:
    return {"type": "file", "file": {"filename": filename,
                                     "file_data": "data:application/pdf;base64," + base64.b64encode(data).decode()}}


def answers_capex(messages, _opts) -> str:
    # Answers only when the PDF's page-2 text reached the prompt: proves the file part was read.
    return f"The report says \"{CAPEX}\"." if CAPEX in messages[-1].content else "not in the documents"


def test_completion_over_an_uploaded_pdf_file_part():
    with serving(FunctionClient(answers_capex, model="remote"), corpus=()) as (_, _, client):
        out = client.chat.completions.create(model="remote-only", messages=[{"role": "user", "content": [
            {"type": "text", "text": "What were capital expenditures?"}, pdf_part(make_pdf(PAGES))]}])
    assert out.choices[0].message.content == f"The report says \"{CAPEX}\"."
    cites = out.model_extra["minions"]["citations"]
    assert [(c["doc_id"], c["page_start"], c["page_end"]) for c in cites] == [("acme-2024", 2, 2)]


def test_file_uploaded_once_is_used_by_id_and_can_be_deleted():
    with serving(FunctionClient(answers_capex, model="remote"), corpus=()) as (_, service, client):
        f = client.files.create(file=("acme-2024.pdf", make_pdf(PAGES), "application/pdf"), purpose="user_data")
        assert f.id.startswith("file-") and f.filename == "acme-2024.pdf" and f.bytes == len(make_pdf(PAGES))
        assert [x.id for x in client.files.list()] == [f.id]
        out = client.chat.completions.create(model="remote-only", messages=[{"role": "user", "content": [
            {"type": "text", "text": "Capital expenditures?"}, {"type": "file", "file": {"file_id": f.id}}]}])
        assert CAPEX in out.choices[0].message.content
        assert client.files.delete(f.id).deleted
        with pytest.raises(openai.BadRequestError) as e:  # gone: the same request now names the id
            client.chat.completions.create(model="remote-only", messages=[{"role": "user", "content": [
                {"type": "text", "text": "Capital expenditures?"}, {"type": "file", "file": {"file_id": f.id}}]}])
        assert f.id in error_of(e.value)["message"]


def test_earlier_turns_reach_the_protocol_and_knobs_apply():
    remote = remote_answering()
    with serving(remote) as (_, _, client):
        out = client.chat.completions.create(model="remote-only", temperature=0.9, max_tokens=5,
                                             extra_body={"minions": {"knobs": {"remote_max_tokens": 77}}},
                                             messages=[{"role": "user", "content": "Revenue in 2024?"},
                                                       {"role": "assistant", "content": "120 million."},
                                                       {"role": "user", "content": "And the dividend?"}])
    (messages, options), = remote.calls
    assert options.max_tokens == 77 and options.temperature == 0.0  # knobs apply; OpenAI sampling does not
    assert out.model_extra["minions"]["ignored_params"] == ["max_tokens", "temperature"]  # and the caller is told
    prompt = messages[-1].content
    assert "1. Question: Revenue in 2024?\n   Answer: 120 million." in prompt and "### Follow-up question\nAnd the dividend?" in prompt


# --- errors, each in OpenAI's shape -------------------------------------------------------------

def test_request_errors_in_openai_shape():
    with serving() as (_, service, client):
        ask = [{"role": "user", "content": "Revenue?"}]
        with pytest.raises(openai.NotFoundError) as e:
            client.chat.completions.create(model="gpt-4o", messages=ask)
        err = error_of(e.value)
        assert err["code"] == "model_not_found" and err["param"] == "model" and "minions" in err["message"]
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="remote-only", messages=[{"role": "user", "content": "  "}])
        err = error_of(e.value)
        assert err["type"] == "invalid_request_error" and err["param"] == "messages[0].content"
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="remote-only", messages=ask,
                                           extra_body={"minions": {"knobs": {"max_roundz": 2}}})
        assert error_of(e.value)["param"] == "minions.knobs.max_roundz"
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="minion", messages=ask,
                                           extra_body={"minions": {"knobs": {"max_rounds": 0}}})
        assert error_of(e.value)["param"] == "minions.knobs.max_rounds"
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="remote-only", messages=ask, extra_body={"temprature": 0})
        assert error_of(e.value)["message"] == "Unrecognized request argument supplied: temprature"
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="remote-only", messages=ask, extra_body={"minions": {"documents": ["nope"]}})
        assert "'nope'" in error_of(e.value)["message"] and "acme" in error_of(e.value)["message"]
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="remote-only", messages=[{"role": "user", "content": [
                {"type": "text", "text": "What?"}, pdf_part(b"%PDF-1.4 not really", "broken.pdf")]}])
        assert "broken.pdf" in error_of(e.value)["message"]
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="remote-only", messages=[{"role": "user", "content": [
                {"type": "text", "text": "What?"}, {"type": "file", "file": {"path": "/etc/passwd"}}]}])
        assert error_of(e.value)["param"] == "messages[0].content[1]" and "file_id" in error_of(e.value)["message"]
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="remote-only", messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "http://example.com/x.png"}}, {"type": "text", "text": "?"}]}])
        assert "'image_url'" in error_of(e.value)["message"]
        with pytest.raises(openai.NotFoundError):
            client.get("/nowhere", cast_to=object)
        assert service.remote.calls == []  # no request above reached a model


def test_bad_key_is_401_and_the_key_never_reaches_the_log(caplog):
    caplog.set_level(logging.INFO, logger="minions.serve")
    with serving(api_key="s3cret-key") as (srv, _, client):
        assert client.chat.completions.create(model="remote-only", messages=[
            {"role": "user", "content": "Revenue?"}]).choices[0].message.content == ANSWER
        bad = openai.OpenAI(base_url=srv.url + "/v1", api_key="wrong-key", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as e:
            bad.chat.completions.create(model="remote-only", messages=[{"role": "user", "content": "Revenue?"}])
        assert error_of(e.value)["code"] == "invalid_api_key" and "wrong-key" not in e.value.response.text
        assert httpx.get(srv.url + "/metrics").status_code == 401
        assert httpx.get(srv.url + "/health").status_code == 200
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "minions.serve"]
    assert [(x["path"], x["status"]) for x in lines[:2]] == [("/v1/chat/completions", 200), ("/v1/chat/completions", 401)]
    assert lines[0]["protocol"] == "remote-only" and lines[0]["remote_tokens"] > 0
    assert "s3cret" not in caplog.text and "wrong-key" not in caplog.text and "Revenue" not in caplog.text


def test_oversized_body_is_413():
    with serving(max_body_bytes=20_000) as (_, service, client):
        with pytest.raises(openai.APIStatusError) as e:
            client.chat.completions.create(model="remote-only", messages=[
                {"role": "user", "content": "Revenue? " + "x" * 30_000}])
    assert e.value.status_code == 413 and error_of(e.value)["code"] == "request_too_large"
    assert service.remote.calls == []


def gated_remote(gate: threading.Event) -> FunctionClient:
    async def reply(_m, _o):
        while not gate.is_set():  # held until the test lets it go
            await asyncio.sleep(0.01)
        return ANSWER
    return FunctionClient(reply, model="remote")


def wait_for(predicate, what: str, timeout: float = 180.0) -> None:
    # Polls until the condition holds; the ceiling only turns a hang into a failure, so it is far
    # above any loaded machine's wait (a 20 s ceiling failed once at load average 8).
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_full_queue_is_429_with_retry_after():
    gate = threading.Event()
    with serving(gated_remote(gate), max_concurrent=1, max_queue=1) as (srv, service, client):
        ask = {"model": "remote-only", "messages": [{"role": "user", "content": "Revenue?"}]}
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(client.chat.completions.create, **ask)
            wait_for(lambda: service.admission.running == 1, "the first run to start")
            queued = pool.submit(client.chat.completions.create, **ask)
            wait_for(lambda: service.admission.waiting == 1, "the second run to queue")
            assert metric(srv, "minions_queue_depth") == 1
            with pytest.raises(openai.RateLimitError) as e:
                client.chat.completions.create(**ask)
            gate.set()
            assert running.result().choices[0].message.content == ANSWER
            assert queued.result().choices[0].message.content == ANSWER
    assert int(e.value.response.headers["Retry-After"]) >= 1
    assert error_of(e.value)["code"] == "rate_limit_exceeded"
    assert len(service.remote.calls) == 2 and service.admission.running == service.admission.waiting == 0


def test_timeout_is_504_and_the_run_is_cancelled():
    gate = threading.Event()  # never set: the model never answers
    with serving(gated_remote(gate), timeout_s=0.3) as (srv, service, client):
        with pytest.raises(openai.InternalServerError) as e:
            client.chat.completions.create(model="remote-only", messages=[{"role": "user", "content": "Revenue?"}])
        assert e.value.status_code == 504 and error_of(e.value)["code"] == "timeout"
        assert metric(srv, "minions_runs_total", protocol="remote-only", outcome="timeout") == 1
        assert service.admission.running == 0  # the slot came back


def test_server_wide_spend_cap_is_429_insufficient_quota():
    with serving(max_total_usd=0.01, max_request_usd=0.01) as (_, service, client):
        ask = {"model": "remote-only", "messages": [{"role": "user", "content": "Revenue?"}]}
        first = client.chat.completions.create(**ask)
        spent = first.model_extra["minions"]["cost_usd"]["remote"]
        assert 0 < spent <= 0.01 and service.spend.spent == pytest.approx(spent)
        service.spend.spent = 0.01  # as if earlier runs had used it all
        with pytest.raises(openai.RateLimitError) as e:
            client.chat.completions.create(**ask)
        assert error_of(e.value)["code"] == "insufficient_quota"
        assert len(service.remote.calls) == 1


def test_a_request_may_lower_the_spend_cap():
    with serving(max_request_usd=1.0) as (_, service, client):
        out = client.chat.completions.create(model="remote-only", messages=[{"role": "user", "content": "Revenue?"}],
                                             extra_body={"minions": {"max_remote_usd": 1e-6}})
    assert out.choices[0].finish_reason == "length" and out.choices[0].message.content == ""
    ext = out.model_extra["minions"]
    assert ext["budget_exhausted"] is True and "$0.0000" in ext["error"] and ext["cost_usd"]["remote"] == 0
    assert service.remote.calls == []  # the worst case of the first call was over the cap: never sent


def test_streamed_errors_before_the_stream_are_http_errors():
    with serving() as (_, _, client):
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="nope", stream=True, messages=[{"role": "user", "content": "x"}])


def test_failed_run_is_502_with_the_typed_error():
    def broken(_m, _o):
        from minions import errors
        raise errors.AuthenticationError("remote rejected the key", provider="function", model="remote")
    with serving(FunctionClient(broken, model="remote")) as (_, _, client):
        with pytest.raises(openai.APIStatusError) as e:
            client.chat.completions.create(model="remote-only", messages=[{"role": "user", "content": "Revenue?"}])
    assert e.value.status_code == 502 and error_of(e.value)["code"] == "AuthenticationError"


# --- cancellation and load -----------------------------------------------------------------------

def test_client_disconnect_cancels_the_run():
    more = json.dumps({"decision": "request_additional_info", "message": "Look again.", "answer": None})

    async def slow_remote(_m, _o):
        await asyncio.sleep(0.1)
        return more

    async def slow_local(_m, _o):
        await asyncio.sleep(0.1)
        return "I found nothing yet."

    remote, local = FunctionClient(slow_remote, model="remote"), FunctionClient(slow_local, model="local")
    with serving(remote, local) as (srv, service, _):
        body = json.dumps({"model": "minion", "messages": [{"role": "user", "content": "Revenue?"}],
                           "minions": {"knobs": {"max_rounds": 50}}}).encode()
        with socket.create_connection((srv.host, srv.port)) as sock:  # a client that hangs up mid-run
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            wait_for(lambda: len(remote.calls) + len(local.calls) >= 3, "the run to get going")
        wait_for(lambda: metric(srv, "minions_runs_total", protocol="minion", outcome="cancelled") == 1,
                 "the run to be cancelled")
        calls = len(remote.calls) + len(local.calls)
        time.sleep(0.6)  # several model-call durations: a live run would have made more calls
        assert len(remote.calls) + len(local.calls) == calls
        assert calls < 100 and service.admission.running == 0  # 50 rounds would be 100 calls


def test_streaming_client_disconnect_cancels_the_run():
    gate = threading.Event()
    remote = gated_remote(gate)
    with serving(remote) as (srv, service, _):
        with httpx.Client(base_url=srv.url) as http, http.stream(
                "POST", "/v1/chat/completions", headers={"Authorization": "Bearer k"},
                json={"model": "remote-only", "stream": True, "messages": [{"role": "user", "content": "Revenue?"}]}) as r:
            # The line iterator is held: dropping a half-read httpx iterator closes the connection at
            # once (httpcore closes the stream on GeneratorExit), which is the disconnect itself — the
            # run was then cancelled before its model call whenever the server was slower than the GC.
            lines = r.iter_lines()
            first = next(lines)
            assert first.startswith("data: ") and json.loads(first[6:])["choices"][0]["delta"]["role"] == "assistant"
            wait_for(lambda: len(remote.calls) == 1, "the model call")
            assert metric(srv, "minions_runs_total", protocol="remote-only", outcome="cancelled") == 0
        wait_for(lambda: metric(srv, "minions_runs_total", protocol="remote-only", outcome="cancelled") == 1,
                 "the streamed run to be cancelled")
        assert service.admission.running == 0


def test_streaming_client_that_leaves_while_queued_never_reaches_the_model():
    # The one slot is held by a gated run, so the streamed request waits in the queue after its
    # first line; its client leaves there. No sleep races the CPU: each step waits on server state.
    gate = threading.Event()
    remote = gated_remote(gate)
    ask = {"model": "remote-only", "messages": [{"role": "user", "content": "Revenue?"}]}
    with serving(remote, max_concurrent=1, max_queue=1) as (srv, service, client), ThreadPoolExecutor(1) as pool:
        running = pool.submit(client.chat.completions.create, **ask)
        wait_for(lambda: len(remote.calls) == 1, "the first run's model call")
        with httpx.Client(base_url=srv.url) as http, http.stream(
                "POST", "/v1/chat/completions", headers={"Authorization": "Bearer k"},
                json={**ask, "stream": True}) as r:
            lines = r.iter_lines()
            assert json.loads(next(lines)[6:])["choices"][0]["delta"]["role"] == "assistant"
            wait_for(lambda: service.admission.waiting == 1, "the streamed run to queue")
            del lines  # closes the connection: the client is gone
            wait_for(lambda: metric(srv, "minions_runs_total", protocol="remote-only", outcome="cancelled") == 1,
                     "the queued streamed run to be cancelled")
        assert service.admission.waiting == 0 and service.admission.running == 1
        gate.set()
        assert running.result().choices[0].message.content == ANSWER
        wait_for(lambda: service.admission.running == 0, "the slot to be freed")
    assert len(remote.calls) == 1  # the streamed request never reached the model


def test_load_every_request_answered_or_429_none_lost_or_duplicated_memory_back_to_idle():
    cap, n = 4, 200

    async def echo(messages, _o):  # the answer names the request it belongs to
        await asyncio.sleep(0.002)
        q = messages[-1].content.rsplit("request-", 1)[1].split()[0]
        return f"answer-{q}"

    remote = FunctionClient(echo, model="remote")
    with serving(remote, max_concurrent=cap, max_queue=cap) as (srv, service, _):
        async def load(count: int) -> list[tuple[int, str]]:
            client = openai.AsyncOpenAI(base_url=srv.url + "/v1", api_key="k", max_retries=0)
            sem = asyncio.Semaphore(4 * cap)

            async def one(i: int) -> tuple[int, str]:
                async with sem:
                    try:
                        out = await client.chat.completions.create(model="remote-only", messages=[
                            {"role": "user", "content": f"Question for request-{i} please"}])
                        return i, out.choices[0].message.content
                    except openai.RateLimitError as e:
                        assert e.response.headers["Retry-After"].isdigit()
                        return i, "429"
            try:
                return await asyncio.gather(*(one(i) for i in range(count)))
            finally:
                await client.close()

        asyncio.run(load(n))  # warm-up: imports, pools, first-use caches, every metric label seen once
        remote.calls.clear()
        gc.collect()
        tracemalloc.start()
        try:
            idle = tracemalloc.get_traced_memory()[0]
            results = asyncio.run(load(n))
            wait_for(lambda: service.admission.running == service.admission.waiting == 0, "the server to go idle")
            asked = Counter(m[-1].content.rsplit("request-", 1)[1].split()[0] for m, _ in remote.calls)
            answered = {i for i, a in results if a != "429"}
            every_request_once = sorted(i for i, _ in results) == list(range(n))
            each_its_own = all(a == f"answer-{i}" for i, a in results if a != "429")
            ran_once = asked == Counter(str(i) for i in answered)  # each answered request ran exactly once
            n_answered = len(answered)
            # what the test itself holds (results, the scripted client's log of prompts) is not the server's
            del results, asked, answered
            remote.calls.clear()
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
    assert every_request_once and each_its_own and ran_once
    assert n_answered >= cap  # at the very least every slot served
    assert after - idle < 100_000, f"{after - idle} bytes still held after the load"


def test_metrics_count_requests_errors_money_and_tokens():
    with serving() as (srv, _, client):
        out = client.chat.completions.create(model="remote-only", messages=[{"role": "user", "content": "Revenue?"}])
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "Revenue?"}])
        assert metric(srv, "minions_requests_total", endpoint="/v1/chat/completions", status="200") == 1
        assert metric(srv, "minions_requests_total", endpoint="/v1/chat/completions", status="404") == 1
        assert metric(srv, "minions_errors_total", type="UnknownModel") == 1
        assert metric(srv, "minions_remote_cost_usd_total") == pytest.approx(out.model_extra["minions"]["cost_usd"]["remote"])
        assert metric(srv, "minions_remote_tokens_total", kind="completion") == out.usage.completion_tokens
        assert metric(srv, "minions_runs_total", protocol="remote-only", outcome="answered") == 1


# --- the real thing ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.real_model
def test_minions_serve_answers_with_the_embedded_model(tmp_path):
    doc = tmp_path / "northwind.md"
    doc.write_text("# Northwind\n\nNorthwind's total revenue in fiscal 2024 was $12.4 million.\n")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MINIONS_API_KEY": "local-key"}
    proc = subprocess.Popen([sys.executable, "-m", "minions.cli", "serve", str(doc), "--port", str(port),
                             "--protocol", "remote-only", "--remote-max-tokens", "24"],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                if httpx.get(base + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        client = openai.OpenAI(base_url=base + "/v1", api_key="local-key", max_retries=0, timeout=120)
        out = client.chat.completions.create(model="remote-only", messages=[
            {"role": "user", "content": "What was Northwind's total revenue in fiscal 2024?"}])
        ext = out.model_extra["minions"]
        assert out.choices[0].message.content.strip()
        assert 0 < out.usage.completion_tokens <= 24 and out.usage.prompt_tokens > 20
        assert ext["remote_stand_in"] is True and ext["cost_usd"]["remote"] > 0  # priced as a cloud model
        # what left: the in-process stand-in's one request, counted in /metrics as in the run's summary
        metrics = httpx.get(base + "/metrics", headers={"Authorization": "Bearer local-key"}).text
        assert 'minions_egress_requests_total{host="in-process"} 1.0' in metrics
        assert f'minions_egress_bytes_total{{host="in-process"}} {float(ext["egress"]["bytes"])}' in metrics
        assert ext["egress"]["documents"][0]["verbatim_share"] > 0.9  # remote-only sends the document
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert '"status": 200' in err and "local-key" not in err  # the request's log line, without the key


# --- the command line ----------------------------------------------------------------------------

def test_serve_and_mcp_take_the_flags_of_ask(capsys):
    from minions.cli import build_parser, main

    for argv in (["serve", "--help"], ["mcp", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert "example" in out and "--remote" in out and "--max-rounds" in out and "--max-concurrent" in out
    args = build_parser().parse_args(["serve", "a.md", "--protocol", "rag", "--chunk-size", "900", "--port", "9"])
    assert (args.paths, args.protocol, args.chunk_size, args.port, args.host) == (["a.md"], "rag", 900, 9, "127.0.0.1")


def test_bad_limit_flags_exit_2_naming_the_flag(capsys):
    from minions.cli import main

    assert main(["serve", "--protocol", "remote-only", "--max-concurrent", "0"]) == 2
    assert "--max-concurrent" in capsys.readouterr().err


def test_missing_server_package_names_the_extra():
    from minions.errors import MissingDependencyError
    from minions.serve.deps import require

    with pytest.raises(MissingDependencyError, match=r"pip install 'minions\[serve\]'"):
        require("no_such_module_for_minions", "fastapi")
