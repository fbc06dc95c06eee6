"""Protocols: Minion, MinionS and the baselines, behind one interface (`run` / `arun`)."""

from __future__ import annotations

from typing import Any

from minions.clients.base import Client
from minions.protocols.base import Protocol, ProtocolConfig, RunContext
from minions.protocols.gateway import CancelToken
from minions.protocols.registry import BUILTIN, protocol_class, register_protocol
from minions.protocols.result import Citation, JobRecord, JobStatus, RoundRecord, RunResult

#: the built-in protocols (every registered one: registry.protocol_names())
PROTOCOL_NAMES = tuple(BUILTIN)


def get_protocol(name: str, local: str | Client | None = None, remote: str | Client | None = None,
                 **kw: Any) -> Protocol:
    """The library's door, through the one recipe (`protocols/build.py`): models are specs
    ("provider/model") or Clients; keywords are knobs or RunSettings fields (see build.get_protocol)."""
    from minions.protocols.build import get_protocol as build

    return build(name, local, remote, **kw)


__all__ = ["PROTOCOL_NAMES", "CancelToken", "Citation", "JobRecord", "JobStatus", "Protocol", "ProtocolConfig", "RoundRecord",
           "RunContext", "RunResult", "get_protocol", "protocol_class",
           "register_protocol"]
