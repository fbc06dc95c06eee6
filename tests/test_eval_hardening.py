"""Eval harness under bad input: resuming a results.jsonl whose last row lost its newline, garbage
lines reported, a non-UTF-8 TOML, a knob of the wrong type (issue 12, items 4 and 10)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from minions.errors import ConfigError
from minions.eval.__main__ import print_summary
from minions.eval.config import load_config
from minions.eval.results import ResultRow, ResultsFile
from minions.eval.runner import run_sweep
from tests.eval_scripted_sweep import config, factory

ROOT = Path(__file__).resolve().parents[1]


def calls(log: Path) -> int:
    return log.read_text().count("\n") if log.exists() else 0


def test_a_finished_sweep_whose_last_newline_was_removed_is_left_alone(tmp_path: Path) -> None:
    cfg = config(tmp_path / "run", protocols=["remote-only", "local-only"], grid={})
    log = tmp_path / "calls.log"
    first = run_sweep(cfg, clients_factory=factory(log))
    results = tmp_path / "run" / "results.jsonl"
    full = results.read_bytes()
    assert full.endswith(b"\n") and first.new_rows == 6
    results.write_bytes(full[:-1])  # only the trailing newline goes
    made = calls(log)

    again = run_sweep(cfg, clients_factory=factory(log))
    assert again.new_rows == 0 and again.model_calls == 0 and calls(log) == made  # no model call
    assert results.read_bytes() == full[:-1]  # nothing changed on disk
    assert [s.accuracy for s in again.summary] == [s.accuracy for s in first.summary]
    assert again.warnings == [] and again.dropped_lines == 0


def test_a_row_appended_after_an_unterminated_last_row_starts_on_its_own_line(tmp_path: Path) -> None:
    cfg = config(tmp_path / "run", protocols=["remote-only"], grid={})
    run_sweep(cfg, clients_factory=factory())
    results = tmp_path / "run" / "results.jsonl"
    lines = results.read_bytes().splitlines()
    kept = lines[:1] + lines[2:]  # forget the middle row; the last one keeps no newline
    results.write_bytes(b"\n".join(kept))

    again = run_sweep(cfg, clients_factory=factory())
    assert again.new_rows == 1
    on_disk = results.read_bytes()
    assert on_disk.startswith(b"\n".join(kept) + b"\n") and on_disk.endswith(b"\n")
    rows = [ResultRow.model_validate_json(x) for x in on_disk.splitlines()]
    assert len(rows) == 3 and len({r.key for r in rows}) == 3


def test_a_torn_last_line_is_still_cut_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    row = ResultRow(dataset="d", item_id="i", config_id="c", config="c", protocol="rag").model_dump_json()
    path.write_text(row + "\n" + row[:30])
    with ResultsFile(path) as f:
        assert len(f.rows) == 1 and f.torn_bytes == 30 and f.dropped == 0
        assert "torn last line (30 bytes" in f.describe_problems()[0]
    assert path.read_text() == row + "\n"


def test_garbage_lines_are_counted_and_shown_in_the_output_and_summary(tmp_path: Path) -> None:
    cfg = config(tmp_path / "run", protocols=["remote-only"], grid={})
    run_sweep(cfg, clients_factory=factory())
    results = tmp_path / "run" / "results.jsonl"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text(lines[0] + "not json at all\n" + lines[1] + '{"dataset": "x"}\n' + lines[2])

    again = run_sweep(cfg, clients_factory=factory())
    assert again.new_rows == 0 and again.dropped_lines == 2
    (warning,) = again.warnings
    assert "2 unreadable line(s) (line 2, 4)" in warning
    console = Console(record=True, width=200)
    print_summary(console, again, cfg)
    assert "2 unreadable line(s)" in console.export_text()
    assert "2 unreadable line(s) (line 2, 4)" in (tmp_path / "run" / "summary.md").read_text()
    assert "not json at all" in results.read_text()  # reported, never deleted


def test_a_non_utf8_toml_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_bytes('name = "caf\xe9"\ndatasets = ["sample"]\nprotocols = ["rag"]\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"bad\.toml is not UTF-8"):
        load_config(toml)
    proc = subprocess.run([sys.executable, "-m", "minions.eval", "--config", str(toml)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=_env())
    assert proc.returncode == 2
    assert "bad.toml is not UTF-8" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("knob", ['chunk_size = "big"', "max_remote_usd = nan", 'max_rounds = [1]'])
def test_a_knob_of_the_wrong_type_leaves_nothing_behind(tmp_path: Path, knob: str) -> None:
    out = tmp_path / "out"
    toml = tmp_path / "s.toml"
    toml.write_text(f'name = "s"\ndatasets = ["sample"]\nprotocols = ["minions"]\nlimit = 1\nout = "{out}"\n'
                    f"[knobs]\n{knob}\n")
    proc = subprocess.run([sys.executable, "-m", "minions.eval", "--config", str(toml)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=_env())
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert knob.split(" ")[0] in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
    assert not out.exists() and not (tmp_path / "runs").exists()


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_the_warning_event_reaches_the_live_output(tmp_path: Path) -> None:
    """SweepStarted carries the problems, so the live view prints them before the sweep runs."""
    from minions.eval.runner import SweepStarted

    cfg = config(tmp_path / "run", protocols=["remote-only"], grid={}, limit=1)
    run_sweep(cfg, clients_factory=factory())
    results = tmp_path / "run" / "results.jsonl"
    results.write_text("garbage\n" + results.read_text())
    seen: list = []
    run_sweep(cfg, clients_factory=factory(), on_progress=seen.append)
    started = next(e for e in seen if isinstance(e, SweepStarted))
    assert started.warnings and "line 1" in started.warnings[0]
    assert json.loads(started.model_dump_json())["warnings"] == started.warnings
