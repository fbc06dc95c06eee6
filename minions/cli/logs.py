"""Logging for the long-running front ends (`minions serve`, `minions mcp`, `python -m minions.eval`).

Two promises, kept for every handler the process has, uvicorn's and the MCP SDK's included:
- secrets never reach a log: every record is redacted as it is created (a log-record factory, so no
  handler can see the raw text), its message, its exception text and its traceback; the values of
  the `*_API_KEY` variables, the keys given on the command line, and credential-shaped text go;
- third-party libraries stay quiet: their DEBUG and INFO lines (bm25s' "Building index from IDs",
  httpx's request lines) are dropped unless the user asks with `-v`. Our own loggers are unaffected.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Iterable

from minions.redact import env_secrets, normalize, redact

OUR_LOGGERS = ("minions",)


def _redacted_factory(previous: Callable[..., logging.LogRecord], extra: tuple[str, ...]) -> Callable[..., logging.LogRecord]:
    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        scrub(record, extra)
        return record

    factory.minions_redacting = True  # type: ignore[attr-defined]
    factory.previous = previous  # type: ignore[attr-defined]
    return factory


def scrub(record: logging.LogRecord, extra: Iterable[str] = ()) -> None:
    """Redact a record in place: its formatted message, exception and stack text."""
    secrets = normalize([*env_secrets(), *extra])
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001  a malformed record is logging's to report, with its raw text
        message = str(record.msg)
    record.msg, record.args = redact(message, secrets, credentials=True), ()
    if record.exc_info and record.exc_info[0] is not None:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        # the text replaces the exception: a handler rendering exc_info itself (rich) would show the raw one
        record.exc_text, record.exc_info = redact(text, secrets, credentials=True), None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text, secrets, credentials=True)
    if record.stack_info:
        record.stack_info = redact(record.stack_info, secrets, credentials=True)


class QuietLibraries(logging.Filter):
    """Drops third-party records below WARNING (a library may set its own logger to DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.split(".")[0] in OUR_LOGGERS


class _Stderr(logging.StreamHandler):
    """A stream handler on whatever `sys.stderr` is now (it may be replaced after start), whose own
    failures print one redacted line, not logging's default report (which prints the raw exception
    being logged, secrets and all)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # noqa: ANN001
        pass

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802
        try:
            if sys.__stderr__ is not None:  # None under pythonw: nowhere to say it
                sys.__stderr__.write(f"logging failed for a {record.levelname} record of {record.name}\n")
        except Exception:  # noqa: BLE001  nowhere left to say it
            pass


def install(*, verbose: bool = False, secrets: Iterable[str | None] = ()) -> Callable[[], None]:
    """Set up logging for a front end; returns a function that undoes it (tests).

    Installs the redacting record factory, and one stderr handler on the root logger (stdout may be
    the MCP channel), quiet for libraries unless `verbose`. Installed before the servers start, it
    also keeps `logging.basicConfig` calls in libraries (the MCP SDK, wordllama) from adding theirs."""
    extra = normalize(secrets)
    previous = logging.getLogRecordFactory()
    logging.setLogRecordFactory(_redacted_factory(previous, extra))
    root = logging.getLogger()
    handler = _Stderr()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if not verbose:
        handler.addFilter(QuietLibraries())
    old_level = root.level
    quiet = QuietLibraries()
    existing = [] if verbose else [h for h in root.handlers if quiet not in h.filters]
    for h in existing:  # a library's basicConfig that ran before us (wordllama's INFO handler)
        h.addFilter(quiet)
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)

    def undo() -> None:
        logging.setLogRecordFactory(previous)
        root.removeHandler(handler)
        root.setLevel(old_level)
        for h in existing:
            h.removeFilter(quiet)

    return undo


def plain_warnings() -> Callable[[], None]:
    """Show minions' set-up warnings (RiskySetupWarning) as one `warning: ...` line on stderr,
    redacted, instead of Python's file:line format; returns the undo."""
    import warnings

    from minions.errors import RiskySetupWarning

    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        if isinstance(category, type) and issubclass(category, RiskySetupWarning):
            text = redact(str(message), env_secrets(), credentials=True)
            (file or sys.stderr).write(f"warning: {text}\n")
            return
        previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show

    def undo() -> None:
        warnings.showwarning = previous

    return undo
