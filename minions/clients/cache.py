"""An LM-call cache: the same model, messages and options return the stored completion.

    cache = LMCache("runs/x/lm_cache.sqlite")
    client = CachedClient(get_client("ollama/llama3.2:3b"), cache)

Storage is SQLite from the standard library, in WAL mode: every insert is one transaction, so a
process killed mid-write (SIGKILL, Ctrl-C) leaves the database consistent, and readers in other
processes (parallel sweep workers) never block on a writer. `diskcache` would work too, but it is
an optional extra and adds nothing we need here; sqlite keeps the cache usable from core installs.
`synchronous=NORMAL` is durable across process crashes (WAL); only a power loss may lose the last
few entries — they are recomputed, never corrupted.

Key: the inner client's spec (provider/model — not its price key, which does not change what the
model says), each message's role and content (the `cache` hint only affects provider billing),
and every `Options` field (max_tokens, temperature, schema, n, seed, stop).

Cached completions keep the usage of the call that produced them, so a rerun served from the cache
reports the same tokens and dollars as the original run: the sweep measures what the protocol
*would* cost, not what the rerun cost. What the rerun really did is in the counters: `hits` and
`misses` (= model calls made).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from minions.clients.base import Client, Completion, Message, Options, RetryPolicy


class CacheStats(BaseModel):
    entries: int
    bytes: int
    path: str

    def describe(self) -> str:
        size = f"{self.bytes / 1e6:.1f} MB" if self.bytes >= 1e6 else f"{self.bytes / 1e3:.0f} kB"
        return f"{self.entries} entries, {size} at {self.path}"


class LMCache:
    """A file of completions keyed by request. Safe across threads and processes."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, spec TEXT NOT NULL, "
                         "value TEXT NOT NULL, created REAL NOT NULL)")

    @staticmethod
    def key(spec: str, messages: list[Message], options: Options) -> str:
        payload = {"spec": spec, "messages": [[m.role, m.content] for m in messages],
                   "options": options.model_dump(mode="json")}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM completions WHERE key = ?", (key,)).fetchone()
        return Completion.model_validate_json(row[0]) if row else None

    def put(self, key: str, spec: str, completion: Completion) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO completions (key, spec, value, created) VALUES (?, ?, ?, ?)",
                             (key, spec, completion.model_dump_json(), time.time()))

    def stats(self) -> CacheStats:
        with self._lock:
            n = self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        return CacheStats(entries=n, bytes=size, path=str(self.path))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedClient(Client):
    """Wraps a client; `_request` answers from the cache or calls the inner client and stores the reply.

    `cache=None` passes every call through (still counted), so a sweep with `--no-cache` runs the
    same code. `price_as` lets two roles share one inner engine (the embedded model as local, and as
    the remote priced as a cloud model) while being priced apart.
    """

    #: a cache hit sends nothing; a miss is recorded by the inner client, in this wrapper's role
    egress_at_transport = True

    def __init__(self, inner: Client, cache: LMCache | None, *, price_as: str | None = None):
        # The inner client retries and times out on its own; doing it here too would multiply both.
        super().__init__(inner.model, retry=RetryPolicy(max_retries=0, timeout=None),
                         price_as=price_as or inner.price_as)
        self.inner, self.cache = inner, cache
        self.provider = inner.provider  # type: ignore[misc]  # same spec as the inner client
        self.supports_json_schema = inner.supports_json_schema  # type: ignore[misc]
        self.secrets = inner.secrets
        self.stand_in = inner.stand_in
        self.hits = 0
        self.misses = 0  # calls that reached the model
        self._inflight: dict[str, asyncio.Future[Completion]] = {}
        #: called with the messages of each call answered from the cache (which sent nothing), so a
        #: sweep can still measure what the configuration sends (`minions.eval.egress`)
        self.on_hit: Callable[[CachedClient, list[Message]], None] | None = None

    def check_reasoning(self, effort: str) -> str | None:
        return self.inner.check_reasoning(effort)

    def max_billed_tokens(self, options: Options) -> int:
        return self.inner.max_billed_tokens(options)

    @property
    def context_window(self) -> int | None:
        return self.inner.context_window

    @context_window.setter
    def context_window(self, value: int | None) -> None:
        if value is not None:
            self.inner.context_window = value

    def __getattr__(self, name: str) -> Any:
        # Anything else a protocol may read from a backend (n_ctx, path...) comes from the inner client.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def _request(self, messages: list[Message], options: Options) -> Completion:
        if self.cache is None:
            self.misses += 1
            return await self.inner.complete(messages, options)
        key = LMCache.key(self.inner.spec, messages, options)
        found = await asyncio.to_thread(self.cache.get, key)
        if found is not None:
            self.hits += 1
            self._hit(messages)
            return found
        if key in self._inflight:  # the same call is already running in this process: share its reply
            self.hits += 1
            self._hit(messages)
            return await asyncio.shield(self._inflight[key])
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            self.misses += 1
            completion = await self.inner.complete(messages, options)
            await asyncio.to_thread(self.cache.put, key, self.inner.spec, completion)
            future.set_result(completion)
            return completion
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(e)
                future.exception()  # mark it retrieved: nobody else may be waiting
            raise
        finally:
            del self._inflight[key]

    def _hit(self, messages: list[Message]) -> None:
        if self.on_hit is not None:
            self.on_hit(self, messages)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    async def aclose(self) -> None:
        await self.inner.aclose()
