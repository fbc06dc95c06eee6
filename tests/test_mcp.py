"""`minions mcp`: the real CLI over stdio, driven by the official `mcp` SDK client.

The models are scripted behind tests/gateway.py (OpenAI wire format over loopback), so the server
process runs exactly as a user starts it while its answers stay deterministic.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from minions.errors import ConfigError
from minions.serve.errors import ServeError
from minions.serve.mcp import Roots
from tests.gateway import ScriptedBackend
from tests.test_documents import PAGES, make_pdf
from tests.test_serve import free_port

ROOT = Path(__file__).resolve().parents[1]
CAPEX = "capital expenditures were 15 million"


def answers_capex(messages, _opts) -> str:
    return f'The report says "{CAPEX}".' if CAPEX in messages[-1].content else "not in the documents"


def server_params(gateway, root: Path, *extra: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "minions.cli", "mcp", "--root", str(root), "--protocol", "remote-only",
              "--remote", "openai/gpt-4o-mini", "--local", "openai/gpt-4o-mini", *extra],
        env={"PYTHONPATH": str(ROOT), "OPENAI_BASE_URL": gateway.openai_url, "OPENAI_API_KEY": "sk-test"},
        cwd=str(root))


async def test_mcp_over_stdio_lists_tools_answers_with_pages_and_refuses_paths_outside_roots(gateway, tmp_path):
    gateway.backend = ScriptedBackend(answers_capex)
    docs, outside = tmp_path / "docs", tmp_path / "outside"
    docs.mkdir()
    outside.mkdir()
    (docs / "acme-2024.pdf").write_bytes(make_pdf(PAGES))
    # A FIFO outside the roots: opening it would block forever, so a prompt refusal proves it was not read.
    os.mkfifo(outside / "secret.pdf")
    (docs / "link.pdf").symlink_to(outside / "secret.pdf")  # inside by name, outside in fact
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    corpus_doc = docs / "acme-2024.pdf"  # also given on the command line: a corpus document and a resource
    async with stdio_client(server_params(gateway, docs, str(corpus_doc))) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        assert {t.name for t in (await session.list_tools()).tools} == {"ask", "list_documents"}
        resources = (await session.list_resources()).resources
        assert [str(r.uri) for r in resources] == ["minions://documents/acme-2024"]
        assert CAPEX in (await session.read_resource("minions://documents/acme-2024")).contents[0].text

        listed = await session.call_tool("list_documents", {})
        assert not listed.is_error
        # the symlink leading out of the root is not offered
        assert [Path(f["path"]).name for f in listed.structured_content["files"]] == ["acme-2024.pdf"]
        assert [(d["id"], d["pages"]) for d in listed.structured_content["corpus"]] == [("acme-2024", 3)]

        out = await session.call_tool("ask", {"question": "What were capital expenditures?",
                                              "documents": ["acme-2024.pdf"]}, progress_callback=on_progress)
        assert not out.is_error, out.content
        result = out.structured_content
        assert result["answer"] == f'The report says "{CAPEX}".' and result["protocol"] == "remote-only"
        assert [(c["doc_id"], c["page_start"], c["page_end"]) for c in result["citations"]] == [("acme-2024", 2, 2)]
        assert result["cost_usd"]["remote"] > 0 and result["usage"]["remote"]["prompt_tokens"] > 0
        assert progress and [v for v, _ in progress] == sorted(v for v, _ in progress)
        assert any("remote model replied" in (m or "") for _, m in progress)

        for path in (str(outside / "secret.pdf"), "link.pdf", "../outside/secret.pdf"):
            refused = await session.call_tool("ask", {"question": "What is in it?", "documents": [path]},
                                              read_timeout_seconds=60)
            assert refused.is_error and "outside the allowed roots" in refused.content[0].text, path

        by_id = await session.call_tool("ask", {"question": "Capital expenditures?", "documents": ["acme-2024"]})
        assert by_id.structured_content["citations"][0]["page_start"] == 2

        missing = await session.call_tool("ask", {"question": "x?", "documents": ["acme-2024.pdf"],
                                                  "protocol": "gpt-4o"})
        assert missing.is_error and "remote-only" in missing.content[0].text
    assert gateway.counts["/v1/chat/completions"] == 2  # only the two allowed questions reached a model


def test_roots_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="not a directory"):
        Roots([tmp_path / "nope"])
    roots = Roots([tmp_path])
    (tmp_path / "a.md").write_text("# A\n")
    assert roots.resolve("a.md") == (tmp_path / "a.md").resolve()
    with pytest.raises(ServeError, match="outside the allowed roots"):
        roots.resolve("/etc/passwd")


async def test_mcp_over_streamable_http(gateway, tmp_path):
    gateway.backend = ScriptedBackend(answers_capex)
    (tmp_path / "acme-2024.pdf").write_bytes(make_pdf(PAGES))
    with mcp_http_server(gateway, tmp_path) as url:
        async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            out = await session.call_tool("ask", {"question": "Capital expenditures?", "documents": ["acme-2024.pdf"]})
            assert not out.is_error, out.content
            assert out.structured_content["citations"][0]["page_start"] == 2


@contextlib.contextmanager
def mcp_http_server(gateway, root: Path) -> Iterator[str]:
    """`minions mcp --http` over `root` in a child process; yields its URL once the port answers."""
    port = free_port()
    params = server_params(gateway, root, "--http", "--port", str(port))
    proc = subprocess.Popen([params.command, *params.args], env={**os.environ, **params.env}, cwd=params.cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        deadline = time.monotonic() + 600  # a hang guard only: start-up waits on the port, not a clock
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "MCP HTTP server did not start"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
