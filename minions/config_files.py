"""Reading the user's configuration files (providers, prices, eval configs) with errors that name
the file and the line, never a traceback: a missing file, a directory, bytes that are not UTF-8,
invalid TOML, and values of the wrong shape are all a `ConfigError` that says what to fix."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from minions import errors

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def read_text(path: str | Path, *, what: str) -> str:
    """The UTF-8 text of a regular file; `what` names it in errors ("MINIONS_PRICES file")."""
    p = Path(path).expanduser()
    if not p.exists():
        raise errors.ConfigError(f"{what} {p} does not exist{' (a dangling symlink)' if p.is_symlink() else ''}.")
    if not p.is_file():
        kind = "a directory" if p.is_dir() else "not a regular file"
        raise errors.ConfigError(f"{what} {p} is {kind}: name a TOML file.")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise errors.ConfigError(f"{what} {p} cannot be read: {e.strerror or e}.") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise errors.ConfigError(f"{p}, line {line}: not UTF-8 text (byte {raw[e.start]:#04x}); save the "
                                 "file as UTF-8.") from None


def read_toml(path: str | Path, *, what: str) -> tuple[dict[str, Any], str]:
    """A TOML file's data and its text (for `line_of`)."""
    text = read_text(path, what=what)
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as e:  # its message ends "(at line N, column M)"
        raise errors.ConfigError(f"{Path(path).expanduser()}: not valid TOML: {e}.") from None


def _key_path(text: str) -> tuple[str, ...]:
    """`a . "b c"` -> ("a", "b c") (quotes and spaces dropped; good enough to find a line)."""
    return tuple(part.strip().strip("\"'") for part in text.split("."))


def line_of(text: str, *keys: str) -> int | None:
    """The line where a table or key is defined (best effort, for error messages):
    `line_of(text, "providers", "x")` finds `[providers.x]`, or `x = ...` under `[providers]`."""
    table: tuple[str, ...] = ()
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.split("#", 1)[0].strip()
        if stripped.startswith("["):
            table = _key_path(stripped.strip("[]"))
            if table == keys:
                return n
            continue
        name, eq, _ = stripped.partition("=")
        if eq and table + _key_path(name) == keys:
            return n
    return None


def where(path: str | Path, text: str, *keys: str) -> str:
    """"FILE, line N" (or just FILE when the line is not found)."""
    n = line_of(text, *keys)
    return f"{Path(path).expanduser()}" + (f", line {n}" if n else "")
