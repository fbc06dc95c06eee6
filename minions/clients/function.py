"""A client whose replies come from a Python function: scripted tests, benchmarks, dry runs.

Like pydantic-ai's FunctionModel. The function gets the messages and options and returns the
reply text (or a list of texts for n > 1), sync or async. Usage is counted with the offline
tokenizer so cost arithmetic can be checked exactly.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from minions.clients.base import Client, Completion, Message, Options, Usage

ReplyFn = Callable[[list[Message], Options], Any]


class FunctionClient(Client):
    provider = "function"

    def __init__(self, fn: ReplyFn, model: str = "scripted", **kw: Any):
        super().__init__(model, **kw)
        self.fn = fn
        #: every (messages, options) this client received, in order — what tests assert on
        self.calls: list[tuple[list[Message], Options]] = []

    @classmethod
    def from_replies(cls, replies: Iterable[str], model: str = "scripted", **kw: Any) -> FunctionClient:
        """Answer the i-th call with the i-th reply; the last reply repeats once they run out."""
        items = list(replies)
        state = {"i": 0}

        def reply(_m: list[Message], _o: Options) -> str:
            i = min(state["i"], len(items) - 1)
            state["i"] += 1
            return items[i]

        return cls(reply, model=model, **kw)

    def count_tokens(self, text: str) -> int:
        # Whitespace words: exact, cheap and predictable, so tests can compute expected usage.
        return len(text.split())

    async def _request(self, messages: list[Message], options: Options) -> Completion:
        self.calls.append((messages, options))
        out = self.fn(messages, options)
        if inspect.isawaitable(out):
            out = await out
        texts = [out] if isinstance(out, str) else list(out)
        if len(texts) < options.n:
            texts = (texts * options.n)[: options.n]
        prompt = sum(self.count_tokens(m.content) for m in messages)
        completion = sum(self.count_tokens(t) for t in texts)
        return Completion(
            texts=texts, finish_reasons=["stop"] * len(texts), model=self.model,
            usage=Usage(prompt_tokens=prompt, completion_tokens=completion, requests=1),
        )
