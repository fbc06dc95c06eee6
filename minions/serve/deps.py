"""The servers' optional dependencies (the `serve` extra), checked where they are first needed."""

from __future__ import annotations

import importlib.util

from minions.errors import MissingDependencyError

EXTRA = "serve"


def require(module: str, package: str) -> None:
    """Raise MissingDependencyError naming the `serve` extra when `module` is not installed."""
    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(package, EXTRA)
