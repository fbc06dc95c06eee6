"""The `minions` command. Every command that runs a protocol builds it with the library's one recipe
(`minions.protocols.build`, from a `RunSettings`): ask → build_protocol(settings).run, serve and mcp →
the same recipe once per request, eval → minions.eval.

Exit codes: 0 success · 1 the run failed (model/server error, no answer) · 2 bad usage or
configuration (unknown provider, missing API key or package, unreadable file) · 3 `minions batch` stopped
by a cap (--max-total-usd, --max-seconds; rerun to resume) · 130 interrupted
(Ctrl-C: `minions ask` cancels the run, prints the partial result and its cost, then exits 130).

A *degraded* answer (a remote step failed for good and the answer is the best verified local
result, `"degraded": true` in --json) and an *ungrounded* one (`"grounded": false`) exit 0, with a
warning on stderr: the answer on stdout is usable — a degraded one is backed by quotes verified in
the document — and a script that treats any non-zero code as "no answer" should not throw it away.
Scripts that must not accept them check those two keys of the --json output.
"""

from __future__ import annotations

import argparse
import os
import sys

from minions import errors

EPILOG = """examples:
  minions ask report.pdf -q "What was FY2023 revenue?"                      # embedded model, MinionS
  minions ask 10k.pdf -q "..." --local ollama/llama3.2:3b --remote openai/gpt-4o-mini
  minions ask notes.md -q "..." --protocol minion --max-rounds 3 --json
  minions batch questions.jsonl 10k.pdf --out answers.jsonl   # a question set, resumable
  minions index filings/ --store filings.minions && minions ask -q "..." --index filings.minions
  minions models                      # embedded models, Ollama models, the price table
  minions eval --config evals/offline.toml
  minions ask 10k.pdf -q "..." --egress-log egress.jsonl && minions audit egress.jsonl   # what left
  minions app                         # the Streamlit document Q&A app
  minions serve report.pdf --port 8000   # OpenAI-compatible API (model = protocol)
  minions mcp --root ~/reports        # MCP server (stdio) for agents and IDEs

exit codes: 0 ok (also a degraded or ungrounded answer: see "degraded"/"grounded" in --json),
  1 run failed, 2 bad usage or configuration, 130 interrupted (partial result printed)"""


def build_parser() -> argparse.ArgumentParser:
    from minions.cli import ask, audit, batch, index, models, serve

    p = argparse.ArgumentParser(prog="minions", description="Answer questions over long documents with a "
                                "local model reading and a remote model planning.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    ask.add_parser(sub)
    batch.add_parser(sub)
    index.add_parser(sub)
    models.add_parser(sub)
    audit.add_parser(sub)
    serve.add_parsers(sub)
    app = sub.add_parser("app", help="start the Streamlit app", description="Start the document Q&A app "
                         "(same as: streamlit run apps/streamlit_app.py).", epilog="example: minions app --port 8502",
                         allow_abbrev=False)
    app.add_argument("--port", type=int, default=8501)
    app.add_argument("--index", default=None, metavar="PATH",
                     help="a `minions index` store: questions asked with no uploaded document are answered from it")
    app.set_defaults(func=app_command)
    sub.add_parser("eval", help="cost/quality sweeps (same as python -m minions.eval)", add_help=False)
    for command in sub.choices.values():  # --max-round must not quietly mean --max-rounds
        command.allow_abbrev = False
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "eval":
        from minions.eval.__main__ import main as eval_main

        return eval_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return run_parsed(args)


def run_parsed(args: argparse.Namespace) -> int:
    """Run parsed arguments with the exit codes above (scripts that inject models call this)."""
    from minions.cli.logs import plain_warnings

    undo_warnings = plain_warnings()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (errors.ConfigError, errors.DocumentError) as e:
        print(f"error: {_safe(e)}", file=sys.stderr)
        return 2
    except errors.MinionsError as e:
        print(f"error: {_safe(e)}", file=sys.stderr)
        return 1
    finally:
        undo_warnings()


def _safe(e: Exception) -> str:
    """An error message fit for the terminal: no API keys, no control sequences (it may quote a file
    name or a server)."""
    from minions.cli.safe_text import plain
    from minions.redact import env_secrets, redact

    return plain(redact(str(e), env_secrets(), credentials=True))


def app_command(args: argparse.Namespace) -> int:
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "apps" / "streamlit_app.py"
    if not script.exists():
        print("error: apps/streamlit_app.py not found; run `minions app` from a source checkout", file=sys.stderr)
        return 2
    try:
        import streamlit  # noqa: F401
    except ImportError:
        raise errors.MissingDependencyError("streamlit", "app") from None
    env = dict(os.environ)
    if args.index:
        env["MINIONS_INDEX"] = str(Path(args.index).expanduser().resolve())  # the sidebar's default
    return subprocess.call([sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(args.port)],
                           env=env)
