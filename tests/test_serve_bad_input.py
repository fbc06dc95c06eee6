"""Issue 21: `minions serve` under bad input — upload limits under concurrency, per-request work
ceilings, secrets in tracebacks, DNS rebinding, public binds. The real server on loopback, driven
by the official `openai` SDK and httpx. Each test failed on the code before its fix."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from tests.test_documents import PAGES, make_pdf
from tests.test_serve import error_of, serving

PDF = make_pdf(PAGES)


# --- item 1: upload limits hold under concurrency (before: 7 to 15 of 16 stored with max_files=2) ---------

async def _upload_burst(url: str, n: int, data: bytes, name: str = "acme.pdf") -> list[int]:
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)

    async def one() -> int:
        try:
            await client.files.create(file=(name, data, "application/pdf"), purpose="user_data")
            return 200
        except openai.APIStatusError as e:
            return e.status_code

    try:
        return await asyncio.gather(*(one() for _ in range(n)))
    finally:
        await client.close()


def test_concurrent_uploads_never_exceed_the_file_count_limit():
    with serving(corpus=(), max_files=2) as (srv, service, client):
        codes = asyncio.run(_upload_burst(srv.url, 16, PDF))
        assert sorted(codes) == [200, 200] + [413] * 14
        assert len(client.files.list().data) == 2 and service.store._bytes == 2 * len(PDF)


def test_concurrent_uploads_never_exceed_the_byte_limit():
    with serving(corpus=(), max_file_bytes=3 * len(PDF) + 10) as (srv, service, client):
        codes = asyncio.run(_upload_burst(srv.url, 16, PDF))
        stored = client.files.list().data
        assert codes.count(200) == 3 == len(stored) and sum(f.bytes for f in stored) <= 3 * len(PDF) + 10


def test_a_failed_upload_gives_its_reservation_back():
    with serving(corpus=(), max_files=1) as (srv, service, client):
        with pytest.raises(openai.BadRequestError):
            client.files.create(file=("broken.pdf", b"%PDF-1.4 not really", "application/pdf"), purpose="user_data")
        assert service.store._bytes == 0 and service.store._pending == 0
        assert client.files.create(file=("acme.pdf", PDF, "application/pdf"), purpose="user_data").bytes == len(PDF)




# --- item 5: secrets never reach a log handler (before: the key twice on stderr, in two tracebacks) ------

KEY = "k3y-Value-0123456789abcdef"


@pytest.fixture
def cli_logging():
    import logging

    from minions.cli import logs

    # An earlier in-process `minions serve` (tests/test_recipe.py) leaves uvicorn's loggers with their
    # own handler on the stderr of that moment (a capture object since gone): route them to the root
    # handlers that `logs.install` sets up now, as a fresh process would.
    loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error")]
    saved = [(lg.disabled, lg.level, lg.propagate, lg.handlers[:]) for lg in loggers]
    for lg in loggers:
        lg.disabled, lg.propagate, lg.handlers = False, True, []
        lg.setLevel(logging.INFO)
    undo = logs.install(secrets=["served-by-this-key-42"])
    yield
    undo()
    for lg, (disabled, level, propagate, handlers) in zip(loggers, saved, strict=True):
        lg.disabled, lg.propagate, lg.handlers = disabled, propagate, handlers
        lg.setLevel(level)


def test_a_key_in_an_untyped_error_is_redacted_in_every_traceback(monkeypatch, capfd, cli_logging):
    from minions.clients.function import FunctionClient

    monkeypatch.setenv("OPENAI_API_KEY", KEY)

    def leaky(_m, _o):
        raise RuntimeError(f"upstream said: invalid key {KEY} (and served-by-this-key-42)")

    with serving(FunctionClient(leaky, model="remote")) as (_, _, client):
        with pytest.raises(openai.InternalServerError) as e:
            client.chat.completions.create(model="remote-only", messages=[{"role": "user", "content": "Revenue?"}])
    assert KEY not in e.value.response.text
    err = capfd.readouterr().err
    assert "Exception in ASGI application" in err and "unhandled error" in err  # both tracebacks were logged
    assert err.count("RuntimeError: upstream said: invalid key [redacted]") >= 2
    assert KEY not in err and "served-by-this-key-42" not in err


def test_library_debug_and_info_lines_stay_off_stderr_unless_verbose(capfd):
    import logging

    from minions.cli import logs

    undo = logs.install()
    try:
        lib = logging.getLogger("bm25s")
        lib.setLevel(logging.DEBUG)  # as bm25s does on import
        lib.debug("Building index from IDs")
        logging.getLogger("httpx").info("HTTP Request: POST ...")
        lib.warning("a real problem")
    finally:
        undo()
    err = capfd.readouterr().err
    assert "Building index" not in err and "HTTP Request" not in err and "a real problem" in err
    undo = logs.install(verbose=True)
    try:
        logging.getLogger("httpx").info("HTTP Request: POST ...")
    finally:
        undo()
        logging.getLogger("bm25s").setLevel(logging.NOTSET)
    assert "HTTP Request" in capfd.readouterr().err


# --- item 10: a keyless loopback server answers only to its own names (before: any Host header) ---------

def test_keyless_loopback_server_refuses_a_foreign_host_header():
    from minions.cli.serve import _host_names

    with serving(allowed_hosts=_host_names("127.0.0.1")) as (srv, _, client):
        assert client.models.list().data  # the SDK sends Host: 127.0.0.1:PORT
        for host in ("evil.example", f"evil.example:{srv.port}", "127.0.0.1.evil.example", ""):
            r = httpx.get(srv.url + "/v1/models", headers={"Host": host})
            assert r.status_code == 421 and r.json()["error"]["code"] == "misdirected_request", host
        for host in (f"localhost:{srv.port}", "localhost", f"[::1]:{srv.port}"):
            assert httpx.get(srv.url + "/v1/models", headers={"Host": host}).status_code == 200, host
    with serving(allowed_hosts=_host_names("127.0.0.1"), api_key="k") as (srv, _, client):  # a key is the guard
        r = httpx.get(srv.url + "/v1/models", headers={"Host": "evil.example", "Authorization": "Bearer k"})
        assert r.status_code == 200


# --- item 2: one request cannot make the server do unbounded work ---------------------------------------

def _ask(client, model="rag", **minions):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Revenue?"}],
                                          extra_body={"minions": minions})


@pytest.mark.parametrize("knobs, ceiling", [
    ({"chunk_size": 1}, "ceilings.max_chunks"),
    ({"chunk_size": 5, "chunk_strategy": "tokens"}, "ceilings.max_chunks"),
    ({"remote_max_tokens": 10**7}, "ceilings.remote_max_tokens"),
    ({"local_max_tokens": 10**6}, "ceilings.local_max_tokens"),
    ({"top_k": 10**6}, "ceilings.top_k"),
])
def test_knobs_above_the_servers_ceilings_are_400_before_any_work(knobs, ceiling):
    from minions.documents import Document
    from minions.serve.ceilings import Ceilings

    big = Document.from_text("Revenue was 120 million dollars. " * 3000, id="big")  # ~100 KB
    with serving(corpus=(big,), ceilings=Ceilings(max_chunks=500)) as (_, service, client):
        with pytest.raises(openai.BadRequestError) as e:
            _ask(client, "rag" if "top_k" in knobs or "chunk_size" in knobs else "remote-only", knobs=knobs)
        err = error_of(e.value)
        assert ceiling in err["message"] and err["param"].startswith("minions.knobs.")
        assert not service.remote.calls  # refused at admission: no model was called


def test_minions_concurrency_above_the_ceiling_is_400():
    from tests.test_serve import local_client, remote_answering

    with serving(remote_answering(), local_client(), default_protocol="minions") as (_, _, client):
        with pytest.raises(openai.BadRequestError) as e:
            _ask(client, "minions", knobs={"concurrency": 10_000})
        assert "ceilings.concurrency" in error_of(e.value)["message"]


def test_repeated_document_ids_are_read_once_and_distinct_ones_are_capped():
    from minions.documents import Document
    from minions.serve.ceilings import Ceilings

    docs = [Document.from_text(f"Document {i}: revenue was {i} million dollars.", id=f"d{i}") for i in range(3)]
    with serving(corpus=docs, ceilings=Ceilings(max_documents=2)) as (_, service, client):
        out = _ask(client, "remote-only", documents=["d0"] * 3000 + ["d1"] * 5)
        assert out.choices[0].message.content
        prompt = service.remote.calls[-1][0][-1].content
        assert prompt.count("=== Document d0:") == 1 and prompt.count("=== Document d1:") == 1
        with pytest.raises(openai.BadRequestError) as e:
            _ask(client, "remote-only", documents=["d0", "d1", "d2"])
        assert "ceilings.max_documents" in error_of(e.value)["message"]


def test_a_blocking_run_does_not_stall_the_servers_event_loop():
    """A synchronous client (and any CPU-bound preparation) runs on the runs' own loop: /health
    answers while the run is still blocked (before: the server's loop was blocked with it)."""
    import threading

    from minions.clients.function import FunctionClient

    release, entered = threading.Event(), threading.Event()

    def blocking(_m, _o):
        entered.set()
        release.wait(60)
        return "Revenue grew to 120 million dollars in fiscal 2024."

    with serving(FunctionClient(blocking, model="remote")) as (srv, _, client):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(_ask, client, "remote-only")
            assert entered.wait(30)
            try:
                health = httpx.get(srv.url + "/health", timeout=20).json()
            finally:
                release.set()
            assert health["running"] == 1
            assert pending.result(timeout=60).choices[0].message.content.startswith("Revenue grew")


def test_openai_models_have_a_context_window_known_or_configured(tmp_path, monkeypatch):
    from minions.clients.spec import get_client

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    assert get_client("openai/gpt-4o-mini").context_window == 128_000
    assert get_client("openai/gpt-4o-mini", context_window=9000).context_window == 9000
    path = tmp_path / "providers.toml"
    path.write_text('[providers.myhost]\nbase_url = "http://127.0.0.1:9/v1"\ncontext_window = 32768\n')
    monkeypatch.setenv("MINIONS_PROVIDERS", str(path))
    assert get_client("myhost/any-model").context_window == 32_768
