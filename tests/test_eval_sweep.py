"""Sweeps with scripted models: grid expansion, outputs, cache, crash-safe resume (SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minions.clients import FunctionClient
from minions.errors import ConfigError
from minions.eval.__main__ import build_parser, config_from_args
from minions.eval.config import expand, load_config, validate_config
from minions.eval.report import frontier
from minions.eval.results import ResultRow, ResultsFile
from minions.eval.runner import run_sweep
from tests.eval_scripted_sweep import config, factory

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).parent / "eval_scripted_sweep.py"
N_ITEMS, N_CONFIGS = 3, 6  # sample --limit 3; minion, minions ×2 (grid), remote-only, local-only, rag


def comparable(summary: list) -> list[dict]:
    return [s if isinstance(s, dict) else s.model_dump(exclude={"latency_p50", "latency_p95"}) for s in summary]


# --- configuration -----------------------------------------------------------------------------

def test_grid_expands_per_protocol_and_knobs_go_where_accepted() -> None:
    cfg = validate_config({"datasets": ["sample"], "protocols": ["minions", "rag", "local-only"],
                           "local": ["ollama/llama3.2:3b", "ollama/qwen2.5:7b"], "remote": "openai/gpt-4o",
                           "knobs": {"local_max_tokens": 64, "rag": {"top_k": 2}},
                           "grid": {"chunk_size": [1000, 2000], "minions": {"tasks_per_round": [1, 3]}}})
    runs = expand(cfg)
    minions = [r for r in runs if r.protocol == "minions"]
    assert len(minions) == 2 * 2 * 2  # local models × chunk sizes × tasks per round
    assert {r.knobs["chunk_size"] for r in minions} == {1000, 2000} and all(r.knobs["local_max_tokens"] == 64 for r in minions)
    rag = [r for r in runs if r.protocol == "rag"]
    assert len(rag) == 2 and all(r.local is None and r.knobs["top_k"] == 2 for r in rag)  # rag needs no local model
    local_only = [r for r in runs if r.protocol == "local-only"]
    assert len(local_only) == 2 and all(r.remote is None and "chunk_size" not in r.knobs for r in local_only)
    assert len({r.id for r in runs}) == len(runs)
    assert "local=llama3.2:3b" in minions[0].label and "tasks_per_round=1" in minions[0].label
    assert expand(cfg)[0].id == runs[0].id  # ids are stable


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="Unknown knob 'tasks_per_rund' \\(did you mean 'tasks_per_round'"):
        expand(validate_config({"datasets": ["sample"], "protocols": ["minions"], "knobs": {"tasks_per_rund": 2}}))
    # issue 18: a knob no protocol of the sweep takes was dropped silently (knobs {}); now it is refused
    with pytest.raises(ConfigError, match="Unknown knob 'top_k'.*protocols of this sweep \\(minions\\)"):
        expand(validate_config({"datasets": ["sample"], "protocols": ["minions"], "knobs": {"top_k": 2}}))
    with pytest.raises(ConfigError, match="Protocol 'rag' has no knob 'max_rounds'"):
        expand(validate_config({"datasets": ["sample"], "protocols": ["rag"], "grid": {"rag": {"max_rounds": [1]}}}))
    with pytest.raises(ConfigError, match="non-empty list"):
        expand(validate_config({"datasets": ["sample"], "protocols": ["rag"], "grid": {"top_k": 3}}))
    with pytest.raises(ConfigError, match="protocols"):
        validate_config({"datasets": ["sample"]})


def test_flags_are_equivalent_to_the_toml(tmp_path: Path) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text('name = "s"\ndatasets = ["sample"]\nprotocols = ["minions", "rag"]\nlocal = "llamacpp/smollm2"\n'
                    'remote = "llamacpp/smollm2"\nremote_price_as = "openai/gpt-4o"\nlimit = 2\nout = "x"\n'
                    '[knobs]\nlocal_max_tokens = 64\n[grid]\nchunk_size = [1000, 2000]\n')
    from_file = load_config(toml)
    args = build_parser().parse_args(
        ["--dataset", "sample", "--protocol", "minions", "--protocol", "rag", "--local", "llamacpp/smollm2",
         "--remote", "llamacpp/smollm2", "--remote-price-as", "openai/gpt-4o", "--limit", "2", "--out", "x",
         "--name", "s", "--knob", "local_max_tokens=64", "--grid", "chunk_size=1000,2000"])
    from_flags = config_from_args(args)
    assert [r.model_dump() for r in expand(from_flags)] == [r.model_dump() for r in expand(from_file)]
    over = config_from_args(build_parser().parse_args(["--config", str(toml), "--limit", "1", "--no-cache",
                                                       "--data", "sample=datasets/sample"]))
    assert over.limit == 1 and over.cache is False and over.datasets[0].path == "datasets/sample"


def test_offline_and_paper_configs_are_valid() -> None:
    offline = load_config(ROOT / "evals" / "offline.toml")
    runs = expand(offline)
    assert {r.protocol for r in runs} == {"minion", "minions", "remote-only", "local-only", "rag"}
    assert offline.remote_price_as == "openai/gpt-4o" and offline.datasets[0].name == "sample"
    paper = load_config(ROOT / "evals" / "paper.toml")
    runs = expand(paper)
    assert {d.name for d in paper.datasets} == {"financebench", "longhealth", "qasper"}
    assert {r.local for r in runs if r.local} >= {"ollama/llama3.2:3b", "ollama/llama3.1:8b", "ollama/qwen2.5:3b",
                                                  "ollama/qwen2.5:7b"}
    assert {r.remote for r in runs if r.remote} == {"openai/gpt-4o"}


# --- a sweep in-process ------------------------------------------------------------------------------

def test_sweep_outputs_and_second_run_makes_no_model_calls(tmp_path: Path) -> None:
    cfg = config(tmp_path / "run")
    first = run_sweep(cfg, clients_factory=factory())
    assert first.new_rows == len(first.rows) == N_ITEMS * N_CONFIGS and first.model_calls > 0
    keys = [r.key for r in first.rows]
    assert len(set(keys)) == len(keys)
    by_cfg = {s.config: s for s in first.summary}
    assert set(by_cfg) == {"minion", "minions (tasks_per_round=1)", "minions (tasks_per_round=2)", "remote-only",
                           "local-only", "rag"}
    ro, lo = by_cfg["remote-only"], by_cfg["local-only"]
    assert ro.n == N_ITEMS and ro.accuracy == pytest.approx(2 / 3)  # revenue and losartan right, F1 wrong
    assert ro.remote_usd_per_query > 0 and ro.pct_of_remote_only == pytest.approx(100)
    assert lo.remote_usd_per_query == 0 and lo.cost_reduction == float("inf") and lo.local_tokens_per_query > 0
    assert by_cfg["minion"].cost_reduction > 1 and all(s.failures == 0 for s in first.summary)
    # coverage: whole-context baselines read everything of the short sample documents; RAG a part
    assert ro.read_share == pytest.approx(1.0) and lo.read_share == pytest.approx(1.0)
    assert 0 < by_cfg["rag"].read_share < 1 and all(r.read_share is not None for r in first.rows)
    row = first.rows[0]
    assert row.usage["remote"].requests >= 1 and row.cost_usd["remote"] > 0 and row.remote_only_estimate_usd > 0
    assert row.remote_stand_in and row.remote_price_as == "openai/gpt-4o"
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"results.jsonl", "summary.csv", "summary.md", "pareto.png", "config.json", "lm_cache.sqlite"} <= files
    assert (tmp_path / "run" / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "run" / "summary.md").read_text()
    assert "| sample | remote-only | 3 | 66.7% |" in md and "stand-in priced as openai/gpt-4o" in md
    assert "| read |" in md and "| 100% |" in md
    again = run_sweep(cfg, clients_factory=factory())
    assert again.new_rows == 0 and again.model_calls == 0
    assert comparable(again.summary) == comparable(first.summary)


def test_the_cache_alone_makes_a_rerun_free(tmp_path: Path) -> None:
    cfg = config(tmp_path / "run")
    first = run_sweep(cfg, clients_factory=factory())
    (tmp_path / "run" / "results.jsonl").unlink()  # forget the results, keep the LM cache
    again = run_sweep(cfg, clients_factory=factory())
    assert again.new_rows == N_ITEMS * N_CONFIGS and again.model_calls == 0 and again.cache_hits > 0
    assert comparable(again.summary) == comparable(first.summary)  # cached usage = original usage
    assert again.cache.entries == first.cache.entries


def test_judge_scorer_is_metered_apart(tmp_path: Path) -> None:
    cfg = config(tmp_path / "run", protocols=["remote-only"], grid={}, scorer="judge",
                 judge={"model": "function/judge", "price_as": "openai/gpt-4o-mini"})
    out = run_sweep(cfg, clients_factory=factory())
    (s,) = out.summary
    assert s.accuracy == pytest.approx(1 / 3) and s.judge_usd > 0
    row = out.rows[0]
    assert "judge" in row.cost_usd and row.score_detail.startswith("judge")
    assert s.remote_usd_per_query == pytest.approx(sum(r.cost_usd["remote"] for r in out.rows) / 3)


def test_an_unexpected_exception_is_recorded_not_fatal(tmp_path: Path) -> None:
    def broken(messages, options):
        raise RuntimeError("bug in a backend")

    cfg = config(tmp_path / "run", protocols=["local-only"], grid={}, limit=2)
    out = run_sweep(cfg, clients_factory=lambda spec: FunctionClient(broken))
    assert [r.error_type for r in out.rows] == ["RuntimeError", "RuntimeError"]
    assert out.summary[0].failures == 2 and out.summary[0].accuracy == 0


def test_torn_last_line_is_cut_and_the_pair_rerun(tmp_path: Path) -> None:
    cfg = config(tmp_path / "run", protocols=["remote-only"], grid={})
    run_sweep(cfg, clients_factory=factory())
    path = tmp_path / "run" / "results.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][:40])  # a crash in the middle of the last write
    out = run_sweep(cfg, clients_factory=factory())
    assert out.new_rows == 1 and len(out.rows) == 3
    assert [json.loads(x)["item_id"] for x in path.read_text().splitlines()] == [r.item_id for r in out.rows]


def test_one_writer_per_results_file(tmp_path: Path) -> None:
    with ResultsFile(tmp_path / "r.jsonl") as f:
        f.append(ResultRow(dataset="d", item_id="i", config_id="c", config="c", protocol="rag"))
        with pytest.raises(ConfigError, match="Another sweep"):
            ResultsFile(tmp_path / "r.jsonl")
    with ResultsFile(tmp_path / "r.jsonl") as f:
        assert [r.key for r in f.rows] == [("d", "i", "c")]


def test_frontier() -> None:
    pts = [(0.0, 20.0), (0.01, 60.0), (0.02, 50.0), (0.05, 80.0), (0.05, 70.0)]
    assert frontier(pts) == [0, 1, 3]


# --- crash-safe resume, for real: SIGKILL a sweep process ---------------------------------------

def _run_script(out: Path, log: Path, delay: float, *extra: str) -> dict:
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out), str(log), str(delay), *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_sigkill_mid_sweep_then_rerun_gives_each_pair_once(tmp_path: Path) -> None:
    out, log = tmp_path / "killed", tmp_path / "calls.log"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(out), str(log), "0.03"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if results.exists() and results.read_bytes().count(b"\n") >= 4:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the sweep finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = results.read_bytes().count(b"\n")
    assert 4 <= done_before < N_ITEMS * N_CONFIGS

    resumed = _run_script(out, log, 0.0)
    assert resumed["new_rows"] == N_ITEMS * N_CONFIGS - done_before
    rows = [json.loads(x) for x in results.read_text().splitlines()]
    keys = [(r["dataset"], r["item_id"], r["config_id"]) for r in rows]
    assert len(keys) == len(set(keys)) == N_ITEMS * N_CONFIGS  # nothing lost, nothing duplicated

    clean = _run_script(tmp_path / "clean", tmp_path / "clean.log", 0.0)
    assert resumed["summary"] == clean["summary"]

    calls = log.read_text().count("\n")
    finished = _run_script(out, log, 0.0)
    assert finished["new_rows"] == 0 and finished["model_calls"] == 0
    assert log.read_text().count("\n") == calls  # counted by the scripted models themselves
    assert finished["summary"] == clean["summary"]


def test_an_embedded_remote_is_priced_as_the_cli_prices_it(tmp_path) -> None:
    """One construction path (protocols/build.py): a `llamacpp/` remote without remote_price_as is the
    stand-in for STAND_IN_PRICE in a sweep too, as in `minions ask` and the app — not free."""
    from minions.protocols.build import STAND_IN_PRICE

    cfg = config(tmp_path / "run", protocols=["remote-only"], remote="llamacpp/smollm2", remote_price_as=None,
                 grid={}, cache=False)
    out = run_sweep(cfg, clients_factory=factory())
    assert out.rows and all(r.remote_stand_in and r.remote_price_as == STAND_IN_PRICE for r in out.rows)
    assert all(r.cost_usd["remote"] > 0 for r in out.rows)
