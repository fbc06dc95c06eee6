"""Throughput of `minions batch`: scripted models with a fixed simulated latency per call, the same
question set on the local executor at 1, 4 and 16 questions at once and on a local Ray cluster of 1
and 2 workers (`--executor ray`, one Ray task per question), against the serial baseline (local,
one question at a time) measured in the same run.

    python benchmarks/batch.py [--questions 32] [--latency 0.05] [--no-ray]

Each run writes a fresh output file through the real engine (fsync per row included). What it
measures is how well the driver overlaps waiting on models; the model's own speed is fixed. Each
Ray cluster is started (and its workers warmed up on two questions) before its clock starts: the
figures are steady-state throughput, not Ray's start-up. The simulated model only waits, so one
process overlaps it as well as many; Ray pays where the work is CPU-bound (an embedded local model)
or spans machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minions.batch import arun_batch  # noqa: E402
from minions.clients import FunctionClient, Message, Options  # noqa: E402
from minions.protocols.settings import RunSettings  # noqa: E402

REPORT = ROOT / "datasets" / "sample" / "northwind_annual_report.md"
FACTS = ["total revenue", "gross profit", "operating income", "net income", "diluted earnings per share",
         "cash from operating activities", "capital expenditures", "dividends paid"]


def factory(latency: float):
    async def reply(messages: list[Message], options: Options) -> str:
        await asyncio.sleep(latency)  # the simulated model: a fixed wait, no CPU
        props = (options.json_schema or {}).get("properties", {})
        if "tasks" in props:
            return json.dumps({"tasks": [{"instruction": "Find the figure the question asks for."}]})
        if "decision" in props:
            return json.dumps({"decision": "provide_final_answer", "answer": "$1 million", "explanation": "jobs"})
        if "citation" in props:
            return json.dumps({"explanation": "seen", "citation": None, "answer": "$1 million"})
        return "$1 million"

    return lambda role, spec, kw: FunctionClient(reply, model=spec.split("/", 1)[-1], price_as=kw.get("price_as"))


def write_questions(path: Path, n: int) -> Path:
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"q{i}", "question": f"What was the {FACTS[i % len(FACTS)]} in fiscal "
                                f"{2024 - i // len(FACTS)}?"}) + "\n")
    return path


async def measure(questions: Path, out: Path, concurrency: int, latency: float,
                  executor: Any = None) -> tuple[float, int]:
    settings = RunSettings(local="function/local", remote="function/remote", price_as="openai/gpt-4o",
                           knobs={"max_rounds": 1})
    started = time.perf_counter()
    outcome = await arun_batch(questions, [REPORT], out, settings, concurrency=concurrency, factory=factory(latency),
                               executor=executor)
    elapsed = time.perf_counter() - started
    assert outcome.new_rows == len(outcome.rows) and outcome.errors == 0, "every question must be answered"
    return elapsed, outcome.new_rows


def ray_run(questions: Path, tmp: Path, workers: int, latency: float) -> tuple[float, int]:
    """One local Ray cluster of `workers` CPUs (one task per CPU at a time), warmed up, then timed;
    2 tasks per worker are submitted at once so no worker waits on the driver."""
    import ray

    from minions.executors import ExecutorSettings, open_executor

    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})  # workers import this tree's minions
    executor = open_executor(ExecutorSettings(kind="ray"))
    try:
        asyncio.run(measure(write_questions(tmp / f"warm{workers}.jsonl", 2 * workers), tmp / f"warm{workers}.out",
                            2 * workers, latency, executor))
        return asyncio.run(measure(questions, tmp / f"ray{workers}.jsonl", 2 * workers, latency, executor))
    finally:
        assert executor is not None
        executor.close()
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.05, help="seconds per simulated model call")
    ap.add_argument("--no-ray", action="store_true", help="local executor only")
    args = ap.parse_args()
    try:
        import ray  # noqa: F401
    except ImportError:
        args.no_ray = True
        print("(no Ray rows: pip install 'minions[ray]')")
    with tempfile.TemporaryDirectory() as tmp:
        questions = write_questions(Path(tmp) / "q.jsonl", args.questions)
        print(f"{args.questions} questions, {args.latency * 1000:.0f} ms per model call, protocol minions "
              "(1 round, 4 local jobs at once within a question)")
        print(f"{'executor':>8}  {'at once':>12}  {'seconds':>8}  {'questions/s':>11}  {'speed-up':>8}")
        baseline = None
        for concurrency in (1, 4, 16):
            elapsed, n = asyncio.run(measure(questions, Path(tmp) / f"out{concurrency}.jsonl", concurrency,
                                             args.latency))
            rate = n / elapsed
            baseline = baseline or rate
            print(f"{'local':>8}  {f'{concurrency} question' + ('s' if concurrency > 1 else ''):>12}  {elapsed:>8.2f}  {rate:>11.2f}  "
                  f"{rate / baseline:>7.2f}x")
        for workers in () if args.no_ray else (1, 2):
            elapsed, n = ray_run(questions, Path(tmp), workers, args.latency)
            rate = n / elapsed
            print(f"{'ray':>8}  {f'{workers} worker' + ('s' if workers > 1 else ''):>12}  {elapsed:>8.2f}  "
                  f"{rate:>11.2f}  {rate / baseline:>7.2f}x")


if __name__ == "__main__":
    main()
