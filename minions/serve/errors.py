"""Errors a server answers with. Each knows its HTTP status and OpenAI error type/code, so every
failure reaches an OpenAI client as `{"error": {"message", "type", "param", "code"}}` and an MCP
client as a tool error with the same message — never as a traceback."""

from __future__ import annotations

from typing import Any, ClassVar

from minions.errors import MinionsError


class ServeError(MinionsError):
    status: ClassVar[int] = 400
    type: ClassVar[str] = "invalid_request_error"
    default_code: ClassVar[str | None] = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message, self.param = message, param
        self.code = code or self.default_code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(ServeError):
    pass


class Unauthorized(ServeError):
    status = 401
    default_code = "invalid_api_key"


class MisdirectedRequest(ServeError):
    """A Host header this server does not answer to (DNS rebinding: a web page's script reaching a
    keyless loopback server through a name it controls)."""

    status = 421
    default_code = "misdirected_request"


class NotFound(ServeError):
    status = 404


class UnknownModel(NotFound):
    default_code = "model_not_found"


class BodyTooLarge(ServeError):
    status = 413
    default_code = "request_too_large"


class QueueFull(ServeError):
    """Every run slot is busy and the queue is full: retry after `retry_after` seconds."""

    status = 429
    type = "requests"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class SpendCapReached(ServeError):
    """The server-wide remote spend cap is used up (OpenAI's 'insufficient_quota')."""

    status = 429
    type = "insufficient_quota"
    default_code = "insufficient_quota"


class RunTimedOut(ServeError):
    status = 504
    type = "server_error"
    default_code = "timeout"


class RunFailed(ServeError):
    """The protocol ran but produced no answer (a model server failed, a reply never parsed, ...)."""

    status = 502
    type = "server_error"


class ClientGone(ServeError):
    """The caller disconnected; its run was cancelled. Never sent (nobody is listening): logged."""

    status = 499
    type = "client_closed_request"


class InternalError(ServeError):
    status = 500
    type = "server_error"
    default_code = "internal_error"
