"""What each OpenAI model family accepts on chat completions — one table, first match wins.

Reasoning models (the gpt-5 family, o1, o3, o4-mini) refuse `max_tokens` (they take
`max_completion_tokens`, which also bounds their hidden reasoning tokens), refuse any temperature
but the default 1, and most refuse `stop`. Which `reasoning_effort` values they accept differs by
family. Sources: OpenAI's API reference for chat completions and the 400 bodies the API returns
("Unsupported parameter: 'max_tokens' is not supported with this model. Use
'max_completion_tokens' instead.", "Unsupported value: 'reasoning_effort' does not support
'minimal' with this model. Supported values are: ...").

Model names are matched on their last path segment, so `openrouter/openai/o4-mini` and an Azure
deployment named `gpt-5-mini` get the rules of their family.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

#: what --remote-reasoning defaults to where the family takes an effort: planning and
#: aggregation are short, structured replies, so spend few hidden tokens on them
DEFAULT_EFFORT = "low"
#: the empty-"length" retry never asks for more completion tokens than this
MAX_RETRY_TOKENS = 32_768


class Family(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    pattern: str
    #: the request field that bounds the reply (hidden reasoning included for reasoning models)
    max_tokens_field: str = "max_tokens"
    #: False: only the default temperature (1) is accepted, so none is sent
    temperature: bool = True
    #: False: `stop` is refused; the client cuts the reply at the stop sequence itself
    stop: bool = True
    #: False: system messages are refused (the first o1 releases); they lead the first user turn
    system: bool = True
    #: accepted `reasoning_effort` values; empty: the parameter is refused
    efforts: tuple[str, ...] = ()
    #: the model thinks in hidden tokens billed as output (whether or not it takes an effort)
    reasoning: bool = False

    @property
    def default_effort(self) -> str | None:
        return DEFAULT_EFFORT if DEFAULT_EFFORT in self.efforts else (self.efforts[0] if self.efforts else None)


_LMH = ("low", "medium", "high")
_REASONING: dict[str, Any] = {"max_tokens_field": "max_completion_tokens", "temperature": False, "stop": False, "reasoning": True}

FAMILIES: tuple[Family, ...] = (
    # gpt-5-chat is the non-reasoning chat model of the gpt-5 generation.
    Family(name="gpt-5-chat", pattern=r"gpt-5(\.\d+)?-chat", max_tokens_field="max_completion_tokens"),
    # gpt-5.1 and later replaced "minimal" with "none".
    Family(name="gpt-5.x", pattern=r"gpt-5\.\d+", efforts=("none", *_LMH), **_REASONING),
    Family(name="gpt-5", pattern=r"gpt-5(-mini|-nano)?(-\d{4}-\d{2}-\d{2})?$", efforts=("minimal", *_LMH),
           **_REASONING),
    # The first o1 releases take no reasoning_effort.
    Family(name="o1-mini", pattern=r"o1-(mini|preview)", system=False, **_REASONING),
    Family(name="o-series", pattern=r"o[134](-mini|-pro)?(-\d{4}-\d{2}-\d{2})?$", efforts=_LMH, **_REASONING),
    # Open-weight gpt-oss behind OpenAI-compatible hosts (Groq, Together, Fireworks, Cerebras).
    Family(name="gpt-oss", pattern=r"gpt-oss", efforts=_LMH),
    Family(name="chat", pattern=r""),  # gpt-4o, gpt-4.1 and every other chat model
)


def family_of(model: str) -> Family:
    """The rules for `model` (a bare name, or a path such as "openai/o4-mini")."""
    name = model.rsplit("/", 1)[-1].lower()
    return next(f for f in FAMILIES if re.match(f.pattern, name))


def check_effort(model: str, effort: str) -> str | None:
    """None if `model` takes `effort`; otherwise why not, naming what it does take."""
    fam = family_of(model)
    if not fam.efforts:
        return f"{model} takes no reasoning effort (it is not an OpenAI reasoning model with --remote-reasoning)"
    if effort not in fam.efforts:
        return f"{model} takes reasoning effort {', '.join(fam.efforts)}, not {effort!r}"
    return None


#: context windows (prompt + reply tokens) of OpenAI's models, from their model pages; first match
#: wins. A prompt is fitted to the window before it is built, so one that cannot fit is cut or
#: refused here rather than by the API after the upload (and a server's run stays bounded).
CONTEXT_WINDOWS: tuple[tuple[str, int], ...] = (
    (r"gpt-5", 400_000),
    (r"gpt-4\.1", 1_047_576),
    (r"(gpt-4o|chatgpt-4o|gpt-4-turbo|gpt-4\.5)", 128_000),
    (r"(o1-mini)", 128_000),
    (r"(o1|o3|o4)", 200_000),
    (r"gpt-4-32k", 32_768),
    (r"gpt-4", 8_192),
    (r"gpt-3\.5-turbo", 16_385),
)


def context_window_of(model: str) -> int | None:
    """The known window of an OpenAI model (a bare name or a path), or None."""
    name = model.rsplit("/", 1)[-1].lower()
    return next((w for pattern, w in CONTEXT_WINDOWS if re.match(pattern, name)), None)
