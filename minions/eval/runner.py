"""Run a sweep: every item × configuration, concurrently, resumable, through one shared LM cache.

    outcome = run_sweep(load_config("evals/offline.toml"))
    outcome = run_sweep(cfg, clients_factory=lambda spec: FunctionClient(...))   # scripted models

`clients_factory(spec) -> Client` builds the model behind a spec (default `get_client`); one is
built per spec and shared by every configuration and role, each role seeing it through its own
`CachedClient` (its price key, the shared cache and call counters). Reports progress through
`on_progress` events; never prints.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from minions import errors
from minions._sync import run_sync
from minions.clients.base import Client, Usage
from minions.clients.cache import CachedClient, CacheStats, LMCache
from minions.cost import PriceTable
from minions.eval.config import JudgeSpec, RunConfig, SweepConfig, expand
from minions.eval.datasets import EvalItem, LoadedDataset, load_dataset
from minions.eval.egress import collecting, measure, on_cache_hit
from minions.eval.report import Summary, summarize, write_reports
from minions.eval.results import ResultRow, ResultsFile
from minions.eval.scorers import Scorer, get_scorer
from minions.executors import Limiter, RemoteExecutor
from minions.protocols import Protocol
from minions.protocols.base import protocol_secrets, to_documents
from minions.protocols.build import build_protocol
from minions.protocols.events import emit
from minions.redact import env_secrets, redact
from minions.runlog import UnitFinished, drive

ClientsFactory = Callable[[str], Client]


class SweepStarted(BaseModel):
    total: int                  # item × configuration pairs in the sweep
    done: int                   # already in results.jsonl (resumed)
    configs: list[str]
    datasets: dict[str, dict[str, int]]  # name -> {"items": n, "skipped": unavailable}
    warnings: list[str] = []    # problems found in results.jsonl (unreadable lines, a torn tail)


class PairFinished(BaseModel):
    row: ResultRow
    done: int
    total: int


#: what `on_progress` is called with: the sweep start, then each finished pair
SweepEvent = SweepStarted | PairFinished
ProgressHandler = Callable[[SweepEvent], None | Awaitable[None]]


@dataclass
class SweepOutcome:
    run_dir: Path
    rows: list[ResultRow]               # the sweep's rows (resumed and new), one per pair
    summary: list[Summary]
    new_rows: int
    model_calls: int                    # calls that reached a model (cache misses)
    cache_hits: int
    cache: CacheStats | None
    files: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)   # problems found in results.jsonl on resume
    dropped_lines: int = 0                               # unreadable results.jsonl lines (not counted)


class _Clients:
    """One base client per spec; one CachedClient per (spec, price key) on top of it."""

    def __init__(self, factory: ClientsFactory, cache: LMCache | None):
        self.factory, self.cache = factory, cache
        self.base: dict[str, Client] = {}
        self.wrapped: dict[tuple[str, str | None], CachedClient] = {}

    def get(self, spec: str, price_as: str | None = None) -> CachedClient:
        if spec not in self.base:
            self.base[spec] = self.factory(spec)
        key = (spec, price_as)
        if key not in self.wrapped:
            self.wrapped[key] = CachedClient(self.base[spec], self.cache, price_as=price_as)
            self.wrapped[key].on_hit = on_cache_hit  # a cached remote call still counts as sent
        return self.wrapped[key]

    @property
    def hits(self) -> int:
        return sum(c.hits for c in self.wrapped.values())

    @property
    def misses(self) -> int:
        return sum(c.misses for c in self.wrapped.values())

    async def aclose(self) -> None:
        for c in self.base.values():
            await c.aclose()


def default_factory(timeout: float | None = None) -> ClientsFactory:
    def make(spec: str) -> Client:
        from minions.clients import RetryPolicy, get_client

        return get_client(spec, retry=RetryPolicy(timeout=timeout)) if timeout else get_client(spec)
    return make


def load_items(cfg: SweepConfig) -> list[LoadedDataset]:
    def extra(d) -> dict[str, Any]:
        kw: dict[str, Any] = {"split": d.split} if d.split else {}
        if d.context != "full":
            kw.update(context=d.context, neighbours=d.neighbours)
        return kw
    return [load_dataset(d.name, d.path, limit=d.limit or cfg.limit, seed=cfg.seed, ids=d.ids, **extra(d))
            for d in cfg.datasets]


async def arun_sweep(cfg: SweepConfig, *, clients_factory: ClientsFactory | None = None,
                     on_progress: ProgressHandler | None = None, prices: PriceTable | None = None,
                     executor: RemoteExecutor | None = None) -> SweepOutcome:
    """`executor`: run each pair on it (a Ray task each; `minions.executors`) instead of in this
    process. Its workers open the same LM cache file (shared on one node; see docs/scale.md)."""
    runs = expand(cfg)
    cfg.check_run_dir()
    datasets = await asyncio.to_thread(load_items, cfg)
    run_dir = cfg.run_dir  # created only once the configuration and the data are known to be good
    run_dir.mkdir(parents=True, exist_ok=True)
    prices = prices or PriceTable.load()
    cache = LMCache(Path(cfg.cache_path) if cfg.cache_path else run_dir / "lm_cache.sqlite") if cfg.cache else None
    clients = _Clients(clients_factory or default_factory(cfg.request_timeout), cache)
    (run_dir / "config.json").write_text(json.dumps(
        {"sweep": cfg.model_dump(mode="json"), "configurations": [
            {"id": r.id, "label": r.label, **r.model_dump(exclude={"label"})} for r in runs]}, indent=1))

    protocols = {r.id: _build(r, clients, prices, cfg.index) for r in runs}
    judge = None
    if cfg.judge is not None:
        judge = clients.get(cfg.judge.model, cfg.judge.price_as)
    scorers: dict[str, Scorer] = {}

    def scorer_for(item: EvalItem) -> tuple[str, Scorer]:
        name = cfg.scorer or item.scorer
        if name not in scorers:
            scorers[name] = get_scorer(name, judge=judge, prices=prices)
        return name, scorers[name]

    items = [it for ds in datasets for it in ds.items]
    wanted = {(it.dataset, it.id, r.id) for it in items for r in runs}
    with ResultsFile(run_dir / "results.jsonl") as results:
        warnings, dropped = results.describe_problems(), results.dropped
        finished = results.done() & wanted
        pending = [(it, r) for it in items for r in runs if (it.dataset, it.id, r.id) not in finished]
        total, done = len(wanted), len(finished)
        await emit(on_progress, SweepStarted(
            total=total, done=done, configs=[r.label for r in runs],
            datasets={ds.name: {"items": len(ds.items), "skipped": ds.skipped} for ds in datasets},
            warnings=warnings))
        remaining = Counter(id(it) for it, _ in pending)
        locks = {id(it): asyncio.Lock() for it in items}

        remote_calls = Counter[str]()

        async def one(pair: tuple[EvalItem, RunConfig]) -> ResultRow:
            item, run = pair
            if executor is not None:
                return await _on_executor(executor, _RemotePair(
                    item, run, cfg.scorer or item.scorer, cfg.judge, clients_factory, cfg.request_timeout, prices,
                    cache.path.resolve() if cache else None, cfg.index), remote_calls)
            async with locks[id(item)]:
                docs = await asyncio.to_thread(lambda: item.documents)
            name, scorer = scorer_for(item)
            return await _run_pair(item, docs, run, protocols[run.id], name, scorer)

        def release(pair: tuple[EvalItem, RunConfig], _row: ResultRow) -> None:
            item = pair[0]
            remaining[id(item)] -= 1
            if remaining[id(item)] == 0:
                item.release()  # FinanceBench filings are large: keep only those in flight

        async def progress(event: Any) -> None:
            if isinstance(event, UnitFinished):
                await emit(on_progress, PairFinished(row=event.row, done=event.done, total=event.total))

        try:  # the engine `minions batch` shares: bounded concurrency, one fsync'ed row per pair
            outcome = await drive(pending, one, results, concurrency=cfg.concurrency, done=done, total=total,
                                  on_progress=progress, on_row=release)
        finally:
            await clients.aclose()
        new_rows = outcome.new_rows
        rows = [r for r in results.rows if r.key in wanted]
    summary = summarize(rows, runs)
    files = await asyncio.to_thread(write_reports, run_dir, summary, cfg, warnings)
    stats = await asyncio.to_thread(cache.stats) if cache else None
    if cache:
        cache.close()
    return SweepOutcome(run_dir=run_dir, rows=rows, summary=summary, new_rows=new_rows,
                        model_calls=clients.misses + remote_calls["misses"], cache_hits=clients.hits + remote_calls["hits"], cache=stats, files=files,
                        skipped={ds.name: ds.skipped for ds in datasets}, warnings=warnings,
                        dropped_lines=dropped)


def run_sweep(cfg: SweepConfig, **kw: Any) -> SweepOutcome:
    return run_sync(arun_sweep(cfg, **kw))


def _build(run: RunConfig, clients: _Clients, prices: PriceTable, index: str | None = None) -> Protocol:
    """Through the one recipe (protocols/build.py), as every door: a stand-in remote is priced the
    same (as STAND_IN_PRICE unless remote_price_as says otherwise) and gets the same knobs."""
    def factory(_role: str, spec: str, kw: dict[str, Any]) -> Client:
        return clients.get(spec, kw.get("price_as"))

    try:
        return build_protocol(run.settings().model_copy(update={"index": index}), factory=factory, prices=prices)
    except errors.ConfigError as e:
        raise errors.ConfigError(f"Configuration {run.label!r}: {e}") from e


@dataclass
class _RemotePair:
    """What a worker needs to run one pair on its own: it builds its clients, protocol and scorer."""

    item: EvalItem
    run: RunConfig
    scorer: str
    judge: JudgeSpec | None
    factory: ClientsFactory | None
    timeout: float | None
    prices: PriceTable
    cache_path: Path | None
    index: str | None = None   # the sweep's corpus index (read on the worker's node, at this path)


async def _pair_remote(job: _RemotePair, limiter: Limiter) -> tuple[ResultRow, int, int]:
    """One pair on an executor's worker (a Ray task): the same `_run_pair`, with the worker's own
    clients behind the cluster-wide per-provider limiter; returns the row and the cache's hits and
    misses, which the driver adds up."""
    make = job.factory or default_factory(job.timeout)
    cache = LMCache(job.cache_path) if job.cache_path else None
    clients = _Clients(lambda spec: limiter.wrap(make(spec)), cache)
    try:
        protocol = _build(job.run, clients, job.prices, job.index)
        judge = clients.get(job.judge.model, job.judge.price_as) if job.judge else None
        scorer = get_scorer(job.scorer, judge=judge, prices=job.prices)
        docs = await asyncio.to_thread(lambda: job.item.documents)
        row = await _run_pair(job.item, docs, job.run, protocol, job.scorer, scorer)
    finally:
        await clients.aclose()
        if cache:
            cache.close()
    return row, clients.hits, clients.misses


async def _on_executor(executor: RemoteExecutor, job: _RemotePair, calls: Counter[str]) -> ResultRow:
    try:
        row, hits, misses = await executor.run(_pair_remote, job)
    except Exception as e:  # noqa: BLE001  the pair's worker died more often than Ray retries: its row says so
        run, item = job.run, job.item
        return ResultRow(dataset=item.dataset, item_id=item.id, config_id=run.id, config=run.label,
                         protocol=run.protocol, knobs=run.knobs, local=run.local, remote=run.remote,
                         question=item.question, gold=item.gold, scorer=job.scorer, error_type=type(e).__name__,
                         error=redact(str(e), env_secrets(), credentials=True))
    calls.update(hits=hits, misses=misses)
    return row


async def _run_pair(item: EvalItem, docs: list, run: RunConfig, protocol: Protocol, scorer_name: str,
                    scorer: Scorer) -> ResultRow:
    started = time.perf_counter()
    base: dict[str, Any] = {"dataset": item.dataset, "item_id": item.id, "config_id": run.id, "config": run.label,
                            "protocol": run.protocol, "knobs": run.knobs, "local": run.local, "remote": run.remote,
                            "remote_price_as": protocol.remote.price_as if run.remote and protocol.remote else None,
                            "question": item.question, "gold": item.gold,
                            "scorer": scorer_name}
    try:
        with collecting() as sent:
            result = await protocol.arun(item.task, docs)
    except Exception as e:  # noqa: BLE001  protocols return typed failures in the result; anything that
        # still escapes (a bug) is recorded with its type and counted as a failure, not allowed to end a
        # sweep of hundreds of items
        return ResultRow(**base, latency_s=time.perf_counter() - started, error_type=type(e).__name__,
                         error=redact(str(e), [*protocol_secrets(protocol), *env_secrets()], credentials=True))
    latency = time.perf_counter() - started
    verbatim_chars, verbatim_share = measure(result, to_documents(docs), sent)
    usage = {role: t.usage for role, t in result.cost.roles.items()}
    cost = {role: t.cost_usd for role, t in result.cost.roles.items()}
    try:
        score = await scorer.score(result.answer, item.gold, item)
        value, detail = score.value, f"{score.method}: {score.detail}"
        if score.usage is not None:
            usage["judge"], cost["judge"] = score.usage, score.cost_usd
    except errors.MinionsError as e:  # e.g. the judge model is unreachable: the answer stays unscored
        value, detail = 0.0, f"scorer failed: {type(e).__name__}: {e}"
    return ResultRow(**base, answer=result.answer, score=value, score_detail=detail, usage=usage, cost_usd=cost,
                     remote_only_estimate_usd=result.cost.remote_only_estimate_usd,
                     remote_stand_in=result.cost.remote_stand_in, rounds=result.n_rounds, latency_s=latency,
                     error=result.error, error_type=result.error_type, budget_exhausted=result.budget_exhausted,
                     rounds_exhausted=result.rounds_exhausted, degraded=result.degraded, grounded=result.grounded,
                     read_share=result.coverage.share if result.coverage else None,
                     verbatim_chars=verbatim_chars, verbatim_share=verbatim_share,
                     settings=result.settings.model_dump(mode="json") if result.settings else None)


__all__ = ["ClientsFactory", "PairFinished", "SweepOutcome", "SweepStarted", "Usage", "arun_sweep", "run_sweep"]
