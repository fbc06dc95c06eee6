"""Local reading cost (issue 8): the same MinionS jobs on the same engine, in two prompt layouts.

(a) task-first layout (the baseline): worker instructions, then the task, then the chunk; jobs in
    task order (task 1 on every chunk, then task 2, ...) — every job re-reads its chunk. This is
    not the reference implementation's layout (its worker prompt already puts the document first);
    it is the naive layout, named for what it is.
(b) ours: instructions + chunk as a byte-identical prefix, then the task; jobs grouped by chunk and
    run through MinionS's own executor — llama.cpp's prefix reuse reads each chunk once.

Real FinanceBench filing (first N chunks of 3,000 characters, 3 tasks per chunk, 1 sample) on the
embedded SmolLM2 model, both layouts in the same run. Prints jobs/s, prompt tokens evaluated per
job, cached tokens per job, and the ratios. Targets: >= 2x jobs/s, >= 2.5x fewer evaluated tokens.

    python benchmarks/local_reuse.py               # 30 chunks x 3 tasks (the issue's setting)
    python benchmarks/local_reuse.py --chunks 6    # shorter
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import time
from pathlib import Path

from minions.clients.base import Message, Options, Request, Usage
from minions.clients.function import FunctionClient
from minions.documents import Document, chunk_documents
from minions.protocols.events import JobFinished, JobsPlanned
from minions.protocols.minions import MinionS
from minions.protocols.minions_jobs import JOB_OUTPUT_SCHEMA, job_prefix, job_suffix, worker_system

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = [ROOT.parent / "shared" / "datasets" / "financebench", Path("/work/shared/datasets/financebench")]
TASKS = [
    ("Extract the total revenue (net sales) figure and its fiscal year.", "Quote the line with the figure."),
    ("Extract any capital expenditure figure.", "Look for 'capital expenditures' or 'purchases of property'."),
    ("Extract the net income figure.", "Look for 'net income' and the period it covers."),
]


def load_filing(name: str) -> Document | None:
    for d in CANDIDATES:
        path = d / "docs.jsonl.gz"
        if path.exists():
            with gzip.open(path, "rt", encoding="utf-8") as f:
                for line in f:
                    if f'"doc_name": "{name}"' in line[:200]:
                        rec = json.loads(line)
                        return Document.from_pages(rec["pages"], id=rec["doc_name"], title=f"{rec['company']} 10-K")
    return None


def summarize(label: str, n: int, seconds: float, usage: Usage) -> dict[str, float]:
    row = {"jobs_s": n / seconds, "evaluated": usage.evaluated_prompt_tokens / n,
           "cached": usage.cached_prompt_tokens / n, "prompt": usage.prompt_tokens / n,
           "completion": usage.completion_tokens / n}
    print(f"  {label:<34} {n:4d} jobs  {seconds:7.1f} s  {row['jobs_s']:6.3f} jobs/s  prompt/job {row['prompt']:7.1f}  "
          f"evaluated/job {row['evaluated']:7.1f}  cached/job {row['cached']:7.1f}  out/job {row['completion']:5.1f}")
    return row


async def task_first_layout(client, system: Message, chunks: list, title: str, opts: Options,
                           concurrency: int) -> tuple[float, Usage]:
    """(a): the same text as ours, task first and chunk after; jobs in task order."""
    requests = [Request(messages=[system, Message(role="user", content=job_suffix(t, a) + "\n"
                                                  + job_prefix(c, title))], options=opts)
                for t, a in TASKS for c in chunks]
    t0 = time.perf_counter()
    out = await client.batch(requests, concurrency=concurrency)
    seconds = time.perf_counter() - t0
    failed = [o for o in out if isinstance(o, Exception)]
    if failed:
        raise SystemExit(f"task-first layout: {len(failed)} calls failed: {failed[0]}")
    return seconds, sum((o.usage for o in out), Usage())


async def our_layout(client, doc: Document, chunks: list, max_tokens: int, concurrency: int) -> tuple[float, Usage]:
    """(b): MinionS's executor, with a scripted remote planning these tasks on these chunks."""
    plan = json.dumps({"tasks": [{"instruction": t, "advice": a} for t, a in TASKS],
                       "chunking": {"strategy": "chars", "size": 3000}, "chunk_ids": [c.id for c in chunks]})
    final = json.dumps({"decision": "provide_final_answer", "explanation": "-", "answer": "-"})
    remote = FunctionClient(lambda m, _o: plan if "plan the workers' jobs" in m[-1].content else final)
    n = len(chunks) * len(TASKS)
    proto = MinionS(client, remote, max_rounds=1, local_max_tokens=max_tokens, concurrency=concurrency,
                    max_jobs_per_round=n, tasks_per_round=len(TASKS))
    marks: dict[str, float] = {}

    def on_event(e) -> None:  # time the jobs only, as for (a): not chunking or the scripted remote
        if isinstance(e, JobsPlanned):
            marks["start"] = time.perf_counter()
        elif isinstance(e, JobFinished) and e.done == e.total:
            marks["end"] = time.perf_counter()

    res = await proto.arun("benchmark", doc, on_event=on_event)
    if res.error or len(res.rounds[0].jobs) != n:
        raise SystemExit(f"MinionS run failed: {res.error}")
    return marks["end"] - marks["start"], res.cost.role("local").usage


async def main(n_chunks: int, max_tokens: int, filing: str, concurrency: int, block: int,
               threads: int | None) -> None:
    doc = load_filing(filing)
    if doc is None:
        print(f"FinanceBench not found (looked in {', '.join(map(str, CANDIDATES))}); skipping.")
        return
    from minions.clients.llamacpp import LlamaCppClient

    chunks = chunk_documents([doc], "chars", 3000)[:n_chunks]
    client = LlamaCppClient("smollm2", n_threads=threads)
    await client.complete("Hello", max_tokens=1)  # load the model outside the timings
    opts = Options(max_tokens=max_tokens, temperature=0.0, json_schema=JOB_OUTPUT_SCHEMA, seed=0)
    system = Message(role="system", content=worker_system())
    n = len(chunks) * len(TASKS)
    print(f"{filing}: {len(doc.text):,} chars; first {len(chunks)} chunks of 3,000 chars x {len(TASKS)} tasks = {n} "
          f"jobs; max_tokens {max_tokens}; llamacpp/smollm2 ({client.n_threads} threads), one engine, concurrency "
          f"{concurrency}; layouts "
          f"alternate every {block} chunks")

    # The machine may be shared: run the layouts alternately, a block of chunks at a time, so load
    # bursts hit both alike; within a block each layout keeps its own job order.
    totals = {"a": [0.0, Usage()], "b": [0.0, Usage()]}
    for lo in range(0, len(chunks), block):
        part = chunks[lo:lo + block]
        seconds, usage = await task_first_layout(client, system, part, doc.title, opts, concurrency)
        totals["a"][0] += seconds
        totals["a"][1] += usage
        seconds, usage = await our_layout(client, doc, part, max_tokens, concurrency)
        totals["b"][0] += seconds
        totals["b"][1] += usage
    ref = summarize("(a) task-first baseline, task order", n, *totals["a"])
    ours = summarize("(b) chunk first, grouped by chunk", n, *totals["b"])
    print(f"  ratios (b)/(a): jobs/s {ours['jobs_s'] / ref['jobs_s']:.2f}x [target >= 2x]   evaluated prompt tokens "
          f"{ref['evaluated'] / max(ours['evaluated'], 1e-9):.2f}x fewer [target >= 2.5x]")
    await client.aclose()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=30)
    ap.add_argument("--max-tokens", type=int, default=40)
    ap.add_argument("--filing", default="3M_2018_10K")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--block", type=int, default=3, help="chunks per alternation between the layouts")
    ap.add_argument("--threads", type=int, default=None,
                    help="llama.cpp threads (default: all cores; 1 avoids spin-wait thrash on a busy machine)")
    a = ap.parse_args()
    asyncio.run(main(a.chunks, a.max_tokens, a.filing, a.concurrency, a.block, a.threads))
