"""`python -m minions.eval`: cost/quality sweeps with a live progress bar and a summary table.

    python -m minions.eval --config evals/offline.toml
    python -m minions.eval --dataset sample --protocol minions --protocol rag \\
        --local llamacpp/smollm2 --remote llamacpp/smollm2 --remote-price-as openai/gpt-4o --limit 3

Flags override the config file's keys. Rerunning the same command resumes: finished pairs are
skipped, and the summary is recomputed from results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from minions import errors
from minions.cli.safe_text import markup
from minions.redact import env_secrets, redact


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pairs(items: list[str] | None, flag: str, *, lists: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise errors.ConfigError(f"{flag} takes KEY=VALUE, got {item!r}")
        out[key.strip()] = [_value(v) for v in val.split(",")] if lists else _value(val)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m minions.eval", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("--config", help="TOML sweep config (see evals/offline.toml)")
    p.add_argument("--name", help="sweep name (default run dir: runs/NAME)")
    p.add_argument("--dataset", action="append", help="financebench | longhealth | qasper | sample (repeatable)")
    p.add_argument("--data", action="append", metavar="NAME=PATH", help="where a dataset lives (repeatable)")
    p.add_argument("--protocol", action="append", help="minion | minions | remote-only | local-only | rag (repeatable)")
    p.add_argument("--local", action="append", metavar="SPEC", help="local model spec (repeatable: a grid axis)")
    p.add_argument("--remote", action="append", metavar="SPEC", help="remote model spec (repeatable)")
    p.add_argument("--remote-price-as", metavar="SPEC", help="price the remote as this model (stand-in)")
    p.add_argument("--knob", action="append", metavar="KEY=VALUE", help="fixed protocol knob (repeatable)")
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2", help="grid over a knob (repeatable)")
    p.add_argument("--limit", type=int, help="items per dataset")
    p.add_argument("--seed", type=int, help="sample --limit items with this seed (default: the first N)")
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/NAME)")
    p.add_argument("--concurrency", type=int, help="item × configuration pairs run at once")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="per model call (default 120)")
    p.add_argument("--no-cache", action="store_true", help="do not use the LM-call cache")
    p.add_argument("--cache-path", metavar="FILE", help="LM-call cache file (default RUN_DIR/lm_cache.sqlite)")
    p.add_argument("--scorer", help="score every item with this scorer (e.g. judge)")
    p.add_argument("--judge", metavar="SPEC", help="judge model for --scorer judge")
    p.add_argument("--judge-price-as", metavar="SPEC")
    p.add_argument("--index", metavar="PATH", help="a corpus index holding the datasets' documents (minions index): "
                   "their chunks and embeddings are read from it, not computed again for every item")
    p.add_argument("-v", "--verbose", action="store_true", help="also log third-party libraries' INFO lines")
    from minions.cli.executor_flags import add_executor_args

    add_executor_args(p)  # --concurrency then counts the Ray tasks submitted at once
    return p


def config_from_args(args: argparse.Namespace):
    from minions.eval.config import load_config, validate_config

    data: dict[str, Any] = {}
    paths = _pairs(args.data, "--data")
    if args.dataset:
        data["datasets"] = [{"name": d, "path": paths.get(d)} for d in args.dataset]
    simple = {"name": args.name, "protocols": args.protocol, "local": args.local, "remote": args.remote,
              "remote_price_as": args.remote_price_as, "limit": args.limit, "seed": args.seed, "out": args.out,
              "concurrency": args.concurrency, "request_timeout": args.timeout, "cache_path": args.cache_path, "scorer": args.scorer,
              "index": args.index}
    data.update({k: v for k, v in simple.items() if v is not None})
    if args.no_cache:
        data["cache"] = False
    if args.judge:
        data["judge"] = {"model": args.judge, "price_as": args.judge_price_as}
    if args.config:
        cfg = load_config(args.config, **data)
        knobs, grid = {**cfg.knobs, **_pairs(args.knob, "--knob")}, {**cfg.grid, **_pairs(args.grid, "--grid", lists=True)}
        cfg = cfg.model_copy(update={"knobs": knobs, "grid": grid})
    else:
        if not args.dataset or not args.protocol:
            raise errors.ConfigError("Give --config FILE, or at least --dataset NAME and --protocol NAME.")
        data.setdefault("name", "-".join(args.dataset))
        data["knobs"], data["grid"] = _pairs(args.knob, "--knob"), _pairs(args.grid, "--grid", lists=True)
        cfg = validate_config(data)
    if paths:
        cfg = cfg.model_copy(update={"datasets": [d.model_copy(update={"path": paths.get(d.name, d.path)})
                                                  for d in cfg.datasets]})
    return cfg


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # logs and pipes: wide enough for the summary table, not 80 columns
        console = Console(width=180)
    args = build_parser().parse_args(argv)
    from minions.cli import logs

    undo_logging, undo_warnings = logs.install(verbose=args.verbose), logs.plain_warnings()
    try:
        try:
            import matplotlib  # noqa: F401  fail now, not after an hour of sweeping
        except ImportError as e:
            raise errors.MissingDependencyError("matplotlib", "eval") from e
        cfg = config_from_args(args)
        from minions.cli.executor_flags import executor_from_args
        from minions.executors import open_executor

        executor = open_executor(executor_from_args(
            args, [*cfg.local, *cfg.remote, cfg.judge.model if cfg.judge else None]))
        try:
            return _run(cfg, console, executor)
        finally:
            if executor is not None:
                executor.close()
    except errors.MinionsError as e:
        console.print(f"[red]error:[/red] {markup(redact(str(e), env_secrets(), credentials=True))}")
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: finished items are saved; rerun the same command to resume.")
        return 130
    finally:
        undo_logging()
        undo_warnings()


def _run(cfg, console, executor=None) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from minions.eval.runner import PairFinished, SweepStarted, run_sweep

    started = time.perf_counter()
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.fields[last]}"), console=console, transient=False)
    task_id = None

    def on_progress(event: Any) -> None:
        nonlocal task_id
        if isinstance(event, SweepStarted):
            for name, d in event.datasets.items():
                skipped = f", {d['skipped']} skipped (documents unavailable)" if d["skipped"] else ""
                console.print(f"[bold]{name}[/bold]: {d['items']} items{skipped}")
            console.print(f"{len(event.configs)} configurations: {', '.join(event.configs)}")
            if event.done:
                console.print(f"resuming: {event.done} of {event.total} pairs already in results.jsonl")
            for w in event.warnings:
                console.print(f"[yellow]warning:[/yellow] {markup(w)}")
            task_id = progress.add_task(cfg.name, total=event.total, completed=event.done, last="")
        elif isinstance(event, PairFinished) and task_id is not None:
            r = event.row
            mark = "[red]✗ error[/red]" if r.error else f"score {r.score:.2f}"
            progress.update(task_id, completed=event.done, last=f"{markup(r.item_id)} · {markup(r.config)} · {mark}")

    with progress:
        outcome = run_sweep(cfg, on_progress=on_progress, executor=executor)
    print_summary(console, outcome, cfg)
    console.print(f"wall time {time.perf_counter() - started:.1f}s · results in {outcome.run_dir}/ "
                  f"(results.jsonl, summary.csv, summary.md, pareto.png, privacy.png)")
    return 0


def print_summary(console, outcome, cfg) -> None:
    from rich.table import Table

    from minions.eval.report import COLUMNS, LEGEND, display_row

    table = Table(title=f"{cfg.name}: per-configuration summary", show_lines=False)
    for c in COLUMNS:
        table.add_column(c, justify="left" if c in ("dataset", "config") else "right",
                         overflow="fold", no_wrap=c != "config")
    for s in outcome.summary:
        table.add_row(*display_row(s))
    console.print(table)
    console.print(f"[dim]{LEGEND}[/dim]")
    if any(s.stand_in for s in outcome.summary):
        console.print(f"[dim]remote is a stand-in priced as {cfg.remote_price_as}[/dim]")
    judge = [s.judge_usd for s in outcome.summary if s.judge_usd]
    if judge:
        console.print(f"judge cost (not included above): ${sum(judge):.4f}")
    for w in outcome.warnings:  # again after the table, where it is read
        console.print(f"[yellow]warning:[/yellow] {markup(w)}")
    cache = outcome.cache.describe() if outcome.cache else "off (--no-cache)"
    console.print(f"LM cache: {outcome.cache_hits} hits, {outcome.model_calls} model calls this run; {cache}")


if __name__ == "__main__":
    sys.exit(main())
