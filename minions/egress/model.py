"""The egress records and summaries: plain data, shared by the recorder (`record.py`) and the
ledger (`ledger.py`), which must not import each other both ways."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


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


class Withheld(BaseModel):
    """What the verbatim budget kept back in one run (`--max-verbatim`, `--quotes off`).

    Characters are of normalised text (see `verbatim.normalize`). A withheld quote reached the
    remote as `[quote withheld: N chars, verified locally]`, with the worker's answer beside it."""

    max_verbatim: str | None = None             # the budget: "0", "500" (characters in all), "2%" (of each document)
    quotes: Literal["on", "off"] = "on"
    quotes_withheld: int = 0                    # workers' quotes replaced by their placeholder
    quote_chars: int = 0
    spans_cut: int = 0                          # other verbatim spans cut from messages to the remote
    span_chars: int = 0
    messages: int = 0                           # remote requests that had something withheld

    @property
    def chars(self) -> int:
        return self.quote_chars + self.span_chars

    def line(self) -> str:
        """"withheld 3 quotes (612 chars) and 1 span (44 chars) under --max-verbatim 0"."""
        parts = [f"{n} {what}{'s' * (n != 1)} ({c:,} chars)" for n, what, c in (
            (self.quotes_withheld, "quote", self.quote_chars), (self.spans_cut, "span", self.span_chars)) if n]
        rule = " and ".join(r for r in (f"--max-verbatim {self.max_verbatim}" if self.max_verbatim is not None
                                        else "", "--quotes off" if self.quotes == "off" else "") if r)
        return f"withheld {' and '.join(parts) or 'nothing'} under {rule}"


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
    #: what the verbatim budget withheld; None: the run had no budget (and quotes on)
    withheld: Withheld | None = None

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
        withheld = f"; {self.withheld.line()}" if self.withheld is not None else ""
        return (f"egress: {self.requests} request{'s' * (self.requests != 1)}, {_size(self.bytes)} to {hosts}; "
                f"{self.verbatim_chars:,} chars of the documents verbatim ({self.verbatim_share:.1%}){docs}{withheld}")


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
