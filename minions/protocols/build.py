"""The one recipe: `RunSettings` -> clients -> privacy -> a ready protocol, for every door.

`minions ask`, `serve`, `mcp`, the app, the eval and the library's `get_protocol` all build here,
so a question asked through any of them runs the same knobs. Whether the remote is the offline
stand-in for a cloud model is an attribute of its Client (`Client.stand_in`, set from the provider
registry), never read from a spec string, so a server holding Client objects decides as `ask` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from minions import errors
from minions.clients import Client, get_client
from minions.clients.spec import ProviderSpec, parse_spec, providers
from minions.cost import PriceTable
from minions.protocols.base import Protocol
from minions.protocols.knobs import STAND_IN_KNOBS, check_knobs
from minions.protocols.registry import protocol_class
from minions.protocols.settings import RunSettings

#: what a stand-in remote (the offline stand-in for a cloud model) is priced as by default
STAND_IN_PRICE = "openai/gpt-4o"
ClientFactory = Callable[[str, str, dict[str, Any]], Client]  # (role, spec, kwargs) -> client


def _get(_role: str, spec: str, kw: dict[str, Any]) -> Client:
    return get_client(spec, **kw)


def _provider(spec: str) -> ProviderSpec | None:
    """The registry's entry for a spec's provider; None for one only a custom factory knows."""
    table = providers()
    try:
        return table[parse_spec(spec, table)[0]]
    except errors.UnknownProviderError:
        return None


def _client_kw(role: str, spec: str, settings: RunSettings, secrets: Mapping[str, str]) -> dict[str, Any]:
    provider = _provider(spec)
    stand_in = provider is not None and provider.stand_in
    kw: dict[str, Any] = {}
    if role == "remote":
        if price := settings.price_as or (STAND_IN_PRICE if stand_in else None):
            kw["price_as"] = price
        if settings.base_url and (provider is None or provider.wire == "openai"):
            kw["base_url"] = settings.base_url
    if provider is not None and provider.wire == "ollama" and settings.ollama_host:
        kw["host"] = settings.ollama_host
    if provider is not None and provider.api_key_env and secrets.get(provider.api_key_env):
        kw["api_key"] = secrets[provider.api_key_env]
    return kw


def _priced(remote: Client, settings: RunSettings) -> Client:
    """A Client object priced as the settings say (a stand-in as STAND_IN_PRICE by default); the
    caller's object is not changed (it may be the local model too, or in use elsewhere)."""
    want = settings.price_as or (STAND_IN_PRICE if remote.stand_in and remote.price_as is None else None)
    if want is None or want == remote.price_as:
        return remote
    from minions.protocols.budget import priced_as

    return priced_as(remote, want)


def build_client(role: str, settings: RunSettings, *, factory: ClientFactory | None = None,
                 secrets: Mapping[str, str] | None = None) -> Client | None:
    """The client for `role` ("local" or "remote") as the settings name it."""
    spec = getattr(settings, role)
    if spec is None:
        return None
    if isinstance(spec, Client):
        return _priced(spec, settings) if role == "remote" else spec
    client = (factory or _get)(role, spec, _client_kw(role, spec, settings, secrets or {}))
    if (p := _provider(spec)) is not None and p.stand_in and not client.stand_in:
        client.stand_in = True  # a custom factory's client, for a provider the registry calls a stand-in
    return _priced(client, settings) if role == "remote" else client


def build_clients(settings: RunSettings, *, roles: tuple[str, ...] | None = None,
                  factory: ClientFactory | None = None,
                  secrets: Mapping[str, str] | None = None) -> tuple[Client | None, Client | None]:
    """(local, remote) for the settings. A role the protocol needs must build; the remote is still
    built when it is not needed, to estimate the remote-only bill, but a missing key for it is not an
    error. `roles` asks for more (a server builds both once, for every protocol it serves)."""
    needs = protocol_class(settings.protocol).needs
    wanted = set(roles or ()) | set(needs) | {"remote"}
    out: dict[str, Client | None] = {}
    for role in ("local", "remote"):
        out[role] = None
        if role not in wanted:
            continue
        try:
            out[role] = build_client(role, settings, factory=factory, secrets=secrets)
        except errors.ConfigError:
            if role in needs:
                raise
    return out["local"], out["remote"]


def build_privacy(settings: RunSettings) -> Any:
    """The privacy policy the settings ask for (a Scrubber), or None."""
    if not settings.uses_privacy:
        return None
    from minions.protocols.privacy import Scrubber

    return Scrubber(names=settings.private_names)


def resolved_knobs(settings: RunSettings, remote: Client | None) -> dict[str, Any]:
    """The checked knobs for the protocol, with the stand-in defaults under explicit ones."""
    cls = protocol_class(settings.protocol)
    knobs = check_knobs(settings.protocol, settings.protocol_knobs())
    if remote is not None and remote.stand_in and "remote" in cls.needs:
        knobs = {**{k: v for k, v in STAND_IN_KNOBS.items() if k in cls.Config.model_fields}, **knobs}
    return knobs


def build_protocol(settings: RunSettings, *, clients: tuple[Client | None, Client | None] | None = None,
                   factory: ClientFactory | None = None, secrets: Mapping[str, str] | None = None,
                   prices: PriceTable | None = None, privacy: Any = None) -> Protocol:
    """The protocol the settings describe. `clients` (local, remote): ready clients (a server builds
    them once); else they are built from the settings. `privacy`: a ready policy instead of the one
    the settings ask for. Raises typed ConfigErrors (unknown knob, bad value, missing key...)."""
    cls = protocol_class(settings.protocol)
    knobs = check_knobs(settings.protocol, settings.protocol_knobs())  # cheap errors first
    if clients is None:
        local, remote = build_clients(settings, factory=factory, secrets=secrets)
    else:
        local, remote = clients
        remote = _priced(remote, settings) if remote is not None else None
    knobs = resolved_knobs(settings, remote)
    protocol = cls(local if "local" in cls.needs else None, remote, max_remote_usd=settings.max_remote_usd,
                   privacy=privacy if privacy is not None else build_privacy(settings), prices=prices,
                   store_text=settings.store_text, **knobs)
    if settings.index is not None:
        from minions.documents.store import open_store

        protocol.corpus = open_store(settings.index)  # a missing or damaged index: an error naming the fix
    return protocol


def get_protocol(name: str, local: str | Client | None = None, remote: str | Client | None = None,
                 **kw: Any) -> Protocol:
    """The library's door: `get_protocol("minions", local, remote, max_rounds=3)`. Models are
    specs or Clients; keywords are RunSettings fields (price_as, privacy, max_remote_usd, ...), or
    knobs; `prices=` a PriceTable, `privacy=` a ready policy object."""
    prices = kw.pop("prices", None)
    privacy = kw.pop("privacy", None)
    if isinstance(privacy, bool):
        kw["privacy"], privacy = privacy, None
    fields = set(RunSettings.model_fields) - {"protocol", "local", "remote", "knobs"}
    given = {k: kw.pop(k) for k in list(kw) if k in fields}
    settings = RunSettings(protocol=name, local=local, remote=remote, knobs=kw, **given)
    return build_protocol(settings, prices=prices, privacy=privacy)


__all__ = ["STAND_IN_KNOBS", "STAND_IN_PRICE", "ClientFactory", "RunSettings", "build_client", "build_clients",
           "build_privacy", "build_protocol", "get_protocol", "resolved_knobs"]
