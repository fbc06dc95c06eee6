"""Local worker speed side by side with the reference layout (issue 19).

Same engine (llama-cpp-python + SmolLM2-135M, 2 threads), same chunks (the first N 3,000-character
chunks of the 3M 2018 10-K), same tasks (FinanceBench's capex question for 3M 2018; `--tasks 2` adds
its net PP&E question, `--tasks 3` a net-sales question), in one run. Layouts:

- "reference": HazyResearch/minions' worker call reproduced exactly — WORKER_PROMPT_SHORT as one user
  message, its JobOutput (explanation, citation, answer; all required) as the JSON schema, max_tokens
  256, temperature 0, one message per job (benchmarks/protocols.py quotes prompt and schema). Jobs in
  the order its planner's example code makes them: task by task, every chunk for each.
- "ours": `job_messages` + `JOB_OUTPUT_SCHEMA` from the tree (the excerpt plain, a snippet as the
  citation pointer), our `local_max_tokens`, jobs in `expand_jobs` order: chunk by chunk, every task
  of a chunk back to back, so the engine's prefix cache reads each chunk once.
- "lines": the previous design (branch i19-speed2): the excerpt with numbered sentences, the worker
  citing by number — to weigh the prompt tokens numbering adds against the output tokens it saves.
- "multi" (with `--tasks` >= 2): every task of a chunk in one prompt and one reply listing an answer
  per task — against "ours", which runs them as separate jobs sharing the chunk prefix.

Every layout has its own engine instance (its own KV cache, as if it ran alone), all driven from one
thread (one OpenMP team); their jobs are interleaved one by one (ABAB), so load drift on a shared
machine hits all alike: read ratios, not absolutes. Each wait policy runs in its own subprocess
(OpenMP reads the policy once, at start), optionally beside a competing CPU-bound process this
script spawns (`--busy`). Another llama-cpp-python build (e.g. GGML_OPENMP=OFF, installed with
`pip install --target DIR`) is measured by putting DIR first on PYTHONPATH; `--python` runs the
children with another interpreter. Each figure names the engine it ran on. Then the per-question time on the whole filing: the
jobs our reading budget picks at the reading share that covers >= 95% of FinanceBench's evidence
(30%, benchmarks/coverage.py) against the reference reading every chunk, modelled as s/job x jobs.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/local_speed.py                     # 15 chunks, 1 task
    PYTHONPATH=$PWD .venv/bin/python benchmarks/local_speed.py --tasks 2 --layouts reference,ours,multi
    PYTHONPATH=$PWD .venv/bin/python benchmarks/local_speed.py --policies active,passive --busy both
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# name -> environment for the OpenMP runtime ("" = the variable unset)
POLICIES: dict[str, dict[str, str]] = {
    "active": {"OMP_WAIT_POLICY": "ACTIVE"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin-10k": {"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": "10000"},
    "spin-100k": {"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": "100000"},
    "spin-1m": {"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": "1000000"},
    "omp-default": {"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": ""},  # libgomp's default: 300k spins
    "shipped": {},  # whatever clients/llamacpp.py sets when the user set nothing
}
READ_SHARE_95 = 0.30  # the reading share covering the evidence of >= 95% of FinanceBench (issue 19)
EXTRA_TASK = "What were 3M's total net sales in 2018 (in USD millions)?"  # a third task (not from FinanceBench)

# The previous design ("lines", branch i19-speed2), kept to measure numbering against the snippet.
LINES_SYSTEM = ("You read one excerpt of a long document, its sentences numbered [1], [2], ..., and do one small "
                "task on it, using only the excerpt. Reply with only a JSON object. If the excerpt does not "
                "contain what the task asks for, reply {\"answer\": null} and nothing more. Otherwise reply "
                "{\"answer\": \"...\", \"lines\": [n]}: the answer first, then the numbers of the one to three "
                "sentences that state it. The excerpt comes first, then the task.")
LINES_SCHEMA: dict[str, Any] = {"anyOf": [
    {"type": "object", "properties": {"answer": {"type": "null"}}, "required": ["answer"], "additionalProperties": False},
    {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 48},
                                      "lines": {"type": "array", "items": {"type": "integer"}, "minItems": 1,
                                                "maxItems": 3}},
     "required": ["answer", "lines"], "additionalProperties": False}]}
MULTI_SYSTEM = ("You read one excerpt of a document and do several small tasks on it, using only the excerpt. "
                "Reply with a JSON object holding one entry per task, in order: {\"answer\": null} when the "
                "excerpt does not say, else {\"answer\": \"...\", \"quote\": \"...\"}: a short answer, then a "
                "few words copied exactly from the excerpt where it says so.")


def _tasks(n: int) -> list[str]:
    from minions.eval.datasets import load_financebench

    items = [i for i in load_financebench().items if i.metadata["doc_name"] == "3M_2018_10K"]
    items.sort(key=lambda i: "capital expenditure" not in i.question.lower())  # the capex question first
    return ([i.question for i in items] + [EXTRA_TASK])[:n]


def _chunks(n: int | None):
    from minions.documents import chunk_documents
    from minions.eval.datasets import load_financebench

    item = next(i for i in load_financebench().items if i.metadata["doc_name"] == "3M_2018_10K"
                and "capital expenditure" in i.question.lower())
    chunks = chunk_documents(item.documents, "chars", 3000)
    return (chunks if n is None else chunks[:n]), item.question


def _multi_schema(n: int) -> dict[str, Any]:
    from minions.protocols.minions_jobs import JOB_OUTPUT_SCHEMA

    keys = [f"task{t}" for t in range(1, n + 1)]
    return {"type": "object", "properties": {k: JOB_OUTPUT_SCHEMA for k in keys}, "required": keys,
            "additionalProperties": False}


def _calls(layout: str, chunks: list, tasks: list[str]) -> list[tuple[list[Any], Any, list[tuple[Any, str]]]]:
    """A layout's calls in its own order: (messages, options, [(chunk, task) it answers])."""
    from benchmarks.protocols import REFERENCE_PROMPT, REFERENCE_SCHEMA
    from minions.clients.base import Message, Options
    from minions.protocols.citations import numbered
    from minions.protocols.minions_jobs import JOB_OUTPUT_SCHEMA, job_messages, job_prefix
    from minions.protocols.minions_plan import MinionSConfig

    ours_max = MinionSConfig().local_max_tokens
    out: list[tuple[list[Any], Any, list[tuple[Any, str]]]] = []
    if layout == "reference":
        opts = Options(max_tokens=256, temperature=0.0, json_schema=REFERENCE_SCHEMA, seed=0)
        for task in tasks:
            for ch in chunks:
                out.append(([Message(role="user", content=REFERENCE_PROMPT.format(context=ch.text, task=task,
                                                                                  advice=""))], opts, [(ch, task)]))
    elif layout == "ours":
        opts = Options(max_tokens=ours_max, temperature=0.0, json_schema=JOB_OUTPUT_SCHEMA, seed=0)
        out = [(job_messages(ch, task), opts, [(ch, task)]) for ch in chunks for task in tasks]
    elif layout == "lines":
        opts = Options(max_tokens=ours_max, temperature=0.0, json_schema=LINES_SCHEMA, seed=0)
        for ch in chunks:
            head = f"Document: {ch.doc_id}\nExcerpt {ch.id} (page {ch.page_start}):\n<excerpt>\n{numbered(ch.text)}\n</excerpt>\n\n"
            for task in tasks:
                user = head + f"Task: {task}\nReply with the JSON object only; \"answer\" is null if the excerpt does not say.\n"
                out.append(([Message(role="system", content=LINES_SYSTEM), Message(role="user", content=user)],
                            opts, [(ch, task)]))
    elif layout == "multi":
        opts = Options(max_tokens=ours_max * len(tasks), temperature=0.0, json_schema=_multi_schema(len(tasks)), seed=0)
        for ch in chunks:
            listed = "\n".join(f"Task {t}: {task}" for t, task in enumerate(tasks, start=1))
            out.append(([Message(role="system", content=MULTI_SYSTEM),
                         Message(role="user", content=job_prefix(ch) + listed)], opts, [(ch, t) for t in tasks]))
    else:
        raise SystemExit(f"unknown layout {layout!r}: use reference, ours, lines or multi")
    return out


def _replies(layout: str, text: str, n: int) -> list[str]:
    """One reply text per task the call answered ("multi" lists them in one object)."""
    if layout != "multi":
        return [text]
    obj = json.loads(text)
    return [json.dumps(obj.get(f"task{t}")) for t in range(1, n + 1)]


async def _child(n_chunks: int, n_tasks: int, layouts: list[str], threads: int) -> dict:
    from minions.clients.llamacpp import LlamaCppClient
    from minions.protocols.minions_jobs import JobOutput, _judge
    from minions.protocols.minions_plan import MinionSConfig
    from minions.protocols.parsing import parse_reply
    from minions.protocols.result import JobRecord

    clients = {name: LlamaCppClient("smollm2", n_threads=threads) for name in layouts}
    first = clients[layouts[0]]
    for c in clients.values():  # one thread drives every engine: one OpenMP team, no idle team spinning
        c._executors = first._executors
        await c.complete("Hello", max_tokens=1)
    chunks, _ = _chunks(n_chunks)
    tasks = _tasks(n_tasks)
    calls = {name: _calls(name, chunks, tasks) for name in layouts}
    jobs = len(chunks) * len(tasks)
    stats = {k: {"wall": 0.0, "calls": 0, "prompt": 0, "evaluated": 0, "written": 0, "answered": 0,
                 "written_answering": 0, "written_abstaining": 0, "answering_calls": 0, "abstaining_calls": 0,
                 "unparsed": 0, "verified": 0} for k in layouts}
    cfg = MinionSConfig(citation_check="flag")  # judge every answer; verified = its citation found (a copy, for ours)
    # ABAB: step through the jobs; a layout's call runs at the step of its first job (rotating who goes first)
    for step in range(jobs):
        order = layouts[step % len(layouts):] + layouts[: step % len(layouts)]
        for name in order:
            per_call = len(calls[name][0][2])
            if step % per_call:
                continue
            msgs, opts, answers = calls[name][step // per_call]
            t = time.perf_counter()
            out = await clients[name].complete(msgs, opts)
            s = stats[name]
            s["wall"] += time.perf_counter() - t
            s["calls"] += 1
            s["prompt"] += out.usage.prompt_tokens
            s["evaluated"] += out.usage.evaluated_prompt_tokens
            s["written"] += out.usage.completion_tokens
            try:
                texts = _replies(name, out.text, len(answers))
            except ValueError:
                s["unparsed"] += len(answers)
                continue
            any_answer = False
            for (ch, task), text in zip(answers, texts, strict=True):
                try:
                    reply = parse_reply(text, JobOutput)
                except Exception:  # noqa: BLE001 - a truncated reply counts as unparsed
                    s["unparsed"] += 1
                    continue
                if reply.abstained:
                    continue
                any_answer = True
                s["answered"] += 1
                rec = JobRecord(job_id=str(step), task_id=1, chunk_id=ch.id, sample=0, instruction=task, pages=(1, 1))
                _judge(rec, text, ch, cfg)  # the reference's replies too: its quote checked against the chunk
                s["verified"] += rec.verified
            s["written_answering" if any_answer else "written_abstaining"] += out.usage.completion_tokens
            s["answering_calls" if any_answer else "abstaining_calls"] += 1
    for c in clients.values():
        await c.aclose()
    import llama_cpp

    openmp = "OPENMP = 1" in llama_cpp.llama_print_system_info().decode()
    return {"n": jobs, "chunks": len(chunks), "tasks": len(tasks), "threads": first.n_threads, "stats": stats,
            "engine": f"llama-cpp-python {llama_cpp.__version__} ({'OpenMP' if openmp else 'ggml thread pool'}) "
                      f"from {Path(llama_cpp.__file__).parent.parent}",
            "env": {v: os.environ.get(v, "") for v in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}}


def _run_policy(policy: str, args, busy: bool) -> dict:
    env = dict(os.environ)
    for var in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        env.pop(var, None)
    for var, val in POLICIES[policy].items():
        if val:
            env[var] = val
        elif policy != "shipped":
            env[var] = ""  # set but empty: clients/llamacpp.py's setdefault keeps it, OpenMP ignores it
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        out = subprocess.run([args.python, __file__, "--child", "--chunks", str(args.chunks), "--tasks", str(args.tasks),
                              "--threads", str(args.threads), "--layouts", ",".join(args.layouts)],
                             env=env, capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(out.stderr[-2000:])
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=15)
    ap.add_argument("--tasks", type=int, default=1, choices=[1, 2, 3], help="tasks per round (each on every chunk)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layouts", type=lambda s: s.split(","), default=["reference", "ours"])
    ap.add_argument("--policies", default="shipped",
                    help=f"comma list of {', '.join(POLICIES)}, or 'all'")
    ap.add_argument("--busy", choices=["no", "yes", "both"], default="no",
                    help="run beside a competing CPU-bound process this script spawns")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the measuring children")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_child(args.chunks, args.tasks, args.layouts, args.threads))))
        return
    if "multi" in args.layouts and args.tasks < 2:
        raise SystemExit("--layouts multi needs --tasks 2 or 3")
    policies = list(POLICIES) if args.policies == "all" else args.policies.split(",")
    settings = {"no": [False], "yes": [True], "both": [False, True]}[args.busy]
    load = os.getloadavg()
    print(f"Local worker speed, llamacpp/smollm2, {args.threads} threads, first {args.chunks} 3,000-char chunks of "
          f"the 3M 2018 10-K, {args.tasks} task(s) per chunk; python {args.python}; load average at start "
          f"{load[0]:.1f} on {os.cpu_count()} cores")
    results: dict[tuple[str, bool], dict] = {}
    for busy in settings:
        for policy in policies:
            r = results[(policy, busy)] = _run_policy(policy, args, busy)
            n = r["n"]
            print(f"  {policy} {'busy' if busy else 'quiet'}, {r['engine']} (load average after: {os.getloadavg()[0]:.1f}):")
            for name in args.layouts:
                s = r["stats"][name]
                c = max(s["calls"], 1)
                print(f"    {name:<9} {s['wall'] / n:5.2f} s/job, {s['prompt'] / c:5.0f} prompt tok/call "
                      f"({s['evaluated'] / c:4.0f} evaluated, {s['evaluated'] / n:4.0f} per job), "
                      f"{s['written'] / n:5.1f} out tok/job [answering calls {s['written_answering'] / max(s['answering_calls'], 1):.0f}"
                      f" x{s['answering_calls']}, abstaining {s['written_abstaining'] / max(s['abstaining_calls'], 1):.0f}"
                      f" x{s['abstaining_calls']}, unparsed {s['unparsed']}] answered {s['answered']}/{n}, "
                      f"citation verified {s['verified']}/{s['answered']}")
            ref = r["stats"].get("reference")
            if ref:
                print("    jobs/s relative to the reference: " + ", ".join(
                    f"{name} {ref['wall'] / r['stats'][name]['wall']:.2f}x" for name in args.layouts if name != "reference"))
    last = args.layouts[-1]
    for busy in settings:
        base = [p for p in policies if (p, busy) in results]
        if len(base) > 1:
            fastest = min(base, key=lambda p: results[(p, busy)]["stats"][last]["wall"])
            f = results[(fastest, busy)]["stats"][last]["wall"]
            print(f"  {'busy' if busy else 'quiet'}: time relative to the fastest policy ({fastest}), layout "
                  f"{last}: " + ", ".join(f"{p} {results[(p, busy)]['stats'][last]['wall'] / f:.2f}" for p in base))
    if {"reference", "ours"} <= set(args.layouts):
        whole, _ = _chunks(None)
        picked = math.ceil(READ_SHARE_95 * len(whole))
        for (policy, busy), r in results.items():
            n = r["n"]
            ref_s, ours_s = r["stats"]["reference"]["wall"] / n, r["stats"]["ours"]["wall"] / n
            print(f"  per question on the whole filing ({len(whole)} chunks x {r['tasks']} task(s); s/job x jobs), "
                  f"{policy} {'busy' if busy else 'quiet'}: reference reads all {len(whole)} -> "
                  f"{len(whole) * r['tasks'] * ref_s:,.0f} s; ours reads {picked} (read={READ_SHARE_95:.0%}) -> "
                  f"{picked * r['tasks'] * ours_s:,.0f} s: {len(whole) * ref_s / (picked * ours_s):.2f}x faster")


if __name__ == "__main__":
    main()
