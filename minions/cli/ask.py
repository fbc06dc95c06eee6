"""`minions ask PATH... -q QUESTION`: one question over documents, with any protocol."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console

from minions import errors

DEFAULT_LOCAL = "llamacpp/smollm2"
DEFAULT_REMOTE = "llamacpp/smollm2"

# CLI flag -> protocol config field. Each protocol takes the ones its Config declares.
KNOBS = {
    "max_rounds": int, "tasks_per_round": int, "samples_per_task": int, "chunk_size": int,
    "chunk_strategy": str, "max_jobs_per_round": int, "local_max_tokens": int, "remote_max_tokens": int,
    "retrieval_top_k": int, "top_k": int, "concurrency": int, "strategy": str, "read": str,
    "local_time_budget": float,
}
HELP = {
    "read": "MinionS: how much of the documents the local model reads per round: all, N (tokens) or P%% "
            "(default: what it reads in --local-time-budget seconds at its measured speed)",
    "local_time_budget": "MinionS: seconds of local reading per round when --read is not given (default 120)",
}


def _read_budget(text: str) -> str:
    from minions.protocols.reading import ReadBudget

    try:
        ReadBudget.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def add_parser(sub) -> None:
    from minions.protocols import PROTOCOL_NAMES

    p = sub.add_parser("ask", help="ask a question over documents",
                       description="Ask a question over one or more documents (PDF, TXT, MD, HTML, DOCX).",
                       epilog="example: minions ask report.pdf -q 'What was FY2023 revenue?' --protocol minions",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="documents to read")
    p.add_argument("-q", "--question", required=True)
    p.add_argument("--protocol", choices=PROTOCOL_NAMES, default="minions")
    p.add_argument("--local", default=DEFAULT_LOCAL, help="local model spec, e.g. ollama/llama3.2:3b")
    p.add_argument("--remote", default=DEFAULT_REMOTE, help="remote model spec, e.g. openai/gpt-4o-mini")
    p.add_argument("--remote-price-as", default=None, metavar="SPEC",
                   help="price the remote as this model (default openai/gpt-4o when the remote is embedded)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible server URL for the remote")
    for knob, typ in KNOBS.items():
        p.add_argument("--" + knob.replace("_", "-"), type=_read_budget if knob == "read" else typ, default=None,
                       help=argparse.SUPPRESS if knob in ("top_k",) else HELP.get(knob))
    p.add_argument("--retrieval", action="store_true", help="MinionS: BM25-filter chunks before local jobs")
    p.add_argument("--max-remote-usd", type=float, default=None, help="stop before remote spend exceeds this")
    p.add_argument("--privacy", action="store_true", help="scrub personal data from everything sent remote")
    p.add_argument("--private-name", action="append", default=[], metavar="NAME",
                   help="a name to scrub (repeatable; implies --privacy)")
    p.add_argument("--log-dir", default=None, help="write the run log (JSON) here")
    p.add_argument("--no-store-text", action="store_true", help="omit document text from the log")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the live view")
    p.add_argument("--quiet", action="store_true", help="no live view; answer and cost table only")
    p.set_defaults(func=run)


def build_protocol(args: argparse.Namespace):
    from minions.protocols.build import build_protocol as build

    privacy = None
    if args.privacy or args.private_name:
        from minions.protocols.privacy import Scrubber

        privacy = Scrubber(names=args.private_name)
    knobs = {k: getattr(args, k) for k in KNOBS}
    knobs["retrieval"] = True if args.retrieval else None
    return build(args.protocol, local=args.local, remote=args.remote, remote_price_as=args.remote_price_as,
                 remote_kw={"base_url": args.base_url} if args.base_url else None, knobs=knobs,
                 max_remote_usd=args.max_remote_usd, privacy=privacy, store_text=not args.no_store_text)


def run(args: argparse.Namespace) -> int:
    from minions.cli.render import LiveView, print_result
    from minions.documents import load_many

    out = Console()
    err = Console(stderr=True)
    protocol = build_protocol(args)  # configuration errors first: they are cheaper to find than a bad PDF
    docs = load_many(args.paths)
    live = None if (args.json or args.quiet) else LiveView(err)
    result = protocol.run(args.question, docs, on_event=live)
    if args.log_dir:
        path = result.save(args.log_dir)
        if not args.json:
            err.print(f"[dim]run log: {path}[/]")
    if args.json:
        sys.stdout.write(json.dumps(result.summary(), indent=2) + "\n")
    else:
        print_result(out, result)
    if result.error:
        err.print(f"[red]error ({result.error_type}):[/] {result.error}")
        if result.answer is None:
            return 2 if result.error_type in {c.__name__ for c in _config_errors()} else 1
    return 0 if result.answer is not None else 1


def _config_errors():
    return (errors.ConfigError, errors.MissingAPIKeyError, errors.UnknownProviderError, errors.MissingDependencyError)
