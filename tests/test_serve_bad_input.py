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
    from minions.cli import logs

    undo = logs.install(secrets=["served-by-this-key-42"])
    yield
    undo()


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
