"""MinionS against an OpenAI-compatible local engine (a vLLM or SGLang deployment, docs/scale.md),
seen from the server: it keeps `concurrency` requests in flight, never more, and sends a chunk's
jobs back to back with the same prompt prefix, so the engine's prefix cache (and a cache-aware
router) holds the chunk. The server is tests/gateway.py over real HTTP, through the openai SDK."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections import Counter
from dataclasses import dataclass, field

from minions.clients import Message, Options, get_client
from minions.documents import Document
from minions.protocols.minions import MinionS
from tests.eval_scripted_sweep import reply_by_schema
from tests.gateway import Gateway, ScriptedBackend
from tests.scripted import by_schema

PAGES = [f"Segment {i}. The segment's revenue was ${10 + i} million in fiscal 2024." for i in range(6)]
TASKS = ["Find the segment's revenue.", "Find the fiscal year."]
SEGMENT = re.compile(r"Segment (\d+)\.")  # which page a job reads, whatever the prompt's layout
HANG_GUARD_S = 60.0  # a ceiling on waiting for the other requests, not a timing assertion


@dataclass
class Engine:
    """The scripted engine behind the server: records the order and overlap of job requests. The
    first `gate` requests wait until `gate` are in flight together, so reaching the client's
    concurrency is observed, not hoped for."""

    gate: int
    lock: threading.Condition = field(default_factory=threading.Condition)
    in_flight: int = 0
    max_in_flight: int = 0
    arrivals: list[tuple[str, str]] = field(default_factory=list)  # (page number, user message)
    gate_opened: bool = False
    #: jobs per chunk: the plan's tasks, and the question itself, which MinionS also asks of each chunk
    per_chunk: int = len(TASKS) + 1

    async def __call__(self, messages: list[Message], options: Options) -> str:
        # A coroutine that waits off the loop: the gateway's handlers and the client under test
        # share minions' one sync-wrapper loop, which a blocking wait would stall.
        user = messages[-1].content
        with self.lock:
            self.arrivals.append((SEGMENT.search(user).group(1), user))
            first_wave = len(self.arrivals) <= self.gate
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.lock.notify_all()
        try:
            if first_wave:
                await asyncio.to_thread(self._wait_for_the_wave)
            figure = re.search(r"\$\d+ million", user)
            answer = figure.group(0) if figure else "not stated"
            return reply_by_schema(options, answer) or answer
        finally:
            with self.lock:
                self.in_flight -= 1

    def _wait_for_the_wave(self) -> None:
        with self.lock:
            self.lock.wait_for(lambda: self.in_flight >= self.gate, timeout=HANG_GUARD_S)
            self.gate_opened = self.gate_opened or self.in_flight >= self.gate


def _run(gateway: Gateway, concurrency: int) -> Engine:
    engine = Engine(gate=concurrency)
    gateway.backend = ScriptedBackend(engine, model="fleet")
    local = get_client("vllm/fleet", base_url=gateway.openai_url)
    remote = by_schema({"JobPlan": [json.dumps({"tasks": [{"instruction": t} for t in TASKS],
                                                "chunking": {"strategy": "pages", "size": 1}})],
                        ("Synthesis", "LastSynthesis"): [json.dumps(
                            {"decision": "provide_final_answer", "explanation": "jobs", "answer": "$10 million"})]})
    doc = Document.from_pages(PAGES, id="fleet", title="Segments")
    result = MinionS(local, remote, concurrency=concurrency, max_rounds=1, read="all").run("Revenue by segment?", [doc])
    assert result.error is None
    per_chunk = {c: n for c, n in Counter(c for c, _ in engine.arrivals).items()}
    assert len(per_chunk) == len(PAGES) and set(per_chunk.values()) == {engine.per_chunk}
    return engine


def test_one_at_a_time_a_chunks_jobs_arrive_back_to_back_with_one_prefix(gateway: Gateway) -> None:
    engine = _run(gateway, concurrency=1)
    chunks = [c for c, _ in engine.arrivals]
    assert engine.max_in_flight == 1
    assert len(set(chunks)) == len(PAGES)
    assert chunks == [c for c in dict.fromkeys(chunks) for _ in range(engine.per_chunk)]  # back to back
    for start in range(0, len(chunks), engine.per_chunk):
        users = [u for _, u in engine.arrivals[start:start + engine.per_chunk]]
        page = PAGES[int(chunks[start])]
        assert page in os.path.commonprefix(users)  # one prefix, the whole excerpt in it


def test_concurrency_requests_are_kept_in_flight_and_never_more(gateway: Gateway) -> None:
    concurrency = 3
    engine = _run(gateway, concurrency)
    assert engine.gate_opened and engine.max_in_flight == concurrency
    # Started in job order through a FIFO semaphore: a job arrives within concurrency-1 places of
    # its turn, so a chunk's jobs arrive within a window of per_chunk - 1 + 2 * (concurrency - 1).
    positions: dict[str, list[int]] = {}
    for i, (chunk, _) in enumerate(engine.arrivals):
        positions.setdefault(chunk, []).append(i)
    assert all(max(p) - min(p) <= engine.per_chunk - 1 + 2 * (concurrency - 1) for p in positions.values())
