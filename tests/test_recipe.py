"""Issue 18: one recipe for every door, knob surfaces from the Config classes; issue 21.6: bad knob values.

The parity test asks the same question with the same settings through all six doors — the CLI
(a subprocess), `minions serve` (the official openai SDK), `minions mcp` (the official mcp client,
over stdio), the Streamlit app (AppTest), an eval config, and `get_protocol` — and checks they run
the same resolved Config and send the remote the same transcript. The models are scripted behind
tests/gateway.py, registered as providers in a MINIONS_PROVIDERS file; one of them is a stand-in
(`stand_in = true`), the embedded-remote case. The scripted backend answers by the JSON schema it
is asked for (its title), never by prompt wording.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

import minions
from minions import errors
from minions.clients.base import Message, Options
from minions.clients.function import FunctionClient
from minions.cost import Price, PriceTable
from minions.protocols import PROTOCOL_NAMES, protocol_class
from minions.protocols.build import STAND_IN_PRICE, build_protocol
from minions.protocols.knobs import Knob, surface
from minions.protocols.result import RunRecord
from minions.protocols.settings import RunSettings
from tests.gateway import ScriptedBackend

ROOT = Path(__file__).resolve().parents[1]
DOC = "# Acme annual report\n\nRevenue grew to 120 million dollars in fiscal 2024.\n\nCapital expenditures were 15 million.\n"
QUESTION = "What was Acme's revenue in fiscal 2024?"
SENTENCE = "Revenue grew to 120 million dollars in fiscal 2024."
KNOBS = {"max_rounds": 2, "remote_max_tokens": 200, "multi_turn": True}  # multi_turn: the app's own choice


def scripted(messages: list[Message], options: Options) -> str:
    """By the schema asked for: the remote's first decision asks, a later one answers; no schema:
    the worker, which quotes the document."""
    title = (options.json_schema or {}).get("title")
    if title == "RemoteDecision":
        if len(messages) == 1:
            return json.dumps({"decision": "request_additional_info", "message": "Find the fiscal 2024 revenue."})
        return json.dumps({"decision": "provide_final_answer", "answer": SENTENCE})
    assert title is None, f"unexpected schema {title}"
    return SENTENCE


@pytest.fixture
def providers(gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A providers file: `scripted` (the worker and a cloud-like remote) and `standin` (a stand-in)."""
    gateway.backend = ScriptedBackend(scripted)
    path = tmp_path / "providers.toml"
    path.write_text(f'[providers.scripted]\nwire = "openai"\nbase_url = "{gateway.openai_url}"\nlocal = true\n\n'
                    f'[providers.standin]\nwire = "openai"\nbase_url = "{gateway.openai_url}"\nlocal = true\n'
                    'stand_in = true\n')
    monkeypatch.setenv("MINIONS_PROVIDERS", str(path))
    for env in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(env, raising=False)
    return {"MINIONS_PROVIDERS": str(path), "PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path), "MINIONS_SPEEDS_FILE": str(tmp_path / "speeds.json")}


def remote_transcript(gateway) -> list[list[dict[str, Any]]]:
    """The messages of every call the remote ("boss") received, in order."""
    return [[{"role": m["role"], "content": m["content"]} for m in r.body["messages"]]
            for r in gateway.requests if r.route == "/v1/chat/completions" and r.body.get("model") == "boss"]


# --- the six doors: each returns (RunResult.settings as a dict, the answer) -------------------------

def door_cli(env: dict[str, str], doc: Path, protocol: str, remote: str) -> tuple[dict, str]:
    flags = ["--max-rounds", "2", "--remote-max-tokens", "200", "--multi-turn"]
    out = subprocess.run([sys.executable, "-m", "minions.cli", "ask", str(doc), "-q", QUESTION, "--protocol", protocol,
                          "--local", "scripted/worker", "--remote", remote, *flags, "--json"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    return data["settings"], data["answer"]


def door_serve(doc: Path, protocol: str, remote: str) -> tuple[dict, str]:
    from minions.cli import build_parser
    from minions.cli.serve import build_service
    from minions.serve.app import create_app
    from minions.serve.server import BackgroundServer

    args = build_parser().parse_args(["serve", str(doc), "--protocol", protocol, "--local", "scripted/worker",
                                      "--remote", remote])
    service = build_service(args)
    with BackgroundServer(create_app(service)) as srv:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
        reply = client.chat.completions.create(model=protocol, messages=[{"role": "user", "content": QUESTION}],
                                               extra_body={"minions": {"knobs": KNOBS}})
    return reply.model_extra["minions"]["settings"], reply.choices[0].message.content


def door_mcp(env: dict[str, str], doc: Path, protocol: str, remote: str) -> tuple[dict, str]:
    params = StdioServerParameters(command=sys.executable, env=env, cwd=str(doc.parent), args=[
        "-m", "minions.cli", "mcp", "--root", str(doc.parent), "--protocol", protocol, "--local", "scripted/worker",
        "--remote", remote])

    async def ask() -> dict:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            out = await session.call_tool("ask", {"question": QUESTION, "documents": [doc.name], "knobs": KNOBS})
            assert not out.is_error, out.content
            return out.structured_content
    result = asyncio.run(ask())
    return result["settings"], result["answer"]


def door_app(doc: Path, protocol: str, remote: str) -> tuple[dict, str]:
    from tests.test_app import app, ask, upload

    at = app()
    at.selectbox(key="protocol").set_value(protocol).run()
    upload(at, (doc.name, doc.read_bytes()))
    for role, spec in (("local", "scripted/worker"), ("remote", remote)):
        at.selectbox(key=f"{role}_preset").set_value("Other (type a spec)").run()
        at.text_input(key=f"{role}_spec").set_value(spec).run()
    for knob in ("max_rounds", "remote_max_tokens"):
        at.number_input(key=f"knob.{protocol}.{knob}").set_value(KNOBS[knob]).run()
    ask(at, QUESTION)
    r = at.session_state["last_result"]
    assert r.answer, (r.error_type, r.error)
    return r.settings.model_dump(mode="json"), r.answer


def door_eval(doc: Path, protocol: str, remote: str, out: Path) -> tuple[dict, str]:
    from minions.eval.config import validate_config
    from minions.eval.runner import run_sweep

    (doc.parent / "questions.jsonl").write_text(json.dumps(
        {"id": "q1", "doc": doc.name, "question": QUESTION, "answer": "120 million"}) + "\n")
    cfg = validate_config({"name": "parity", "datasets": [{"name": "sample", "path": str(doc.parent)}],
                           "protocols": [protocol], "local": "scripted/worker", "remote": remote, "cache": False,
                           "out": str(out), "knobs": KNOBS})
    row = run_sweep(cfg).rows[0]
    assert row.answer, (row.error_type, row.error)
    return row.settings, row.answer


def door_library(doc: Path, protocol: str, remote: str) -> tuple[dict, str]:
    result = minions.get_protocol(protocol, "scripted/worker", remote, **KNOBS).run(QUESTION, minions.load(doc))
    assert result.answer, (result.error_type, result.error)
    return result.settings.model_dump(mode="json"), result.answer


@pytest.mark.parametrize("remote", ["standin/boss", "scripted/boss"], ids=["stand-in remote", "cloud-like remote"])
def test_every_door_runs_the_same_settings_and_sends_the_remote_the_same_transcript(
        remote, providers, gateway, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    doc = docs / "acme.md"
    doc.write_text(DOC)
    doors = {
        "cli": lambda: door_cli(providers, doc, "minion", remote),
        "serve": lambda: door_serve(doc, "minion", remote),
        "mcp": lambda: door_mcp(providers, doc, "minion", remote),
        "app": lambda: door_app(doc, "minion", remote),
        "eval": lambda: door_eval(doc, "minion", remote, tmp_path / "run"),
        "get_protocol": lambda: door_library(doc, "minion", remote),
    }
    seen: dict[str, tuple[dict, str, list]] = {}
    for name, door in doors.items():
        gateway.requests.clear()
        settings, answer = door()
        seen[name] = (settings, answer, remote_transcript(gateway))
    ref_settings, ref_answer, ref_transcript = seen["get_protocol"]
    stand_in = remote.startswith("standin/")
    assert ref_settings["remote_stand_in"] is stand_in
    assert ref_settings["remote_price_as"] == (STAND_IN_PRICE if stand_in else None)
    # the stand-in knobs under serve and mcp too (issue 18: they ran flag/remote with Client objects)
    expected = ("fallback", "task") if stand_in else ("flag", "remote")
    assert (ref_settings["config"]["ungrounded_answer"], ref_settings["config"]["first_question"]) == expected
    assert ref_settings["config"]["max_rounds"] == 2 and ref_settings["config"]["remote_max_tokens"] == 200
    assert ref_transcript and ref_answer == SENTENCE
    for name, (settings, answer, transcript) in seen.items():
        assert settings["config"] == ref_settings["config"], name
        for key in ("protocol", "local", "remote", "remote_stand_in", "remote_price_as"):
            assert settings[key] == ref_settings[key], (name, key)
        assert transcript == ref_transcript, name
        assert answer == ref_answer, name


# --- the record reproduces the run ----------------------------------------------------------------

def test_a_run_is_reproduced_from_its_record(providers, gateway, tmp_path: Path) -> None:
    doc = tmp_path / "acme.md"
    doc.write_text(DOC)
    first = minions.get_protocol("minion", "scripted/worker", "standin/boss", max_rounds=2).run(QUESTION,
                                                                                                 minions.load(doc))
    transcript = remote_transcript(gateway)
    record = json.loads(json.dumps(first.summary()["settings"]))  # as it is stored: --json, a row, a log
    gateway.requests.clear()
    again = build_protocol(RunSettings.from_record(record)).run(QUESTION, minions.load(doc))
    assert again.settings == first.settings == RunRecord.model_validate(record)
    assert remote_transcript(gateway) == transcript and again.answer == first.answer


# --- every knob through every door ------------------------------------------------------------------

class Reasoner(FunctionClient):
    def check_reasoning(self, effort: str) -> str | None:
        return None


PRICES = PriceTable({"function/remote": Price(input=1.0, output=2.0), "function/local": Price(input=0.0, output=0.0)})


def clients() -> tuple[FunctionClient, FunctionClient]:
    return FunctionClient(lambda m, o: "x", model="local"), Reasoner(lambda m, o: "x", model="remote")


def sample(k: Knob, protocol: str) -> Any:
    """A valid value other than the protocol's default."""
    default = k.defaults[protocol]
    if k.name == "quotes" and getattr(protocol_class(protocol).Config, "sends_documents", False):
        return "on"  # remote-only's and RAG's only value (off is refused, naming the fix: test_verbatim_budget.py)
    if k.kind == "bool":
        return not default
    if k.kind == "choice":
        return next(c for c in k.choices if c != default)
    if k.kind == "read":
        return "30%"
    if k.kind == "verbatim":  # remote-only and RAG send documents: they take only the no-cap budget
        return "100%" if getattr(protocol_class(protocol).Config, "sends_documents", False) else "2%"
    if k.kind == "text":
        return "low"
    lo = k.ge if k.ge is not None else (k.gt if k.gt is not None else 0)
    value = (default if default is not None else lo) + 1
    if k.le is not None:
        value = min(value, k.le)
    if value == default:
        value = value - 1 if k.kind == "int" else value / 2
    return float(value) if k.kind == "float" else int(value)


def misspelt(name: str) -> str:
    return name[:-1]  # a prefix: argparse's abbreviations would have accepted it


FIELDS = [(p, n) for p in PROTOCOL_NAMES for n in protocol_class(p).Config.model_fields]


@pytest.mark.parametrize(("protocol", "name"), FIELDS, ids=[f"{p}.{n}" for p, n in FIELDS])
def test_every_door_accepts_every_knob_and_refuses_its_misspelling(protocol: str, name: str) -> None:
    from minions.cli import build_parser
    from minions.cli.ask import settings_from_args
    from minions.eval.config import expand, validate_config
    from minions.serve.chat import plan_for
    from minions.serve.mcp import Knobs as McpKnobs
    from minions.serve.schemas import ChatCompletionRequest
    from minions.serve.service import ServeSettings, Service

    knob = surface()[name]
    value = sample(knob, protocol)
    resolved = protocol_class(protocol).Config(**{name: value})
    want = getattr(resolved, name)
    local, remote = clients()

    def built(settings: RunSettings) -> Any:
        p = build_protocol(settings.model_copy(update={"local": local, "remote": remote}), prices=PRICES)
        return getattr(p.config, name)

    # the CLI: a flag generated from the field
    flag = [knob.flag] if knob.kind == "bool" and value else \
        [knob.flag.replace("--", "--no-", 1)] if knob.kind == "bool" else [knob.flag, str(value)]
    args = build_parser().parse_args(["ask", "doc.md", "-q", "?", "--protocol", protocol, *flag])
    assert built(settings_from_args(args)) == want
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["ask", "doc.md", "-q", "?", "--protocol", protocol,
                                   "--" + misspelt(name).replace("_", "-"), str(value)])
    assert e.value.code == 2

    # serve: the request schema and the protocol's check
    service = Service(ServeSettings(default_protocol=protocol), local=local, remote=remote, prices=PRICES,
                      corpus=[minions.Document.from_text("x", id="d")])
    body = {"model": protocol, "messages": [{"role": "user", "content": "?"}], "minions": {"knobs": {name: value}}}
    plan = asyncio.run(plan_for(service, ChatCompletionRequest.model_validate(body)))
    assert built(RunSettings(protocol=protocol, knobs=plan.knobs)) == want
    body["minions"]["knobs"] = {misspelt(name): value}
    with pytest.raises(Exception) as refused:
        asyncio.run(plan_for(service, ChatCompletionRequest.model_validate(body)))
    assert misspelt(name) in str(refused.value)

    # mcp: the ask tool's knobs argument, then the same check
    given = McpKnobs.model_validate({name: value}).model_dump(exclude_none=True)
    assert built(RunSettings(protocol=protocol, knobs=service.check_knobs(protocol, given))) == want
    with pytest.raises(Exception, match="Extra inputs"):
        McpKnobs.model_validate({misspelt(name): value})

    # eval: the TOML's [knobs]
    run = expand(validate_config({"datasets": ["sample"], "protocols": [protocol], "knobs": {name: value}}))[0]
    assert run.knobs[name] == value and built(run.settings()) == want
    with pytest.raises(errors.ConfigError, match=f"Unknown knob '{misspelt(name)}'"):
        expand(validate_config({"datasets": ["sample"], "protocols": [protocol], "knobs": {misspelt(name): value}}))

    # the library
    assert getattr(minions.get_protocol(protocol, local, remote, prices=PRICES, **{name: value}).config, name) == want
    with pytest.raises(errors.ConfigError, match=f"Unknown knob '{misspelt(name)}'"):
        minions.get_protocol(protocol, local, remote, prices=PRICES, **{misspelt(name): value})


def test_the_app_shows_a_widget_for_every_knob_of_every_protocol() -> None:
    sys.path.insert(0, str(ROOT / "apps"))
    from minions_app.config import OWN_WIDGET, Settings
    from minions_app.config import build_protocol as app_build

    from tests.test_app import app

    at = app()
    for protocol in PROTOCOL_NAMES:
        at.selectbox(key="protocol").set_value(protocol).run()
        keys = {w.key for kind in ("number_input", "checkbox", "selectbox", "text_input") for w in getattr(at, kind)}
        cls = protocol_class(protocol)
        for name in cls.Config.model_fields:
            if name in OWN_WIDGET or (name == "local_max_tokens" and "local" not in cls.needs):
                continue
            assert f"knob.{protocol}.{name}" in keys, (protocol, name)
        with pytest.raises(errors.ConfigError, match="Unknown knob 'max_round'"):
            app_build(Settings(protocol=protocol, knobs={"max_round": 2}), {})


# --- issue 21.6: bad values are a 400 and an exit 2, never a traceback ------------------------------

BAD = [("remote_max_tokens", 0), ("remote_max_tokens", -5), ("local_max_tokens", 0), ("temperature", math.nan),
       ("temperature", -50), ("temperature", math.inf)]


def test_every_float_knob_refuses_nan() -> None:
    for protocol in PROTOCOL_NAMES:
        for name, k in surface().items():
            if protocol in k.protocols and k.kind == "float":
                with pytest.raises(errors.ConfigError):
                    build_protocol(RunSettings(protocol=protocol, local=clients()[0], remote=clients()[1],
                                               knobs={name: math.nan}), prices=PRICES)


def test_bad_knob_values_and_an_infinite_budget_are_a_400_on_the_server() -> None:
    import httpx

    from tests.test_serve import error_of, serving

    with serving() as (srv, _service, client):
        ask = [{"role": "user", "content": "Revenue?"}]

        def post(minions_field: dict) -> httpx.Response:
            # json.dumps writes NaN and Infinity as JavaScript does, as the probe's requests did
            body = json.dumps({"model": "remote-only", "messages": ask, "minions": minions_field})
            return httpx.post(srv.url + "/v1/chat/completions", content=body, timeout=30,
                              headers={"Content-Type": "application/json", "Authorization": "Bearer unused"})

        for name, value in BAD:
            reply = post({"knobs": {name: value}})
            assert reply.status_code == 400 and "Traceback" not in reply.text, (name, value, reply.text)
            assert reply.json()["error"]["param"] == f"minions.knobs.{name}", (name, value)
            if math.isfinite(value):  # the official SDK, for the values it can send
                with pytest.raises(openai.BadRequestError) as e:
                    client.chat.completions.create(model="remote-only", messages=ask,
                                                   extra_body={"minions": {"knobs": {name: value}}})
                assert error_of(e.value)["param"] == f"minions.knobs.{name}"
        reply = post({"max_remote_usd": math.inf})
        assert reply.status_code == 400 and reply.json()["error"]["param"] == "minions.max_remote_usd"
        assert client.chat.completions.create(model="remote-only", messages=ask).choices[0].message.content


@pytest.mark.parametrize("argv", [["--remote-max-tokens", "0"], ["--remote-max-tokens", "-5"],
                                  ["--local-max-tokens", "0"], ["--temperature", "nan"], ["--temperature", "-50"],
                                  ["--max-remote-usd", "inf"], ["--max-rounds", "0"]])
def test_bad_knob_values_exit_2_with_a_clear_message_on_the_cli(argv: list[str], capsys, tmp_path: Path) -> None:
    from minions.cli import main

    doc = tmp_path / "doc.md"
    doc.write_text(DOC)
    with pytest.raises(SystemExit) as e:  # argparse refuses what the type cannot hold
        code = main(["ask", str(doc), "-q", "?", "--remote", "openai/gpt-4o-mini", *argv])
        raise SystemExit(code)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert argv[0].lstrip("-").replace("-", "_") in err.replace("-", "_"), err


def test_a_bad_value_exits_2_in_a_real_subprocess(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(DOC)
    out = subprocess.run([sys.executable, "-m", "minions.cli", "ask", str(doc), "-q", "?", "--remote-max-tokens", "0"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "remote_max_tokens" in out.stderr and "greater than or equal to 1" in out.stderr


def test_misspelt_flags_are_not_abbreviations() -> None:
    from minions.cli import build_parser

    for argv in (["ask", "d", "-q", "?", "--max-round", "2"], ["ask", "d", "-q", "?", "--quest", "?"],
                 ["serve", "--max-conc", "2"], ["mcp", "--roo", "."]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(argv)
    with pytest.raises(SystemExit):
        from minions.eval.__main__ import build_parser as eval_parser

        eval_parser().parse_args(["--conf", "x.toml"])


def test_server_wide_knobs_no_served_protocol_takes_are_refused_at_start() -> None:
    from minions.serve.service import RunPlan, ServeSettings, Service

    local, remote = clients()
    with pytest.raises(errors.ConfigError, match="Unknown knob 'top_kk'"):
        Service(ServeSettings(knobs={"top_kk": 3}), local=local, remote=remote, prices=PRICES)
    service = Service(ServeSettings(knobs={"top_k": 3}), local=local, remote=remote, prices=PRICES)
    assert service.build(RunPlan(protocol="rag", task="?", documents=[]), None).config.top_k == 3
    assert service.build(RunPlan(protocol="rag", task="?", documents=[], knobs={"top_k": 4}), None).config.top_k == 4
    assert service.build(RunPlan(protocol="minions", task="?", documents=[]), None).config.max_rounds == 2


def test_settings_refuse_what_the_recipe_cannot_run() -> None:
    with pytest.raises(errors.ConfigError, match="Unknown protocol"):
        RunSettings(protocol="minionz")
    with pytest.raises(errors.ConfigError, match="finite amount"):
        RunSettings(max_remote_usd=float("inf"))
    with pytest.raises(errors.ConfigError, match="disagree"):
        RunSettings(reasoning="low", knobs={"remote_reasoning": "high"})


def test_stand_in_is_a_client_attribute_from_the_registry() -> None:
    from minions.clients.spec import providers

    assert providers()["llamacpp"].stand_in and not providers()["openai"].stand_in
    assert not FunctionClient(lambda m, o: "x").stand_in and FunctionClient(lambda m, o: "x", stand_in=True).stand_in
    # a Client object priced as the stand-in by the recipe, without changing the caller's object
    remote = FunctionClient(lambda m, o: "x", model="remote", stand_in=True)
    proto = build_protocol(RunSettings(protocol="remote-only", local=None, remote=remote))
    assert proto.remote.price_key == STAND_IN_PRICE and proto.remote.stand_in and remote.price_as is None


@pytest.mark.parametrize("path", sorted((ROOT / "evals").glob("*.toml")), ids=lambda p: p.name)
def test_the_shipped_sweep_configs_expand_whole_and_for_each_protocol_alone(path: Path) -> None:
    from minions.eval.config import expand, load_config

    cfg = load_config(path)
    assert expand(cfg)
    for protocol in cfg.protocols:  # `--protocol NAME` on the file: every global knob still has a taker
        assert expand(load_config(path, protocols=[protocol]))


def test_serve_builds_its_clients_once_and_privacy_per_run_from_the_flags(providers, tmp_path: Path) -> None:
    from minions.cli import build_parser
    from minions.cli.serve import build_service
    from minions.protocols.privacy import Scrubber
    from minions.serve.service import RunPlan

    args = build_parser().parse_args(["serve", "--protocol", "minion", "--local", "scripted/worker", "--remote",
                                      "standin/boss", "--private-name", "Jane Doe", "--max-rounds", "2"])
    service = build_service(args)
    first = service.build(RunPlan(protocol="minion", task="?", documents=[]), None)
    second = service.build(RunPlan(protocol="remote-only", task="?", documents=[]), 0.5)
    assert first.remote is second.remote is service.remote and first.local is service.local  # built once
    assert isinstance(first.privacy, Scrubber) and first.privacy.names == ("Jane Doe",)
    assert first.config.max_rounds == 2 and first.config.ungrounded_answer == "fallback"
    assert second.max_remote_usd == 0.5 and second.remote.price_key == STAND_IN_PRICE
