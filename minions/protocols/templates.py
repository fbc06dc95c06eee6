"""The one prompt loader: templates in minions/protocols/prompts/, beside the protocols that use them.

string.Template (`$name` placeholders): values are inserted verbatim and never parsed, so braces or
`$` in a document or a JSON example are safe. Every protocol, and the privacy shield, loads its
prompts here.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from string import Template


@cache
def template(name: str) -> Template:
    """The template prompts/<name>.txt (`name` with or without its `.txt`)."""
    file = name if name.endswith(".txt") else f"{name}.txt"
    return Template(resources.files("minions.protocols").joinpath("prompts").joinpath(file).read_text("utf-8"))


def render(name: str, **values: object) -> str:
    """Fill the template prompts/<name>.txt, stripped of surrounding whitespace."""
    return template(name).substitute({k: str(v) for k, v in values.items()}).strip()
