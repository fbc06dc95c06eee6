"""Throughput of `minions batch` on the local executor: scripted models with a fixed simulated
latency per call, the same question set at 1, 4 and 16 questions at once, against the serial
baseline (one question at a time) measured in the same run.

    python benchmarks/batch.py [--questions 32] [--latency 0.05]

Each run writes a fresh output file through the real engine (fsync per row included). What it
measures is how well the driver overlaps waiting on models; the model's own speed is fixed.
Ray (`--executor ray`, issue 23 item 3) is not built yet.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

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


async def measure(questions: Path, out: Path, concurrency: int, latency: float) -> tuple[float, int]:
    settings = RunSettings(local="function/local", remote="function/remote", price_as="openai/gpt-4o",
                           knobs={"max_rounds": 1})
    started = time.perf_counter()
    outcome = await arun_batch(questions, [REPORT], out, settings, concurrency=concurrency, factory=factory(latency))
    elapsed = time.perf_counter() - started
    assert outcome.new_rows == len(outcome.rows) and outcome.errors == 0, "every question must be answered"
    return elapsed, outcome.new_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.05, help="seconds per simulated model call")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        questions = write_questions(Path(tmp) / "q.jsonl", args.questions)
        print(f"{args.questions} questions, {args.latency * 1000:.0f} ms per model call, protocol minions "
              "(1 round), local executor")
        print(f"{'concurrency':>11}  {'seconds':>8}  {'questions/s':>11}  {'speed-up':>8}")
        baseline = None
        for concurrency in (1, 4, 16):
            elapsed, n = asyncio.run(measure(questions, Path(tmp) / f"out{concurrency}.jsonl", concurrency,
                                             args.latency))
            rate = n / elapsed
            baseline = baseline or rate
            print(f"{concurrency:>11}  {elapsed:>8.2f}  {rate:>11.2f}  {rate / baseline:>7.2f}x")


if __name__ == "__main__":
    main()
