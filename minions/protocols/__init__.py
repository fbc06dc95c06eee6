"""Protocols: Minion, MinionS and the baselines, behind one interface (`run` / `arun`)."""

from __future__ import annotations

from typing import Any

from minions import errors
from minions.protocols.base import CancelToken, Protocol, ProtocolConfig, RunContext
from minions.protocols.result import Citation, JobRecord, JobStatus, RoundRecord, RunResult

PROTOCOL_NAMES = ("minion", "minions", "remote-only", "local-only", "rag")


def protocol_class(name: str) -> type[Protocol]:
    if name == "minion":
        from minions.protocols.minion import Minion
        return Minion
    if name == "minions":
        from minions.protocols.minions import MinionS
        return MinionS
    if name in ("remote-only", "local-only", "rag"):
        from minions.protocols import baselines
        return {"remote-only": baselines.RemoteOnly, "local-only": baselines.LocalOnly, "rag": baselines.RAG}[name]
    raise errors.ConfigError(f"Unknown protocol {name!r}; choose one of: {', '.join(PROTOCOL_NAMES)}")


def get_protocol(name: str, local: Any = None, remote: Any = None, **kw: Any) -> Protocol:
    """The library's door, through the one recipe (`protocols/build.py`): models are specs
    ("provider/model") or Clients; keywords are knobs or RunSettings fields (see build.get_protocol)."""
    from minions.protocols.build import get_protocol as build

    return build(name, local, remote, **kw)


__all__ = ["PROTOCOL_NAMES", "CancelToken", "Citation", "JobRecord", "JobStatus", "Protocol", "ProtocolConfig", "RoundRecord",
           "RunContext", "RunResult", "get_protocol", "protocol_class"]
