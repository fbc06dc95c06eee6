"""Issue 21: promises under bad input outside the servers — the reading-speed store, `--read`, config
files (providers, prices, eval out), prices, risky provider set-ups, library log levels.

Each test failed on the code before its fix (noted per section)."""

from __future__ import annotations

import json

import pytest

from minions.protocols.reading import ReadBudget, SpeedStore
from tests.test_reading import run

# --- item 8: the reading-speed store (before: OverflowError / TypeError / ValueError) --------------------


@pytest.mark.parametrize("budget", [float("inf"), 1e308])
def test_an_unbounded_local_time_budget_reads_everything(budget):
    SpeedStore().record("function/local", tokens=1000, seconds=10)
    res, _ = run(local_time_budget=budget)
    assert res.answer is not None and res.coverage.chunks_read == res.coverage.chunks_total == 40


@pytest.mark.parametrize("entry", [
    {"tokens_per_s": 1e308, "tokens": 1e308, "seconds": 1},
    {"tokens_per_s": 50, "tokens": "abc", "seconds": 2},
    {"tokens_per_s": 50, "tokens": None, "seconds": 2},
    {"tokens_per_s": "fast", "tokens": 100, "seconds": 2},
    {"tokens_per_s": True, "tokens": 100, "seconds": 2},
    "garbage",
])
def test_a_damaged_speed_entry_counts_as_empty_and_never_fails_a_run(tmp_path, monkeypatch, entry):
    path = tmp_path / "speeds.json"
    monkeypatch.setenv("MINIONS_SPEEDS_FILE", str(path))
    path.write_text(json.dumps({"function/local": entry}))
    assert SpeedStore().get("function/local") is None
    res, _ = run()  # a first run's share, then its speed is recorded over the damaged entry
    assert res.answer is not None and "no reading speed measured yet" in res.coverage.why
    saved = json.loads(path.read_text())["function/local"]
    assert 0 < saved["tokens_per_s"] < 1e7 and isinstance(saved["tokens"], float)


def test_a_failure_to_record_a_speed_never_fails_a_run(tmp_path, monkeypatch):
    monkeypatch.setattr(SpeedStore, "_record", lambda *a: 1 / 0)
    res, _ = run()
    assert res.answer is not None and res.error is None
    assert SpeedStore().record("m", tokens="abc", seconds=None) is None  # type: ignore[arg-type]


# --- also seen: --read takes ASCII digits only (before: "१२३" was 123 tokens) ----------------------------


@pytest.mark.parametrize("text", ["१२३", "١٢٣ tokens", "٥٠%"])
def test_read_takes_ascii_digits_only(text):
    with pytest.raises(ValueError, match="not understood"):
        ReadBudget.parse(text)


def test_read_budget_flag_refuses_other_digits(capsys):
    from minions.cli import main

    with pytest.raises(SystemExit) as e:
        main(["ask", "x.txt", "-q", "q", "--read", "१२३"])
    assert e.value.code == 2 and "not understood" in capsys.readouterr().err


