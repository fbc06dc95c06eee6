"""Promises of the command line under hostile input (issue 12, items 5, 7, 8 and 10):

- a path is a path: a missing one is an error naming it, a file with a newline in its name loads;
- API keys a server echoes in its error bodies never reach --json, stderr or the --log-dir file;
- terminal control sequences and rich markup in model output are neutralised before printing;
- load warnings reach RunResult.warnings, the --json output and the terminal.

The servers here are a tiny loopback `http.server` (below), not tests/gateway.py: it misbehaves on
purpose, echoing every request header into its error bodies, as some proxies do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rich.console import Console

from minions.cli.render import LiveView, print_result
from minions.cli.safe_text import markup, plain
from minions.clients import FunctionClient
from minions.documents import load
from minions.errors import AuthenticationError, BadRequestError, RetriesExhaustedError, ServerError
from minions.protocols import get_protocol
from minions.protocols.events import FinalAnswer, JobFinished, JobsPlanned, MessageSent, Notice
from minions.redact import redact

ROOT = Path(__file__).resolve().parents[1]
OPENAI_KEY = "sk-test-OPENAIabcdef0123456789secret"
ANTHROPIC_KEY = "sk-ant-test-ANTHROPIC9876543210secret"
EXPLICIT_KEY = "explicit-key-0123456789-zyxw"
# OSC 52 (clipboard), OSC 8 (link), clear screen, C1 CSI, bare CR + backspace, bidi override, markup
HOSTILE = ("\x1b]52;c;cm0gLXJmIH4=\x07Revenue was \x1b]8;;https://evil.example\x1b\\$42 million\x1b]8;;\x1b\\"
           "\x1b[2J\x9b31m [red]bold[/red] [link=https://evil.example]click[/link]\rFAKE\x08\x08\u202eok")


# --- a loopback server that echoes credentials -----------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:  # noqa: N802  http.server's naming
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        mode = self.path.strip("/").split("/")[0]
        self.server.requests.append((self.path, body))  # type: ignore[attr-defined]
        echoed = "; ".join(f"{k}: {v}" for k, v in self.headers.items())
        if mode.startswith("e"):  # e401, e400, e500: an error body that quotes the request headers
            status = int(mode[1:])
            if "/messages" in self.path:
                kind = {401: "authentication_error", 400: "invalid_request_error"}.get(status, "api_error")
                payload = {"type": "error", "error": {"type": kind, "message": f"rejected; you sent {echoed}"}}
            else:
                payload = {"error": {"message": f"rejected; you sent {echoed}", "type": "invalid_request_error",
                                     "code": f"headers {echoed}"}}
            return self._send(status, payload)
        content = HOSTILE if mode == "hostile" else "The answer is in the document."
        self._send(200, {"id": "c1", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                      "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 50, "completion_tokens": 8, "total_tokens": 58}})

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def run_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": OPENAI_KEY, "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
            "NO_COLOR": "1", **env}
    return subprocess.run([sys.executable, "-m", "minions.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=full, timeout=120)


def remote(server: str, mode: str) -> list[str]:
    return ["--protocol", "remote-only", "--remote", "openai/gpt-4o-mini", "--base-url", f"{server}/{mode}/v1"]


# --- item 7: secrets --------------------------------------------------------------------------

def _full_text(exc: BaseException) -> str:
    """Everything a logged traceback of `exc` would print, causes included."""
    return "".join(traceback.format_exception(exc))


@pytest.mark.parametrize("status, error", [(401, AuthenticationError), (400, BadRequestError),
                                           (500, ServerError)])
def test_openai_sdk_client_errors_never_quote_the_key(server: str, status: int, error: type) -> None:
    from minions.clients import RetryPolicy
    from minions.clients.openai import OpenAIClient

    for client, key in ((OpenAIClient("gpt-4o-mini", api_key=EXPLICIT_KEY, base_url=f"{server}/e{status}/v1",
                                      retry=RetryPolicy(max_retries=0)), EXPLICIT_KEY),):
        with pytest.raises((error, RetriesExhaustedError)) as info:
            client.complete_sync("hi")
        text = _full_text(info.value)
        assert key not in text and "[redacted]" in str(info.value)
        assert "Bearer [redacted]" in str(info.value)  # the echo happened, and was cut


@pytest.mark.parametrize("status, error", [(401, AuthenticationError), (400, BadRequestError),
                                           (500, ServerError)])
def test_anthropic_sdk_client_errors_never_quote_the_key(server: str, status: int, error: type,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from minions.clients import RetryPolicy
    from minions.clients.anthropic import AnthropicClient

    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)  # the key from the variable, as users set it
    client = AnthropicClient("claude-test-model", base_url=f"{server}/e{status}", retry=RetryPolicy(max_retries=0))
    with pytest.raises((error, RetriesExhaustedError)) as info:
        client.complete_sync("hi")
    assert ANTHROPIC_KEY not in _full_text(info.value)
    assert "[redacted]" in str(info.value)  # the SDK's auth header was echoed, and cut


def test_cli_json_stderr_and_log_hold_no_key(server: str, tmp_path: Path) -> None:
    doc = tmp_path / "notes.txt"
    doc.write_text("Revenue was $42 million in FY2023.\n")
    logs = tmp_path / "logs"
    out = run_cli("ask", str(doc), "-q", "Revenue?", *remote(server, "e401"), "--json", "--log-dir", str(logs),
                  cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    data = json.loads(out.stdout)
    assert "authentication failed" in data["error"] and "Bearer [redacted]" in data["error"]
    (log,) = logs.iterdir()
    everything = out.stdout + out.stderr + log.read_text()
    assert OPENAI_KEY not in everything and ANTHROPIC_KEY not in everything
    assert "Traceback" not in out.stderr

    shown = run_cli("ask", str(doc), "-q", "Revenue?", *remote(server, "e400"), "--quiet", cwd=tmp_path)
    assert shown.returncode == 1 and "request rejected" in shown.stderr
    assert OPENAI_KEY not in shown.stdout + shown.stderr and "[redacted]" in shown.stderr


def test_run_result_is_cleaned_of_keys_wherever_they_appear() -> None:
    """A key in a reply (a model or server quoting it) is removed from answer, transcript and warnings."""
    local = FunctionClient(lambda m, o: f"key is {OPENAI_KEY}", model="local")
    remote = FunctionClient(lambda m, o: f"final: {OPENAI_KEY}", model="remote")
    remote.secrets = (OPENAI_KEY,)
    result = get_protocol("minion", local, remote, max_rounds=1).run("q?", "Some document text here.")
    dumped = result.model_dump_json()
    assert OPENAI_KEY not in dumped and "[redacted]" in dumped


def test_keys_from_the_environment_are_redacted_and_model_text_is_otherwise_untouched(
        monkeypatch: pytest.MonkeyPatch) -> None:
    key = "or-v1-0123456789abcdef0123456789"
    monkeypatch.setenv("OPENROUTER_API_KEY", key)
    reply = f"Bearer tokens are mentioned in the text; key {key}; sk-not-a-key is prose."
    result = get_protocol("local-only", FunctionClient(lambda m, o: reply, model="l"), None).run("q", "text here")
    assert result.answer == reply.replace(key, "[redacted]")  # only the configured key goes
    assert redact("401: Authorization: Bearer abc123XYZ987654", credentials=True) == \
        "401: Authorization: Bearer [redacted]"
    assert redact('{"x-api-key": "abcdefgh12345678"}', credentials=True) == '{"x-api-key": "[redacted]"}'
    assert redact("short key: abc", ["abc"]) == "short key: abc"  # too short to be a secret


# --- item 5: a path is a path ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["missing_no_ext", "my notes.numbers", "nonexistent dir/file"])
def test_a_missing_path_is_an_error_naming_it(tmp_path: Path, name: str) -> None:
    out = run_cli("ask", name, "-q", "x", cwd=tmp_path)
    assert out.returncode == 2
    assert f"File not found: {name}" in out.stderr and "Check the path" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_file_with_a_newline_in_its_name_is_loaded(server: str, tmp_path: Path) -> None:
    doc = tmp_path / "q3\nreport.txt"
    doc.write_text("Northwind revenue was $2,847.3 million in fiscal 2024.\n")
    logs = tmp_path / "logs"
    out = run_cli("ask", str(doc), "-q", "Revenue?", *remote(server, "ok"), "--json", "--log-dir", str(logs),
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (log,) = logs.iterdir()
    run = json.loads(log.read_text())
    assert run["documents"][0]["source"] == str(doc)
    sent = " ".join(m["content"] for r in run["rounds"] for m in r["messages"] if m["to"] == "remote")
    assert "$2,847.3 million" in sent


def test_the_library_still_reads_a_short_string_as_text_but_says_so() -> None:
    doc = load("missing_no_ext")
    assert doc.text == "missing_no_ext"
    assert "is not an existing file" in doc.metadata["warnings"][0]
    result = get_protocol("remote-only", None, FunctionClient(lambda m, o: "?", model="r")).run("q", [doc])
    assert any("is not an existing file" in w for w in result.warnings)


# --- item 10: load warnings reach the user ----------------------------------------------------

def test_load_warnings_reach_json_and_the_terminal(server: str, tmp_path: Path) -> None:
    doc = tmp_path / "legacy.txt"
    doc.write_bytes("Revenue was 42 million \u2014 up from 40.\n".encode("cp1252"))
    out = run_cli("ask", str(doc), "-q", "Revenue?", *remote(server, "ok"), "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (warning,) = json.loads(out.stdout)["warnings"]
    assert "decoded it as cp1252" in warning and "legacy.txt" in warning
    for mode in ("--quiet", None):  # printed after the result, or by the live view as it happens
        shown = run_cli("ask", str(doc), "-q", "Revenue?", *remote(server, "ok"), *([mode] if mode else []),
                        cwd=tmp_path)
        assert shown.returncode == 0 and "decoded it as cp1252" in shown.stderr


# --- item 9 (CLI side): the size limit is a flag ----------------------------------------------

def test_the_document_size_limit_is_a_flag_and_a_variable(tmp_path: Path) -> None:
    doc = tmp_path / "big.txt"
    doc.write_text("word " * 400)
    out = run_cli("ask", str(doc), "-q", "x", "--max-document-chars", "1000", cwd=tmp_path)
    assert out.returncode == 2 and "over the limit of 1,000 characters" in out.stderr
    assert "--max-document-chars" in out.stderr and "MINIONS_MAX_DOCUMENT_CHARS" in out.stderr
    env = run_cli("ask", str(doc), "-q", "x", cwd=tmp_path, MINIONS_MAX_DOCUMENT_CHARS="500")
    assert env.returncode == 2 and "over the limit of 500 characters" in env.stderr
    bad = run_cli("ask", str(doc), "-q", "x", cwd=tmp_path, MINIONS_MAX_DOCUMENT_CHARS="lots")
    assert bad.returncode == 2 and "MINIONS_MAX_DOCUMENT_CHARS='lots' is not a whole number" in bad.stderr


# --- item 8: terminal escapes -----------------------------------------------------------------

def _no_controls(s: str) -> None:
    assert not any(c in s for c in "\x1b\x07\x08\r\x9b\u202e"), repr(s)


def test_plain_strips_every_kind_of_control_sequence() -> None:
    cleaned = plain(HOSTILE)
    _no_controls(cleaned)
    assert "Revenue was $42 million" in cleaned and "[red]bold[/red]" in cleaned
    assert "evil.example]click" in cleaned  # the markup text stays, as text
    assert plain("line one\r\nline two\ttab") == "line one\nline two\ttab"
    assert plain("unterminated \x1b]52;c;AAAA") == "unterminated "
    assert markup("[red]x[/red]") == "\\[red]x\\[/red]"


def test_live_view_and_result_print_model_text_inertly() -> None:
    console = Console(record=True, width=200, force_terminal=True, color_system=None)
    view = LiveView(console)
    view(MessageSent(round=1, sender="remote", step="ask", content=HOSTILE))
    view(JobsPlanned(round=1, n_jobs=1, n_tasks=1, n_chunks=1, plan={"tasks": [{"instruction": HOSTILE}]}))
    view(JobFinished(round=1, job_id="j", task_id=1, chunk_id="doc\x1b[2J#0", pages=(1, 1), answer=HOSTILE,
                     citation=None, kept=True))
    view(Notice(round=1, message=HOSTILE))
    view(FinalAnswer(round=1, answer=None))  # stops the job progress bar
    local = FunctionClient(lambda m, o: HOSTILE, model="local")
    result = get_protocol("local-only", local, None).run("q", "Revenue was $42 million in FY2023.")
    assert result.answer == HOSTILE  # the library keeps model text as it came; rendering neutralises it
    print_result(console, result)
    text = console.export_text(styles=False)
    _no_controls(text)
    assert text.count("[red]bold[/red]") >= 4 and "[link=https://evil.example]click[/link]" in text


def test_cli_output_has_no_escape_sequences_and_json_escapes_them(server: str, tmp_path: Path) -> None:
    doc = tmp_path / "notes.txt"
    doc.write_text("Revenue was $42 million in FY2023.\n")
    shown = run_cli("ask", str(doc), "-q", "Revenue?", *remote(server, "hostile"), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    _no_controls(shown.stdout + shown.stderr)
    assert "[red]bold[/red]" in shown.stdout and "Revenue was $42 million" in shown.stdout
    as_json = run_cli("ask", str(doc), "-q", "Revenue?", *remote(server, "hostile"), "--json", cwd=tmp_path)
    assert "\x1b" not in as_json.stdout and "\\u001b]52;c;" in as_json.stdout  # json.dumps escapes ESC
    assert json.loads(as_json.stdout)["answer"] == HOSTILE  # and the answer itself is intact
