"""Where the units of a batch or an eval sweep run: in this process (`local`, the default) or as
Ray tasks on a cluster (`ray`, the `ray` extra; `minions.executors_ray`).

    executor = open_executor(ExecutorSettings(kind="ray", address="ray://head:10001"))
    outcome = run_batch(questions, docs, out, settings, executor=executor)

Whatever the executor, only the driver writes results (through `minions.runlog`): a Ray task
returns its row and the driver appends it, once per unit. The local executor keeps the in-process
path as it was (one protocol and one LM cache shared by every unit); a remote one runs
`fn(payload, limiter)` for each unit on some worker, where `fn` is an importable async function and
`payload` carries what the worker needs to build its own protocol (settings, a client factory).

`limiter` holds the per-provider ceiling on model calls in flight across the whole cluster:
`limiter.wrap(client)` makes each request of the client take a slot of its provider first, so a
hundred workers do not hit one API key a hundred wide.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from minions import errors
from minions.clients.base import Client

P = TypeVar("P")
R = TypeVar("R")

#: providers whose model runs inside each worker (one copy per process): no cluster-wide ceiling
IN_PROCESS_PROVIDERS = frozenset({"llamacpp"})


class ExecutorSettings(BaseModel):
    """Which executor, and for Ray: where the cluster is and how hard it may hit each provider."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "ray"] = "local"
    #: an existing cluster to join ("auto", "ray://host:10001", "host:6379"); None starts a local one
    address: str | None = None
    #: model calls in flight per provider across the cluster ({"openai": 32}); 0: no ceiling
    provider_limits: dict[str, int] = Field(default_factory=dict)
    default_provider_limit: int = Field(16, ge=0, description="for a provider not in provider_limits")
    #: times Ray reruns a unit whose worker died (a unit's own failure is its row, never retried)
    max_retries: int = Field(3, ge=0)
    #: CPUs of the local cluster started when `address` is None (None: all of this machine's)
    num_cpus: int | None = Field(None, ge=1)
    #: seconds a call may hold its slot before the slot is taken back (a worker killed mid-call)
    lease_s: float = Field(300.0, gt=0)

    def limit_for(self, provider: str) -> int:
        """The ceiling for `provider` (0: none)."""
        if provider in self.provider_limits:
            return self.provider_limits[provider]
        return 0 if provider in IN_PROCESS_PROVIDERS else self.default_provider_limit


class Limiter(Protocol):
    def wrap(self, client: Client) -> Client:
        """`client`, its requests now taking a slot of its provider's cluster-wide ceiling."""


class RemoteExecutor(Protocol):
    """Runs units off the driver. `run` returns what `fn(payload, limiter)` returned on a worker."""

    name: str

    async def run(self, fn: Callable[[P, Limiter], Coroutine[Any, Any, R]], payload: P) -> R: ...

    def limit_stats(self) -> dict[str, dict[str, int]]:
        """Per provider: calls made, most in flight at once (and the ceiling) so far."""
        ...

    def close(self) -> None: ...


def parse_provider_limits(items: Iterable[str]) -> dict[str, int]:
    """`["openai=32", "anthropic=8"]` -> {"openai": 32, "anthropic": 8}; a ConfigError naming the fix."""
    out: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            n = int(value)
        except ValueError:
            n = -1
        if not sep or not name.strip() or n < 0:
            raise errors.ConfigError(f"--provider-limit takes PROVIDER=N with N a whole number >= 0 (0: no "
                                     f"ceiling), e.g. openai=32; got {item!r}")
        out[name.strip()] = n
    return out


def open_executor(settings: ExecutorSettings | None) -> RemoteExecutor | None:
    """None for the local executor (the in-process path); a started Ray executor for `ray`, or a
    MissingDependencyError naming the `ray` extra."""
    if settings is None or settings.kind == "local":
        return None
    try:
        import ray  # noqa: F401
    except ImportError as e:
        raise errors.MissingDependencyError("ray", "ray") from e
    from minions.executors_ray import RayExecutor

    return RayExecutor(settings)


__all__ = ["IN_PROCESS_PROVIDERS", "ExecutorSettings", "Limiter", "RemoteExecutor", "open_executor",
           "parse_provider_limits"]
