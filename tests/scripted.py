"""Scripted remotes that answer by what they are asked for, not by how the prompt is worded.

A protocol asks its remote for JSON of a given schema (`Options.json_schema`, built from a pydantic
model whose title names it: "JobPlan", "Synthesis", "LastSynthesis", "RemoteDecision"). A scripted
remote that picks its reply by that title keeps working when a prompt is reworded, and a retry after
an invalid reply (same schema) is simply the next reply for that title.

    remote = by_schema({"JobPlan": [plan(...)], ("Synthesis", "LastSynthesis"): [final("$42 million")]})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from minions.clients.base import Message, Options
from minions.clients.function import FunctionClient

Reply = Sequence[str] | Callable[[list[Message], Options], Any]


def schema_title(options: Options) -> str | None:
    """The title of the JSON schema a call asks for (None: free text)."""
    return (options.json_schema or {}).get("title")


def by_schema(replies: Mapping[str | tuple[str, ...], Reply], *, model: str = "scripted-remote",
              text: Reply | None = None, **kw: Any) -> FunctionClient:
    """A FunctionClient answering each call by its schema's title. A key is a title or a tuple of
    titles sharing one script; its value is a list (the i-th call gets the i-th reply, the last
    repeats) or a function of (messages, options). `text` answers calls without a schema. A call
    for a title with no script fails the test, naming the title."""
    table: dict[str | None, tuple[int, Reply]] = {}
    for i, (key, script) in enumerate(replies.items()):
        for title in (key,) if isinstance(key, str) else key:
            table[title] = (i, script)
    if text is not None:
        table[None] = (len(replies), text)
    counts: dict[int, int] = {}

    def answer(msgs: list[Message], opts: Options) -> Any:
        title = schema_title(opts)
        if title not in table:
            raise AssertionError(f"scripted remote: no reply for schema {title!r}; scripted: {sorted(map(str, table))}")
        slot, script = table[title]
        if callable(script):
            return script(msgs, opts)
        n = counts.get(slot, 0)
        counts[slot] = n + 1
        return script[min(n, len(script) - 1)]

    return FunctionClient(answer, model=model, **kw)
