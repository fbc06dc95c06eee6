"""The downloadable run log: settings, question and RunResult as JSON, with secrets removed.

Keys never enter the log in the first place (they are not in `Settings` or `RunResult`); the
scrub below is a second line of defence against a key echoed back in an error message.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from typing import Any

import minions
from minions.protocols.result import RunResult

REMOVED = "[secret removed]"
# Provider key shapes (OpenAI sk-..., sk-proj-..., Anthropic sk-ant-...), also when partly masked.
_KEY_SHAPES = re.compile(r"\bsk-[A-Za-z0-9_\-*.]{12,}")


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Remove every typed secret (raw or JSON-escaped) and anything shaped like a provider key."""
    for s in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        for form in {s, json.dumps(s)[1:-1]}:
            text = text.replace(form, REMOVED)
    return _KEY_SHAPES.sub(REMOVED, text)


def run_log(*, question: str, settings: dict[str, Any], result: RunResult | None, error: str | None,
            secrets: Iterable[str]) -> bytes:
    data = {
        "app": "minions document Q&A", "version": minions.__version__,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "question": question, "settings": settings, "error": error,
        "result": result.model_dump(mode="json") if result is not None else None,
    }
    return scrub(json.dumps(data, indent=1, ensure_ascii=False), secrets).encode("utf-8")
