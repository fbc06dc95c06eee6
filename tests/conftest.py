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
