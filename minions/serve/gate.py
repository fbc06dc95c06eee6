"""The ASGI layer in front of every route: bearer key, body size limit, one JSON log line per
request. Plain ASGI (not BaseHTTPMiddleware) so streaming responses and the disconnect signal
pass through untouched."""

from __future__ import annotations

import hmac
import json
import time
import uuid
from typing import Any

from minions.serve.errors import BodyTooLarge, MisdirectedRequest, ServeError, Unauthorized
from minions.serve.service import Service, log_request

Scope = dict[str, Any]
OPEN_PATHS = ("/health",)  # answered without the key: liveness probes carry none


class Gate:
    def __init__(self, app: Any, service: Service):
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        fields: dict[str, Any] = {}
        scope.setdefault("state", {})["log"] = fields  # handlers add run details (request.state.log)
        status = {"code": 500}

        async def send_logged(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            error = self._check_host(scope) or self._check_key(scope)
            if error is None:
                receive, error = await self._limit_body(scope, receive)
            if error is not None:
                fields["error_type"] = type(error).__name__
                await _send_error(send_logged, error)
            else:
                await self.app(scope, receive, send_logged)
        finally:
            route = scope.get("route")  # set by the router: the template, so ids do not make new labels
            endpoint = getattr(route, "path", None) or "unrouted"
            elapsed = time.perf_counter() - started
            m = self.service.metrics
            m.requests.labels(endpoint, str(status["code"])).inc()
            m.latency.labels(endpoint).observe(elapsed)
            if status["code"] >= 400 and fields.get("error_type"):
                m.errors.labels(fields["error_type"]).inc()
            log_request({"id": uuid.uuid4().hex[:12], "method": scope["method"], "path": scope["path"],
                         "status": status["code"], "ms": round(elapsed * 1000, 1), **fields})

    def _check_host(self, scope: Scope) -> ServeError | None:
        settings = self.service.settings
        if settings.allowed_hosts is None or settings.api_key is not None:
            return None
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").strip().lower()
        name = host[1:].partition("]")[0] if host.startswith("[") else host.rpartition(":")[0] if \
            host.count(":") == 1 else host
        if name in settings.allowed_hosts:
            return None
        # Not echoed in full: it is whatever the caller chose.
        return MisdirectedRequest("This server answers only to the names it is bound to "
                                  f"({', '.join(settings.allowed_hosts)}) in the Host header. Reach it by one of "
                                  "them, or start it with --api-key to serve other names.")

    def _check_key(self, scope: Scope) -> ServeError | None:
        key = self.service.settings.api_key
        if key is None or scope["path"] in OPEN_PATHS:
            return None
        headers = dict(scope["headers"])
        given = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.get_secret_value().encode()):
            return None
        # Never echo what was sent: a wrong key may be another service's real one.
        return Unauthorized("Incorrect or missing API key: send 'Authorization: Bearer <key>' with the key the "
                            "server was started with (--api-key or MINIONS_API_KEY).")

    async def _limit_body(self, scope: Scope, receive: Any) -> tuple[Any, ServeError | None]:
        """Read the whole body up to the limit (it is read whole by every route anyway) and replay
        it; more than the limit is refused before any route sees it."""
        limit = self.service.settings.max_body_bytes
        too_big = BodyTooLarge(f"The request body is larger than the server's limit of {limit} bytes: send "
                               "smaller files, or upload them once with POST /v1/files and refer to them by "
                               "file_id (or raise --max-body-mb).")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return receive, too_big
        if scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            return receive, None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                chunks.append(message)  # a disconnect while sending: let the route see it
                break
            size += len(message.get("body", b""))
            if size > limit:
                return receive, too_big
            chunks.append(message)
            if not message.get("more_body", False):
                break
        body = b"".join(m.get("body", b"") for m in chunks if m["type"] == "http.request")
        replay = [{"type": "http.request", "body": body, "more_body": False}]
        replay += [m for m in chunks if m["type"] != "http.request"]

        async def replayed() -> dict[str, Any]:
            return replay.pop(0) if replay else await receive()

        return replayed, None


async def _send_error(send: Any, error: ServeError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    if isinstance(error, Unauthorized):
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
