"""The "What left this machine" panel (issue 22): every request that left for the remote model in a
turn, as it was sent (after scrubbing), with the documents' verbatim spans highlighted.

The records are taken where requests leave (`minions.egress`): `ask` opens a `capture` block with a
`Recorder` around the run, and when the run ends `outbound` measures each text against the turn's
documents once (the spans are kept with the turn, so a rerun of the page does not measure again).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from minions.documents import Document
from minions.egress import MIN_CHARS, EgressRecord, VerbatimIndex
from minions.protocols.result import RunResult

from .fmt import safe_md, tokens, usd

#: characters of one message shown in the panel (a remote-only prompt holds whole documents)
SHOW_CHARS = 20_000


class Recorder:
    """An egress sink (`minions.egress.capture`) that keeps every record of the turn's run."""

    def __init__(self) -> None:
        self.records: list[EgressRecord] = []

    def add(self, record: EgressRecord) -> None:
        self.records.append(record)

    def end_run(self, run_id: str, summary: Any) -> None:
        pass


@dataclass
class Outbound:
    """One request as sent, and the [start, end) offsets of `text` that are verbatim document spans."""

    record: EgressRecord
    text: str
    spans: list[tuple[int, int]] = field(default_factory=list)

    @property
    def verbatim_chars(self) -> int:
        return sum(b - a for a, b in self.spans)


def _to_original(text: str) -> list[int]:
    """For each character of `normalize(text)` (words joined by one space), its offset in `text`."""
    out: list[int] = []
    prev_end = None
    for m in re.finditer(r"\S+", text):
        if prev_end is not None:
            out.append(prev_end)  # the one space stands for the whitespace run after the last word
        out.extend(range(m.start(), m.end()))
        prev_end = m.end()
    return out


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def outbound(records: Sequence[EgressRecord], docs: Sequence[Document], *, min_chars: int = MIN_CHARS) -> list[Outbound]:
    """The turn's requests with their verbatim spans (against any of `docs`), in `text`'s own offsets."""
    indexes = [VerbatimIndex(d.text, min_chars=min_chars) for d in docs] if records else []
    out = []
    for r in records:
        text = r.text or ""
        where = _to_original(text)
        spans = [(where[a], where[b - 1] + 1) for index in indexes for a, b in index.spans(text)]
        out.append(Outbound(record=r, text=text, spans=_merge(spans)))
    return out


def highlighted_html(text: str, spans: Sequence[tuple[int, int]], limit: int = SHOW_CHARS) -> str:
    """`text` escaped (model output and documents are untrusted), verbatim spans in <mark>, cut at `limit`."""
    parts, pos = [], 0
    for a, b in spans:
        if a >= limit:
            break
        parts += [html.escape(text[pos:a]), "<mark>", html.escape(text[a:min(b, limit)]), "</mark>"]
        pos = min(b, limit)
    parts.append(html.escape(text[pos:limit]))
    more = f"\n… {len(text) - limit:,} more characters" if len(text) > limit else ""
    return ('<div class="minions-egress" style="white-space: pre-wrap; font-family: monospace; font-size: 0.8em; '
            'max-height: 22em; overflow-y: auto; border: 1px solid rgba(128,128,128,0.3); padding: 0.5em">'
            + "".join(parts) + html.escape(more) + "</div>")


def _size(n: int) -> str:
    return f"{n:,} B" if n < 1000 else f"{n / 1000:,.1f} kB"


def render_panel(result: RunResult | None, sent: Sequence[Outbound]) -> None:
    """The panel: the run's egress line, its documents' verbatim shares, then each message as sent."""
    eg = result.egress if result is not None else None
    n = len(sent)
    with st.expander(f"What left this machine: {n} request{'s' * (n != 1)}"
                     + (f", {eg.verbatim_share:.1%} of the documents verbatim" if eg is not None and n else "")):
        if not sent:
            st.caption("Nothing: no request went to a remote model. The documents stayed with the local model.")
            return
        if eg is not None:
            st.caption(safe_md(eg.line()) + f" · verbatim = a span of {eg.min_verbatim_chars}+ characters of a "
                       "document, after whitespace normalisation; highlighted below.")
            st.dataframe([{"document": d.doc_id, "chars": d.chars, "verbatim chars": d.verbatim_chars,
                           "share": f"{d.verbatim_share:.2%}",
                           "scrubbed": ", ".join(f"{k} ×{v}" for k, v in d.scrubbed.items()) or "—"}
                          for d in eg.documents], hide_index=True)
        for i, o in enumerate(sent, 1):
            r = o.record
            host = "in-process (stand-in remote)" if r.via == "in-process" else r.host
            used = "" if r.prompt_tokens is None else \
                f" · {tokens(r.prompt_tokens)} + {tokens(r.completion_tokens or 0)} tokens · {usd(r.cost_usd)}"
            st.markdown(safe_md(f"**{i}. → {host}** · {r.model} · {_size(r.bytes)}{used} · "
                                f"{o.verbatim_chars:,} chars verbatim"))
            st.html(highlighted_html(o.text, o.spans))
