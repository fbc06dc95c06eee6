"""What `minions serve` adds on top of the library. Prints figures; not a test.

Baseline, measured in the same run with the same zero-latency scripted clients (FunctionClient),
the same document and question: the library called directly — a protocol built by the same recipe
(`Service.build`, i.e. protocols/build.py) and `await protocol.arun(...)`.

1. Added latency per request: sequential requests through the server (official `openai` client,
   and raw httpx to show what the SDK itself costs) minus the direct call; p50 and p95.
   Target: added p50 <= 10 ms.
2. Throughput: requests/s with `--concurrency` requests in flight (the server's run cap), against
   direct runs/s with the same concurrency.
3. Memory: the process's RSS idle, after the load, and after it settles; and the Python heap
   (tracemalloc) still held after more requests, which should be ~0.

The server runs in a thread of this process (uvicorn), so it shares the GIL with the client: the
added figures are an upper bound on what a separate server process adds.

    python benchmarks/serve.py                     # 300 sequential, 1000 concurrent requests
    python benchmarks/serve.py --requests 100 --load 300
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
import tracemalloc
from pathlib import Path

import httpx
import openai

from minions.clients.function import FunctionClient
from minions.documents import Document
from minions.serve.app import create_app
from minions.serve.server import BackgroundServer
from minions.serve.service import RunPlan, ServeSettings, Service

PAGES = [f"Page {i}. Revenue was {100 + i} million dollars in fiscal {2000 + i}; costs were {40 + i} million."
         for i in range(1, 9)]
QUESTION = "What was revenue in fiscal 2004?"
ANSWER = "Revenue was 104 million dollars in fiscal 2004"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def make_service(concurrency: int) -> Service:
    remote = FunctionClient(lambda _m, _o: ANSWER, model="remote")
    local = FunctionClient(lambda _m, _o: "nothing", model="local")
    doc = Document.from_pages(PAGES, id="report", title="Report")
    return Service(ServeSettings(default_protocol="remote-only", max_concurrent=concurrency, max_queue=10_000),
                   local=local, remote=remote, corpus=[doc])


async def direct_latencies(service: Service, n: int) -> list[float]:
    plan = RunPlan(protocol="remote-only", task=QUESTION, documents=list(service.store.corpus.values()))
    out = []
    for _ in range(n):
        t = time.perf_counter()
        result = await service.build(plan, None).arun(plan.task, plan.documents)
        out.append(time.perf_counter() - t)
        assert result.answer == ANSWER
    return out


async def direct_throughput(service: Service, n: int, concurrency: int) -> float:
    plan = RunPlan(protocol="remote-only", task=QUESTION, documents=list(service.store.corpus.values()))
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            await service.build(plan, None).arun(plan.task, plan.documents)

    t = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - t)


BODY = {"model": "remote-only", "messages": [{"role": "user", "content": QUESTION}]}


def sdk_latencies(url: str, n: int) -> list[float]:
    client = openai.OpenAI(base_url=url + "/v1", api_key="-", max_retries=0)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        reply = client.chat.completions.create(**BODY)
        out.append(time.perf_counter() - t)
        assert reply.choices[0].message.content == ANSWER
    return out


def http_latencies(url: str, n: int) -> list[float]:
    out = []
    with httpx.Client(base_url=url) as http:
        for _ in range(n):
            t = time.perf_counter()
            r = http.post("/v1/chat/completions", json=BODY)
            out.append(time.perf_counter() - t)
            assert r.status_code == 200
    return out


async def server_throughput(url: str, n: int, concurrency: int) -> float:
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="-", max_retries=0)
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            await client.chat.completions.create(**BODY)

    t = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    rate = n / (time.perf_counter() - t)
    await client.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=300, help="sequential requests for latency")
    ap.add_argument("--load", type=int, default=1000, help="requests for throughput")
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()

    service = make_service(args.concurrency)
    asyncio.run(direct_latencies(service, 20))  # warm-up: imports, tokenizer, prompt templates
    direct = asyncio.run(direct_latencies(service, args.requests))
    direct_rate = asyncio.run(direct_throughput(service, args.load, args.concurrency))

    with BackgroundServer(create_app(service)) as srv:
        sdk_latencies(srv.url, 20)
        gc.collect()
        idle = rss_mb()
        sdk = sdk_latencies(srv.url, args.requests)
        raw = http_latencies(srv.url, args.requests)
        server_rate = asyncio.run(server_throughput(srv.url, args.load, args.concurrency))
        loaded = rss_mb()
        time.sleep(1.0)
        gc.collect()
        settled = rss_mb()
        # Python heap (tracemalloc): what the server still holds after a load, allocator arenas aside
        tracemalloc.start()
        heap_idle = tracemalloc.get_traced_memory()[0]
        asyncio.run(server_throughput(srv.url, args.load // 2, args.concurrency))
        for c in (service.local, service.remote):
            c.calls.clear()  # the scripted clients' record of every prompt is theirs, not the server's
        gc.collect()
        heap_after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()

    ms = 1000.0
    d50, d95 = pct(direct, 0.5) * ms, pct(direct, 0.95) * ms
    print(f"baseline: library direct (protocol.arun), remote-only, scripted zero-latency clients, "
          f"{len(PAGES)}-page document, {args.requests} sequential runs")
    print(f"  direct          p50 {d50:7.2f} ms   p95 {d95:7.2f} ms   mean {statistics.mean(direct) * ms:7.2f} ms")
    for name, lat in (("openai SDK", sdk), ("raw httpx", raw)):
        p50, p95 = pct(lat, 0.5) * ms, pct(lat, 0.95) * ms
        print(f"  via server, {name:10s} p50 {p50:7.2f} ms   p95 {p95:7.2f} ms   "
              f"added p50 {p50 - d50:6.2f} ms   added p95 {p95 - d95:6.2f} ms")
    added = (pct(sdk, 0.5) - pct(direct, 0.5)) * ms
    print(f"  target: added p50 <= 10 ms (openai SDK): {'met' if added <= 10 else 'NOT met'} ({added:.2f} ms)")
    print(f"throughput, {args.load} requests, {args.concurrency} in flight:")
    print(f"  direct {direct_rate:8.1f} runs/s   via server {server_rate:8.1f} requests/s   "
          f"ratio {server_rate / direct_rate:.2f}")
    print(f"memory (RSS): idle {idle:.1f} MB, after load {loaded:.1f} MB, settled {settled:.1f} MB "
          f"(+{settled - idle:.1f} MB; freed arenas are not always returned to the OS)")
    print(f"python heap (tracemalloc) over {args.load // 2} more requests: "
          f"{(heap_after - heap_idle) / 1024:+.1f} KB still held")


if __name__ == "__main__":
    main()
