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




# --- item 7: configuration files name the file and the line (before: AttributeError, TypeError, ...) ------

@pytest.mark.parametrize("content, line, says", [
    (b"providers = 5\n", 1, "not a number"),
    (b"[[providers]]\nname = 'x'\n", 1, "not a list"),
    (b"# mine\n[providers]\nx = 5\n", 3, "provider 'x' must be a table"),
    (b"[providers.x]\nwire = 'openai'\nbase_url = 'caf\xe9'\n", 3, "not UTF-8"),
    (b"[providers.x]\nwire = \n", 2, "not valid TOML"),
    (b"[providers.x]\nwired = 'openai'\n", 1, "provider 'x': wired"),
])
def test_a_bad_providers_file_names_the_file_and_line(tmp_path, monkeypatch, content, line, says):
    from minions.clients.spec import providers
    from minions.errors import ConfigError

    path = tmp_path / "providers.toml"
    path.write_bytes(content)
    monkeypatch.setenv("MINIONS_PROVIDERS", str(path))
    with pytest.raises(ConfigError) as e:
        providers()
    assert str(path) in str(e.value) and f"line {line}" in str(e.value) and says in str(e.value)


def test_minions_providers_naming_a_directory_says_so(tmp_path, monkeypatch):
    from minions.clients.spec import providers
    from minions.errors import ConfigError

    monkeypatch.setenv("MINIONS_PROVIDERS", str(tmp_path))
    with pytest.raises(ConfigError, match="is a directory"):
        providers()
    monkeypatch.setenv("MINIONS_PROVIDERS", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        providers()


@pytest.mark.parametrize("content, says", [
    ('[models."x/y"]\noutput = 1.0\n', r"line 1.*input: Field required"),
    ('[models."x/y"]\ninput = \n', r"not valid TOML.*line 2"),
    ('models = 3\n', r"line 1.*'models' must be a table"),
    # item 9: prices are finite and >= 0
    ('[models."x/y"]\ninput = -1.0\noutput = 1.0\n', r"line 1.*input: Input should be greater than or equal to 0"),
    ('[models."x/y"]\ninput = nan\noutput = 1.0\n', r"line 1.*input: Input should be a finite number"),
    ('[models]\n"x/y" = {input = 1.0, output = inf}\n', r"line 2.*output: Input should be a finite number"),
])
def test_a_bad_prices_file_names_the_file_and_line(tmp_path, monkeypatch, content, says):
    from minions.cost import PriceTable
    from minions.errors import ConfigError

    path = tmp_path / "prices.toml"
    path.write_text(content)
    monkeypatch.setenv("MINIONS_PRICES", str(path))
    with pytest.raises(ConfigError, match=says) as e:
        PriceTable.load()
    assert str(path) in str(e.value)


def test_a_missing_prices_file_is_a_config_error(tmp_path, monkeypatch):
    from minions.cost import PriceTable
    from minions.errors import ConfigError

    monkeypatch.setenv("MINIONS_PRICES", str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match="gone.toml does not exist"):
        PriceTable.load()


def test_minions_models_refuses_a_negative_price_with_exit_2(tmp_path, monkeypatch, capsys):
    from minions.cli import main

    path = tmp_path / "prices.toml"
    path.write_text('[models."openai/gpt-4o"]\ninput = -2.5\noutput = 10.0\n')
    monkeypatch.setenv("MINIONS_PRICES", str(path))
    assert main(["models", "--json", "--ollama-host", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "greater than or equal to 0" in err and "line 1" in err and "Traceback" not in err


def test_a_negative_price_can_no_longer_be_built():
    from pydantic import ValidationError

    from minions.cost import Price

    for bad in (-0.01, float("nan"), float("inf")):
        with pytest.raises(ValidationError):
            Price(input=bad, output=1.0)


@pytest.mark.parametrize("kind", ["file", "dangling"])
def test_eval_out_that_is_a_file_or_dangling_symlink_is_a_config_error(tmp_path, kind):
    from minions.errors import ConfigError
    from minions.eval.runner import run_sweep
    from tests.eval_scripted_sweep import config, factory

    out = tmp_path / "out"
    if kind == "file":
        out.write_text("results from last week")
    else:
        out.symlink_to(tmp_path / "nowhere")
    cfg = config(out, protocols=["remote-only"], grid={})
    with pytest.raises(ConfigError, match="out = .*(existing file|does not exist)"):
        run_sweep(cfg, clients_factory=factory())
    assert kind != "file" or out.read_text() == "results from last week"


def test_eval_protocols_listed_twice_is_an_error(tmp_path):
    from tests.eval_scripted_sweep import config

    with pytest.raises(Exception, match="listed twice: rag"):
        config(tmp_path, protocols=["rag", "remote-only", "rag"], grid={})


# --- item 3: only regular files are read (before: a FIFO hung, /dev/zero read until MemoryError) ---------

def _cli(*args: str, cwd, timeout: float = 60):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, "-m", "minions.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(root)})


@pytest.mark.parametrize("kind, says", [("fifo", "named pipe (FIFO)"), ("zero", "a device"),
                                        ("dir", "is a directory")])
def test_ask_refuses_what_is_not_a_regular_file(tmp_path, kind, says):
    import os

    path = tmp_path / ("pipe.txt" if kind == "fifo" else "zero.txt" if kind == "zero" else "folder.txt")
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "zero":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    proc = _cli("ask", path.name, "-q", "what?", "--protocol", "local-only", "--local", "ollama/x", "--remote", "ollama/x",
                cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr and "Traceback" not in proc.stderr


def test_load_refuses_a_fifo_without_opening_it_blocking(tmp_path):
    import os

    from minions.documents import load
    from minions.errors import DocumentError

    os.mkfifo(tmp_path / "p.md")
    with pytest.raises(DocumentError, match="not a regular file"):
        load(tmp_path / "p.md")


# --- item 10: risky set-ups are warned about or refused (before: silent) ---------------------------------

def test_a_providers_file_moving_openai_to_plain_http_warns_twice(tmp_path, monkeypatch):
    from minions.clients.spec import get_client
    from minions.errors import RiskySetupWarning

    path = tmp_path / "providers.toml"
    path.write_text('[providers.openai]\nwire = "openai"\nbase_url = "http://192.0.2.2:18555/v1"\n'
                    'api_key_env = "OPENAI_API_KEY"\n')
    monkeypatch.setenv("MINIONS_PROVIDERS", str(path))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-key-0123456789")
    with pytest.warns(RiskySetupWarning) as seen:
        get_client("openai/gpt-4o-mini")
    texts = [str(w.message) for w in seen]
    assert any("replaces the built-in provider 'openai'" in t and "192.0.2.2" in t for t in texts)
    assert any("plain http to 192.0.2.2" in t and "OPENAI_API_KEY" in t for t in texts)
    assert not any("sk-real-key" in t for t in texts)


@pytest.mark.parametrize("url, warned", [("http://192.0.2.2:8000/v1", True), ("https://llm.example.com/v1", False),
                                         ("http://127.0.0.1:8000/v1", False), ("http://localhost:1/v1", False),
                                         ("http://[::1]:8000/v1", False)])
def test_base_url_over_plain_http_to_another_host_warns(monkeypatch, url, warned):
    import warnings

    from minions.clients.spec import get_client
    from minions.errors import RiskySetupWarning

    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-key-0123456789")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        get_client("openai/gpt-4o-mini", base_url=url)
    assert any(issubclass(w.category, RiskySetupWarning) for w in seen) == warned


def test_the_cli_prints_the_warning_as_one_line(tmp_path, monkeypatch, capsys):
    from minions.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-key-0123456789")
    code = main(["ask", str(tmp_path / "missing.txt"), "-q", "?", "--protocol", "remote-only",
                 "--remote", "openai/gpt-4o-mini", "--base-url", "http://192.0.2.2:8000/v1"])
    err = capsys.readouterr().err
    assert code == 2 and "warning: openai: the OPENAI_API_KEY key will be sent over plain http to 192.0.2.2" in err
    assert "RiskySetupWarning" not in err and "sk-real-key" not in err


@pytest.mark.parametrize("argv, says", [
    (["serve", "--host", "0.0.0.0"], "without an API key"),
    (["mcp", "--http", "--host", "0.0.0.0"], "no authentication"),
    (["mcp", "--http", "--host", "192.0.2.7"], "no authentication"),
])
def test_public_binds_are_refused_without_allow_public(monkeypatch, capsys, argv, says):
    from minions.cli import main

    monkeypatch.delenv("MINIONS_API_KEY", raising=False)
    assert main([*argv, "--local", "ollama/x", "--remote", "ollama/x"]) == 2
    err = capsys.readouterr().err
    assert says in err and "--allow-public" in err


def test_serve_ceiling_flags_are_checked(capsys):
    from minions.cli import main

    assert main(["serve", "--ceiling-chunks", "0", "--local", "ollama/x", "--remote", "ollama/x"]) == 2
    assert "--ceiling-chunks: Input should be greater than or equal to 1" in capsys.readouterr().err


# --- item 2: a prompt that cannot fit a known window is cut before it is counted or sent --------------

def test_remote_only_over_far_more_text_than_the_window_never_counts_it_all():
    from minions.clients.function import FunctionClient
    from minions.documents import Document
    from minions.protocols.baselines import RemoteOnly

    counted: list[int] = []

    class Counting(FunctionClient):
        def count_tokens(self, text: str) -> int:
            counted.append(len(text))
            return super().count_tokens(text)

    remote = Counting(lambda _m, _o: "Revenue was 5 million.", model="remote", context_window=2000)
    doc = Document.from_text("Revenue was 5 million dollars in fiscal 2023. " * 200_000, id="huge")  # 9 MB
    res = RemoteOnly(None, remote).run("What was revenue?", [doc])
    assert res.answer == "Revenue was 5 million."
    assert max(counted) < 300_000  # never the 9 MB at once (the cost estimate counts it in pieces)
    assert len(remote.calls[0][0][-1].content) < 20_000
    assert any("over " in w and "kept the first 0%" in w for w in res.warnings)
