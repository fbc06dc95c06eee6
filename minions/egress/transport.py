"""The record taken where a request leaves: an httpx transport wrapping the SDK's real one.

The OpenAI, Anthropic and Ollama SDKs all send through an httpx client they accept from us; every
request of theirs (retries and the SDK's own extra calls included) passes `handle_async_request`
here, so no code path above it — a protocol, a test calling the client directly — can send without
a record. The reply is read here once (non-streaming replies only) for its token counts and handed
on unchanged.

What is recorded is decided by the owning client's `egress_role`: a request to another machine is
always recorded; a request to this machine's loopback is recorded unless the client is a protocol's
*local* model (a vLLM or Ollama worker on localhost reads the documents by design and sends nothing
away).
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from minions.egress.record import EgressRecord, emit, now, sent_text, sha256, usage_of, without_keys

if TYPE_CHECKING:
    from minions.clients.base import Client


def should_record(client: Client, host: str) -> bool:
    from minions.clients._http import is_loopback
    from minions.egress.record import role_of

    return not (role_of(client) == "local" and is_loopback(host))


class RecordingTransport:
    """An async httpx transport (duck-typed: the SDKs may ship httpx or its fork httpx2; `hx` is the
    module of the client it serves) that records each request, then sends it with `inner`."""

    def __init__(self, inner: Any, client: Client, hx: ModuleType):
        self.inner, self.client, self.hx = inner, client, hx

    async def handle_async_request(self, request: Any) -> Any:
        hx = self.hx
        host = request.url.host
        if not should_record(self.client, host):
            return await self.inner.handle_async_request(request)
        body = await request.aread()
        data = _json(body)
        model = data.get("model") if isinstance(data, dict) else None
        rec = EgressRecord(time=now(), via="http", host=host if request.url.port in (None, 80, 443)
                           else f"{host}:{request.url.port}", path=request.url.path, provider=self.client.provider,
                           model=model if isinstance(model, str) else self.client.model, bytes=len(body),
                           sha256=sha256(body), text=without_keys(sent_text(body, data), self.client))
        try:
            response = await self.inner.handle_async_request(request)
        except BaseException:
            emit(rec)  # sent, or at least attempted: the bytes may have left
            raise
        rec.status = response.status_code
        if "json" in response.headers.get("content-type", "") and response.status_code < 300:
            raw = b"".join([part async for part in response.aiter_raw()])
            await response.aclose()
            decoded = raw if "content-encoding" not in response.headers else \
                hx.Response(200, headers=response.headers, content=raw).content
            rec.prompt_tokens, rec.completion_tokens = usage_of(decoded)
            if rec.prompt_tokens is not None:
                from minions.clients.base import Usage

                rec.cost_usd = self.client.egress_cost(Usage(
                    prompt_tokens=rec.prompt_tokens, completion_tokens=rec.completion_tokens or 0, requests=1))
            response = hx.Response(response.status_code, headers=response.headers, stream=hx.ByteStream(raw),
                                      request=request, extensions=response.extensions)
        emit(rec)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _json(body: bytes) -> Any:
    import json

    try:
        return json.loads(body)
    except ValueError:
        return None


def wrap(http_client: Any, client: Client) -> Any:
    """Put the recording transport under an httpx.AsyncClient's own transport and its proxy mounts."""
    hx = next(sys.modules[c.__module__.split(".")[0]] for c in type(http_client).__mro__
              if c.__name__ == "AsyncClient" and c.__module__.split(".")[0].startswith("httpx"))
    http_client._transport = RecordingTransport(http_client._transport, client, hx)
    mounts = getattr(http_client, "_mounts", {})
    for pattern, transport in list(mounts.items()):
        if transport is not None:
            mounts[pattern] = RecordingTransport(transport, client, hx)
    return http_client
