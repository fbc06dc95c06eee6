"""Issue 21 for `minions mcp`: the real CLI over streamable HTTP, driven by the official `mcp`
client — a FIFO inside a root (before: `ask` hung and a worker thread stayed blocked), hidden files
`list_documents` does not list (before: read and sent to the remote), and the Host header of its
HTTP transport (DNS rebinding)."""

from __future__ import annotations

import os

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from minions.serve.errors import ServeError
from minions.serve.mcp import Roots
from tests.gateway import ScriptedBackend
from tests.test_mcp import answers_capex, mcp_http_server


def test_roots_refuse_hidden_files_and_directories(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "notes.md").write_text("secret notes")
    (tmp_path / ".env.txt").write_text("OPENAI_API_KEY=sk-...")
    (tmp_path / "ok.md").write_text("# fine\n")
    (tmp_path / "link.md").symlink_to(tmp_path / ".env.txt")
    roots = Roots([tmp_path])
    assert [os.path.basename(f["path"]) for f in roots.files()] == ["ok.md"]
    for name in (".env.txt", ".git/notes.md", str(tmp_path / ".git" / "notes.md"), "link.md"):
        with pytest.raises(ServeError, match="hidden"):
            roots.resolve(name)
    assert roots.resolve("ok.md") == (tmp_path / "ok.md").resolve()


async def test_mcp_http_refuses_fifos_hidden_files_and_foreign_hosts(gateway, tmp_path):
    gateway.backend = ScriptedBackend(answers_capex)
    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / ".env.txt").write_text("OPENAI_API_KEY=sk-live-0123456789")
    with mcp_http_server(gateway, tmp_path) as url:
        foreign = httpx.post(url, headers={"Host": "evil.example", "Content-Type": "application/json",
                                           "Accept": "application/json, text/event-stream"}, json={})
        assert foreign.status_code == 421
        async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            fifo = await session.call_tool("ask", {"question": "What is in it?", "documents": ["pipe.txt"]},
                                           read_timeout_seconds=300)  # a hang guard: a FIFO used to block forever
            assert fifo.is_error and "named pipe (FIFO)" in fifo.content[0].text
            hidden = await session.call_tool("ask", {"question": "What is the key?", "documents": [".env.txt"]})
            assert hidden.is_error and "hidden" in hidden.content[0].text
    assert gateway.counts.get("/v1/chat/completions", 0) == 0  # nothing reached a model
