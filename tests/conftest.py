"""Shared fixtures. `gateway`: the loopback OpenAI/Anthropic/Ollama server in tests/gateway.py."""

from __future__ import annotations

import pytest

from tests.gateway import Gateway


def _embedded():
    from minions.clients.llamacpp import LlamaCppClient

    return LlamaCppClient("smollm2")


@pytest.fixture(scope="session")
def gateway_server():
    """One gateway for the session; its embedded-model backend is created on first use, once."""
    gw = Gateway(default_backend=_embedded).start()
    yield gw
    gw.stop()


@pytest.fixture
def gateway(gateway_server: Gateway):
    """The session's gateway, reset before and after each test: no faults, default backend,
    empty counters and request log. A bug inside the gateway fails the test that hit it."""
    gateway_server.reset()
    yield gateway_server
    found = list(gateway_server.errors)
    gateway_server.reset()
    assert not found, "gateway raised:\n" + "\n".join(found)


@pytest.fixture(autouse=True)
def _speeds_file(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """MinionS remembers local reading speeds in the user's cache; tests keep theirs apart, fresh each test."""
    monkeypatch.setenv("MINIONS_SPEEDS_FILE", str(tmp_path_factory.mktemp("speeds") / "speeds.json"))


@pytest.fixture
def no_dense(monkeypatch: pytest.MonkeyPatch):
    """As if the `embeddings` extra were not installed: importing wordllama fails."""
    import sys

    from minions.documents import embeddings

    embeddings.load_embedding_model.cache_clear()
    monkeypatch.setitem(sys.modules, "wordllama", None)
    yield
    embeddings.load_embedding_model.cache_clear()
