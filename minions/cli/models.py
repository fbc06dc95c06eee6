"""`minions models`: what can be used here — embedded models, Ollama's models, the price table."""

from __future__ import annotations

import argparse
import json
import os
import sys

from rich.console import Console
from rich.table import Table


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list embedded models, Ollama models and prices",
                       description="List the embedded GGUF models found, the models of a running Ollama "
                       "server, and the price table.", epilog="example: minions models --json")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--ollama-host", default=None, help="default: $OLLAMA_HOST or http://localhost:11434")
    p.set_defaults(func=run)


def embedded_models() -> list[dict]:
    from minions import errors
    from minions.clients.llamacpp import PACKAGED_MODELS, packaged_model_path

    found = []
    for name in PACKAGED_MODELS:
        try:
            path = packaged_model_path(name)
        except errors.MinionsError:
            continue
        if all(m["path"] != str(path) for m in found):  # aliases of one file are listed once
            found.append({"spec": f"llamacpp/{name}", "path": str(path), "bytes": path.stat().st_size})
    return found


def ollama_models(host: str | None) -> tuple[list[dict], str | None]:
    """(models, None) or ([], reason) — a missing server is normal, not an error."""
    host = host or os.environ.get("OLLAMA_HOST") or "http://localhost:11434"
    try:
        import ollama
    except ImportError:
        return [], "the ollama package is not installed (pip install 'minions[ollama]')"
    try:
        listing = ollama.Client(host=host, timeout=2).list()
    except Exception as e:  # connection refused, timeout: report, don't fail
        return [], f"no Ollama server at {host} ({type(e).__name__}); start it with `ollama serve`"
    return [{"spec": f"ollama/{m.model}", "bytes": m.size} for m in listing.models], None


def run(args: argparse.Namespace) -> int:
    from minions.cost import PriceTable

    embedded = embedded_models()
    ollama, why = ollama_models(args.ollama_host)
    prices = PriceTable.load()
    if args.json:
        sys.stdout.write(json.dumps({
            "embedded": embedded, "ollama": ollama, "ollama_note": why,
            "prices": {k: p.model_dump() for k, p in prices.rows.items()}}, indent=2) + "\n")
        return 0
    con = Console()
    t = Table(title="Local models")
    t.add_column("spec")
    t.add_column("size", justify="right")
    t.add_column("where")
    for m in embedded:
        t.add_row(m["spec"], f"{m['bytes'] / 1e6:.0f} MB", m["path"])
    for m in ollama:
        t.add_row(m["spec"], f"{(m['bytes'] or 0) / 1e9:.1f} GB", "Ollama")
    con.print(t)
    if why:
        con.print(f"[dim]{why}[/]")
    pt = Table(title="Prices ($ per 1M tokens; MINIONS_PRICES=file.toml adds or overrides rows)")
    for col in ("model", "input", "cached input", "output", "source", "date"):
        pt.add_column(col)
    for k, p in prices.rows.items():
        pt.add_row(k, f"{p.input:g}", "-" if p.cached_input is None else f"{p.cached_input:g}", f"{p.output:g}",
                   p.source, p.date)
    con.print(pt)
    return 0
