"""One record per outbound request, and where records go.

A record is taken where the request leaves: the HTTP transport of the SDK clients (see
`transport.py`), or the call itself for an in-process remote (the embedded stand-in, a scripted
client serving as the remote). It holds the time, the host, the model, the body's size and SHA-256,
tokens and dollars when the reply says, and the text sent — never headers, so never an API key.

Records go to the *sinks* of the current context (`capture`): a run's collector (set by
`Protocol.arun`, which turns them into `RunResult.egress`) and any ledger the caller opened
(`minions ask --egress-log`). A context variable carries them, so concurrent runs on one event loop
each see their own requests, and `run_sync` carries them to its loop thread. `MINIONS_EGRESS_LOG`
names a ledger that gets every record of the process, including requests made outside any run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

#: environment variables: a ledger for every request of the process, and whether it keeps the text
LOG_ENV, LOG_TEXT_ENV = "MINIONS_EGRESS_LOG", "MINIONS_EGRESS_LOG_TEXT"


class EgressRecord(BaseModel):
    """One request that left for a remote model."""

    time: str                                   # UTC, ISO 8601
    run_id: str | None = None                   # the run it belongs to; None outside a run
    via: Literal["http", "in-process"]
    host: str                                   # "api.openai.com"; "in-process" for an in-process remote
    path: str = ""                              # the URL path, without its query (which may hold a key)
    provider: str
    model: str
    bytes: int                                  # of the request body as sent
    sha256: str                                 # of the request body as sent
    status: int | None = None                   # the HTTP status; None when no reply came
    prompt_tokens: int | None = None            # when the reply says
    completion_tokens: int | None = None
    cost_usd: float | None = None               # when the model is priced
    text: str | None = None                     # the text sent (messages, system prompt); None: hashes only


class Sink(Protocol):
    def add(self, record: EgressRecord) -> None: ...

    def end_run(self, run_id: str, summary: Any) -> None: ...


_SINKS: ContextVar[tuple[Sink, ...]] = ContextVar("minions_egress_sinks", default=())
_RUN: ContextVar[str | None] = ContextVar("minions_egress_run", default=None)
#: the role of the outermost client of the call in progress (see `Client.complete`)
_ROLE: ContextVar[str | None] = ContextVar("minions_egress_role", default=None)


@contextlib.contextmanager
def acting_as(role: str | None) -> Iterator[None]:
    """Within this block a call is made on behalf of `role`, unless an outer block already said."""
    token = _ROLE.set(role) if role is not None and _ROLE.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _ROLE.reset(token)


def role_of(client: Any) -> str | None:
    """The role `client` is serving in right now: its outermost caller's, else its own."""
    return _ROLE.get() or getattr(client, "egress_role", None)


@contextlib.contextmanager
def capture(*sinks: Sink, run_id: str | None = None) -> Iterator[None]:
    """Within this block, every outbound request is added to `sinks` (and to those of enclosing
    blocks). `run_id` labels the records of one run."""
    token = _SINKS.set((*_SINKS.get(), *sinks))
    run = _RUN.set(run_id) if run_id is not None else None
    try:
        yield
    finally:
        _SINKS.reset(token)
        if run is not None:
            _RUN.reset(run)


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def current_run() -> str | None:
    return _RUN.get()


def _env_ledger() -> Sink | None:
    path = os.environ.get(LOG_ENV)
    if not path:
        return None
    from minions.egress.ledger import Ledger

    return Ledger(path, text=os.environ.get(LOG_TEXT_ENV, "on").lower() not in ("0", "off", "no", "false"))


def _sinks() -> list[Sink]:
    sinks = list(_SINKS.get())
    env = _env_ledger()
    if env is not None and not any(getattr(s, "path", None) == getattr(env, "path", None) for s in sinks):
        sinks.append(env)
    return sinks


def emit(record: EgressRecord) -> None:
    """Hand one record to every sink of the current context."""
    if record.run_id is None:
        record = record.model_copy(update={"run_id": _RUN.get()})
    for sink in _sinks():
        sink.add(record)


def end_run(run_id: str, summary: Any) -> None:
    """Tell the sinks (ledgers) a run finished, with its summary (`Egress`)."""
    for sink in _sinks():
        sink.end_run(run_id, summary)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_UNPARSED = object()


def sent_text(body: bytes, data: Any = _UNPARSED) -> str:
    """The text a request carries to the model: the system prompt and message contents of an
    OpenAI, Anthropic or Ollama chat body; the decoded body when it is not one of those. `data`:
    the body already parsed (None if it is not JSON)."""
    if data is _UNPARSED:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
    if not isinstance(data, dict) or not isinstance(data.get("messages", data.get("system")), list | str):
        return body.decode("utf-8", "replace")
    parts: list[str] = []
    _texts(data.get("system"), parts)
    for m in data.get("messages") or ():
        _texts(m.get("content") if isinstance(m, dict) else m, parts)
    return "\n\n".join(parts)


def _texts(content: Any, out: list[str]) -> None:
    if isinstance(content, str):
        out.append(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append(part["text"])
            elif isinstance(part, dict) and isinstance(part.get("content"), str | list):
                _texts(part["content"], out)


def without_keys(text: str, client: Any) -> str:
    """`text` with the client's API keys and every `*_API_KEY` variable's value removed: should a
    document or prompt hold one, it left once, but it is not written down again."""
    from minions.redact import env_secrets, redact

    return redact(text, (*getattr(client, "secrets", ()), *env_secrets()))


def usage_of(reply: bytes) -> tuple[int | None, int | None]:
    """(prompt, completion) tokens from an OpenAI, Anthropic or Ollama reply body, if it says."""
    try:
        data = json.loads(reply)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    u = data.get("usage")
    if isinstance(u, dict):
        if "prompt_tokens" in u:
            return _int(u.get("prompt_tokens")), _int(u.get("completion_tokens"))
        if "input_tokens" in u:  # Anthropic: cached and cache-writing tokens are part of the prompt
            total = sum(_int(u.get(k)) or 0 for k in ("input_tokens", "cache_read_input_tokens",
                                                       "cache_creation_input_tokens"))
            return total, _int(u.get("output_tokens"))
    if "prompt_eval_count" in data:  # Ollama
        return _int(data.get("prompt_eval_count")), _int(data.get("eval_count"))
    return None, None


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


class Collector:
    """A run's sink: keeps its records for `RunResult.egress`."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.records: list[EgressRecord] = []

    def add(self, record: EgressRecord) -> None:
        if record.run_id == self.run_id:
            self.records.append(record)

    def end_run(self, run_id: str, summary: Any) -> None:
        pass


class DocumentEgress(BaseModel):
    doc_id: str
    chars: int                                  # the document's length, whitespace normalised
    verbatim_chars: int                         # its characters that left verbatim (spans >= min_chars)
    verbatim_share: float
    #: personal-data items in the document, by type ("[EMAIL]": 2), that the scrubber replaced
    #: in everything sent (--privacy); empty without it
    scrubbed: dict[str, int] = Field(default_factory=dict)


class HostEgress(BaseModel):
    host: str
    requests: int = 0
    bytes: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0                # None: some request to this host was unpriced


class Egress(BaseModel):
    """What left this machine in one run (`RunResult.egress`)."""

    run_id: str
    requests: int = 0
    bytes: int = 0
    hosts: list[HostEgress] = Field(default_factory=list)
    documents: list[DocumentEgress] = Field(default_factory=list)
    min_verbatim_chars: int = 40
    #: seconds spent measuring the verbatim spans (to compare with the run's orchestration time)
    measure_s: float = 0.0

    @property
    def verbatim_chars(self) -> int:
        return sum(d.verbatim_chars for d in self.documents)

    @property
    def verbatim_share(self) -> float:
        total = sum(d.chars for d in self.documents)
        return self.verbatim_chars / total if total else 0.0

    def line(self) -> str:
        """One line for people: "egress: 3 requests, 12.1 kB to api.openai.com; 1.2% of the documents verbatim"."""
        if not self.requests:
            return "egress: nothing left this machine"
        hosts = ", ".join(h.host for h in self.hosts)
        docs = "" if len(self.documents) < 2 else " (" + ", ".join(
            f"{d.doc_id} {d.verbatim_share:.1%}" for d in self.documents) + ")"
        return (f"egress: {self.requests} request{'s' * (self.requests != 1)}, {_size(self.bytes)} to {hosts}; "
                f"{self.verbatim_chars:,} chars of the documents verbatim ({self.verbatim_share:.1%}){docs}")


def _size(n: int) -> str:
    return f"{n} B" if n < 1000 else f"{n / 1000:.1f} kB" if n < 1_000_000 else f"{n / 1e6:.1f} MB"


def per_host(records: list[EgressRecord]) -> list[HostEgress]:
    hosts: dict[str, HostEgress] = {}
    for r in records:
        h = hosts.setdefault(r.host, HostEgress(host=r.host))
        h.requests += 1
        h.bytes += r.bytes
        h.prompt_tokens += r.prompt_tokens or 0
        h.completion_tokens += r.completion_tokens or 0
        if h.cost_usd is not None and (r.cost_usd is not None or r.prompt_tokens is None):
            h.cost_usd += r.cost_usd or 0.0  # a failed request with no reply cost nothing
        else:
            h.cost_usd = None
    return list(hosts.values())


def summarize(run_id: str, records: list[EgressRecord], documents: list[tuple[str, str]], *,
              min_chars: int = 40, scrubbed: dict[str, dict[str, int]] | None = None) -> Egress:
    """The run's egress: per host, and per document (`(doc_id, text)`) the verbatim measure over
    every text sent."""
    from minions.egress.verbatim import VerbatimIndex, normalize

    started = time.perf_counter()
    texts = [r.text for r in records if r.text]
    docs = []
    for doc_id, text in documents:
        if not texts:  # nothing left: no index to build
            docs.append(DocumentEgress(doc_id=doc_id, chars=len(normalize(text)), verbatim_chars=0,
                                       verbatim_share=0.0))
            continue
        index = VerbatimIndex(text, min_chars=min_chars)
        for t in texts:
            index.add(t)
        docs.append(DocumentEgress(doc_id=doc_id, chars=index.total, verbatim_chars=index.chars,
                                   verbatim_share=round(index.share, 6),
                                   scrubbed=(scrubbed or {}).get(doc_id, {})))
    return Egress(run_id=run_id, requests=len(records), bytes=sum(r.bytes for r in records),
                  hosts=per_host(records), documents=docs, min_verbatim_chars=min_chars,
                  measure_s=time.perf_counter() - started)
