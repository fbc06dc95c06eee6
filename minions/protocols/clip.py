"""One way to shorten text for display or for a prompt: whitespace collapsed to single spaces, then
cut to `n` characters with an ellipsis, so a clipped line never spills or reads as complete."""

from __future__ import annotations


def clip(text: str, n: int) -> str:
    """`text` on one line, at most `n` characters ("…" marks a cut)."""
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
