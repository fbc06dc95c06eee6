"""Open registries: a package adds a wire format or a protocol without editing minions."""

from __future__ import annotations

import pytest

from minions import errors
from minions.clients import get_client, wires
from minions.clients.function import FunctionClient
from minions.protocols import get_protocol, registry
from minions.protocols.base import Protocol, ProtocolConfig, RunContext
from minions.protocols.result import RoundDecision


@pytest.fixture
def clean_registries(monkeypatch):
    monkeypatch.setattr(wires, "_WIRES", dict(wires._WIRES))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_a_registered_wire_format_serves_a_users_provider(tmp_path, monkeypatch, clean_registries):
    seen = {}

    def scripted(provider, model, kw):
        seen.update(provider=provider.name, model=model, kw=kw)
        return FunctionClient(lambda messages, options: f"{model} says hi", model=model)

    wires.register_wire("scripted", scripted)
    conf = tmp_path / "providers.toml"
    conf.write_text('[providers.mine]\nwire = "scripted"\n')
    monkeypatch.setenv("MINIONS_PROVIDERS", str(conf))
    client = get_client("mine/m1", context_window=4096)
    assert isinstance(client, FunctionClient)
    assert seen == {"provider": "mine", "model": "m1", "kw": {"context_window": 4096}}


def test_a_provider_naming_an_unregistered_wire_is_refused_with_the_known_ones(tmp_path, monkeypatch):
    conf = tmp_path / "providers.toml"
    conf.write_text('[providers.mine]\nwire = "carrier-pigeon"\n')
    monkeypatch.setenv("MINIONS_PROVIDERS", str(conf))
    with pytest.raises(errors.ConfigError, match="carrier-pigeon.*openai, anthropic, ollama, llamacpp, azure"):
        get_client("mine/m1")


class _Echo(Protocol[ProtocolConfig]):
    name = "echo"
    needs = ("local",)

    async def _run(self, ctx: RunContext) -> str | None:
        rec = ctx.new_round()
        reply = (await ctx.call("local", [], self.local_options(), step="answer")).text
        ctx.state.conclude(reply, [])
        await ctx.round_done(rec, RoundDecision.FINAL_ANSWER)
        return reply

    def local_options(self):
        from minions.clients.base import Options
        return Options(max_tokens=self.config.local_max_tokens)


def test_a_registered_protocol_is_built_by_name(clean_registries):
    registry.register_protocol("echo", _Echo)
    assert "echo" in registry.protocol_names()
    result = get_protocol("echo", FunctionClient(lambda m, o: "echoed")).run("say it")
    assert (result.protocol, result.answer, result.rounds[0].decision) == ("echo", "echoed", RoundDecision.FINAL_ANSWER)


def test_protocols_by_module_path_and_unknown_names(clean_registries):
    from minions.protocols.baselines import RAG

    registry.register_protocol("echo", _Echo)
    registry.register_protocol("rag-again", "minions.protocols.baselines:RAG")  # imported on first use
    registry.register_protocol("not-one", "minions.protocols.baselines:RAGConfig")
    assert registry.protocol_class("rag-again") is RAG
    with pytest.raises(errors.ConfigError, match="not a Protocol subclass"):
        registry.protocol_class("not-one")
    with pytest.raises(errors.ConfigError, match="Unknown protocol 'ecoh'.*minion, minions, remote-only, "
                                                 "local-only, rag, echo"):
        get_protocol("ecoh")
