"""A sweep over the bundled sample with scripted models, for tests that run it as a subprocess
(to kill it mid-run). The models come in through `run_sweep(clients_factory=...)`: dependency
injection, no test switch in the product.

    python tests/eval_scripted_sweep.py OUT_DIR CALLS_LOG DELAY_S [--no-cache]

Every model call appends one line to CALLS_LOG, so calls are counted across processes. Prints the
outcome as JSON on the last line.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from minions.clients import FunctionClient, Message, Options
from minions.eval.config import validate_config
from minions.eval.runner import run_sweep

# Keyed by phrases of the questions (not of the documents, which every protocol may show the model).
ANSWERS = {"total revenue in fiscal 2024": "Total revenue was $2,847.3 million.",
           "Which medication replaced lisinopril": "It was replaced by losartan.",
           "test-set F1": "It reaches 69.8 F1."}  # wrong on purpose (the RAG baseline)


def reply_by_schema(options: Options, answer: str) -> str | None:
    """The scripted reply to a request for a plan, a decision or a job (by the schema's fields), or
    None when no such schema is asked for."""
    props = (options.json_schema or {}).get("properties", {})
    if "tasks" in props:
        return json.dumps({"tasks": [{"instruction": "Find the figure the question asks for."}]})
    if "decision" in props:
        return json.dumps({"decision": "provide_final_answer", "answer": answer, "explanation": "from the jobs"})
    if "citation" in props:
        return json.dumps({"explanation": "seen in the chunk", "citation": None, "answer": answer})
    return None


async def log_call(log: Path | None, delay: float) -> None:
    if delay:
        await asyncio.sleep(delay)
    if log is not None:
        with open(log, "a") as f:
            f.write("call\n")


def scripted_reply(log: Path | None = None, delay: float = 0.0):
    async def reply(messages: list[Message], options: Options) -> str:
        await log_call(log, delay)
        task = " ".join(m.content for m in messages)
        answer = next((a for k, a in ANSWERS.items() if k in task), "I could not find it.")
        if (out := reply_by_schema(options, answer)) is not None:
            return out
        if "correct" in (options.json_schema or {}).get("properties", {}):  # a judge
            return json.dumps({"correct": "2,847.3" in task, "reason": "compared"})
        return answer
    return reply


def config(out: str | Path, **over: Any):
    data = {"name": "scripted", "datasets": ["sample"], "limit": 3, "out": str(out), "concurrency": 2,
            "protocols": ["minion", "minions", "remote-only", "local-only", "rag"],
            "local": "function/local", "remote": "function/remote", "remote_price_as": "openai/gpt-4o",
            "knobs": {"minion": {"max_rounds": 1}, "minions": {"max_rounds": 1}}, "grid": {"minions": {"tasks_per_round": [1, 2]}}}
    data.update(over)
    return validate_config(data)


def factory(log: Path | None = None, delay: float = 0.0):
    return lambda spec: FunctionClient(scripted_reply(log, delay), model=spec.split("/", 1)[1])


def main() -> None:
    out, log, delay = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    cfg = config(out, cache="--no-cache" not in sys.argv)
    outcome = run_sweep(cfg, clients_factory=factory(log, delay))
    print(json.dumps({"new_rows": outcome.new_rows, "model_calls": outcome.model_calls,
                      "cache_hits": outcome.cache_hits, "rows": len(outcome.rows),
                      "summary": [s.model_dump(exclude={"latency_p50", "latency_p95"}) for s in outcome.summary]}))


if __name__ == "__main__":
    main()
