"""What the user picks in the sidebar, and how it becomes clients and a protocol. No Streamlit here.

Secrets (API keys) are never part of `Settings`: settings go into the run log, keys only into the
client constructors (`api_key=`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from minions import errors
from minions.clients import Client, get_client, parse_spec
from minions.clients.spec import providers
from minions.protocols import Protocol, protocol_class
from minions.protocols.build import STAND_IN_PRICE
from minions.protocols.build import build_protocol as build

EMBEDDED = "llamacpp/smollm2"
CUSTOM = "Other (type a spec)"
DEFAULT_PROTOCOL = "minions"

PROTOCOL_LABELS = {
    "minions": "MinionS — remote plans jobs over chunks, local runs them",
    "minion": "Minion — remote and local chat; local reads everything",
    "remote-only": "Remote only (baseline)",
    "local-only": "Local only (baseline)",
    "rag": "RAG — retrieve chunks, remote answers (baseline)",
}

LOCAL_PRESETS = {
    EMBEDDED: "Embedded SmolLM2-135M (no setup)",
    "ollama/llama3.2:3b": "Ollama · Llama 3.2 3B",
    "ollama/qwen2.5:3b": "Ollama · Qwen 2.5 3B",
}
REMOTE_PRESETS = {
    EMBEDDED: f"Embedded SmolLM2 — stand-in, priced as {STAND_IN_PRICE}",
    "openai/gpt-4o-mini": "OpenAI · GPT-4o mini",
    "openai/gpt-4o": "OpenAI · GPT-4o",
    "anthropic/claude-sonnet-4-5": "Anthropic · Claude Sonnet 4.5",
    "anthropic/claude-haiku-4-5": "Anthropic · Claude Haiku 4.5",
}

#: --remote-reasoning choices offered in the sidebar ("default": the client's own, cheap for planning)
REASONING_CHOICES = ("default", "none", "minimal", "low", "medium", "high")


def key_envs() -> dict[str, str]:
    """Provider -> the environment variable its key lives in (the registry, user providers included)."""
    return {p.name: p.api_key_env for p in providers().values() if p.api_key_env}


class Knob(BaseModel):
    name: str        # the protocol Config field
    label: str
    kind: type = int
    min: int = 1
    max: int = 100_000
    help: str = ""
    optional: bool = False   # an int knob whose None ("no limit") is shown as 0


# The main knobs; each protocol shows those its Config declares, with its own defaults.
KNOBS = [
    Knob(name="max_rounds", label="Max rounds", max=20),
    Knob(name="tasks_per_round", label="Tasks per round", max=50),
    Knob(name="samples_per_task", label="Samples per task", max=16),
    Knob(name="chunk_size", label="Chunk size", min=100, help="in the chunking strategy's unit (characters)"),
    Knob(name="max_jobs_per_round", label="Max local jobs per round (0 = no cap)", min=0, max=1000, optional=True),
    Knob(name="read", label="Read per round", kind=str,
         help="How much of the documents the local model reads: all, a number of tokens, or a share like 30%. "
              "Empty: what it reads in local_time_budget seconds at its measured speed."),
    Knob(name="retrieval", label="Retrieval: BM25-filter chunks first", kind=bool),
    Knob(name="retrieval_top_k", label="Chunks kept by retrieval", max=1000),
    Knob(name="top_k", label="Chunks retrieved", max=1000),
    Knob(name="local_max_tokens", label="Local max tokens", max=8192),
    Knob(name="remote_max_tokens", label="Remote max tokens", max=16384),
]


def knobs_for(protocol: str) -> list[tuple[Knob, Any]]:
    """(knob, default) for every main knob the protocol accepts. Raises ImportError if it is missing."""
    cls = protocol_class(protocol)
    fields = cls.Config.model_fields
    unused = set() if "local" in cls.needs else {"local_max_tokens"}
    return [(k, fields[k.name].default) for k in KNOBS if k.name in fields and k.name not in unused]


def model_roles(protocol: str) -> tuple[str, ...]:
    """The models the protocol calls ("local", "remote"); both when it cannot be imported."""
    try:
        return protocol_class(protocol).needs
    except ImportError:
        return ("local", "remote")


class Settings(BaseModel):
    """Everything that decides how a question is answered, minus secrets. Goes into the run log."""

    model_config = ConfigDict(frozen=True)

    protocol: str = DEFAULT_PROTOCOL
    knobs: dict[str, int | bool | str] = {}
    local: str | None = EMBEDDED  # None: the protocol reads nothing locally
    remote: str = EMBEDDED
    remote_price_as: str | None = STAND_IN_PRICE
    remote_base_url: str | None = None
    ollama_host: str | None = None
    max_remote_usd: float | None = None

    def fingerprint(self, secrets: Mapping[str, str]) -> str:
        """Changes when settings or keys change: then the protocol (and its clients) is rebuilt."""
        h = hashlib.sha256(self.model_dump_json().encode())
        for env in sorted(secrets):
            h.update(f"\0{env}\0{secrets[env]}".encode())
        return h.hexdigest()


def key_env(spec: str) -> str | None:
    """The environment variable holding the API key a spec needs (None: no key needed)."""
    try:
        return key_envs().get(parse_spec(spec)[0])
    except errors.ConfigError:
        return None


EmbeddedFactory = Callable[[str, str | None], Client]


def make_client(spec: str, settings: Settings, secrets: Mapping[str, str], *, role: str,
                embedded: EmbeddedFactory | None = None, price_as: str | None = None) -> Client:
    """One client. `embedded(spec, price_as)` may return a shared llama.cpp client (loaded once).
    `price_as` comes from protocols/build.py, which prices an embedded remote the same everywhere."""
    provider, _ = parse_spec(spec)
    price_as = price_as if role == "remote" else None
    if provider == "llamacpp" and embedded is not None:
        return embedded(spec, price_as)
    kw: dict[str, Any] = {}
    if price_as:
        kw["price_as"] = price_as
    if provider == "ollama" and settings.ollama_host:
        kw["host"] = settings.ollama_host
    if role == "remote" and settings.remote_base_url and provider not in ("ollama", "llamacpp"):
        kw["base_url"] = settings.remote_base_url
    env = key_envs().get(provider)
    if env and secrets.get(env):
        kw["api_key"] = secrets[env]
    return get_client(spec, **kw)


def build_protocol(settings: Settings, secrets: Mapping[str, str], *,
                   embedded: EmbeddedFactory | None = None) -> Protocol:
    """The protocol the settings describe. Raises typed minions errors (missing key, bad spec, ...)."""
    def factory(role: str, spec: str, kw: dict[str, Any]) -> Client:
        return make_client(spec, settings, secrets, role=role, embedded=embedded, price_as=kw.get("price_as"))

    knobs = dict(settings.knobs)
    knobs["multi_turn"] = True  # follow-ups continue the same conversation (protocols that support it)
    return build(settings.protocol, local=settings.local or None, remote=settings.remote, knobs=knobs,
                 remote_price_as=settings.remote_price_as, client_factory=factory,
                 max_remote_usd=settings.max_remote_usd)


def native_multi_turn(protocol: Protocol) -> bool:
    """True when the protocol itself remembers earlier turns (Minion with multi_turn)."""
    return bool(getattr(protocol.config, "multi_turn", False))
