"""`minions audit PATH`: verify an egress ledger's hash chain and say, per run, what left this machine.

Exit codes: 0 the chain holds · 1 it is broken (the message names the first bad line) · 2 the file
cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from minions.cli.safe_text import markup, plain


def add_parser(sub) -> None:
    p = sub.add_parser("audit", help="verify an egress log and summarise what left this machine",
                       description="Verify the hash chain of an egress log (minions ask --egress-log PATH, or "
                       "$MINIONS_EGRESS_LOG) and print, per run: hosts, requests, bytes, tokens and dollars; "
                       "the characters of each document sent verbatim and their share; personal data scrubbed.",
                       epilog="example: minions audit ~/egress.jsonl --json")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from minions.egress.ledger import ChainError, audit

    err = Console(stderr=True)
    try:
        report = audit(args.path)
    except ChainError as e:
        if args.json:
            sys.stdout.write(json.dumps({"ok": False, "line": e.line, "error": str(e)}) + "\n")
        # plain, unwrapped: scripts and people grep for the line number
        sys.stderr.write(f"egress log broken: {plain(args.path)}: {plain(str(e))}\n")
        return 1
    except OSError as e:
        err.print(f"[red]error:[/] cannot read the egress log {markup(args.path)}: {markup(e.strerror or str(e))}")
        return 2
    if args.json:
        sys.stdout.write(json.dumps({"ok": True, **report.model_dump(mode="json")}, indent=2) + "\n")
        return 0
    out = Console()
    out.print(f"[green]chain ok[/]: {report.lines} lines; last line's hash {report.last_hash}")
    for ra in report.runs:
        name = ra.run_id or "outside any run"
        out.print(f"[bold]run {markup(name)}[/]" + ("" if ra.complete or ra.run_id is None else " (no closing line)"))
        hosts = Table(show_edge=False, pad_edge=False)
        for col in ("host", "requests", "bytes", "prompt tokens", "completion tokens", "dollars"):
            hosts.add_column(col, justify="left" if col == "host" else "right")
        for h in ra.hosts:
            hosts.add_row(markup(h.host), str(h.requests), f"{h.bytes:,}", f"{h.prompt_tokens:,}",
                          f"{h.completion_tokens:,}", "?" if h.cost_usd is None else f"${h.cost_usd:.4f}")
        out.print(hosts)
        for d in ra.documents:
            scrubbed = ", ".join(f"{k} {v}" for k, v in (d.get("scrubbed") or {}).items())
            out.print(f"  {markup(str(d.get('doc_id')))}: {d.get('verbatim_chars', 0):,} of {d.get('chars', 0):,} "
                      f"chars sent verbatim ({d.get('verbatim_share', 0.0):.1%})"
                      + (f"; personal data scrubbed: {markup(scrubbed)}" if scrubbed else ""))
        if ra.withheld is not None:  # the verbatim budget the run kept (issue 22)
            out.print(f"  verbatim budget: {markup(ra.withheld.line())}")
    return 0
