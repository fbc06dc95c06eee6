"""Model replies are untrusted input: parse them into pydantic schemas, repair, retry, or fail typed.

Nothing here executes, imports or opens anything a model wrote.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import json_repair
from pydantic import BaseModel, ValidationError

from minions import errors
from minions.clients.base import Completion, Message, Options
from minions.protocols.gateway import CallGateway
from minions.protocols.result import Side

T = TypeVar("T", bound=BaseModel)

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
MAX_REPLY_CHARS = 200_000  # a reply longer than this is not worth repairing
#: a reply nested deeper than this (lists/objects) is garbage, not an answer: refused before any
#: schema's validators, whose recursion could exhaust the stack
MAX_NESTING = 32


def parse_reply(text: str, schema: type[T]) -> T:
    """Strict JSON first, then the inside of a code fence, then json-repair's best effort."""
    if len(text) > MAX_REPLY_CHARS:
        raise errors.ModelOutputError(f"reply too long to parse ({len(text)} chars)", raw=text[:2000])
    candidates = [text.strip()]
    candidates += [m.strip() for m in _FENCE.findall(text)]
    start = text.find("{")
    if start >= 0:
        candidates.append(text[start:])
    last: Exception | None = None
    for cand in candidates:
        for loader in (json.loads, _repair):
            try:
                data = loader(cand)
            except Exception as e:  # noqa: BLE001  hostile text may make a parser raise anything
                # (RecursionError on deep nesting, IndexError inside json-repair...): it is bad output
                last = ValueError("JSON nested too deep to read") if isinstance(e, RecursionError) else e
                continue
            if not isinstance(data, dict):
                last = ValueError(f"expected a JSON object, got {type(data).__name__}")
                continue
            if nested_too_deep(data):  # before any validator's recursion could exhaust the stack
                last = ValueError(f"JSON nested more than {MAX_NESTING} levels deep")
                continue
            try:
                return schema.model_validate(data)
            except ValidationError as e:
                last = e
            except (RecursionError, ValueError, TypeError) as e:  # validators on hostile values
                last = ValueError(f"{type(e).__name__}: {str(e)[:200]}")
    raise errors.ModelOutputError(f"reply does not match {schema.__name__}: {_short(last)}", raw=text[:2000])


def nested_too_deep(value: Any, limit: int = MAX_NESTING) -> bool:
    """Are lists/dicts in `value` nested more than `limit` levels? Iterative, so safe at any depth."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item if isinstance(item, list) else item.values() if isinstance(item, dict) else ()
        for child in children:
            if isinstance(child, list | dict):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _repair(text: str) -> Any:
    out = json_repair.loads(text)
    if out in ("", None):
        raise ValueError("nothing recoverable")
    return out


def _short(e: Exception | None) -> str:
    if isinstance(e, ValidationError):
        return "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()[:5])
    return str(e)[:300]


async def ask_json(ctx: CallGateway, role: Side, messages: list[Message], schema: type[T], options: Options, *,
                   step: str, attempts: int = 2) -> tuple[T, Completion]:
    """Ask for JSON matching `schema`; on an invalid reply, show the model its error and ask again."""
    opts = options.model_copy(update={"json_schema": schema.model_json_schema()})
    msgs = list(messages)
    err: errors.ModelOutputError | None = None
    for _ in range(max(1, attempts)):
        completion = await ctx.call(role, msgs, opts, step=step)
        try:
            return parse_reply(completion.text, schema), completion
        except errors.ModelOutputError as e:
            err = e
            # The remote's reply goes back to it clipped: redacted first (--privacy), like all it is sent.
            shown = ctx.redact(completion.text) if role == "remote" else completion.text
            msgs = msgs + [Message(role="assistant", content=shown[:4000]),
                           Message(role="user", content=f"That reply was not valid: {e}. Reply again with "
                                   "only a JSON object matching the requested schema.")]
    assert err is not None
    raise err
