"""`create_app(service)`: the OpenAI-compatible HTTP API (FastAPI).

    GET  /v1/models                 the protocols, as models
    POST /v1/chat/completions       a question over documents; `stream: true` for SSE
    POST /v1/files, GET /v1/files, GET|DELETE /v1/files/{id}
    GET  /metrics                   Prometheus
    GET  /health
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from minions.serve.deps import require

require("fastapi", "fastapi")
require("multipart", "python-multipart")

from fastapi import FastAPI, File, Form, Request, UploadFile  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse, Response, StreamingResponse  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

from minions.errors import MinionsError  # noqa: E402
from minions.serve import chat  # noqa: E402
from minions.serve.errors import ClientGone, InternalError, InvalidRequest, NotFound, ServeError  # noqa: E402
from minions.serve.gate import Gate  # noqa: E402
from minions.serve.schemas import ChatCompletionRequest, Delta, Model, ModelList  # noqa: E402
from minions.serve.service import Finished, RunPlan, Service, Ticket, log_fields  # noqa: E402
from minions.serve.store import FileObject  # noqa: E402

log = logging.getLogger("minions.serve")


def create_app(service: Service) -> Any:
    """The ASGI app for `service` (wrapped in the Gate: key, body limit, log line)."""
    app = FastAPI(title="minions", summary="Minions protocols behind the OpenAI chat-completions API",
                  version="1", docs_url=None, redoc_url=None)
    app.state.service = service
    _errors(app)
    _routes(app, service)
    return Gate(app, service)


def _error_response(request: Request, error: ServeError) -> JSONResponse:
    request.state.log["error_type"] = type(error).__name__
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _errors(app: FastAPI) -> None:
    @app.exception_handler(ServeError)
    async def serve_error(request: Request, exc: ServeError) -> JSONResponse:
        return _error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        if first.get("type") == "extra_forbidden":
            message = f"Unrecognized request argument supplied: {param}"
        elif first.get("type") == "json_invalid":
            message = "The request body is not valid JSON."
        else:
            message = f"Invalid value for {param or 'the request body'}: {first.get('msg')}"
        return _error_response(request, InvalidRequest(message, param=param))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        cls = NotFound if exc.status_code == 404 else InvalidRequest
        err = cls(f"{request.method} {request.url.path}: {exc.detail}")
        response = _error_response(request, err)
        response.status_code = exc.status_code  # 405 and the like keep their own status
        return response

    @app.exception_handler(MinionsError)
    async def minions_error(request: Request, exc: MinionsError) -> JSONResponse:
        # typed errors name their fix and carry no secrets: say what went wrong
        return _error_response(request, InternalError(f"{type(exc).__name__}: {exc}"))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error_response(request, InternalError("The server failed to handle this request; the server log "
                                                      "has the details."))


async def _disconnected(request: Request) -> None:
    """Returns when the client goes away (its body was read already, so the next ASGI message
    is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _routes(app: FastAPI, service: Service) -> None:
    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "running": service.admission.running, "queued": service.admission.waiting}

    @app.get("/metrics")
    async def metrics() -> Response:
        body, content_type = service.metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/v1/models")
    async def models() -> ModelList:
        return ModelList(data=[Model(id=n) for n in service.protocols()])

    @app.get("/v1/models/{model_id}")
    async def model(model_id: str) -> Model:
        return Model(id=service.protocol_name(model_id))

    @app.post("/v1/files")
    async def upload(file: UploadFile = File(...), purpose: str = Form("user_data")) -> FileObject:
        return await service.store.upload(await file.read(), file.filename or "", purpose)

    @app.get("/v1/files")
    async def files(after: str | None = None, limit: int = 10000) -> dict[str, Any]:
        listed = service.store.files()
        if after is not None:  # cursor pagination, as the SDK's list iterator pages
            ids = [f.id for f in listed]
            listed = listed[ids.index(after) + 1:] if after in ids else []
        page = listed[:max(1, limit)]
        return {"object": "list", "data": [f.model_dump() for f in page], "has_more": len(listed) > len(page),
                "first_id": page[0].id if page else None, "last_id": page[-1].id if page else None}

    @app.get("/v1/files/{file_id}")
    async def file(file_id: str) -> FileObject:
        return service.store.file(file_id)

    @app.delete("/v1/files/{file_id}")
    async def delete_file(file_id: str) -> dict[str, Any]:
        service.store.delete(file_id)
        return {"id": file_id, "object": "file", "deleted": True}

    @app.post("/v1/chat/completions")
    async def completions(body: ChatCompletionRequest, request: Request) -> Response:
        plan = await chat.plan_for(service, body)
        request.state.log["protocol"] = plan.protocol
        ticket = service.admit(plan)  # 429 now, before a stream starts
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            stream = _Stream(service, plan, ticket, request, include_usage, chat.ignored_params(body))
            return _StreamingResponse(stream.events(), stream.close, media_type="text/event-stream",
                                      headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        finished = await service.run(plan, ticket, cancel_when=_disconnected(request))
        request.state.log.update(log_fields(finished))
        if (failed := chat.failure(finished.result)) is not None:
            raise failed
        completion = chat.completion_of(finished.result, plan.protocol, chat.ignored_params(body))
        return JSONResponse(completion.model_dump(mode="json"))


class _StreamingResponse(StreamingResponse):
    """Runs `on_close` however the response ends — also when the client left before the body
    iterator ever started (then its own `finally` would never run)."""

    def __init__(self, content: AsyncIterator[bytes], on_close: Any, **kw: Any):
        super().__init__(content, **kw)
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_close()


class _Stream:
    """One streamed completion: progress events as they happen, then the answer in deltas."""

    def __init__(self, service: Service, plan: RunPlan, ticket: Ticket, request: Request, include_usage: bool,
                 ignored: list[str]):
        self.service, self.plan, self.ticket, self.request = service, plan, ticket, request
        self.include_usage, self.ignored = include_usage, ignored
        self.chunks = chat.ChunkMaker(plan.protocol)
        self.task: asyncio.Task[Finished] | None = None

    async def events(self) -> AsyncIterator[bytes]:
        from minions.protocols.events import FinalAnswer

        queue: asyncio.Queue[Any] = asyncio.Queue()
        yield self.chunks.chunk(Delta(role="assistant", content=""))
        self.task = asyncio.ensure_future(self.service.run(self.plan, self.ticket, on_event=queue.put_nowait,
                                                           cancel_when=_disconnected(self.request)))
        while True:
            getter = asyncio.ensure_future(queue.get())
            try:
                done, _ = await asyncio.wait({getter, self.task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():  # the run ended, or this stream was closed while waiting
                    getter.cancel()
            if getter not in done:
                break
            event = getter.result()
            if not isinstance(event, FinalAnswer):  # the answer itself follows as content deltas
                yield self.chunks.chunk(minions={"event": event.model_dump(mode="json")})
        while not queue.empty():  # events emitted just before the run ended
            event = queue.get_nowait()
            if not isinstance(event, FinalAnswer):
                yield self.chunks.chunk(minions={"event": event.model_dump(mode="json")})
        try:
            finished = self.task.result()
        except ClientGone:
            return  # nobody to tell
        except ServeError as e:
            self.request.state.log["error_type"] = type(e).__name__
            yield chat.sse(e.body())
            return
        except Exception as e:  # the stream has started: the error goes in it, as OpenAI sends one
            log.error("run failed while streaming", exc_info=e)
            err = InternalError(f"{type(e).__name__}: {e}" if isinstance(e, MinionsError) else
                                "The server failed while answering; the server log has the details.")
            self.request.state.log["error_type"] = type(err).__name__
            yield chat.sse(err.body())
            return
        self.request.state.log.update(log_fields(finished))
        if (failed := chat.failure(finished.result)) is not None:
            self.request.state.log["error_type"] = type(failed).__name__
            yield chat.sse(failed.body())
            return
        for piece in self.chunks.answer(finished.result, self.include_usage, self.ignored):
            yield piece
        yield chat.sse("[DONE]")

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()  # Service.run cancels the protocol's task in turn
            await asyncio.wait({self.task})
        self.ticket.close(None)  # no-op when the run closed it already
