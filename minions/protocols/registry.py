"""Protocols by name, as an open registry: the built-in five, plus any a package registers.

`register_protocol("mine", MyProtocol)` (or a "module:Class" path, imported on first use) makes a
protocol reachable by name from every front end that builds protocols by name. Built-in protocols
are imported when first asked for, so `import minions` stays light.
"""

from __future__ import annotations

import importlib

from minions import errors
from minions.protocols.base import Protocol

#: the protocols minions ships, in the order front ends list them
BUILTIN: dict[str, str] = {
    "minion": "minions.protocols.minion:Minion",
    "minions": "minions.protocols.minions:MinionS",
    "remote-only": "minions.protocols.baselines:RemoteOnly",
    "local-only": "minions.protocols.baselines:LocalOnly",
    "rag": "minions.protocols.baselines:RAG",
}

_REGISTRY: dict[str, type[Protocol] | str] = dict(BUILTIN)


def register_protocol(name: str, cls: type[Protocol] | str) -> None:
    """Make protocol `name` buildable by name: a Protocol subclass, or "module:Class" imported on first use."""
    _REGISTRY[name] = cls


def protocol_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def protocol_class(name: str) -> type[Protocol]:
    entry = _REGISTRY.get(name)
    if entry is None:
        raise errors.ConfigError(f"Unknown protocol {name!r}; choose one of: {', '.join(_REGISTRY)}")
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        if not (isinstance(cls, type) and issubclass(cls, Protocol)):
            raise errors.ConfigError(f"Protocol {name!r} names {entry}, which is not a Protocol subclass.")
        _REGISTRY[name] = entry = cls
    return entry
