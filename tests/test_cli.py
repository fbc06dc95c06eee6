"""The `minions` command: help, models, ask (errors and the --json contract)."""

from __future__ import annotations

import json
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


def test_models_json_lists_embedded_model_and_prices(capsys):
    assert main(["models", "--json", "--ollama-host", "http://127.0.0.1:9"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert any(m["spec"] == "llamacpp/smollm2" for m in data["embedded"])
    assert data["ollama"] == [] and "ollama serve" in data["ollama_note"]
    assert data["prices"]["openai/gpt-4o"]["input"] == 2.5


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
    assert out.returncode in (0, 1), out.stderr
    data = json.loads(out.stdout)
    assert {"answer", "protocol", "usage", "cost_usd", "rounds", "elapsed_s"} <= set(data)
    assert set(data["usage"]) == {"local", "remote"}
    for role in ("local", "remote"):
        assert set(data["usage"][role]) == {"prompt_tokens", "completion_tokens", "cached_prompt_tokens"}
    assert set(data["cost_usd"]) == {"local", "remote", "remote_only_estimate"}
    assert data["protocol"] == "rag" and data["remote_stand_in"] is True
    assert data["usage"]["remote"]["prompt_tokens"] > 0
    assert data["cost_usd"]["remote"] > 0 and data["cost_usd"]["remote_only_estimate"] > 0
    cov = data["coverage"]  # what the remote was shown of the document
    assert 0 < cov["chunks_read"] <= cov["chunks_total"] and 0 < cov["share"] <= 1
    assert set(cov["documents"]) == {"northwind_annual_report"}
