"""Local worker speed side by side with the reference layout (issue 19).

Same engine (llama-cpp-python + SmolLM2-135M, 2 threads), same chunks (the first N 3,000-character
chunks of the 3M 2018 10-K), same task (FinanceBench's capex question for 3M 2018), in one run:

- "reference": HazyResearch/minions' worker call reproduced exactly — WORKER_PROMPT_SHORT as one user
  message, its JobOutput (explanation, citation, answer; all required) as the JSON schema, max_tokens
  256, temperature 0, one message per job (benchmarks/protocols.py quotes prompt and schema).
- "ours": `job_messages` + `JOB_OUTPUT_SCHEMA` from the tree, with our `local_max_tokens`.

Each wait policy runs in its own subprocess (OpenMP reads the policy once, at start), on the same
chunks, optionally beside a competing CPU-bound process this script spawns (`--busy`), so the
figures of one run are comparable with each other even on a loaded machine: read ratios, not
absolutes. Then the per-question time on the whole filing: the jobs our reading budget picks at the
reading share that covers >= 95% of FinanceBench's evidence (30%, benchmarks/coverage.py) against the
reference reading every chunk, extrapolated from the measured s/job (one job per chunk).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/local_speed.py                     # both layouts, default policy
    PYTHONPATH=$PWD .venv/bin/python benchmarks/local_speed.py --policies all --chunks 5 --busy both
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


def _chunks(n: int | None):
    from minions.documents import chunk_documents
    from minions.eval.datasets import load_financebench

    item = next(i for i in load_financebench().items if i.metadata["doc_name"] == "3M_2018_10K"
                and "capital expenditure" in i.question.lower())
    chunks = chunk_documents(item.documents, "chars", 3000)
    return (chunks if n is None else chunks[:n]), item.question


async def _child(n_chunks: int, layouts: list[str], threads: int) -> dict:
    from benchmarks.protocols import REFERENCE_PROMPT, REFERENCE_SCHEMA
    from minions.clients.base import Message, Options
    from minions.clients.llamacpp import LlamaCppClient
    from minions.protocols.minions_jobs import JOB_OUTPUT_SCHEMA, JobOutput, job_messages
    from minions.protocols.minions_plan import MinionSConfig
    from minions.protocols.parsing import parse_reply

    ours_max = MinionSConfig().local_max_tokens
    client = LlamaCppClient("smollm2", n_threads=threads)
    await client.complete("Hello", max_tokens=1)
    chunks, question = _chunks(n_chunks)
    stats = {k: {"wall": 0.0, "prompt": 0, "evaluated": 0, "written": 0, "answered": 0, "written_answering": 0,
                 "written_abstaining": 0, "unparsed": 0, "cited": 0} for k in layouts}
    for k, ch in enumerate(chunks):
        for name in layouts[k % len(layouts):] + layouts[: k % len(layouts)]:  # rotate: drift hits all alike
            if name == "reference":
                msgs = [Message(role="user", content=REFERENCE_PROMPT.format(context=ch.text, task=question, advice=""))]
                opts = Options(max_tokens=256, temperature=0.0, json_schema=REFERENCE_SCHEMA, seed=0)
            else:
                msgs = job_messages(ch, question, "")
                opts = Options(max_tokens=ours_max, temperature=0.0, json_schema=JOB_OUTPUT_SCHEMA, seed=0)
            t = time.perf_counter()
            out = await client.complete(msgs, opts)
            s = stats[name]
            s["wall"] += time.perf_counter() - t
            s["prompt"] += out.usage.prompt_tokens
            s["evaluated"] += out.usage.evaluated_prompt_tokens
            s["written"] += out.usage.completion_tokens
            try:
                reply = parse_reply(out.text, JobOutput)
                answering = not reply.abstained
            except Exception:  # noqa: BLE001 - a truncated reply counts as unparsed
                s["unparsed"] += 1
                continue
            s["answered"] += answering
            s["written_answering" if answering else "written_abstaining"] += out.usage.completion_tokens
            if answering and name != "reference":
                from minions.protocols.minions_jobs import _judge
                from minions.protocols.result import JobRecord

                rec = JobRecord(job_id=str(k), task_id=1, chunk_id=ch.id, sample=0, instruction=question, pages=(1, 1))
                _judge(rec, out.text, ch, MinionSConfig())
                s["cited"] += rec.verified
    await client.aclose()
    return {"n": len(chunks), "threads": client.n_threads, "stats": stats,
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
        out = subprocess.run([sys.executable, __file__, "--child", "--chunks", str(args.chunks), "--threads",
                              str(args.threads), "--layouts", ",".join(args.layouts)],
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
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layouts", type=lambda s: s.split(","), default=["reference", "ours"])
    ap.add_argument("--policies", default="shipped",
                    help=f"comma list of {', '.join(POLICIES)}, or 'all'")
    ap.add_argument("--busy", choices=["no", "yes", "both"], default="no",
                    help="run beside a competing CPU-bound process this script spawns")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_child(args.chunks, args.layouts, args.threads))))
        return
    policies = list(POLICIES) if args.policies == "all" else args.policies.split(",")
    settings = {"no": [False], "yes": [True], "both": [False, True]}[args.busy]
    load = os.getloadavg()
    print(f"Local worker speed, llamacpp/smollm2, {args.threads} threads, first {args.chunks} 3,000-char chunks of "
          f"the 3M 2018 10-K, 1 task; load average at start {load[0]:.1f} on {os.cpu_count()} cores")
    results: dict[tuple[str, bool], dict] = {}
    for busy in settings:
        for policy in policies:
            r = results[(policy, busy)] = _run_policy(policy, args, busy)
            n = r["n"]
            line = [f"{policy:<11} {'busy' if busy else 'quiet':<5}"]
            for name in args.layouts:
                s = r["stats"][name]
                ans, abst = s["answered"], n - s["answered"] - s["unparsed"]
                line.append(f"{name}: {s['wall'] / n:5.2f} s/job, {s['prompt'] / n:4.0f} prompt "
                            f"({s['evaluated'] / n:4.0f} evaluated), {s['written'] / n:5.1f} out tok/job "
                            f"[answering {s['written_answering'] / max(ans, 1):.0f} x{ans}, "
                            f"abstaining {s['written_abstaining'] / max(abst, 1):.0f} x{abst}, unparsed {s['unparsed']}"
                            + (f", cited {s['cited']}/{ans}" if name != "reference" else "") + "]")
            if {"reference", "ours"} <= set(args.layouts):
                line.append(f"ours/reference jobs/s: {r['stats']['reference']['wall'] / r['stats']['ours']['wall']:.2f}x")
            print("  " + " | ".join(line), flush=True)
    for busy in settings:
        base = [p for p in policies if (p, busy) in results]
        if len(base) > 1:
            fastest = min(base, key=lambda p: results[(p, busy)]["stats"][args.layouts[-1]]["wall"])
            f = results[(fastest, busy)]["stats"][args.layouts[-1]]["wall"]
            print(f"  {'busy' if busy else 'quiet'}: time relative to the fastest policy ({fastest}), layout "
                  f"{args.layouts[-1]}: " + ", ".join(
                      f"{p} {results[(p, busy)]['stats'][args.layouts[-1]]['wall'] / f:.2f}" for p in base))
    if {"reference", "ours"} <= set(args.layouts):
        whole, _ = _chunks(None)
        picked = math.ceil(READ_SHARE_95 * len(whole))
        for (policy, busy), r in results.items():
            n = r["n"]
            ref_s, ours_s = r["stats"]["reference"]["wall"] / n, r["stats"]["ours"]["wall"] / n
            print(f"  per question on the whole filing ({len(whole)} chunks; extrapolated from s/job), {policy} "
                  f"{'busy' if busy else 'quiet'}: reference reads all {len(whole)} -> {len(whole) * ref_s:,.0f} s; "
                  f"ours reads {picked} (read={READ_SHARE_95:.0%}) -> {picked * ours_s:,.0f} s: "
                  f"{len(whole) * ref_s / (picked * ours_s):.2f}x faster")


if __name__ == "__main__":
    main()
