"""`--executor ray`: the same rows as the local executor, a killed worker loses and duplicates
nothing, and the per-provider ceiling holds across workers. One local Ray cluster (2 CPUs) for the
module: starting Ray is slow."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from minions import errors
from minions.batch import run_batch
from minions.clients import FunctionClient, Message, Options
from minions.executors import ExecutorSettings, open_executor, parse_provider_limits
from minions.protocols.settings import RunSettings
from tests.batch_scripted import QUESTIONS, REPORT, factory, scripted_reply, write_questions

ROOT = Path(__file__).resolve().parents[1]
# read="all": what is read does not hang on the reading speed measured in each process
SETTINGS = RunSettings(local="function/local", remote="function/remote", price_as="openai/gpt-4o",
                       knobs={"max_rounds": 1, "read": "all"})
N = len(QUESTIONS)
VOLATILE = {"latency_s", "finished_at"}  # when and how fast, not what


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    ray = pytest.importorskip("ray", reason="the `ray` extra is not installed")
    speeds = tmp_path_factory.mktemp("ray-speeds") / "speeds.json"
    # The workers import the tests' scripted models (pickled by reference) from this tree.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                                       "MINIONS_SPEEDS_FILE": str(speeds)}})
    yield ray
    ray.shutdown()


def _ray(**kw: Any):
    executor = open_executor(ExecutorSettings(kind="ray", **kw))
    assert executor is not None
    return executor


def _rows(rows) -> list[dict]:
    return sorted((r.model_dump(exclude=VOLATILE) for r in rows), key=lambda r: json.dumps(r, sort_keys=True))


def _ids(out: Path) -> list[str]:
    return [json.loads(line)["id"] for line in out.read_text().splitlines()]


def test_a_batch_on_ray_gives_the_local_rows_and_the_provider_ceiling_holds_across_workers(
        cluster, tmp_path: Path) -> None:
    questions = write_questions(tmp_path / "q.jsonl")
    local = run_batch(questions, [REPORT], tmp_path / "local.jsonl", SETTINGS, concurrency=4, factory=factory())
    assert local.new_rows == N and local.errors == 0

    free = _ray()  # the default ceiling (16 per provider): each question's jobs overlap
    try:
        unlimited = run_batch(questions, [REPORT], tmp_path / "ray.jsonl", SETTINGS, concurrency=4,
                              factory=factory(delay=0.02), executor=free)
    finally:
        free.close()
    assert unlimited.new_rows == N and _rows(unlimited.rows) == _rows(local.rows)
    assert free.limit_stats()["function"]["max_in_flight"] > 2  # what a ceiling of 2 must hold back

    capped = _ray(provider_limits={"function": 2})
    try:
        limited = run_batch(questions, [REPORT], tmp_path / "ray2.jsonl", SETTINGS, concurrency=4,
                            factory=factory(delay=0.02), executor=capped)
    finally:
        capped.close()
    assert _rows(limited.rows) == _rows(local.rows)
    stats = capped.limit_stats()["function"]
    assert stats["limit"] == 2 and stats["max_in_flight"] == 2 and stats["workers"] >= 2
    assert stats["calls"] == free.limit_stats()["function"]["calls"]  # every call went through the ceiling


def _dies_once(marker: Path, victim: str):
    """Scripted models whose worker process dies (os._exit) in the middle of `victim`'s first model
    call; the marker file says the death already happened, so Ray's rerun of the task answers."""
    answer = scripted_reply()

    def make(role: str, spec: str, kw: dict) -> FunctionClient:
        async def reply(messages: list[Message], options: Options) -> str:
            if victim in " ".join(m.content for m in messages) and not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)
            return await answer(messages, options)
        return FunctionClient(reply, model=spec.split("/", 1)[-1], price_as=kw.get("price_as"))
    return make


def test_a_worker_killed_mid_run_loses_nothing_and_duplicates_nothing(cluster, tmp_path: Path) -> None:
    questions = write_questions(tmp_path / "q.jsonl")
    marker, out = tmp_path / "died", tmp_path / "a.jsonl"
    victim = QUESTIONS[N // 2][1]
    executor = _ray(provider_limits={"function": 2})  # the dead worker held a slot: it must come back
    try:
        outcome = run_batch(questions, [REPORT], out, SETTINGS, concurrency=4, factory=_dies_once(marker, victim),
                            executor=executor)
    finally:
        executor.close()
    assert marker.exists() and int(marker.read_text()) != os.getpid()  # a worker died, not the driver
    ids = _ids(out)
    assert len(ids) == len(set(ids)) == N and set(ids) == {q[0] for q in QUESTIONS}
    assert outcome.errors == 0 and {r.id: r.answer for r in outcome.rows} == {q: a for q, _, a in QUESTIONS}
    assert executor.limit_stats()["function"]["reclaimed"] >= 1  # the rerun freed the dead attempt's slot


def test_an_eval_sweep_on_ray_gives_the_local_rows(cluster, tmp_path: Path) -> None:
    from minions.eval.runner import run_sweep
    from tests.eval_scripted_sweep import config
    from tests.eval_scripted_sweep import factory as sweep_factory

    knobs = {"knobs": {"minion": {"max_rounds": 1}, "minions": {"max_rounds": 1, "read": "all"}}}
    local = run_sweep(config(tmp_path / "local", **knobs), clients_factory=sweep_factory())
    shared = str(tmp_path / "node-cache.sqlite")  # one cache file for the workers of this node
    executor = _ray()
    try:
        remote = run_sweep(config(tmp_path / "ray", cache_path=shared, **knobs), clients_factory=sweep_factory(),
                           executor=executor)
        again = run_sweep(config(tmp_path / "ray-again", cache_path=shared, **knobs),
                          clients_factory=sweep_factory(), executor=executor)
    finally:
        executor.close()
    assert remote.new_rows == local.new_rows == len(local.rows) > 0
    assert _rows(remote.rows) == _rows(local.rows)
    assert [s.model_dump(exclude={"latency_p50", "latency_p95"}) for s in remote.summary] == \
        [s.model_dump(exclude={"latency_p50", "latency_p95"}) for s in local.summary]
    assert remote.model_calls + remote.cache_hits == local.model_calls + local.cache_hits  # the workers' counts
    assert remote.model_calls >= 1
    # A second sweep on the node: every call is answered from the file the first one's workers filled.
    assert again.model_calls == 0 and again.cache_hits == remote.model_calls + remote.cache_hits
    assert _rows(again.rows) == _rows(local.rows)


def test_an_eval_sweep_survives_a_killed_worker(cluster, tmp_path: Path) -> None:
    from minions.eval.runner import run_sweep
    from tests.eval_scripted_sweep import config
    from tests.eval_scripted_sweep import scripted_reply as sweep_reply

    marker = tmp_path / "died"
    answer = sweep_reply()

    def make(spec: str) -> FunctionClient:
        async def reply(messages: list[Message], options: Options) -> str:
            if "lisinopril" in " ".join(m.content for m in messages) and not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)
            return await answer(messages, options)
        return FunctionClient(reply, model=spec.split("/", 1)[1])

    executor = _ray()
    try:
        outcome = run_sweep(config(tmp_path / "run"), clients_factory=make, executor=executor)
    finally:
        executor.close()
    assert marker.exists() and int(marker.read_text()) != os.getpid()
    keys = [(r.dataset, r.item_id, r.config_id) for r in outcome.rows]
    lines = (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    assert len(lines) == len(keys) == len(set(keys)) == outcome.new_rows > 0  # each pair once, none lost
    assert not [r for r in outcome.rows if r.error_type and ("Worker" in r.error_type or "Ray" in r.error_type)]


@pytest.mark.real_model
def test_a_small_question_set_on_ray_with_the_embedded_model(cluster, tmp_path: Path) -> None:
    """The workers build their own clients from the settings: each loads the embedded model."""
    questions = write_questions(tmp_path / "q.jsonl", QUESTIONS[:1])  # total revenue, fiscal 2024
    # llamacpp/smollm2 in both roles; one small read keeps it to a few calls on 2 shared cores
    settings = RunSettings(knobs={"max_rounds": 1, "tasks_per_round": 1, "read": 1500})
    executor = _ray()
    try:
        outcome = run_batch(questions, [REPORT], tmp_path / "a.jsonl", settings, concurrency=2, executor=executor)
    finally:
        executor.close()
    assert [r.id for r in outcome.rows] == ["fb-00"] and outcome.new_rows == 1
    for r in outcome.rows:  # the 135M model is weak: each row is answered or flagged, and none failed
        assert r.error is None, r.error
        assert r.answer or r.flags["degraded"] or r.flags["grounded"] is False
        assert r.settings["local"] == "llamacpp/smollm2" and r.cost_usd["remote"] is not None
    assert "llamacpp" not in executor.limit_stats()  # an in-process engine: no cluster-wide ceiling


def test_the_batch_cli_runs_on_ray(cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from minions.cli import build_parser
    from minions.cli.batch import run

    questions, out = write_questions(tmp_path / "q.jsonl", QUESTIONS[:4]), tmp_path / "a.jsonl"
    args = build_parser().parse_args(["batch", str(questions), str(REPORT), "--out", str(out), "--quiet",
                                      "--executor", "ray", "--provider-limit", "function=3", "--local",
                                      "function/local", "--remote", "function/remote", "--remote-price-as",
                                      "openai/gpt-4o", "--max-rounds", "1"])
    assert run(args, factory=factory()) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["new_rows"] == 4 and sorted(_ids(out)) == [q[0] for q in QUESTIONS[:4]]


def test_without_the_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(errors.MissingDependencyError, match=r"pip install 'minions\[ray\]'"):
        open_executor(ExecutorSettings(kind="ray"))
    assert open_executor(ExecutorSettings()) is None  # local: nothing to import


def test_executor_flags_are_checked() -> None:
    from minions.cli import build_parser
    from minions.cli.executor_flags import executor_from_args

    assert parse_provider_limits(["openai=32", "vllm=0"]) == {"openai": 32, "vllm": 0}
    with pytest.raises(errors.ConfigError, match="PROVIDER=N"):
        parse_provider_limits(["openai"])
    args = build_parser().parse_args(["batch", "q.jsonl", "--provider-limit", "openai=4"])
    with pytest.raises(errors.ConfigError, match="--provider-limit only apply with --executor ray"):
        executor_from_args(args)
    args = build_parser().parse_args(["batch", "q.jsonl", "--executor", "ray", "--provider-limit", "opnai=4",
                                      "--provider-limit", "function=2"])
    with pytest.raises(errors.ConfigError, match="names no provider of this run or the registry: opnai"):
        executor_from_args(args, ["function/local", "openai/gpt-4o"])
    args.provider_limit = ["function=2", "openai=8"]
    assert executor_from_args(args, ["function/local", None]).provider_limits == {"function": 2, "openai": 8}
    s = ExecutorSettings(kind="ray", provider_limits={"openai": 4})
    assert (s.limit_for("openai"), s.limit_for("anthropic"), s.limit_for("llamacpp")) == (4, 16, 0)


def test_a_remote_executor_takes_model_specs_not_client_objects(tmp_path: Path) -> None:
    from types import SimpleNamespace

    questions = write_questions(tmp_path / "q.jsonl", QUESTIONS[:1])
    settings = SETTINGS.model_copy(update={"local": FunctionClient(lambda _m, _o: "x", model="local")})
    with pytest.raises(errors.ConfigError, match="give the models as specs"):
        run_batch(questions, [REPORT], tmp_path / "a.jsonl", settings, executor=SimpleNamespace(name="ray"))
    assert not (tmp_path / "a.jsonl").exists()


def test_a_wrapped_client_takes_one_slot_per_request_and_gives_it_back() -> None:
    pytest.importorskip("ray", reason="the `ray` extra is not installed")
    from types import SimpleNamespace

    from minions.executors_ray import _Slots

    log: list[str] = []

    async def acquire(provider: str, *_: Any) -> int:
        log.append(f"acquire {provider}")
        return len(log)

    actor = SimpleNamespace(acquire=SimpleNamespace(remote=acquire),
                            release=SimpleNamespace(remote=lambda provider, lease: log.append(f"release {lease}")))
    slots = _Slots(actor, ExecutorSettings(kind="ray"), "task", "attempt")

    def reply(_m: list[Message], _o: Options) -> str:
        if len(log) > 2:
            raise RuntimeError("the engine failed")
        return "ok"

    client = slots.wrap(slots.wrap(FunctionClient(reply, model="m")))  # wrapped twice: still one slot
    assert client.complete_sync("hi").text == "ok"
    assert log == ["acquire function", "release 1"]
    with pytest.raises(RuntimeError, match="the engine failed"):
        client.complete_sync("hi", max_tokens=5)
    assert log[2:4] == ["acquire function", "release 3"]  # a failed request gives its slot back too
    embedded = SimpleNamespace(provider="llamacpp")
    assert slots.wrap(embedded) is embedded and not hasattr(embedded, "_slot_limited")  # type: ignore[arg-type]


def test_a_unit_that_fails_on_its_worker_is_its_row_with_the_real_error(cluster, tmp_path: Path) -> None:
    driver = os.getpid()
    scripted = factory()

    def no_key_on_workers(role: str, spec: str, kw: dict) -> FunctionClient:
        if os.getpid() != driver:  # e.g. the provider's key is set on the driver's machine only
            raise errors.ConfigError("OPENAI_API_KEY is not set on this node")
        return scripted(role, spec, kw)

    questions = write_questions(tmp_path / "q.jsonl", QUESTIONS[:2])
    executor = _ray()
    try:
        outcome = run_batch(questions, [REPORT], tmp_path / "a.jsonl", SETTINGS, factory=no_key_on_workers,
                            executor=executor)
    finally:
        executor.close()
    assert outcome.errors == 2 and outcome.new_rows == 2
    assert {(r.error_type, r.error) for r in outcome.rows} == {("ConfigError", "OPENAI_API_KEY is not set on this node")}
