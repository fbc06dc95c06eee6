"""`minions ask PATH... -q QUESTION`: one question over documents, with any protocol."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import AbstractContextManager
from pathlib import Path

from rich.console import Console

from minions import errors
from minions.cli.safe_text import markup

DEFAULT_LOCAL = "llamacpp/smollm2"
DEFAULT_REMOTE = "llamacpp/smollm2"


def budget_flag(text: str) -> float:
    """A dollar cap flag, read as the library reads one (`budget_usd`): finite and >= 0."""
    from minions.protocols.budget import budget_usd

    try:
        return budget_usd(text)  # type: ignore[return-value]
    except errors.ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_parser(sub) -> None:
    from minions.documents.loaders import SUPPORTED

    p = sub.add_parser("ask", help="ask a question over documents",
                       description=f"Ask a question over one or more documents ({SUPPORTED}).",
                       epilog="example: minions ask report.pdf -q 'What was FY2023 revenue?' --protocol minions",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter, allow_abbrev=False)
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="documents to read (each one a file); with --index, indexed files (none: the index picks)")
    p.add_argument("-q", "--question", required=True)
    add_model_args(p)
    p.add_argument("--max-document-chars", type=int, default=None, metavar="N",
                   help="refuse documents with more characters of text (default: $MINIONS_MAX_DOCUMENT_CHARS "
                   "or 50,000,000)")
    p.add_argument("--log-dir", default=None, help="write the run log (JSON) here")
    p.add_argument("--no-store-text", action="store_true", help="omit document text from the log")
    p.add_argument("--egress-log", default=None, metavar="PATH",
                   help="append one hash-chained JSON line per request sent to a remote model, and one per run "
                   "(verify with: minions audit PATH); default: $MINIONS_EGRESS_LOG")
    p.add_argument("--egress-log-text", choices=["on", "off"], default=None,
                   help="keep the text sent in the egress log (on), or only its hash and size (off); "
                   "default: $MINIONS_EGRESS_LOG_TEXT or on")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the live view")
    p.add_argument("--quiet", action="store_true", help="no live view; answer and cost table only")
    p.set_defaults(func=run)


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The model, knob and spending flags `ask`, `serve` and `mcp` share (read into a RunSettings).
    The knob flags are generated from the protocols' Config classes (protocols/knobs.py)."""
    from minions.protocols import PROTOCOL_NAMES
    from minions.protocols.knobs import add_flags

    p.add_argument("--protocol", choices=PROTOCOL_NAMES, default="minions")
    p.add_argument("--local", default=DEFAULT_LOCAL, help="local model spec, e.g. ollama/llama3.2:3b")
    p.add_argument("--remote", default=DEFAULT_REMOTE, help="remote model spec, e.g. openai/gpt-4o-mini")
    p.add_argument("--remote-price-as", default=None, metavar="SPEC",
                   help="price the remote as this model (default openai/gpt-4o when the remote is embedded)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible server URL for the remote")
    p.add_argument("--max-remote-usd", type=budget_flag, default=None, help="stop before remote spend exceeds this")
    p.add_argument("--privacy", action="store_true", help="scrub personal data from everything sent remote")
    p.add_argument("--private-name", action="append", default=[], metavar="NAME",
                   help="a name to scrub (repeatable; implies --privacy)")
    p.add_argument("--index", default=None, metavar="PATH",
                   help="start from a corpus index (minions index DIR... --store PATH): documents, chunks and "
                   "embeddings are read from it; a question given no documents is asked of those it picks")
    add_flags(p)


def settings_from_args(args: argparse.Namespace, **over):
    """The flags as a RunSettings (the one recipe's input)."""
    from minions.protocols.knobs import knobs_from_args
    from minions.protocols.settings import RunSettings

    return RunSettings(**{
        "protocol": args.protocol, "local": args.local, "remote": args.remote, "price_as": args.remote_price_as,
        "base_url": args.base_url, "privacy": args.privacy, "private_names": tuple(args.private_name),
        "max_remote_usd": args.max_remote_usd, "knobs": knobs_from_args(args),
        "store_text": not getattr(args, "no_store_text", False), "index": getattr(args, "index", None), **over})


def build_protocol(args: argparse.Namespace):
    from minions.protocols.build import build_protocol as build

    return build(settings_from_args(args))


def run(args: argparse.Namespace) -> int:
    from minions._sync import Interrupted
    from minions.cli.render import LiveView, flag_lines, print_result
    from minions.documents import load_many
    from minions.documents.limits import max_document_chars
    from minions.protocols.result import RunResult

    out = Console()
    err = Console(stderr=True)
    limit = max_document_chars(args.max_document_chars)
    protocol = build_protocol(args)  # configuration errors first: they are cheaper to find than a bad PDF
    # On the command line every argument is a file: a Path never falls back to being read as text
    # (a typo must not become a 14-character document), and a name holding a newline still loads.
    live = None if (args.json or args.quiet) else LiveView(err)
    if protocol.corpus is not None:  # --index: the stored documents (none named: the run picks them)
        docs = protocol.corpus.documents_for(args.paths) if args.paths else []
    elif not args.paths:
        raise errors.ConfigError("No documents: name the files to read, or start from an index with "
                                 "--index PATH (built by `minions index DIR... --store PATH`).")
    else:
        docs = load_many([Path(p).expanduser() for p in args.paths], max_chars=limit, on_progress=live)
    interrupted = False
    try:
        with _egress_log(args):
            result = protocol.run(args.question, docs, on_event=live)
    except Interrupted as e:  # Ctrl-C: the run was cancelled; show what it had and what it cost
        if live is not None:
            live.close()
        if not isinstance(e.result, RunResult):
            raise
        result, interrupted = e.result, True
    if args.log_dir:
        path = result.save(args.log_dir)
        if not args.json:
            err.print(f"[dim]run log: {path}[/]")
    if args.json:
        sys.stdout.write(json.dumps(result.summary(), indent=2) + "\n")
    else:
        print_result(out, result)
        if live is None:  # --quiet: the live view did not show the warnings as they came
            for w in result.warnings:
                err.print(f"[yellow]warning:[/] {markup(w)}")
    if args.json:  # the live view is off: the flags still get a visible line on stderr
        for line in flag_lines(result):
            err.print(f"[yellow]warning:[/] {markup(line)}")
    if interrupted:
        err.print("[yellow]interrupted:[/] the run was cancelled; the answer and cost above are partial")
        return 130
    if result.error:
        err.print(f"[red]error ({result.error_type}):[/] {markup(result.error)}")
        if result.answer is None:
            kind = errors.error_class(result.error_type)
            return 2 if kind is not None and issubclass(kind, _config_errors()) else 1
    # A degraded or ungrounded answer still exits 0: see the exit codes in minions/cli/__init__.py.
    return 0 if result.answer is not None else 1


def _egress_log(args: argparse.Namespace) -> AbstractContextManager[None]:
    """The --egress-log ledger as a capture block (the env's ledger, if any, is added per request)."""
    import contextlib
    import os

    from minions.egress.ledger import Ledger
    from minions.egress.record import LOG_ENV, LOG_TEXT_ENV, capture

    text_flag = args.egress_log_text or os.environ.get(LOG_TEXT_ENV, "on")
    text = text_flag.lower() not in ("0", "off", "no", "false")
    path = args.egress_log or os.environ.get(LOG_ENV)
    if not path:
        return contextlib.nullcontext()
    return capture(Ledger(path, text=text))


def _config_errors() -> tuple[type[errors.MinionsError], ...]:
    return (errors.ConfigError, errors.MissingAPIKeyError, errors.UnknownProviderError, errors.MissingDependencyError)
