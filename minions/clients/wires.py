"""Wire formats: how a provider's requests are built, as an open registry.

A provider (`minions.clients.spec.ProviderSpec`) names the wire format it speaks; `build` turns a
provider, a model name and the caller's keyword arguments into a Client. A package adds a wire
format with `register_wire(name, builder)` — no edit here — and providers may then name it. Client
modules are imported when their wire is first used, so SDKs stay optional.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from minions import errors

if TYPE_CHECKING:
    from minions.clients.base import Client
    from minions.clients.spec import ProviderSpec

#: builds the client for `model` at `provider`; the dict holds the caller's client keyword arguments
WireBuilder = Callable[["ProviderSpec", str, dict[str, Any]], "Client"]

_WIRES: dict[str, WireBuilder] = {}


def register_wire(name: str, builder: WireBuilder) -> None:
    """Make `name` a wire format providers may speak (replaces a registered one of that name)."""
    _WIRES[name] = builder


def wire_names() -> tuple[str, ...]:
    return tuple(_WIRES)


def build(provider: ProviderSpec, model: str, kw: dict[str, Any]) -> Client:
    builder = _WIRES.get(provider.wire)
    if builder is None:
        raise errors.ConfigError(f"Provider {provider.name!r} speaks wire format {provider.wire!r}, which is not "
                                 f"registered; known: {', '.join(_WIRES)}.")
    return builder(provider, model, kw)


def _llamacpp(p: ProviderSpec, model: str, kw: dict[str, Any]) -> Client:
    from minions.clients.llamacpp import LlamaCppClient

    return LlamaCppClient(model, **kw)


def _ollama(p: ProviderSpec, model: str, kw: dict[str, Any]) -> Client:
    from minions.clients.ollama import OllamaClient

    return OllamaClient(model, **kw)


def _anthropic(p: ProviderSpec, model: str, kw: dict[str, Any]) -> Client:
    from minions.clients.anthropic import AnthropicClient

    if p.base_url:
        kw.setdefault("base_url", p.base_url)
    if p.api_key_env:
        kw.setdefault("api_key_env", p.api_key_env)
    return AnthropicClient(model, **kw)


def _azure(p: ProviderSpec, model: str, kw: dict[str, Any]) -> Client:
    from minions.clients.azure import AzureOpenAIClient

    return AzureOpenAIClient(model, spec=p, **kw)


def _openai(p: ProviderSpec, model: str, kw: dict[str, Any]) -> Client:
    from minions.clients.openai import OpenAIClient

    base_url = (os.environ.get(p.base_url_env) if p.base_url_env else None) or p.base_url
    if base_url:
        kw.setdefault("base_url", base_url)
    kw.setdefault("api_key_env", p.api_key_env)
    kw.setdefault("provider_name", p.name)
    if p.context_window is not None:
        kw.setdefault("context_window", p.context_window)
    return OpenAIClient(model, **kw)


for _name, _builder in (("openai", _openai), ("anthropic", _anthropic), ("ollama", _ollama),
                        ("llamacpp", _llamacpp), ("azure", _azure)):
    register_wire(_name, _builder)
