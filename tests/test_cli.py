"""The `minions` command: help, models, ask (errors and the --json contract)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minions.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "datasets" / "sample" / "northwind_annual_report.md"


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minions.cli", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


def test_help_everywhere_has_examples(capsys):
    for argv in (["--help"], ["ask", "--help"], ["models", "--help"], ["app", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
        assert "example" in capsys.readouterr().out


def test_models_json_lists_embedded_model_providers_and_prices(capsys, monkeypatch):
    monkeypatch.setenv("GROQ_API_KEY", "gsk-secret-value")
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    assert main(["models", "--json", "--ollama-host", "http://127.0.0.1:9"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    assert any(m["spec"] == "llamacpp/smollm2" for m in data["embedded"])
    assert data["ollama"] == [] and "ollama serve" in data["ollama_note"]
    provs = {p["provider"]: p for p in data["providers"]}
    assert {"gemini", "deepseek", "groq", "mistral", "fireworks", "cerebras", "azure", "lemonade"} <= set(provs)
    assert provs["groq"]["ready"] is True and provs["gemini"]["missing"] == ["GEMINI_API_KEY"]
    assert "gsk-secret-value" not in out  # whether a key is set, never the key
    assert data["prices"]["ollama/*"]["output"] == 0.0 and "function/*" not in data["prices"]
    assert data["price_catalog"]["source"].startswith("genai-prices")
    assert data["price_catalog"]["models"]["openai"] > 10


def test_ask_missing_file_exits_2_naming_it(capsys, tmp_path):
    missing = tmp_path / "nope.pdf"
    assert main(["ask", str(missing), "-q", "x"]) == 2
    assert str(missing) in capsys.readouterr().err


def test_ask_unknown_provider_exits_2(capsys):
    assert main(["ask", str(SAMPLE), "-q", "x", "--remote", "gemeni/pro"]) == 2
    assert "Unknown provider" in capsys.readouterr().err


def test_ask_missing_api_key_names_the_variable(capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["ask", str(SAMPLE), "-q", "x", "--remote", "openai/gpt-4o-mini"]) == 2
    assert "OPENAI_API_KEY" in capsys.readouterr().err


def test_ask_read_budget_misspelt_exits_2_with_the_forms(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["ask", str(SAMPLE), "-q", "x", "--read", "alll"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--read" in err and "'all', a share like '30%'" in err


def test_ask_prints_what_was_read(capsys):
    from rich.console import Console

    from minions.cli.render import print_result
    from minions.clients.function import FunctionClient
    from minions.documents import load
    from minions.protocols.baselines import RAG

    remote = FunctionClient.from_replies(["$12.4 million"], model="remote")
    result = RAG(None, remote, top_k=2).run("What was Northwind's total revenue in fiscal 2024?", [load(SAMPLE)])
    console = Console(width=200, record=True)
    print_result(console, result)
    cov = result.coverage
    assert cov.chunks_read == 2 and cov.chunks_total > 2
    assert f"read 2 of {cov.chunks_total} chunks ({cov.share:.0%} of the text)" in console.export_text()


@pytest.mark.real_model
def test_ask_json_contract_with_embedded_model():
    out = run_cli("ask", str(SAMPLE), "-q", "What was Northwind's total revenue in fiscal 2024?",
                  "--protocol", "rag", "--remote-max-tokens", "64", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["answer"] and data["error"] is None
    assert {"answer", "protocol", "usage", "cost_usd", "rounds", "elapsed_s"} <= set(data)
    assert set(data["usage"]) == {"local", "remote"}
    for role in ("local", "remote"):
        assert set(data["usage"][role]) == {"prompt_tokens", "completion_tokens", "cached_prompt_tokens",
                                            "reasoning_tokens"}
    assert set(data["cost_usd"]) == {"local", "remote", "remote_only_estimate"}
    assert data["protocol"] == "rag" and data["remote_stand_in"] is True
    assert data["usage"]["remote"]["prompt_tokens"] > 0
    assert data["cost_usd"]["remote"] > 0 and data["cost_usd"]["remote_only_estimate"] > 0
    cov = data["coverage"]  # what the remote was shown of the document
    assert 0 < cov["chunks_read"] <= cov["chunks_total"] and 0 < cov["share"] <= 1
    assert set(cov["documents"]) == {"northwind_annual_report"}


# --- issue 13: degraded answers and Ctrl-C, through a real subprocess and the HTTP gateway ----------

def _gateway_cli(gateway, tmp_path, *extra: str, **popen):
    from tests.test_protocol_minions import PAGES

    doc = tmp_path / "northwind.txt"
    doc.write_text("\n\n".join(PAGES))
    env = {**os.environ, "OPENAI_API_KEY": "sk-test", "OLLAMA_HOST": gateway.url, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "minions.cli", "ask", str(doc), "-q", "What was revenue in fiscal 2024?",
            "--protocol", "minions", "--local", "ollama/llama3.2:3b", "--remote", "openai/gpt-4o-mini",
            "--base-url", gateway.openai_url, "--max-rounds", "1", "--json", *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                            **popen)


def _backend(synthesize):
    from tests.gateway import ScriptedBackend
    from tests.scripted import schema_title
    from tests.test_protocol_minions import honest_local, plan

    async def reply(msgs, opts):  # by the schema asked for: the remote's plan or synthesis, else a worker job
        title = schema_title(opts)
        if title == "JobPlan":
            return plan("Find the revenue")
        if title in ("Synthesis", "LastSynthesis"):
            return await synthesize(msgs, opts)
        return honest_local(msgs, opts)
    return ScriptedBackend(reply)


def test_ask_degraded_answer_exits_0_with_a_warning_and_the_flags_in_json(gateway, tmp_path):
    async def broken(_m, _o):
        return '{"decision": "provide_final_answer", "explanation": "", "answer": ""}'
    gateway.backend = _backend(broken)
    out, err = _gateway_cli(gateway, tmp_path).communicate(timeout=120)
    data = json.loads(out)
    assert data["answer"] == "$42 million" and data["degraded"] is True and data["grounded"] is True
    assert data["error_type"] == "ModelOutputError" and "backed with a quote" in data["degraded_reason"]
    assert data["citations"] and "$42 million" in data["citations"][0]["text"]
    assert "Degraded answer" in err


def test_ctrl_c_prints_the_partial_result_and_its_cost_then_exits_130(gateway, tmp_path):
    import asyncio
    import signal
    import threading

    # No timeout races the machine: the child signals readiness (its synthesis request reaches the
    # gateway), the remote holds that request until the test ends, and the child's exit is awaited.
    # HANG_GUARD only ends a test that would otherwise hang; it is not a speed limit.
    HANG_GUARD = 900
    in_synthesis, release = threading.Event(), threading.Event()

    async def slow(_m, _o):  # the remote "thinks" until the test is over
        in_synthesis.set()
        await asyncio.to_thread(release.wait, HANG_GUARD)
        return '{"decision": "provide_final_answer", "explanation": "", "answer": "too late"}'
    gateway.backend = _backend(slow)
    # A terminal's Ctrl-C reaches a child whose SIGINT is at its default. A test run started in the
    # background of a non-interactive shell inherits SIGINT *ignored*, and Python keeps an ignored
    # SIGINT ignored, so the child is given the default disposition a user's terminal gives it.
    proc = _gateway_cli(gateway, tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert in_synthesis.wait(HANG_GUARD), "the run never reached the synthesis"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=HANG_GUARD)
    finally:
        release.set()
        proc.kill()
    assert proc.returncode == 130, err
    data = json.loads(out)
    assert data["cancelled"] is True and data["answer"] == "$42 million" and data["degraded"] is True
    assert data["cost_usd"]["remote"] > 0 and data["usage"]["local"]["prompt_tokens"] > 0  # what it spent
    assert "interrupted" in err
