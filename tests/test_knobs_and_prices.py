"""No silent knobs (misspelt knobs, budgets that cannot apply, the run-start notice) and where prices
come from (genai-prices offline, overrides that win, sources shown)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from minions import errors
from minions.clients import FunctionClient, Usage
from minions.cost import Price, PriceTable, catalog_price
from minions.protocols import get_protocol
from minions.protocols.build import build_protocol
from minions.protocols.events import Notice
from minions.protocols.settings import RunSettings

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "datasets" / "sample" / "northwind_annual_report.md"


def scripted() -> tuple[FunctionClient, FunctionClient]:
    return FunctionClient(lambda m, o: "local says 42", model="local"), FunctionClient(lambda m, o: "42", model="remote")


def test_a_misspelt_knob_is_a_config_error_listing_the_valid_ones():
    local, remote = scripted()
    with pytest.raises(errors.ConfigError) as e:
        get_protocol("minions", local, remote, max_round=5)
    msg = str(e.value)
    assert "Unknown knob 'max_round'" in msg and "did you mean 'max_rounds'?" in msg
    assert "its knobs are:" in msg and "chunk_size" in msg and "remote_reasoning" in msg


def test_build_refuses_a_knob_its_protocol_does_not_take():
    local, remote = scripted()
    with pytest.raises(errors.ConfigError, match="Unknown knob 'max_roundz'"):
        build_protocol(RunSettings(protocol="minion", local=local, remote=remote, knobs={"max_roundz": 3}))
    # another protocol's knob does nothing here: refused too (issue 18: an unaccepted knob is an error)
    with pytest.raises(errors.ConfigError, match="Unknown knob 'chunk_size' for the minion protocol"):
        build_protocol(RunSettings(protocol="minion", local=local, remote=remote, knobs={"chunk_size": 100}))
    proto = build_protocol(RunSettings(protocol="minion", local=local, remote=remote, knobs={"max_rounds": 2}))
    assert proto.config.max_rounds == 2


def test_budget_on_an_unpriced_remote_refuses_to_start_naming_both_fixes():
    local, remote = scripted()
    with pytest.raises(errors.ConfigError) as e:
        get_protocol("minions", local, remote, max_remote_usd=0.01, prices=PriceTable({}))
    assert "function/remote has no price" in str(e.value)
    assert "--remote-price-as" in str(e.value) and "MINIONS_PRICES" in str(e.value)
    priced = PriceTable({"function/remote": Price(input=1, output=2)})
    assert get_protocol("minions", local, remote, max_remote_usd=0.01, prices=priced).max_remote_usd == 0.01


def test_cli_unpriced_remote_with_a_budget_exits_2_without_traceback(gateway, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "minions.cli", "ask", str(SAMPLE), "-q", "Revenue?", "--local", "ollama/llama3.2:3b",
         "--remote", "openai/some-unpriced-model", "--base-url", gateway.openai_url, "--max-remote-usd", "0.01"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)})
    assert out.returncode == 2, out.stderr
    assert "openai/some-unpriced-model has no price" in out.stderr and "--remote-price-as" in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert sum(gateway.counts.values()) == 0  # refused before any call


async def test_unpriced_remote_without_budget_gets_a_notice_at_run_start():
    local, remote = scripted()
    events: list = []
    result = await get_protocol("remote-only", local, remote, prices=PriceTable({})).arun(
        "Revenue?", "Revenue was 42.", on_event=events.append)
    assert result.answer == "42" and result.cost.role("remote").cost_usd is None
    notices = [e for e in events if isinstance(e, Notice)]
    assert notices and events.index(notices[0]) == 0  # before anything else happened
    assert "function/remote has no price: remote dollars are unknown" in notices[0].message
    assert notices[0].message in result.warnings
    priced = PriceTable({"function/remote": Price(input=1, output=2)})
    quiet = await get_protocol("remote-only", local, remote, prices=priced).arun("Revenue?", "Revenue was 42.")
    assert not any("no price" in w for w in quiet.warnings)


def test_cloud_prices_come_from_genai_prices_bundled_data_never_the_network(monkeypatch):
    import genai_prices.update_prices as up

    def no_network(*a, **k):
        raise AssertionError("genai-prices tried to fetch prices at runtime")

    monkeypatch.setattr(up.httpx2, "get", no_network)
    catalog_price.cache_clear()
    price = PriceTable.load().get("openai/o4-mini")
    assert price is not None and price.source.startswith("genai-prices ") and "o4-mini" in price.source
    assert price.output > price.input > 0
    # reasoning tokens are completion tokens: billed at the output price
    assert price.cost(Usage(completion_tokens=1000, reasoning_tokens=900)) == pytest.approx(1000 * price.output / 1e6)
    assert PriceTable.load().get("openai/some-unpriced-model") is None


def test_your_rows_win_over_the_catalog_and_say_where_they_came_from(monkeypatch, tmp_path):
    mine = tmp_path / "prices.toml"
    mine.write_text('[models."openai/gpt-5-mini"]\ninput = 9.0\noutput = 99.0\n')
    monkeypatch.setenv("MINIONS_PRICES", str(mine))
    price = PriceTable.load().get("openai/gpt-5-mini-2025-08-07")
    assert (price.input, price.output, price.source) == (9.0, 99.0, str(mine))
    assert "genai-prices" in PriceTable.load().get("openai/gpt-4o").source  # others still from the catalog
    assert PriceTable.load().get("function/remote") is None  # no test-only rows in the shipped table


def test_cli_json_reports_reasoning_tokens_and_price_sources(gateway, monkeypatch, capsys):
    from minions.cli import main
    from tests.gateway import ScriptedBackend

    gateway.backend = ScriptedBackend(lambda m, o: "42")
    code = main(["ask", str(SAMPLE), "-q", "Revenue?", "--protocol", "remote-only", "--remote", "openai/gpt-5-mini",
                 "--base-url", gateway.openai_url, "--remote-reasoning", "minimal", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["answer"] == "42"
    assert gateway.bodies("/v1/chat/completions")[-1]["reasoning_effort"] == "minimal"
    assert data["usage"]["remote"]["reasoning_tokens"] == 8
    assert data["price_sources"]["openai/gpt-5-mini"].startswith("genai-prices")


def test_eval_configs_take_remote_reasoning_and_refuse_typos():
    from minions.eval.config import expand, validate_config

    cfg = validate_config({"datasets": ["sample"], "protocols": ["minions", "remote-only"],
                           "knobs": {"remote_reasoning": "low"}})
    assert all(r.knobs["remote_reasoning"] == "low" for r in expand(cfg))
    bad = validate_config({"datasets": ["sample"], "protocols": ["minions"], "knobs": {"remote_reasoning_effort": "low"}})
    with pytest.raises(errors.ConfigError, match="remote_reasoning_effort"):
        expand(bad)
