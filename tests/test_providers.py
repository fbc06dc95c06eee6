"""The provider registry: each provider reaches its wire format (through the gateway, by the official SDK),
a missing key names its variable, and users add providers by file or entry point without editing us."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from urllib.parse import urlsplit

import pytest

from minions import errors
from minions.clients import RetryPolicy, get_client
from minions.clients.spec import ProviderSpec, provider, providers
from minions.cost import PriceTable
from tests.gateway import ScriptedBackend

FAST = RetryPolicy(max_retries=1, base_delay=0.001, max_delay=0.01, timeout=10)
OPENAI_COMPATIBLE = {  # provider -> (its documented base URL, its key variable)
    "gemini": ("https://generativelanguage.googleapis.com/v1beta/openai/", "GEMINI_API_KEY"),
    "deepseek": ("https://api.deepseek.com", "DEEPSEEK_API_KEY"),
    "groq": ("https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "mistral": ("https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    "fireworks": ("https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"),
    "cerebras": ("https://api.cerebras.ai/v1", "CEREBRAS_API_KEY"),
    "lemonade": ("http://localhost:8000/api/v1", None),
}
ACME = ProviderSpec(name="acme", base_url="https://llm.acme.example/v1", api_key_env="ACME_KEY")


def _headers(rec) -> dict[str, str]:
    return {k.lower(): v for k, v in rec.headers.items()}


@pytest.mark.parametrize("name", sorted(OPENAI_COMPATIBLE))
async def test_openai_compatible_provider_reaches_its_path_with_its_key(gateway, monkeypatch, name):
    url, env = OPENAI_COMPATIBLE[name]
    spec = provider(name)
    assert (spec.base_url, spec.api_key_env, spec.wire) == (url, env, "openai")
    if env:
        monkeypatch.setenv(env, f"key-for-{name}")
    gateway.backend = ScriptedBackend(lambda m, o: "pong")
    path = urlsplit(url).path.rstrip("/")
    client = get_client(f"{name}/some-model", base_url=gateway.url + path, retry=FAST)
    out = await client.complete("ping", max_tokens=8)
    assert out.text == "pong" and client.spec == f"{name}/some-model"
    rec = gateway.requests[-1]
    assert rec.route == f"{path}/chat/completions" and rec.body["model"] == "some-model"
    if env:
        assert _headers(rec)["authorization"] == f"Bearer key-for-{name}"
    await client.aclose()


@pytest.mark.parametrize("name", sorted(n for n, (_, env) in OPENAI_COMPATIBLE.items() if env))
def test_missing_key_names_the_providers_variable(monkeypatch, name):
    env = OPENAI_COMPATIBLE[name][1]
    monkeypatch.delenv(env, raising=False)
    with pytest.raises(errors.MissingAPIKeyError, match=env):
        get_client(f"{name}/some-model")


def test_lemonade_is_local_needs_no_key_and_is_free(monkeypatch):
    monkeypatch.delenv("LEMONADE_API_BASE", raising=False)
    client = get_client("lemonade/Qwen3-0.6B-GGUF")
    assert client.base_url.startswith("http://localhost:8000/api/v1")
    monkeypatch.setenv("LEMONADE_API_BASE", "http://127.0.0.1:13305/v1")
    assert get_client("lemonade/x").base_url.startswith("http://127.0.0.1:13305/v1")
    price = PriceTable.load().get("lemonade/Qwen3-0.6B-GGUF")
    assert price is not None and price.input == price.output == 0


async def test_azure_reaches_the_deployment_url_with_api_version_and_api_key_header(gateway, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", gateway.url)
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-key")
    gateway.api_key = "azure-key"  # the gateway checks Azure's `api-key` header
    gateway.backend = ScriptedBackend(lambda m, o: "pong")
    client = get_client("azure/gpt-5-mini", retry=FAST)
    out = await client.complete("ping", max_tokens=100)
    assert out.text == "pong" and out.usage.reasoning_tokens > 0  # the deployment is a reasoning model
    rec = gateway.requests[-1]
    assert rec.route == "/openai/deployments/gpt-5-mini/chat/completions"
    assert _headers(rec)["api-key"] == "azure-key" and "max_completion_tokens" in rec.body
    await client.aclose()


@pytest.mark.parametrize("missing", ["AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT", "OPENAI_API_VERSION"])
def test_azure_names_each_missing_variable(monkeypatch, missing):
    for env, value in {"AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com", "OPENAI_API_VERSION": "2024-10-21",
                       "AZURE_OPENAI_API_KEY": "k"}.items():
        monkeypatch.setenv(env, value)
    monkeypatch.delenv(missing)
    with pytest.raises(errors.ConfigError, match=missing):
        get_client("azure/my-deployment")


async def test_a_user_adds_a_provider_in_a_toml_file(gateway, monkeypatch, tmp_path):
    cfg = tmp_path / "providers.toml"
    cfg.write_text(f'[providers.myhost]\nwire = "openai"\nbase_url = "{gateway.url}/serve/v1"\n'
                   'api_key_env = "MYHOST_KEY"\nprices = "groq"\n\n'
                   '[providers.cloudhost]\nbase_url = "https://llm.example.com/v1"\napi_key_env = "CLOUDHOST_KEY"\n')
    monkeypatch.setenv("MINIONS_PROVIDERS", str(cfg))
    monkeypatch.delenv("CLOUDHOST_KEY", raising=False)
    with pytest.raises(errors.MissingAPIKeyError, match="CLOUDHOST_KEY"):
        get_client("cloudhost/some-model")
    monkeypatch.setenv("MYHOST_KEY", "k")
    gateway.backend = ScriptedBackend(lambda m, o: "pong")
    assert (await get_client("myhost/llama-3.3-70b-versatile").complete("ping")).text == "pong"
    assert gateway.requests[-1].route == "/serve/v1/chat/completions"
    assert "genai-prices" in PriceTable.load().get("myhost/llama-3.3-70b-versatile").source


def test_unknown_fields_in_the_providers_file_are_errors(monkeypatch, tmp_path):
    cfg = tmp_path / "providers.toml"
    cfg.write_text('[providers.myhost]\nbase_url = "http://127.0.0.1:9/v1"\napi_key_variable = "X"\n')
    monkeypatch.setenv("MINIONS_PROVIDERS", str(cfg))
    with pytest.raises(errors.ConfigError, match="api_key_variable: Extra inputs are not permitted.*api_key_env"):
        providers()
    monkeypatch.setenv("MINIONS_PROVIDERS", str(tmp_path / "absent.toml"))
    with pytest.raises(errors.ConfigError, match="absent.toml"):
        providers()


def test_a_package_adds_a_provider_by_entry_point(monkeypatch):
    ep = EntryPoint(name="acme", value="tests.test_providers:ACME", group="minions.providers")
    monkeypatch.setattr("minions.clients.spec.entry_points", lambda group: [ep] if group == "minions.providers" else [])
    assert providers()["acme"] == ACME
    monkeypatch.delenv("ACME_KEY", raising=False)
    with pytest.raises(errors.MissingAPIKeyError, match="ACME_KEY"):
        get_client("acme/m")
