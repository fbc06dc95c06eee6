"""`minions batch` with scripted models, for tests and benchmarks that run it (as a subprocess, to
kill it mid-run). The models come in through `cli.batch.run(args, factory=...)`: dependency
injection, no test switch in the product.

    python tests/batch_scripted.py DELAY_S CALLS_LOG|- batch QUESTIONS.jsonl DOCS... --out OUT.jsonl ...

Every model call appends one line to CALLS_LOG (unless "-"), so calls are counted across processes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from minions.clients import FunctionClient, Message, Options
from tests.eval_scripted_sweep import log_call, reply_by_schema

SAMPLE = Path(__file__).resolve().parents[1] / "datasets" / "sample"
REPORT = SAMPLE / "northwind_annual_report.md"

# 20 FinanceBench-style questions over the bundled Northwind report: (id, question, scripted answer).
FACTS = [("total revenue", "$2,847.3 million"), ("gross profit", "$1,087.7 million"), ("gross margin", "38.2%"),
         ("operating income", "$421.7 million"), ("operating margin", "14.8%"), ("net income", "$312.4 million"),
         ("diluted earnings per share", "$3.47"), ("cash from operating activities", "$498.2 million"),
         ("capital expenditures", "$186.5 million"), ("dividends paid", "$108.0 million")]
QUESTIONS = [(f"fb-{2 * i + y:02d}", f"What was Northwind's {fact} in fiscal {2024 - y}?", answer if y == 0 else
              f"{fact} in fiscal 2023 (scripted)") for i, (fact, answer) in enumerate(FACTS) for y in (0, 1)]


def write_questions(path: Path, questions=QUESTIONS, documents: list[str] | None = None) -> Path:
    with open(path, "w") as f:
        for qid, question, _ in questions:
            line = {"id": qid, "question": question}
            if documents is not None:
                line["documents"] = documents
            f.write(json.dumps(line) + "\n")
    return path


def scripted_reply(log: Path | None = None, delay: float = 0.0, fail: str | None = None):
    """Answers by what is asked (the reply's schema: a plan, a decision, a job), keyed by the question."""
    async def reply(messages: list[Message], options: Options) -> str:
        await log_call(log, delay)
        task = " ".join(m.content for m in messages)
        if fail and fail in task:
            raise RuntimeError("scripted failure")
        answer = next((a for _, q, a in QUESTIONS if q in task), "I could not find it.")
        out = reply_by_schema(options, answer)
        return answer if out is None else out
    return reply


def factory(log: Path | None = None, delay: float = 0.0, fail: str | None = None):
    """A build_protocol factory: (role, spec, kwargs) -> a scripted client."""
    def make(role: str, spec: str, kw: dict) -> FunctionClient:
        return FunctionClient(scripted_reply(log, delay, fail), model=spec.split("/", 1)[-1],
                              price_as=kw.get("price_as"))
    return make


def main() -> int:
    from functools import partial

    from minions.cli import build_parser, run_parsed
    from minions.cli.batch import run

    delay, log = float(sys.argv[1]), sys.argv[2]
    args = build_parser().parse_args(sys.argv[3:])
    args.func = partial(run, factory=factory(None if log == "-" else Path(log), delay))
    return run_parsed(args)


if __name__ == "__main__":
    sys.exit(main())
