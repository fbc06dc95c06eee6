"""Local worker speed side by side with the reference implementation's worker (issue 19). Prints figures; not a test.

The same chunks (the 3M 2018 10-K from ../shared/datasets/financebench, 3,000-character chunks, the
first 15), the same task (FinanceBench's capex question for 3M 2018), the same engine (llama-cpp-python
+ SmolLM2-135M through minions/clients/llamacpp.py, 2 threads), one job at a time:

- "reference": HazyResearch/minions' worker call reproduced exactly (minions/minions.py, round step 3):
  one user message per job, `WORKER_PROMPT_SHORT.format(context=chunk, task=task, advice=advice)`, its
  `JobOutput` pydantic model as the structured-output schema (explanation, citation, answer; all
  required), max_tokens 256, temperature 0; a reply cut at max_tokens is discarded as the reference does.
- "ours": `minions_jobs.job_messages` + `JOB_OUTPUT_SCHEMA` + `MinionSConfig().local_max_tokens`,
  judged by the protocol's own `_judge` (citation copied from numbered lines / checked).

Each OpenMP wait policy runs in its own subprocess (the policy is read once, when the OpenMP runtime
starts), both layouts in that process with the policy shared, layouts alternating chunk by chunk so
load drift hits both alike. Conditions: "quiet" (nothing of ours competing) and "busy" (a CPU-bound
process we spawn runs beside it). The machine may be shared with other work: the 1-minute load average
before and after each child is printed with its figures.

Per question on the whole filing: our reading budget at the share that covers >= 95% of FinanceBench's
evidence (30%, benchmarks/coverage.py) picks ~30% of the filing's chunks; the reference reads every
chunk. Both are extrapolated from the s/job measured here (said so in the output).

    python benchmarks/local_speed.py                          # 15 chunks; ACTIVE, PASSIVE, SPIN; quiet + busy
    python benchmarks/local_speed.py --quick                  # 4 chunks
    python benchmarks/local_speed.py --policies ACTIVE,PASSIVE --conditions quiet
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = "3M_2018_10K"
CAPEX_Q = "capital expenditure"

# libgomp: OMP_WAIT_POLICY=ACTIVE spins forever, PASSIVE sleeps at once; unset, GOMP_SPINCOUNT sets how
# long a waiting thread spins before it sleeps (libgomp's default 300,000, 1,000 when oversubscribed).
POLICIES: dict[str, dict[str, str]] = {
    "ACTIVE": {"OMP_WAIT_POLICY": "ACTIVE"},
    "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "SPIN": {"GOMP_SPINCOUNT": "30000"},
    "DEFAULT": {},
}

# --- the reference's worker call, quoted (HazyResearch/minions minions/prompts/minions.py) ----------
REFERENCE_PROMPT = """
Here is a document excerpt:

{context}

--------------------------------
And here is your task:

{task}

--------------------------------
And here is additional higher-level advice on how to approach the task:

{advice}

--------------------------------

Your response should be a `JobOutput` object:
```python
class JobOutput(BaseModel):
  explanation: str # A concise statement of your reasoning (string). If no relevant information is found, set to "None" or "".
  citation: str | None # A direct snippet of the text that supports your answer (string). If no relevant information is found, set to None or "".
  answer: str | None # Your answer to the question (string). If no relevant information is found, set your answer to None or "".
```
Your response:"""


def reference_schema() -> dict:
    from pydantic import BaseModel

    class JobOutput(BaseModel):  # minions/minions.py, verbatim
        explanation: str
        citation: str | None
        answer: str | None

    return JobOutput.model_json_schema()


def load_chunks() -> tuple[list, str, int]:
    from minions.documents import chunk_documents
    from minions.eval.datasets import load_financebench

    here = next((p for p in (ROOT.parent / "shared" / "datasets" / "financebench",
                             Path("/work/shared/datasets/financebench")) if (p / "docs.jsonl.gz").exists()), None)
    item = next(i for i in load_financebench(here).items
                if i.metadata["doc_name"] == DOC and CAPEX_Q in i.question.lower())
    chunks = chunk_documents(item.documents, "chars", 3000)
    return chunks, item.question, len(chunks)


# --- child: one wait policy, both layouts --------------------------------------------------------

def child(n_chunks: int, threads: int) -> dict:
    import asyncio

    from minions.clients.base import Message, Options
    from minions.clients.llamacpp import LlamaCppClient
    from minions.protocols.citations import citation_found
    from minions.protocols.minions_jobs import JOB_OUTPUT_SCHEMA, _judge, job_messages
    from minions.protocols.minions_plan import MinionSConfig
    from minions.protocols.result import JobRecord, JobStatus

    chunks, question, total_chunks = load_chunks()
    chunks = chunks[:n_chunks]
    cfg = MinionSConfig()
    ref_schema = reference_schema()

    async def run() -> dict:
        client = LlamaCppClient("smollm2", n_threads=threads)
        await client.complete("Hello", max_tokens=1)  # load + warm
        st = {k: {"wall": 0.0, "prompt": 0, "evaluated": 0, "out": 0, "kept": 0, "verified": 0, "answered": 0,
                  "out_answering": 0, "out_abstaining": 0, "abstained": 0, "cut": 0} for k in ("reference", "ours")}
        for k, ch in enumerate(chunks):
            order = ("reference", "ours") if k % 2 == 0 else ("ours", "reference")
            for name in order:
                if name == "reference":
                    msgs = [Message(role="user", content=REFERENCE_PROMPT.format(context=ch.text, task=question,
                                                                                 advice=""))]
                    opts = Options(max_tokens=256, temperature=0.0, json_schema=ref_schema)
                else:
                    msgs = job_messages(ch, question, "")
                    opts = Options(max_tokens=cfg.local_max_tokens, temperature=0.0, json_schema=JOB_OUTPUT_SCHEMA)
                t = time.perf_counter()
                out = await client.complete(msgs, opts)
                s = st[name]
                s["wall"] += time.perf_counter() - t
                s["prompt"] += out.usage.prompt_tokens
                s["evaluated"] += out.usage.evaluated_prompt_tokens
                s["out"] += out.usage.completion_tokens
                if name == "reference":
                    if out.finish_reasons[0] == "length":
                        s["cut"] += 1  # the reference discards it
                        continue
                    try:
                        r = json.loads(out.text)
                    except ValueError:
                        s["cut"] += 1
                        continue
                    ans, cit = r.get("answer"), r.get("citation")
                    if ans in (None, "", "None"):
                        s["abstained"] += 1
                        s["out_abstaining"] += out.usage.completion_tokens
                        continue
                    s["answered"] += 1
                    s["out_answering"] += out.usage.completion_tokens
                    s["kept"] += 1  # the reference keeps every answer; we report how many citations verify
                    s["verified"] += bool(cit) and citation_found(cit, ch.text, cfg.citation_similarity)[0]
                else:
                    rec = JobRecord(job_id="j", task_id=1, chunk_id=ch.id, sample=0, instruction=question,
                                    pages=(ch.page_start, ch.page_end))
                    _judge(rec, out.text, ch, cfg)
                    if rec.status is JobStatus.ABSTAINED:
                        s["abstained"] += 1
                        s["out_abstaining"] += out.usage.completion_tokens
                    elif rec.status is JobStatus.UNPARSEABLE:
                        s["cut"] += 1
                    else:
                        s["answered"] += 1
                        s["out_answering"] += out.usage.completion_tokens
                        s["kept"] += rec.kept
                        s["verified"] += rec.verified
        await client.aclose()
        return {"stats": st, "n": len(chunks), "total_chunks": total_chunks, "question": question,
                "threads": threads}

    return asyncio.run(run())


# --- parent --------------------------------------------------------------------------------------

def _load1() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def run_child(policy: str, condition: str, n_chunks: int, threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(POLICIES[policy])
    env["MINIONS_WAIT_POLICY_FROM_BENCH"] = "1"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    hog = None
    if condition == "busy":  # one CPU-bound competitor, ours to start and stop
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    load_before = _load1()
    try:
        p = subprocess.run([sys.executable, __file__, "--child", "--chunks", str(n_chunks), "--threads", str(threads)],
                           env=env, capture_output=True, text=True, check=False)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    if p.returncode != 0:
        raise SystemExit(f"child {policy}/{condition} failed:\n{p.stderr[-3000:]}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["load"] = (load_before, _load1())
    return res


def report(policy: str, condition: str, res: dict, read_share: float) -> dict:
    n, st = res["n"], res["stats"]
    row = {}
    print(f"\n[{policy:<7} {condition:<5}] {n} chunks, {res['threads']} threads, 1-min load avg "
          f"{res['load'][0]:.1f} -> {res['load'][1]:.1f}")
    for name in ("reference", "ours"):
        s = st[name]
        ans = max(s["answered"], 1)
        ab = max(s["abstained"], 1)
        print(f"  {name:<9} {s['wall'] / n:6.2f} s/job  {s['out'] / n:6.1f} output tok/job  "
              f"{s['prompt'] / n:6.0f} prompt tok/job ({s['evaluated'] / n:5.0f} evaluated, rest from cache)  "
              f"answering {s['answered']} ({s['out_answering'] / ans:.0f} tok), abstaining {s['abstained']} "
              f"({s['out_abstaining'] / ab:.0f} tok), cut/unparseable {s['cut']}; "
              f"kept {s['kept']}, citation verified {s['verified']}/{s['kept']}")
        row[name] = s["wall"] / n
    ratio = row["reference"] / row["ours"]
    total = res["total_chunks"]
    ours_jobs = math.ceil(read_share * total)
    q_ref, q_ours = total * row["reference"], ours_jobs * row["ours"]
    print(f"  jobs/s ours vs reference: {ratio:.2f}x [target >= 1.5x]")
    print(f"  per question on the whole filing ({total} chunks; extrapolated from the s/job above): reference "
          f"reads all {total} -> {q_ref:,.0f} s; ours at read={read_share:.0%} (>= 95% evidence coverage) "
          f"~{ours_jobs} jobs -> {q_ours:,.0f} s: {q_ref / q_ours:.2f}x [target >= 3x]")
    return {"policy": policy, "condition": condition, "ref_s": row["reference"], "ours_s": row["ours"],
            "ratio": ratio, "per_question": q_ref / q_ours}


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # figures appear child by child
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="4 chunks")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--policies", default="ACTIVE,PASSIVE,SPIN")
    ap.add_argument("--conditions", default="quiet,busy")
    ap.add_argument("--read-share", type=float, default=0.30)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    n = 4 if a.quick else a.chunks
    if a.child:
        print(json.dumps(child(n, a.threads)))
        return
    rows = []
    for cond in a.conditions.split(","):
        for pol in a.policies.split(","):
            rows.append(report(pol, cond, run_child(pol, cond, n, a.threads), a.read_share))
    print("\nSummary (s/job ours / reference, ratio):")
    for r in rows:
        print(f"  {r['policy']:<7} {r['condition']:<5} ours {r['ours_s']:.2f}  reference {r['ref_s']:.2f}  "
              f"{r['ratio']:.2f}x  per question {r['per_question']:.2f}x")


if __name__ == "__main__":
    main()
