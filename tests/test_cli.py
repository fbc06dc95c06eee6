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


@pytest.mark.real_model
def test_ask_json_contract_with_embedded_model():
    out = run_cli("ask", str(SAMPLE), "-q", "What was Northwind's total revenue in fiscal 2024?",
                  "--protocol", "rag", "--remote-max-tokens", "64", "--json")
    assert out.returncode in (0, 1), out.stderr
    data = json.loads(out.stdout)
    assert {"answer", "protocol", "usage", "cost_usd", "rounds", "elapsed_s"} <= set(data)
    assert set(data["usage"]) == {"local", "remote"}
    for role in ("local", "remote"):
        assert set(data["usage"][role]) == {"prompt_tokens", "completion_tokens", "cached_prompt_tokens",
                                            "reasoning_tokens"}
    assert set(data["cost_usd"]) == {"local", "remote", "remote_only_estimate"}
    assert data["protocol"] == "rag" and data["remote_stand_in"] is True
    assert data["usage"]["remote"]["prompt_tokens"] > 0
    assert data["cost_usd"]["remote"] > 0 and data["cost_usd"]["remote_only_estimate"] > 0
