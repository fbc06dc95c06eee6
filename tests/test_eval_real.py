"""End to end with the embedded model: `python -m minions.eval` on one sample question."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.real_model
ROOT = Path(__file__).resolve().parents[1]


def test_cli_sweep_with_the_embedded_model(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "minions.eval", "--dataset", "sample", "--protocol", "rag", "--limit", "1",
           "--remote", "llamacpp/smollm2", "--remote-price-as", "openai/gpt-4o", "--knob", "top_k=2",
           "--knob", "chunk_size=800", "--knob", "remote_max_tokens=48", "--timeout", "600", "--out", str(out)]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    (row,) = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert row["item_id"] == "northwind-revenue" and row["protocol"] == "rag"
    assert row["answer"] and row["answer"].strip() and row["error"] is None, row  # a run that answered
    assert row["usage"]["remote"]["requests"] >= 1 and row["cost_usd"]["remote"] > 0 and row["remote_stand_in"]
    assert 0.0 <= row["score"] <= 1.0
    assert "per-configuration summary" in first.stdout and "1 model calls this run" in first.stdout
    assert (out / "pareto.png").stat().st_size > 10_000 and "| sample | rag | 1 |" in (out / "summary.md").read_text()

    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "0 model calls this run" in again.stdout
    assert (out / "results.jsonl").read_text().count("\n") == 1
