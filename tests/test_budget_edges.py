"""Budget gaps of issue 12 (item 6): caps that are not numbers, remote_price_as on a Client object,
and a remote that overshoots the cap by returning more than max_tokens."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from minions import errors
from minions.cli import main
from minions.clients.base import Message
from minions.clients.function import FunctionClient
from minions.cost import Price, PriceTable
from minions.protocols import get_protocol
from minions.protocols.budget import budget_usd
from minions.protocols.build import build_protocol
from minions.protocols.settings import RunSettings

ROOT = Path(__file__).resolve().parents[1]
DOC = "Northwind Traders annual report. The revenue was $42 million in fiscal 2024."
TASK = "What was revenue in fiscal 2024?"
# $1 per thousand completion tokens, input free: costs are easy to read off the word counts.
PRICES = PriceTable({"function/remote": Price(input=0.0, output=1000.0), "function/local": Price(input=0, output=0)})


# --- caps that are not amounts -------------------------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "-1", "-0.01", "1e999", "abc", ""])
def test_cli_refuses_a_cap_that_is_not_an_amount(value, capsys, tmp_path):
    doc = tmp_path / "r.txt"
    doc.write_text(DOC, encoding="utf-8")
    try:
        code = main(["ask", str(doc), "-q", "x", f"--max-remote-usd={value}"])
    except SystemExit as e:  # words are refused by argparse itself ("invalid float value")
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if value not in ("abc", ""):  # numbers that are no amount: the protocol's ConfigError, naming the fix
        assert "(--max-remote-usd, max_remote_usd=) must be a finite amount >= 0" in err


def test_cli_nan_cap_through_the_module_entry_point(tmp_path):
    doc = tmp_path / "r.txt"
    doc.write_text(DOC, encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "minions.cli", "ask", str(doc), "-q", "x", "--max-remote-usd", "nan"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2
    assert "finite amount" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.5, "nan", "-1", "five cents", True, [0.05], b"1"])
def test_library_refuses_a_bad_cap_at_construction(value):
    remote = FunctionClient.from_replies(["ok"], model="remote")
    with pytest.raises(errors.ConfigError, match="max_remote_usd"):
        get_protocol("remote-only", None, remote, max_remote_usd=value)
    assert remote.calls == []
    proto = get_protocol("remote-only", None, remote)
    with pytest.raises(errors.ConfigError):
        proto.max_remote_usd = value  # set later: checked the same way


@pytest.mark.parametrize("value,usd", [("0.05", 0.05), (" 0.05 ", 0.05), ("1e-3", 0.001), (0, 0.0), (2, 2.0),
                                       (None, None)])
def test_a_numeric_string_is_read_as_dollars(value, usd):
    assert budget_usd(value) == usd


def test_string_cap_is_enforced_not_a_type_error():
    remote = FunctionClient.from_replies(["$42 million"], model="remote")
    # The worst case of the call is 1000 completion tokens at $1/1000 = $1, over a "0.05" cap.
    result = get_protocol("remote-only", None, remote, prices=PRICES, max_remote_usd="0.05",
                          remote_max_tokens=1000).run(TASK, DOC)
    assert result.budget_exhausted and result.error_type == "BudgetExceededError" and remote.calls == []
    ok = get_protocol("remote-only", None, remote, prices=PRICES, max_remote_usd="5", remote_max_tokens=1000).run(
        TASK, DOC)
    assert ok.error is None and ok.answer == "$42 million"


# --- remote_price_as on a Client object ----------------------------------------------------------

def test_build_protocol_prices_a_client_object_as_asked_without_changing_it():
    remote = FunctionClient.from_replies(["$42 million"], model="remote")
    proto = build_protocol(RunSettings(protocol="remote-only", local=None, remote=remote, price_as="openai/gpt-4o"))
    result = proto.run(TASK, DOC)
    assert result.error is None and result.answer == "$42 million"
    cost = result.cost.role("remote").cost_usd
    assert cost is not None and cost > 0                       # priced as gpt-4o, not $0
    assert result.cost.remote_stand_in
    assert remote.price_as is None and len(remote.calls) == 1   # the caller's client: unchanged, and used
    assert proto.remote.price_key == "openai/gpt-4o"
    # The budget applies with that price: a cap below one call's worst case stops before the call.
    capped = build_protocol(RunSettings(protocol="remote-only", local=None, remote=remote, price_as="openai/gpt-4o",
                                        max_remote_usd=1e-6)).run(TASK, DOC)
    assert capped.budget_exhausted and len(remote.calls) == 1


def test_build_protocol_leaves_a_client_alone_without_remote_price_as():
    remote = FunctionClient.from_replies(["x"], model="remote", price_as="openai/gpt-4o-mini")
    assert build_protocol(RunSettings(protocol="remote-only", local=None, remote=remote)).remote is remote
    assert build_protocol(RunSettings(protocol="remote-only", local=None, remote=remote,
                                      price_as="openai/gpt-4o-mini")).remote is remote


# --- overshoot: a remote returning more than max_tokens --------------------------------------------

def test_remote_overshooting_the_cap_stops_the_run_and_reports_by_how_much():
    # max_tokens 10 -> worst case $0.01 per call, under the $0.03 cap; the reply is 50 words = $0.05.
    remote = FunctionClient.from_replies([" ".join(["word"] * 50)], model="remote")
    result = get_protocol("remote-only", None, remote, prices=PRICES, max_remote_usd=0.03,
                          remote_max_tokens=10).run(TASK, DOC)
    assert result.budget_exhausted and result.error_type == "BudgetExceededError"
    assert "overshot by $0.0200" in result.error and "$0.0500 spent" in result.error
    assert any("overshot" in w for w in result.warnings)
    assert result.cost.role("remote").cost_usd == pytest.approx(0.05)


def test_minions_stops_at_the_first_overshoot_before_any_local_job():
    plan = json.dumps({"tasks": [{"instruction": "Find the revenue", "advice": " ".join(["pad"] * 60)}]})
    remote = FunctionClient.from_replies([plan], model="remote")
    local = FunctionClient.from_replies([json.dumps({"explanation": "", "citation": None, "answer": None})],
                                        model="local")
    result = get_protocol("minions", local, remote, prices=PRICES, max_remote_usd=0.03, remote_max_tokens=10,
                          max_rounds=2).run(TASK, DOC)
    assert result.budget_exhausted and "overshot" in result.error
    assert len(remote.calls) == 1 and local.calls == []
    assert result.cost.role("remote").cost_usd > 0.03


def test_minion_overshoot_keeps_the_workers_answer_as_best():
    def remote_fn(msgs: list[Message], _o) -> str:
        if len(msgs) == 1:
            return json.dumps({"decision": "request_additional_info", "message": "What was revenue?"})
        return json.dumps({"decision": "provide_final_answer", "answer": "x " * 80})

    remote = FunctionClient(remote_fn, model="remote")
    local = FunctionClient.from_replies(["$42 million"], model="local")
    result = get_protocol("minion", local, remote, prices=PRICES, max_remote_usd=0.03, remote_max_tokens=12,
                          max_rounds=2).run(TASK, DOC)
    assert result.budget_exhausted and "overshot" in result.error
    assert len(remote.calls) == 2 and result.answer == "$42 million"
