"""`minions serve` under a burst of the worst per-request knobs (issue 21). Prints figures; not a test.

A server process (this script with --serve: the real app on uvicorn, loopback, scripted clients)
over one ~416 KB report. From this process:

1. /health latency idle (the baseline, measured in the same run) and during a burst of 20
   concurrent chat requests with the worst knobs a client may send: the smallest chunk_size the
   server's ceiling allows, 3000 repeated document ids, the largest token settings and concurrency,
   over rag, remote-only and minions (read=all). Target: burst p95 < 100 ms.
2. Memory: the server's peak RSS over its idle RSS, per run in flight (max_concurrent at once).
3. After a timeout: a minions run over tiny chunks on a server with a short --timeout; the server's
   CPU seconds in the 1 s after the 504 arrived. Target: idle (< 0.1 s).
4. Requests above the ceilings (chunk_size=1, remote_max_tokens=10^7): 400 at once, no work.

    python benchmarks/serve_burst.py                  # 20-request burst
    python benchmarks/serve_burst.py --burst 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

DOC_ID = "report"
QUESTION = "What was revenue in fiscal 2023?"
ANSWER = "Revenue was 412 million dollars in fiscal 2023."
ROOT = Path(__file__).resolve().parents[1]


def corpus_text(target_chars: int = 416_000) -> str:
    rng = random.Random(21)
    words = ("revenue cost margin segment growth fiscal operating income tax cash flow capital expenditure "
             "dividend share customer product region europe asia americas backlog order").split()
    paras, size = [], 0
    while size < target_chars:
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(8, 20)))
        para = f"{sentence.capitalize()} was {rng.randint(1, 999)} million dollars in fiscal {rng.randint(2015, 2024)}."
        paras.append(para)
        size += len(para) + 2
    paras[len(paras) // 2] = ANSWER
    return "\n\n".join(paras)


# --- the server process ----------------------------------------------------------------------------

def serve(port: int, timeout: float) -> None:
    from minions.clients.function import FunctionClient
    from minions.documents import Document
    from minions.serve.app import create_app
    from minions.serve.server import run
    from minions.serve.service import ServeSettings, Service

    plan = json.dumps({"tasks": [{"instruction": "Find the revenue in fiscal 2023", "advice": ""}]})
    decide = json.dumps({"decision": "provide_final_answer", "explanation": "found", "answer": ANSWER})

    def remote(messages, _o) -> str:
        text = messages[-1].content
        if "plan the workers' jobs" in text or "not valid" in text:
            return plan
        return decide if "decision" in text.lower() else ANSWER

    def local(messages, _o) -> str:
        return json.dumps({"answer": None})

    doc = Document.from_text(corpus_text(), id=DOC_ID, title="Annual report")
    service = Service(ServeSettings(default_protocol="rag", timeout_s=timeout, max_concurrent=4, max_queue=64),
                      local=FunctionClient(local, model="local"), remote=FunctionClient(remote, model="remote"),
                      corpus=[doc])
    run(create_app(service), host="127.0.0.1", port=port)


# --- measuring -------------------------------------------------------------------------------------

def proc_stat(pid: int) -> tuple[float, float, float]:
    """CPU seconds (user+system), RSS MB and peak RSS MB of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return cpu, int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_server(timeout: float) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--timeout", str(timeout)],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(url + "/health", timeout=1)
            return proc, url
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start") from None
            time.sleep(0.2)


async def health_latencies(client: httpx.AsyncClient, url: str, stop: asyncio.Event | None, n: int) -> list[float]:
    out = []
    while (stop is None and len(out) < n) or (stop is not None and not stop.is_set()):
        t = time.perf_counter()
        r = await client.get(url + "/health")
        out.append(time.perf_counter() - t)
        assert r.status_code == 200
        await asyncio.sleep(0.02)
    return out


def worst_requests(n: int, min_chunk: int) -> list[dict]:
    from minions.serve.ceilings import Ceilings

    c = Ceilings()
    ids = [DOC_ID] * 3000
    kinds = [
        ("rag", {"chunk_size": min_chunk, "top_k": c.top_k, "remote_max_tokens": c.remote_max_tokens}),
        ("remote-only", {"remote_max_tokens": c.remote_max_tokens}),
        ("minions", {"chunk_size": min_chunk, "read": "all", "local_max_tokens": c.local_max_tokens,
                     "remote_max_tokens": c.remote_max_tokens, "concurrency": c.concurrency, "max_rounds": 1}),
    ]
    out = []
    for i in range(n):
        model, knobs = kinds[i % len(kinds)]
        out.append({"model": model, "messages": [{"role": "user", "content": QUESTION}],
                    "minions": {"knobs": knobs, "documents": ids}})
    return out


async def burst(url: str, pid: int, n: int, min_chunk: int) -> dict:
    async with httpx.AsyncClient(timeout=600) as client:
        idle = await health_latencies(client, url, None, 60)
        cpu0, rss0, _ = proc_stat(pid)
        stop = asyncio.Event()
        watcher = asyncio.ensure_future(health_latencies(client, url, stop, 0))
        t = time.perf_counter()
        replies = await asyncio.gather(*(client.post(url + "/v1/chat/completions", json=body)
                                         for body in worst_requests(n, min_chunk)))
        wall = time.perf_counter() - t
        stop.set()
        during = await watcher
        cpu1, rss1, peak = proc_stat(pid)
        refused = [(await client.post(url + "/v1/chat/completions", json={
            "model": "rag", "messages": [{"role": "user", "content": QUESTION}],
            "minions": {"knobs": knobs}})) for knobs in ({"chunk_size": 1}, {"remote_max_tokens": 10**7})]
    codes = [r.status_code for r in replies]
    return {"idle": idle, "during": during, "codes": codes, "wall": wall, "cpu": cpu1 - cpu0, "rss_idle": rss0,
            "rss_after": rss1, "peak": peak, "refused": [(r.status_code, r.json()["error"]["message"][:90])
                                                         for r in refused]}


async def after_timeout(url: str, pid: int, min_chunk: int) -> tuple[int, float, float]:
    body = {"model": "minions", "messages": [{"role": "user", "content": QUESTION}],
            "minions": {"knobs": {"chunk_size": min_chunk, "read": "all", "max_rounds": 20, "concurrency": 16}}}
    async with httpx.AsyncClient(timeout=600) as client:
        t = time.perf_counter()
        r = await client.post(url + "/v1/chat/completions", json=body)
        waited = time.perf_counter() - t
        cpu0 = proc_stat(pid)[0]
        await asyncio.sleep(1.0)
        cpu1 = proc_stat(pid)[0]
    return r.status_code, waited, cpu1 - cpu0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--burst", type=int, default=20)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve is not None:
        serve(args.serve, args.timeout)
        return

    from minions.documents import Document
    from minions.serve.ceilings import Ceilings, min_chunk_size

    doc = Document.from_text(corpus_text(), id=DOC_ID)
    min_chunk = min_chunk_size([doc], "chars", Ceilings().max_chunks)
    print(f"corpus: one document of {len(doc.text):,} characters; smallest chunk_size the ceiling allows: "
          f"{min_chunk} (max_chunks {Ceilings().max_chunks:,})")

    proc, url = start_server(timeout=600)
    try:
        out = asyncio.run(burst(url, proc.pid, args.burst, min_chunk))
    finally:
        proc.terminate()
        proc.wait(30)
    idle, during = out["idle"], out["during"]
    print(f"\n1. /health during a {args.burst}-request burst of the worst knobs ({out['wall']:.1f} s, "
          f"replies {dict((c, out['codes'].count(c)) for c in sorted(set(out['codes'])))})")
    print(f"   idle  : p50 {statistics.median(idle) * 1000:6.1f} ms   p95 {pct(idle, 0.95) * 1000:6.1f} ms   (n={len(idle)})")
    print(f"   burst : p50 {statistics.median(during) * 1000:6.1f} ms   p95 {pct(during, 0.95) * 1000:6.1f} ms   "
          f"max {max(during) * 1000:.1f} ms (n={len(during)})   target p95 < 100 ms")
    in_flight = 4
    print(f"2. memory: idle RSS {out['rss_idle']:.0f} MB, peak {out['peak']:.0f} MB, after {out['rss_after']:.0f} MB: "
          f"{(out['peak'] - out['rss_idle']) / in_flight:.1f} MB per run in flight ({in_flight} at once); "
          f"server CPU for the burst {out['cpu']:.1f} s")
    for code, message in out["refused"]:
        print(f"4. above the ceiling: {code} {message}...")

    proc, url = start_server(timeout=0.5)
    try:
        code, waited, cpu = asyncio.run(after_timeout(url, proc.pid, min_chunk))
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"3. after a timeout: {code} after {waited:.1f} s (--timeout 0.5); server CPU in the next 1 s: {cpu:.2f} s "
          "(target idle, < 0.1 s)")


if __name__ == "__main__":
    main()
