"""`minions batch`: question sets over documents, resumable exactly once (SIGKILL), caps, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minions.batch import run_batch
from minions.errors import ConfigError
from minions.protocols.settings import RunSettings
from tests.batch_scripted import QUESTIONS, REPORT, factory, write_questions

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).parent / "batch_scripted.py"
SCRIPTED = ["--local", "function/local", "--remote", "function/remote", "--remote-price-as", "openai/gpt-4o",
            "--max-rounds", "1"]
SETTINGS = RunSettings(local="function/local", remote="function/remote", price_as="openai/gpt-4o",
                       knobs={"max_rounds": 1})
N = len(QUESTIONS)


def _ids(out: Path) -> list[str]:
    return [json.loads(line)["id"] for line in out.read_text().splitlines()]


def _batch(*argv: str, delay: float = 0.0, log: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(delay), str(log or "-"), "batch", *argv, *SCRIPTED,
                           "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_twenty_questions_answered_once_and_a_rerun_calls_no_model(tmp_path: Path) -> None:
    questions, out, log = write_questions(tmp_path / "q.jsonl"), tmp_path / "a.jsonl", tmp_path / "calls.log"
    outcome = run_batch(questions, [REPORT], out, SETTINGS, concurrency=4, factory=factory(log))
    assert outcome.new_rows == N and outcome.errors == 0 and outcome.stopped is None
    rows = {r.id: r for r in outcome.rows}
    assert sorted(rows) == sorted(q[0] for q in QUESTIONS)
    assert rows["fb-00"].answer == "$2,847.3 million" and rows["fb-12"].answer == "$3.47"
    first = rows["fb-00"]
    assert first.documents == [str(REPORT)] and first.settings["protocol"] == "minions"
    assert first.settings["config"]["max_rounds"] == 1 and first.coverage["chunks_total"] >= 1
    assert first.cost_usd["remote"] > 0 and set(first.flags) >= {"degraded", "grounded", "budget_exhausted"}
    assert outcome.spent_usd == pytest.approx(sum(r.total_usd for r in outcome.rows))

    calls = log.read_text().count("\n")
    again = run_batch(questions, [REPORT], out, SETTINGS, concurrency=4, factory=factory(log))
    assert again.new_rows == 0 and len(again.rows) == N
    assert log.read_text().count("\n") == calls  # counted by the scripted models themselves
    assert _ids(out) == [r.id for r in outcome.rows]


def test_sigkill_halfway_then_rerun_gives_every_result_exactly_once(tmp_path: Path) -> None:
    questions, out = write_questions(tmp_path / "q.jsonl"), tmp_path / "a.jsonl"
    argv = [str(SCRIPT), "0.05", "-", "batch", str(questions), str(REPORT), "--out", str(out), "--parallel", "2",
            *SCRIPTED, "--quiet"]
    proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 120  # a hang guard, not a timing assertion
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= N // 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the batch finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = out.read_bytes()
    kept = before[: before.rfind(b"\n") + 1]
    assert N // 2 <= kept.count(b"\n") < N
    with open(out, "ab") as f:  # as if killed mid-write: a torn last line
        f.write(b'{"id": "fb-19", "documents": ["x"], "doc_s')

    rerun = _batch(str(questions), str(REPORT), "--out", str(out))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert summary["rows"] == N and summary["new_rows"] == N - kept.count(b"\n")
    assert "torn last line" in rerun.stderr
    after = out.read_bytes()
    assert after.startswith(kept)  # the finished work is kept byte for byte
    ids = _ids(out)
    assert len(ids) == len(set(ids)) == N and set(ids) == {q[0] for q in QUESTIONS}


def test_a_bad_question_line_is_named_and_nothing_runs(tmp_path: Path) -> None:
    questions = write_questions(tmp_path / "q.jsonl", QUESTIONS[:3])
    lines = questions.read_text().splitlines()
    lines.insert(2, '{"id": "fb-x", "qustion": "typo"}')
    questions.write_text("\n".join(lines) + "\n")
    out = tmp_path / "a.jsonl"
    proc = _batch(str(questions), str(REPORT), "--out", str(out))
    assert proc.returncode == 2
    assert f"{questions} line 3: not a question" in proc.stderr and "qustion" in proc.stderr
    assert not out.exists()

    questions.write_text(json.dumps({"id": "a", "question": "q?"}) + "\n" + json.dumps({"id": "a", "question": "r?"}))
    with pytest.raises(ConfigError, match="line 2: id 'a' repeats line 1"):
        run_batch(questions, [REPORT], out, SETTINGS, factory=factory())
    questions.write_text(json.dumps({"id": "a", "question": "q?"}))
    with pytest.raises(ConfigError, match="line 1: question 'a' has no documents"):
        run_batch(questions, [], out, SETTINGS, factory=factory())


def test_a_failed_item_is_its_own_row_and_loses_no_other_work(tmp_path: Path) -> None:
    questions = tmp_path / "q.jsonl"
    write_questions(questions, QUESTIONS[:4])
    with open(questions, "a") as f:
        f.write(json.dumps({"id": "missing", "question": "Revenue?", "documents": ["nowhere.pdf"]}) + "\n")
    out = tmp_path / "a.jsonl"
    outcome = run_batch(questions, [REPORT], out, SETTINGS, concurrency=2, factory=factory())
    rows = {r.id: r for r in outcome.rows}
    assert len(rows) == 5 and outcome.errors == 1
    assert rows["missing"].error_type == "DocumentError" and "nowhere.pdf" in rows["missing"].error
    assert all(rows[q[0]].error is None and rows[q[0]].answer == q[2] for q in QUESTIONS[:4])


def test_caps_stop_new_work_say_so_and_a_rerun_finishes(tmp_path: Path) -> None:
    questions, out = write_questions(tmp_path / "q.jsonl"), tmp_path / "a.jsonl"
    events: list = []
    capped = run_batch(questions, [REPORT], out, SETTINGS, concurrency=1, max_total_usd=0.004, factory=factory(),
                       on_progress=events.append)
    assert capped.stopped and capped.stopped.startswith("spend cap reached") and "--max-total-usd" in capped.stopped
    assert 1 <= capped.new_rows < N and capped.new_rows + capped.not_started == N
    assert capped.spent_usd >= 0.004 and sum(r.total_usd for r in capped.rows[:-1]) < 0.004  # stopped at once
    assert [e.cap for e in events if getattr(e, "kind", "") == "cap_reached"] == ["spend"]

    timed = run_batch(questions, [REPORT], out, SETTINGS, concurrency=1, max_seconds=1e-9, factory=factory())
    assert timed.stopped and timed.stopped.startswith("time cap reached") and timed.new_rows == 0

    proc = _batch(str(questions), str(REPORT), "--out", str(out), "--max-total-usd", "0")
    assert proc.returncode == 3 and "spend cap reached" in proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["not_started"] == N - capped.new_rows

    done = run_batch(questions, [REPORT], out, SETTINGS, factory=factory())
    ids = _ids(out)
    assert done.stopped is None and len(ids) == len(set(ids)) == N


@pytest.mark.real_model
def test_a_small_question_set_with_the_embedded_model(tmp_path: Path) -> None:
    questions = write_questions(tmp_path / "q.jsonl", QUESTIONS[:4:2])  # revenue, gross profit (fiscal 2024)
    out = tmp_path / "a.jsonl"
    proc = subprocess.run([sys.executable, "-m", "minions.cli", "batch", str(questions), str(REPORT), "--out",
                           str(out), "--parallel", "2", "--max-rounds", "1", "--tasks-per-round", "1", "--quiet"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == ["fb-00", "fb-02"]
    for r in rows:  # the 135M model is weak: each row is answered or flagged, and none failed
        assert r["error"] is None
        assert r["answer"] or r["flags"]["degraded"] or r["flags"]["grounded"] is False
        assert r["settings"]["local"] == "llamacpp/smollm2" and r["cost_usd"]["remote"] is not None


def test_the_cli_renders_progress_with_an_eta_and_the_cap_notice(tmp_path: Path) -> None:
    from rich.console import Console

    from minions.cli.batch import ProgressView

    questions, out = write_questions(tmp_path / "q.jsonl", QUESTIONS[:6]), tmp_path / "a.jsonl"
    run_batch(questions, [REPORT], out, SETTINGS, concurrency=2, factory=factory())
    console = Console(record=True, width=120, force_terminal=True)
    view = ProgressView(console)
    write_questions(questions, QUESTIONS[:10])
    try:
        run_batch(questions, [REPORT], out, SETTINGS, concurrency=1, max_total_usd=0.002, factory=factory(),
                  on_progress=view)
    finally:
        view.close()
    text = console.export_text()
    assert "resuming: 6 of 10 already answered" in text and "ETA" in text
    written = len(_ids(out))
    assert 6 < written < 10 and "stopping: spend cap reached" in text and f"{written}/10" in text
