"""What the user picks in the sidebar, and how it becomes clients and a protocol. No Streamlit here.

Secrets (API keys) are never part of `Settings`: settings go into the run log, keys only into the
client constructors (`api_key=`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from minions import errors
from minions.clients import Client, get_client, parse_spec
from minions.clients.spec import providers
from minions.protocols import Protocol, protocol_class
from minions.protocols.build import STAND_IN_PRICE
from minions.protocols.build import build_protocol as build
from minions.protocols.knobs import Knob, for_protocol
from minions.protocols.settings import RunSettings

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


#: knobs shown first; every other knob of the protocol's Config is under "More knobs"
MAIN_KNOBS = ("max_rounds", "tasks_per_round", "samples_per_task", "chunk_size", "max_jobs_per_round", "read",
              "retrieval", "retrieval_top_k", "top_k", "local_max_tokens", "remote_max_tokens")
#: knobs with a widget of their own (the remote reasoning effort, shown for cloud remotes) or set by
#: the app itself (multi_turn: follow-ups continue the conversation)
OWN_WIDGET = ("remote_reasoning", "multi_turn")


def knobs_for(protocol: str) -> list[tuple[Knob, Any]]:
    """(knob, default) for every knob the protocol's Config declares, from the one knob surface
    (protocols/knobs.py): main knobs first. Raises ImportError if the protocol is missing."""
    cls = protocol_class(protocol)
    knobs = for_protocol(protocol)
    unused = set() if "local" in cls.needs else {"local_max_tokens"}
    order = [n for n in MAIN_KNOBS if n in knobs] + [n for n in knobs if n not in MAIN_KNOBS]
    return [(knobs[n], knobs[n].defaults[protocol]) for n in order if n not in unused and n not in OWN_WIDGET]


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
    knobs: dict[str, int | float | bool | str] = {}
    local: str | None = EMBEDDED  # None: the protocol reads nothing locally
    remote: str = EMBEDDED
    remote_price_as: str | None = STAND_IN_PRICE
    remote_base_url: str | None = None
    ollama_host: str | None = None
    max_remote_usd: float | None = None
    reasoning: str | None = None
    #: scrub personal data (emails, phones, ids, ...) from what the remote receives
    privacy: bool = False
    #: names scrubbed too (implies privacy); kept out of the exported run log, which should not list them
    private_names: tuple[str, ...] = Field((), exclude=True)
    #: a `minions index` store: questions asked with no uploaded document are answered from it
    index: str | None = None

    def fingerprint(self, secrets: Mapping[str, str]) -> str:
        """Changes when settings or keys change: then the protocol (and its clients) is rebuilt."""
        h = hashlib.sha256(self.model_dump_json().encode())
        for name in self.private_names:  # excluded from the dump, but a new name needs a new scrubber
            h.update(f"\0name\0{name}".encode())
        for env in sorted(secrets):
            h.update(f"\0{env}\0{secrets[env]}".encode())
        return h.hexdigest()

    def run_settings(self) -> RunSettings:
        """The recipe's input (protocols/build.py), as every other door builds it."""
        knobs = dict(self.knobs)
        if "multi_turn" in for_protocol(self.protocol):
            knobs["multi_turn"] = True  # follow-ups continue the same conversation
        return RunSettings(protocol=self.protocol, local=self.local or None, remote=self.remote,
                           price_as=self.remote_price_as, base_url=self.remote_base_url, ollama_host=self.ollama_host,
                           max_remote_usd=self.max_remote_usd, reasoning=self.reasoning, privacy=self.privacy,
                           private_names=self.private_names, index=self.index, knobs=knobs)


def key_env(spec: str) -> str | None:
    """The environment variable holding the API key a spec needs (None: no key needed)."""
    try:
        return key_envs().get(parse_spec(spec)[0])
    except errors.ConfigError:
        return None


EmbeddedFactory = Callable[[str, str | None], Client]


def build_protocol(settings: Settings, secrets: Mapping[str, str], *,
                   embedded: EmbeddedFactory | None = None) -> Protocol:
    """The protocol the settings describe, through the one recipe. `embedded(spec, price_as)` may
    return a shared llama.cpp client (loaded once). Raises typed minions errors (missing key, ...)."""
    def factory(_role: str, spec: str, kw: dict[str, Any]) -> Client:
        wire = providers().get(parse_spec(spec)[0])
        if embedded is not None and wire is not None and wire.wire == "llamacpp":
            return embedded(spec, kw.get("price_as"))
        return get_client(spec, **kw)

    return build(settings.run_settings(), factory=factory, secrets=secrets)


def native_multi_turn(protocol: Protocol) -> bool:
    """True when the protocol itself remembers earlier turns (Minion with multi_turn)."""
    return bool(getattr(protocol.config, "multi_turn", False))
