"""Reading model output leniently: one text converter and one base schema for what models write.

Models write a list, a number or an object where a schema asks for a string; where the meaning is
clear the value is turned into text rather than refused (a refusal costs a retry). Every protocol's
reply schema reads its text fields through `as_text`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

#: lists nested deeper in a reply field are garbage (parse_reply refuses them first)
MAX_NESTING = 32


class Lenient(BaseModel):
    """A schema for model output: unknown keys are ignored (models add their own)."""

    model_config = ConfigDict(extra="ignore")


def as_text(v: Any, *, lists: Literal["join", "json"] = "join", objects: Literal["json", "keep"] = "json",
            limit: int | None = None, _depth: int = 0) -> Any:
    """A reply field as text: None and strings as they are, booleans and numbers written out, lists
    joined with "; " (lists="join") or written as JSON, other objects as JSON (objects="json", cut to
    `limit`) or left for the schema to refuse ("keep"). Recursion is bounded: nesting deeper than
    MAX_NESTING is a ValueError, which pydantic turns into a validation error the model is shown."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int | float):
        return str(v)
    if _depth >= MAX_NESTING:
        raise ValueError(f"value nested more than {MAX_NESTING} levels deep")
    if isinstance(v, list) and lists == "join":
        if objects == "keep" and not all(isinstance(x, str | int | float) for x in v):
            return v
        return "; ".join(str(as_text(x, lists=lists, objects=objects, limit=limit, _depth=_depth + 1))
                         for x in v if x is not None) or None
    if objects == "keep" and not isinstance(v, list):
        return v
    try:
        text = json.dumps(v, ensure_ascii=False)
    except (ValueError, RecursionError) as e:  # an object nested past the interpreter's limit
        raise ValueError(f"unreadable value: {type(v).__name__}") from e
    return text if limit is None else text[:limit]


def same_text(a: str, b: str) -> bool:
    """Equal once case, punctuation and spacing are ignored."""
    def norm(s: str) -> str:
        return " ".join("".join(ch if ch.isalnum() else " " for ch in s.casefold()).split())
    return norm(a) == norm(b)
