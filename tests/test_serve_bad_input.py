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


