"""`minions serve` (OpenAI-compatible HTTP) and `minions mcp` (MCP): the model and knob flags of
`minions ask`, plus serving limits. Clients are built once, at start, by the one recipe
(`protocols/build.py`), which also builds each request's protocol."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from pydantic import SecretStr, ValidationError

from minions import errors
from minions.cli import ask

API_KEY_ENV = "MINIONS_API_KEY"
#: ServeSettings field -> the flag that sets it (for error messages)
FLAGS = {"max_concurrent": "--max-concurrent", "max_queue": "--max-queue", "timeout_s": "--timeout",
         "max_body_bytes": "--max-body-mb", "max_request_usd": "--max-remote-usd", "max_total_usd": "--max-total-usd"}


def add_parsers(sub) -> None:
    p = sub.add_parser("serve", help="serve protocols as an OpenAI-compatible API",
                       description="An OpenAI-compatible server: POST /v1/chat/completions with model = a protocol "
                       "(minions, minion, rag, ...). Documents: the paths given here (by id), file parts, or "
                       "POST /v1/files. GET /metrics for Prometheus.",
                       epilog="example: minions serve report.pdf --port 8000 --remote openai/gpt-4o-mini",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter, allow_abbrev=False)
    p.add_argument("paths", nargs="*", metavar="DOC", help="corpus documents (addressable by id)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None,
                   help=f"require 'Authorization: Bearer KEY' (or set {API_KEY_ENV}; the variable keeps it out "
                   "of the process list)")
    _limits(p)
    p.set_defaults(func=serve)

    m = sub.add_parser("mcp", help="serve protocols as MCP tools (stdio or streamable HTTP)",
                       description="An MCP server with the tools ask(question, documents, protocol) and "
                       "list_documents(), and the corpus documents as resources. Paths are confined to --root.",
                       epilog="example: minions mcp --root ~/reports --remote openai/gpt-4o-mini",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter, allow_abbrev=False)
    m.add_argument("paths", nargs="*", metavar="DOC", help="corpus documents (addressable by id)")
    m.add_argument("--root", action="append", default=None, metavar="DIR",
                   help="directory the ask tool may read documents from (repeatable; default: the current "
                   "directory); any other path is refused unread")
    m.add_argument("--http", action="store_true", help="streamable HTTP at http://HOST:PORT/mcp instead of stdio")
    m.add_argument("--host", default="127.0.0.1")
    m.add_argument("--port", type=int, default=8000)
    _limits(m)
    m.set_defaults(func=mcp)


def _limits(p: argparse.ArgumentParser) -> None:
    ask.add_model_args(p)
    p.add_argument("--max-concurrent", type=int, default=4, help="runs at once")
    p.add_argument("--max-queue", type=int, default=16, help="runs waiting for a slot; beyond: 429 Retry-After")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per request, queue wait included")
    p.add_argument("--max-body-mb", type=float, default=32.0, help="largest request body (413 beyond)")
    p.add_argument("--max-total-usd", type=ask.budget_flag, default=None,
                   help="remote spend cap for the server's life (--max-remote-usd caps each request)")
    _ceiling_flags(p)
    p.add_argument("--allow-public", action="store_true",
                   help="allow binding a non-loopback --host without an API key (serve) or at all (mcp --http, "
                   "which has no authentication): anyone who can reach the port can spend your model budget")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also log third-party libraries' INFO lines (default: their warnings only)")
    p.set_defaults(no_store_text=False)


#: Ceilings field -> flag: what one request may ask for (400 above it)
CEILING_FLAGS = {"max_chunks": "--ceiling-chunks", "max_documents": "--ceiling-documents",
                 "local_max_tokens": "--ceiling-local-max-tokens", "remote_max_tokens": "--ceiling-remote-max-tokens",
                 "concurrency": "--ceiling-concurrency", "top_k": "--ceiling-top-k"}


def _ceiling_flags(p: argparse.ArgumentParser) -> None:
    from minions.serve.ceilings import Ceilings

    group = p.add_argument_group("per-request ceilings", "the most one request may ask for (400 above it)")
    for field, flag in CEILING_FLAGS.items():
        info = Ceilings.model_fields[field]
        group.add_argument(flag, type=int, default=info.default, dest="ceiling_" + field, metavar="N",
                           help=info.description or f"request knob {field}")


def _ceilings(args: argparse.Namespace):
    from minions.serve.ceilings import Ceilings

    try:
        return Ceilings(**{f: getattr(args, "ceiling_" + f) for f in CEILING_FLAGS if hasattr(args, "ceiling_" + f)})
    except ValidationError as e:
        first = e.errors()[0]
        raise errors.ConfigError(f"{CEILING_FLAGS[str(first['loc'][0])]}: {first['msg']}.") from None


def build_service(args: argparse.Namespace):
    """The flags as a RunSettings, clients built once from it by the one recipe (both models, for
    every protocol the server offers), the corpus, and the limits."""
    from minions.documents import load_many
    from minions.protocols import PROTOCOL_NAMES
    from minions.protocols.build import build_clients
    from minions.protocols.knobs import knobs_from_args, split_knobs
    from minions.serve.service import ServeSettings, Service

    key = getattr(args, "api_key", None) or os.environ.get(API_KEY_ENV) or None
    _check_exposure(args, key)  # before any model is loaded
    knobs = knobs_from_args(args)
    split_knobs(PROTOCOL_NAMES, knobs)  # configuration errors first, before a model loads
    # Server-wide knobs live in ServeSettings (each protocol takes its own); the budget is per request.
    run = ask.settings_from_args(args, knobs={}, max_remote_usd=None)
    if run.index is not None:  # a missing or damaged index fails at start, not on each request
        from minions.documents.store import open_store

        open_store(run.index).close()
    local, remote = build_clients(run, roles=("local", "remote"))
    run = run.model_copy(update={"local": local, "remote": remote})
    try:
        settings = ServeSettings(default_protocol=args.protocol, knobs=knobs,
                                 max_concurrent=args.max_concurrent, max_queue=args.max_queue,
                                 timeout_s=args.timeout, max_body_bytes=int(args.max_body_mb * 2**20),
                                 api_key=SecretStr(key) if key else None,
                                 max_request_usd=args.max_remote_usd, max_total_usd=args.max_total_usd,
                                 allowed_hosts=_host_names(args.host), ceilings=_ceilings(args))
    except ValidationError as e:
        first = e.errors()[0]
        flag = FLAGS.get(str(first["loc"][0]), str(first["loc"][0]))
        raise errors.ConfigError(f"{flag}: {first['msg']}.") from None
    return Service(settings, local=local, remote=remote, corpus=load_many(args.paths), run=run)


LOOPBACK_NAMES = ["localhost", "127.0.0.1", "::1"]


def _host_names(host: str) -> list[str] | None:
    """Host header names a keyless server answers to: the loopback names when it is bound to
    loopback (DNS rebinding cannot reach it then), else any (it was bound public on purpose)."""
    from minions.clients._http import is_loopback

    return list(dict.fromkeys([*LOOPBACK_NAMES, host.lower()])) if is_loopback(host) else None


def _check_exposure(args: argparse.Namespace, key: str | None) -> None:
    """A server reachable from the network without a key spends the user's budget for anyone:
    refused unless --allow-public says it is meant."""
    from minions.clients._http import is_loopback

    if is_loopback(args.host) or getattr(args, "allow_public", False):
        if not is_loopback(args.host):
            print(f"warning: --host {args.host} without authentication: anyone who can reach this port can "
                  "run models on your keys and read your documents.", file=sys.stderr)
        return
    if getattr(args, "command", None) == "mcp" and getattr(args, "http", False):
        raise errors.ConfigError(f"--host {args.host} exposes the MCP server, which has no authentication, to the "
                                 "network. Bind 127.0.0.1 (the default), or pass --allow-public if that is meant.")
    if getattr(args, "command", None) == "serve" and key is None:
        raise errors.ConfigError(f"--host {args.host} exposes the server to the network without an API key. Set "
                                 f"{API_KEY_ENV} (or --api-key), bind 127.0.0.1 (the default), or pass "
                                 "--allow-public if an open server is meant.")


def _log_to_stderr(args: argparse.Namespace, service) -> None:
    from minions.cli import logs

    key = service.settings.api_key
    logs.install(verbose=args.verbose, secrets=[key.get_secret_value() if key else None])
    handler = logging.StreamHandler(sys.stderr)  # stdout may be the MCP channel: never log there
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("minions.serve")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def serve(args: argparse.Namespace) -> int:
    from minions.serve.app import create_app
    from minions.serve.server import run

    service = build_service(args)
    _log_to_stderr(args, service)
    docs = ", ".join(service.store.corpus) or (f"picked from the index {service.run_settings.index}"
                                               if service.run_settings.index else
                                               "none (send file parts or POST /v1/files)")
    print(f"minions serve: http://{args.host}:{args.port}/v1  models: {', '.join(service.protocols())}  "
          f"documents: {docs}" + ("  (API key required)" if service.settings.api_key else ""), file=sys.stderr)
    run(create_app(service), host=args.host, port=args.port)
    return 0


def mcp(args: argparse.Namespace) -> int:
    from minions.serve.mcp import Roots, create_mcp

    roots = Roots(args.root or [Path.cwd()])
    service = build_service(args)
    _log_to_stderr(args, service)
    server = create_mcp(service, roots)
    from minions.serve.server import settle_heap

    settle_heap()
    if args.http:
        print(f"minions mcp: http://{args.host}:{args.port}/mcp  roots: {', '.join(map(str, roots.dirs))}",
              file=sys.stderr)
        server.run("streamable-http", host=args.host, port=args.port)
    else:
        server.run("stdio")
    return 0
