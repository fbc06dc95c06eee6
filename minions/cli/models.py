"""`minions models`: what can be used here — providers (and whether each one's key is set), embedded
models, Ollama's models, and where prices come from. Keys are never shown, only whether they are set."""

from __future__ import annotations

import argparse
import json
import os
import sys

from rich.console import Console
from rich.table import Table


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list providers, embedded and Ollama models, and prices",
                       description="List the providers (and whether each one's API key is set), the embedded "
                       "GGUF models found, the models of a running Ollama server, and the price sources.",
                       epilog="example: minions models --json")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--ollama-host", default=None, help="default: $OLLAMA_HOST or http://localhost:11434")
    p.set_defaults(func=run)


def embedded_models() -> list[dict]:
    from minions import errors
    from minions.clients.llamacpp import PACKAGED_MODELS, packaged_model_path

    found: list[dict] = []
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


def provider_rows() -> list[dict]:
    """Every registered provider with its wire format, URL and whether its variables are set."""
    from minions.clients.spec import providers

    rows = []
    for p in providers().values():
        missing = [env for env in p.key_envs if not os.environ.get(env)]
        rows.append({"provider": p.name, "wire": p.wire, "base_url": p.base_url, "key_env": p.api_key_env,
                     "needs": list(p.key_envs), "ready": not missing, "missing": missing,
                     "local": p.local, "prices": p.prices, "description": p.description})
    return rows


def catalog_summary() -> dict:
    """The genai-prices data in use: its version and how many models each provider has there."""
    try:
        import genai_prices
        from genai_prices import data_snapshot
    except ImportError:
        return {"source": None, "models": {}}
    counts = {p.id: len(p.models) for p in data_snapshot._bundled_snapshot().providers}
    return {"source": f"genai-prices {genai_prices.__version__} (bundled data, never fetched)", "models": counts}


def run(args: argparse.Namespace) -> int:
    from minions.cost import PriceTable

    embedded = embedded_models()
    ollama, why = ollama_models(args.ollama_host)
    prices = PriceTable.load()
    provs = provider_rows()
    catalog = catalog_summary()
    if args.json:
        sys.stdout.write(json.dumps({
            "providers": provs, "embedded": embedded, "ollama": ollama, "ollama_note": why,
            "prices": {k: p.model_dump() for k, p in prices.rows.items()}, "price_catalog": catalog}, indent=2) + "\n")
        return 0
    con = Console()
    pv = Table(title="Providers (spec: provider/model)")
    for col in ("provider", "wire", "where", "key", "prices"):
        pv.add_column(col)
    for r in provs:
        if r["local"] or not r["needs"]:
            key = "[dim]none needed[/]"
        else:
            key = "[green]set[/]" if r["ready"] else f"[yellow]not set: {', '.join(r['missing'])}[/]"
        where = r["base_url"] or ("$" + r["needs"][1] if r["wire"] == "azure" else "SDK default")
        n = catalog["models"].get(r["prices"] or "")
        pv.add_row(r["provider"], r["wire"], where, key, "local (free)" if r["local"] else
                   (f"genai-prices ({n} models)" if n else "your rows only"))
    con.print(pv)
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
    pt = Table(title="Price rows that win over the catalog ($ per 1M tokens; MINIONS_PRICES=file.toml adds "
               "or overrides rows)")
    for col in ("model", "input", "cached input", "output", "source", "date"):
        pt.add_column(col)
    for k, p in prices.rows.items():
        pt.add_row(k, f"{p.input:g}", "-" if p.cached_input is None else f"{p.cached_input:g}", f"{p.output:g}",
                   p.source, p.date)
    con.print(pt)
    con.print(f"Cloud prices: {catalog['source'] or 'genai-prices is not installed: only the rows above'}")
    return 0
