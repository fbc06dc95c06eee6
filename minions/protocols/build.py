"""From names and specs to a ready protocol — the one recipe the CLI, the app and the eval share."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from minions import errors
from minions.clients import Client, get_client
from minions.protocols import PROTOCOL_NAMES, Protocol, protocol_class

#: what an embedded remote (the offline stand-in for a cloud model) is priced as by default
STAND_IN_PRICE = "openai/gpt-4o"
#: knob defaults for an embedded remote, which is a 135M model: its final answer, when it shares
#: nothing with what the local model found and verified, is replaced by the most supported verified
#: local answer (marked degraded) instead of only being flagged grounded=false; Minion's worker first
#: answers the user's question itself, not the stand-in's first question. Explicit knobs win.
STAND_IN_KNOBS: dict[str, Any] = {"ungrounded_answer": "fallback", "first_question": "task"}

ClientFactory = Callable[[str, str, dict[str, Any]], Client]  # (role, spec, kwargs) -> client


def default_price_as(spec: str, price_as: str | None) -> str | None:
    """An embedded remote is priced as a named cloud model unless told otherwise."""
    return price_as or (STAND_IN_PRICE if is_stand_in(spec) else None)


def known_knobs() -> set[str]:
    """Every knob some protocol declares."""
    return set().union(*(protocol_class(n).Config.model_fields for n in PROTOCOL_NAMES))


def _get(role: str, spec: str, kw: dict[str, Any]) -> Client:
    return get_client(spec, **kw)


def build_protocol(name: str, *, local: str | Client | None, remote: str | Client | None,
                   remote_price_as: str | None = None, local_kw: Mapping[str, Any] | None = None,
                   remote_kw: Mapping[str, Any] | None = None, knobs: Mapping[str, Any] | None = None,
                   client_factory: ClientFactory = _get, **protocol_kw: Any) -> Protocol:
    """Build protocol `name` with clients for the roles it needs.

    `knobs` may hold any protocol's knobs: each protocol takes those its Config declares (None
    values are skipped); a knob no protocol declares is a ConfigError (a typo must not be ignored). A remote the protocol does not need is still built, when possible, to
    estimate the remote-only bill — but a missing API key for it is not an error.
    """
    cls = protocol_class(name)

    def make(role: str, spec: str | Client | None, kw: dict[str, Any]) -> Client | None:
        if spec is None or isinstance(spec, Client):
            return spec
        return client_factory(role, spec, kw)

    local_client = make("local", local, dict(local_kw or {})) if "local" in cls.needs else None
    rkw = dict(remote_kw or {})
    if isinstance(remote, str) and (price := default_price_as(remote, remote_price_as)):
        rkw["price_as"] = price
    elif isinstance(remote, Client) and remote_price_as and remote_price_as != remote.price_as:
        from minions.protocols.budget import priced_as  # a wrapper: the caller's Client is not changed

        remote = priced_as(remote, remote_price_as)
    try:
        remote_client = make("remote", remote, rkw)
    except errors.MissingAPIKeyError:
        if "remote" in cls.needs:
            raise
        remote_client = None
    given = {k: v for k, v in (knobs or {}).items() if v is not None}
    if unknown := set(given) - known_knobs():
        raise errors.ConfigError(f"No protocol has the knob(s) {', '.join(sorted(unknown))}; check the spelling. "
                                 f"Knobs: {', '.join(sorted(known_knobs()))}.")
    fields = cls.Config.model_fields
    chosen = {k: v for k, v in given.items() if k in fields}
    if isinstance(remote, str) and is_stand_in(remote):
        chosen = {**{k: v for k, v in STAND_IN_KNOBS.items() if k in fields}, **chosen}
    return cls(local_client, remote_client, **protocol_kw, **chosen)


def is_stand_in(spec: str) -> bool:
    """An embedded model playing the remote (the offline stand-in for a cloud model)."""
    return spec.startswith("llamacpp/")
