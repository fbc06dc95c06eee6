"""Keep API keys out of error messages, results, logs and printed output.

A server may echo the request's `Authorization` header in an error body (some proxies and
gateways do), and that body becomes our error message. Whoever holds a key removes it from what
it passes on:

- a client removes its own key (given as `api_key=` or read from its variable) from the errors it
  raises — it is the only one that knows an explicit key;
- a protocol removes its clients' keys and every key in the environment from its `RunResult`
  (answer, error, warnings, transcript) and from the notices it emits;
- front ends (CLI, eval) remove the environment's keys from errors they print.

"Keys in the environment" are the values of variables named `*_API_KEY` (OPENAI_API_KEY,
ANTHROPIC_API_KEY, TOGETHER_API_KEY, OPENROUTER_API_KEY and any provider added later), read when
asked, never cached. Error messages are also cleaned of credential-shaped text (`Bearer ...`,
`x-api-key: ...`, `sk-...`) even when the key is not one we know.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[redacted]"
KEY_SUFFIX = "_API_KEY"
#: shorter values are not treated as secrets (a placeholder such as "x" would blank every "x")
MIN_SECRET_CHARS = 8

_CREDENTIALS = re.compile(
    r"(?i)(\bbearer\s+|\bx-api-key[\"']?\s*[:=]\s*[\"']?|\bapi[_-]?key[\"']?\s*[:=]\s*[\"']?)"
    r"[A-Za-z0-9._~+/=-]{8,}"
    r"|\bsk-[A-Za-z0-9_-]{12,}")


def env_secrets(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Values of the `*_API_KEY` environment variables, longest first."""
    env = os.environ if environ is None else environ
    return normalize(v for k, v in env.items() if k.upper().endswith(KEY_SUFFIX))


def normalize(secrets: Iterable[str | None]) -> tuple[str, ...]:
    """Distinct secrets worth redacting, longest first (so a key inside a longer one goes too)."""
    kept = {s.strip() for s in secrets if s and len(s.strip()) >= MIN_SECRET_CHARS}
    return tuple(sorted(kept, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str] = (), *, credentials: bool = False) -> str:
    """`text` with every secret replaced by "[redacted]"; with `credentials`, also anything shaped like
    a credential (for error messages and warnings, never for model text or documents)."""
    for s in normalize(secrets):
        if s in text:
            text = text.replace(s, REDACTED)
    if credentials:
        text = _CREDENTIALS.sub(lambda m: (m.group(1) or "") + REDACTED, text)
    return text


def contains(text: str, secrets: Iterable[str]) -> bool:
    return any(s in text for s in normalize(secrets))


def tree_contains(obj: Any, secrets: tuple[str, ...]) -> bool:
    """Whether any string inside `obj` (dicts, lists, tuples of them) holds a secret. Walks the
    strings in place: no JSON copy of a result whose transcript may be as large as its documents."""
    if isinstance(obj, str):
        return any(s in obj for s in secrets)
    if isinstance(obj, dict):
        return any(tree_contains(k, secrets) or tree_contains(v, secrets) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return any(tree_contains(v, secrets) for v in obj)
    return False


def redact_tree(obj: Any, secrets: tuple[str, ...]) -> Any:
    """A copy of `obj` with `redact` applied to every string inside it."""
    if isinstance(obj, str):
        return redact(obj, secrets)
    if isinstance(obj, dict):
        return {redact_tree(k, secrets): redact_tree(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(redact_tree(v, secrets) for v in obj)
    return obj
