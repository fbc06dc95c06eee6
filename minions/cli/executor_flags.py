"""The executor flags `minions batch` and `python -m minions.eval` share: `--executor local|ray`,
`--ray-address`, `--provider-limit` (see minions/executors.py)."""

from __future__ import annotations

import argparse

from minions import errors
from minions.executors import ExecutorSettings, parse_provider_limits


def add_executor_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("executor")
    g.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local: in this process; ray: each unit a Ray task (pip install 'minions[ray]')")
    g.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="join this Ray cluster (auto, ray://HEAD:10001); default: start a local one")
    g.add_argument("--provider-limit", action="append", default=None, metavar="PROVIDER=N",
                   help="model calls in flight per provider across the Ray cluster (default 16 each, 0: no "
                   "ceiling; in-process engines such as llamacpp: none); repeatable")


def executor_from_args(args: argparse.Namespace, specs: list[str | None] | None = None) -> ExecutorSettings:
    """The executor the flags ask for. `specs`: the run's model specs; a --provider-limit naming a
    provider neither they nor the registry know is an error (a misspelt limit would limit nothing)."""
    if args.executor != "ray":
        given = [flag for flag, v in (("--ray-address", args.ray_address), ("--provider-limit", args.provider_limit))
                 if v]
        if given:
            raise errors.ConfigError(f"{' and '.join(given)} only apply with --executor ray.")
        return ExecutorSettings()
    limits = parse_provider_limits(args.provider_limit or [])
    if limits:
        from minions.clients.spec import providers

        known = set(providers()) | {s.partition("/")[0] for s in specs or [] if s}
        if unknown := sorted(set(limits) - known):
            raise errors.ConfigError(f"--provider-limit names no provider of this run or the registry: "
                                     f"{', '.join(unknown)}. Providers: {', '.join(sorted(known))}.")
    return ExecutorSettings(kind="ray", address=args.ray_address, provider_limits=limits)


__all__ = ["add_executor_args", "executor_from_args"]
