"""Chat completions: an OpenAI request -> a RunPlan; a RunResult -> a completion or SSE chunks.

The last user message is the question. Earlier turns are the conversation, given to the protocol
with the question (so "and the year before?" can be answered). Documents come from `file` parts
(inline base64 or a file id), else from `minions.documents`, else the whole corpus.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from minions.documents import SUPPORTED, Document, unique_ids
from minions.protocols import RunResult
from minions.protocols.history import Turn, with_history
from minions.serve.errors import InvalidRequest, RunFailed, ServeError
from minions.serve.schemas import (
    IGNORED_PARAMS,
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    ChunkChoice,
    CompletionUsage,
    Delta,
    FilePart,
    FinishReason,
    MinionsInfo,
    TextPart,
    new_id,
)
from minions.serve.service import RunPlan, Service
from minions.serve.store import parse_upload

_DELTA_CHARS = 80  # answer pieces per SSE chunk: small enough to render progressively


def _text(message: ChatMessage, index: int) -> str:
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            parts.append(part.text)
        elif not isinstance(part, FilePart) and part.type == "file":  # a file part of the wrong shape
            raise InvalidRequest("A file part is {'type': 'file', 'file': {'file_data': BASE64, 'filename': NAME}} "
                                 "or {'type': 'file', 'file': {'file_id': ID}}.", param=f"messages[{index}].content[{j}]")
        elif not isinstance(part, FilePart):
            raise InvalidRequest(f"Content parts of type {part.type!r} are not supported: send text and "
                                 f"file parts ({SUPPORTED}).", param=f"messages[{index}].content[{j}]")
    return "\n".join(parts)


def compose_task(request: ChatCompletionRequest) -> str:
    """The question, preceded by the earlier turns when there are any."""
    messages = request.messages
    last = len(messages) - 1
    if messages[last].role != "user":
        raise InvalidRequest("The last message must be the user's question (role 'user').",
                             param=f"messages[{last}].role")
    question = _text(messages[last], last).strip()
    if not question:
        raise InvalidRequest("The last user message has no question text: ask something about the "
                             "documents.", param=f"messages[{last}].content")
    return with_history(question, conversation_turns((m.role, _text(m, i)) for i, m in enumerate(messages[:last])))


def conversation_turns(messages: Iterable[tuple[str, str]]) -> list[Turn]:
    """Earlier chat messages as turns: a user message opens a turn, the assistant's reply answers it.

    Instructions (system, developer, tool) are kept, marked with their role, as what the user said, so
    nothing a client sent is dropped; empty messages are.
    """
    turns: list[Turn] = []
    for role, raw in messages:
        text = raw.strip()
        if not text:
            continue
        if role == "assistant":
            if turns and turns[-1].answer is None:
                turns[-1] = turns[-1].model_copy(update={"answer": text})
            else:
                turns.append(Turn(question="", answer=text))
        else:
            turns.append(Turn(question=text if role == "user" else f"[{role}] {text}"))
    return turns


async def _file_document(service: Service, part: FilePart, param: str) -> Document:
    ref = part.file
    if ref.file_id:
        return service.store.get(ref.file_id, param=param + ".file.file_id")
    if not ref.file_data:
        raise InvalidRequest("A file part needs file_data (base64) or file_id.", param=param + ".file")
    data = ref.file_data
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("file_data is not valid base64 (send the bytes base64-encoded, optionally as a "
                             "data URL).", param=param + ".file.file_data") from None
    return await parse_upload(raw, ref.filename or "", param=param + ".file.filename")


async def documents_for(service: Service, request: ChatCompletionRequest) -> list[Document]:
    docs: list[Document] = []
    for i, message in enumerate(request.messages):
        if isinstance(message.content, list):
            for j, part in enumerate(message.content):
                if isinstance(part, FilePart):
                    docs.append(await _file_document(service, part, f"messages[{i}].content[{j}]"))
    if request.minions.documents is not None:
        # A repeated id names the same document: read once (3000 copies of one id must not make a
        # prompt 3000 documents long).
        refs = list(dict.fromkeys(request.minions.documents))
        service.settings.ceilings.check_documents(len(refs), param="minions.documents")
        first = {ref: k for k, ref in reversed(list(enumerate(request.minions.documents)))}
        docs += [service.store.get(ref, param=f"minions.documents[{first[ref]}]") for ref in refs]
    elif not docs:
        docs = list(service.store.corpus.values())
    if not docs and service.run_settings.index is None:  # with --index the run picks from the index
        raise InvalidRequest("No documents to answer over: attach a file part, pass minions.documents, or start "
                             "the server with documents (minions serve report.pdf) or an index (--index PATH).",
                             param="messages")
    distinct = list({id(d): d for d in docs}.values())  # the same file id attached twice: once
    return unique_ids(distinct)


async def plan_for(service: Service, request: ChatCompletionRequest) -> RunPlan:
    name = service.protocol_name(request.model)
    if request.response_format not in (None, {"type": "text"}):
        raise InvalidRequest("Only text answers are supported (response_format {'type': 'text'}).",
                             param="response_format")
    task = compose_task(request)
    given: BaseModel = request.minions.knobs  # a model generated from the Configs (schemas.Knobs)
    knobs = service.check_knobs(name, given.model_dump(exclude_none=True))
    docs = await documents_for(service, request)
    return RunPlan(protocol=name, task=task, documents=docs, knobs=knobs,
                   max_remote_usd=request.minions.max_remote_usd)


# --- responses -----------------------------------------------------------------------------------

def usage_of(result: RunResult) -> CompletionUsage:
    u = result.cost.role("remote").usage
    return CompletionUsage(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
                           total_tokens=u.prompt_tokens + u.completion_tokens)


def ignored_params(request: ChatCompletionRequest) -> list[str]:
    """The OpenAI parameters the caller set that do not apply here: reported back, not silently dropped."""
    return sorted(set(IGNORED_PARAMS) & request.model_fields_set)


def info_of(result: RunResult, ignored: list[str] | None = None) -> MinionsInfo:
    summary = result.summary()
    summary.pop("answer")
    if ignored:
        summary["ignored_params"] = ignored
    return MinionsInfo(**summary)


def failure(result: RunResult) -> ServeError | None:
    """A run with no answer and an error is a failed request (502), not an empty answer — except a
    spend cap reached: like running out of tokens, that is finish_reason "length"."""
    if result.answer is None and result.error and not result.budget_exhausted:
        return RunFailed(f"The {result.protocol} run failed: {result.error}", code=result.error_type)
    return None


def completion_of(result: RunResult, model: str, ignored: list[str] | None = None) -> ChatCompletion:
    finish: FinishReason = "length" if result.budget_exhausted else "stop"
    return ChatCompletion(model=model, choices=[Choice(message=AssistantMessage(content=result.answer or ""),
                                                       finish_reason=finish)],
                          usage=usage_of(result), minions=info_of(result, ignored))


def sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


class ChunkMaker:
    """Chunks of one streamed completion, all with the same id, created time and model."""

    def __init__(self, model: str):
        self.id, self.created, self.model = new_id(), int(time.time()), model

    def chunk(self, delta: Delta | None = None, *, finish: FinishReason | None = None, usage: CompletionUsage | None = None,
              minions: dict[str, Any] | None = None, choices: bool = True) -> bytes:
        c = ChatCompletionChunk(id=self.id, created=self.created, model=self.model,
                                choices=[ChunkChoice(delta=delta or Delta(), finish_reason=finish)] if choices else [],
                                usage=usage, minions=minions)
        body = c.model_dump(mode="json", exclude_none=True)
        for choice in body["choices"]:
            choice["finish_reason"] = finish  # null until the last chunk, as OpenAI sends it
        return sse(body)

    def answer(self, result: RunResult, include_usage: bool, ignored: list[str] | None = None) -> list[bytes]:
        text = result.answer or ""
        pieces, start = [], 0
        while start < len(text):
            end = min(len(text), start + _DELTA_CHARS)
            if end < len(text):
                space = text.rfind(" ", start + 1, end)
                end = space + 1 if space > start else end
            pieces.append(text[start:end])
            start = end
        out = [self.chunk(Delta(content=p)) for p in pieces]
        finish: FinishReason = "length" if result.budget_exhausted else "stop"
        out.append(self.chunk(finish=finish, minions=info_of(result, ignored).model_dump(mode="json")))
        if include_usage:
            out.append(self.chunk(usage=usage_of(result), choices=False))
        return out
