"""OpenAI chat-completions, models and SSE chunk shapes (the subset a Minions server speaks), with
the `minions` extension objects. Requests are strict: a parameter we do not know is a 400 naming
it, as OpenAI does; parameters we accept but that cannot apply are listed in IGNORED_PARAMS."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from minions.protocols.knobs import request_model

#: OpenAI parameters accepted for compatibility that do not apply: sampling belongs to the protocol
#: (its knobs), and the answer is one message. Documented in docs/agents.md.
IGNORED_PARAMS = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "seed", "user",
                  "metadata", "store", "max_tokens", "max_completion_tokens", "parallel_tool_calls",
                  "service_tier", "reasoning_effort", "stop")


#: why a completion ended: "length" also when the spend cap stopped the run
FinishReason = Literal["stop", "length"]

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- request -------------------------------------------------------------------------------------

class TextPart(_Strict):
    type: Literal["text"]
    text: str


class FileRef(_Strict):
    file_data: str | None = None    # base64, or a data URL "data:application/pdf;base64,..."
    file_id: str | None = None      # from POST /v1/files, or a corpus document id
    filename: str | None = None


class FilePart(_Strict):
    type: Literal["file"]
    file: FileRef


class OtherPart(BaseModel):
    """Any other part type (image_url, input_audio, ...): parsed so it can be refused by name."""

    model_config = ConfigDict(extra="allow")
    type: str


Part = Annotated[TextPart | FilePart | OtherPart, Field(union_mode="left_to_right")]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_calls, refusal, ... (kept, not used)
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[Part] | None = None


#: every protocol's knobs, generated from their Config classes (types, bounds, descriptions); the
#: model's own protocol then checks the ones it takes (Service.check_knobs)
Knobs = request_model()


class MinionsOptions(_Strict):
    """The `minions` extension field of a request."""

    knobs: Knobs = Field(default_factory=Knobs)  # type: ignore[valid-type]
    #: corpus document ids (or file ids) to answer over; default: the files in the messages, else
    #: the whole corpus
    documents: list[str] | None = None
    max_remote_usd: float | None = Field(None, ge=0, allow_inf_nan=False)


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatCompletionRequest(_Strict):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1)
    tools: list[dict[str, Any]] | None = Field(None, max_length=0)
    tool_choice: Literal["none"] | None = None
    response_format: dict[str, Any] | None = None
    logprobs: Literal[False] | None = None
    minions: MinionsOptions = Field(default_factory=MinionsOptions)
    # accepted, not applied (see IGNORED_PARAMS)
    temperature: float | None = None
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    parallel_tool_calls: bool | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None
    stop: str | list[str] | None = None


# --- response ------------------------------------------------------------------------------------

class CompletionUsage(BaseModel):
    """Remote tokens: what the caller pays a provider for. Local usage is in the extension."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class MinionsInfo(BaseModel):
    """The `minions` extension of a response: `RunResult.summary()` (the stable --json shape of
    `minions ask`) without the answer, which is the message. New summary keys pass through."""

    model_config = ConfigDict(extra="allow")
    protocol: str
    usage: dict[str, Any]
    cost_usd: dict[str, float | None]
    rounds: int
    citations: list[dict[str, Any]]
    error: str | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason = "stop"
    logprobs: None = None


def new_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=new_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    system_fingerprint: None = None
    minions: MinionsInfo


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
    #: progress events while running ({"event": {...}}), the full extension on the last chunk
    minions: dict[str, Any] | None = None


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "minions"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]
