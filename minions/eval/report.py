"""Per-configuration summary of a sweep: summary.csv, summary.md, pareto.png and privacy.png.

Definitions (per dataset × configuration, over its rows):
- accuracy: mean score (0/1 for most scorers, answer-F1 for QASPER).
- remote $ / query: mean remote dollars spent (None if any call was unpriced).
- cost reduction: Σ remote-only estimate / Σ remote dollars spent (×; ∞ when nothing was spent).
  Rows without their own estimate (local-only has no remote) use the item's estimate from another
  configuration of the sweep.
- % of remote-only: accuracy / accuracy of the sweep's remote-only configuration on the same
  dataset (and remote model), when there is one.
- verbatim sent: mean share of the documents' characters sent to the remote verbatim (spans of 40+
  characters, `RunResult.egress`), and mean characters per query: the privacy axis (privacy.png).
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel

from minions.eval.results import ResultRow

if TYPE_CHECKING:
    from minions.eval.config import RunConfig, SweepConfig


class Summary(BaseModel):
    dataset: str
    config_id: str
    config: str
    protocol: str
    remote: str | None = None
    n: int
    accuracy: float
    remote_usd_per_query: float | None
    remote_only_usd_per_query: float | None
    cost_reduction: float | None
    pct_of_remote_only: float | None = None
    local_tokens_per_query: float
    remote_tokens_per_query: float
    judge_usd: float | None = None
    rounds_mean: float
    read_share: float | None = None                # mean share of the documents read
    #: mean characters (and share) of the documents sent to the remote verbatim, per query
    verbatim_chars_per_query: float | None = None
    verbatim_share: float | None = None
    latency_p50: float
    latency_p95: float
    failures: int                   # runs that ended in a typed error without a fallback answer
    degraded: int = 0               # runs answered from local work after a remote step failed
    stand_in: bool = False


def _sum(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else float(sum(v for v in values if v is not None))


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def summarize(rows: list[ResultRow], runs: list[RunConfig]) -> list[Summary]:
    estimates: dict[tuple[str, str], float] = {}
    for r in rows:
        if r.remote_only_estimate_usd is not None:
            estimates.setdefault((r.dataset, r.item_id), r.remote_only_estimate_usd)
    groups: dict[tuple[str, str], list[ResultRow]] = defaultdict(list)
    # Rows in item order, whatever order they finished in: float sums then do not depend on how a
    # sweep was interrupted and resumed (a resumed sweep's summary equals a clean run's, to the bit).
    for r in sorted(rows, key=lambda r: (r.dataset, r.config_id, r.item_id)):
        groups[(r.dataset, r.config_id)].append(r)
    order = {run.id: i for i, run in enumerate(runs)}
    out: list[Summary] = []
    for (dataset, cid), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 1 << 30))):
        spent = _sum([r.remote_usd for r in rs])
        est = _sum([r.remote_only_estimate_usd if r.remote_only_estimate_usd is not None
                    else estimates.get((r.dataset, r.item_id)) for r in rs])
        reduction = None
        if spent is not None and est is not None:
            reduction = est / spent if spent > 0 else (math.inf if est > 0 else None)
        lat = np.array([r.latency_s for r in rs])
        judge = [r.cost_usd["judge"] for r in rs if "judge" in r.cost_usd]
        n = len(rs)
        out.append(Summary(
            dataset=dataset, config_id=cid, config=rs[0].config, protocol=rs[0].protocol, remote=rs[0].remote, n=n,
            accuracy=sum(r.score for r in rs) / n,
            remote_usd_per_query=None if spent is None else spent / n,
            remote_only_usd_per_query=None if est is None else est / n, cost_reduction=reduction,
            local_tokens_per_query=sum(r.local_tokens for r in rs) / n,
            remote_tokens_per_query=sum(r.usage["remote"].total_tokens for r in rs if "remote" in r.usage) / n,
            judge_usd=_sum(judge) if judge else None, rounds_mean=sum(r.rounds for r in rs) / n,
            read_share=_mean([r.read_share for r in rs]),
            verbatim_chars_per_query=_mean([r.verbatim_chars for r in rs]),
            verbatim_share=_mean([r.verbatim_share for r in rs]),
            latency_p50=float(np.percentile(lat, 50)), latency_p95=float(np.percentile(lat, 95)),
            failures=sum(1 for r in rs if r.error and not r.degraded), degraded=sum(1 for r in rs if r.degraded),
            stand_in=any(r.remote_stand_in for r in rs)))
    for s in out:
        ref = next((o for o in out if o.dataset == s.dataset and o.protocol == "remote-only"
                    and (s.remote is None or o.remote == s.remote)), None)
        if ref is not None and ref.accuracy > 0:
            s.pct_of_remote_only = 100.0 * s.accuracy / ref.accuracy
    return out


# --- formatting ----------------------------------------------------------------------------------

COLUMNS = ["dataset", "config", "n", "accuracy", "remote $/query", "remote-only $/query", "cost ÷",
           "% of remote-only acc.", "local tok/query", "read", "verbatim sent", "rounds", "p50 s", "p95 s", "failures", "degraded"]
LEGEND = ("cost ÷: remote-only estimate / remote $ spent (how many times cheaper); % of remote-only acc.: accuracy "
          "relative to the remote-only configuration; read: mean share of the documents' text the models were "
          "shown (RunResult.coverage); verbatim sent: mean share of the documents' text sent to the remote word for "
          "word (spans of 40+ characters; RunResult.egress) and mean characters per query; p50/p95: latency per query in seconds; rounds: mean; "
          "failures: runs with a typed error and no answer to fall back on; degraded: runs answered from verified "
          "local work after a remote step failed or gave an ungrounded answer.")


def usd(v: float | None) -> str:
    if v is None:
        return "unpriced"
    return "$0" if v == 0 else f"${v:.4f}" if v >= 0.01 else f"${v:.2g}"


def ratio(v: float | None) -> str:
    return "—" if v is None else "∞" if math.isinf(v) else f"{v:.1f}×"


def display_row(s: Summary) -> list[str]:
    return [s.dataset, s.config, str(s.n), f"{100 * s.accuracy:.1f}%", usd(s.remote_usd_per_query),
            usd(s.remote_only_usd_per_query), ratio(s.cost_reduction),
            "—" if s.pct_of_remote_only is None else f"{s.pct_of_remote_only:.0f}%",
            f"{s.local_tokens_per_query:,.0f}", "—" if s.read_share is None else f"{s.read_share:.0%}",
            verbatim_sent(s),
            f"{s.rounds_mean:.1f}", secs(s.latency_p50), secs(s.latency_p95),
            str(s.failures), str(s.degraded)]


def verbatim_sent(s: Summary) -> str:
    """"1.2% (340 ch)": share of the documents sent verbatim, and characters per query."""
    if s.verbatim_share is None or s.verbatim_chars_per_query is None:
        return "—"
    share = s.verbatim_share
    pct = f"{100 * share:.0f}%" if share >= 0.1 or share == 0 else f"{100 * share:.2g}%"
    return f"{pct} ({s.verbatim_chars_per_query:,.0f} ch)"


def secs(v: float) -> str:
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def write_reports(run_dir: Path, summary: list[Summary], cfg: SweepConfig | None = None,
                  warnings: Sequence[str] = ()) -> dict[str, Path]:
    run_dir = Path(run_dir)
    files = {"csv": run_dir / "summary.csv", "md": run_dir / "summary.md"}
    fields = list(Summary.model_fields)
    with open(files["csv"], "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for s in summary:
            w.writerow({k: ("" if v is None else v) for k, v in s.model_dump().items()})
    lines = [f"# Sweep summary{f': {cfg.name}' if cfg else ''}", ""]
    if any(s.stand_in for s in summary):
        price = cfg.remote_price_as if cfg else "a cloud model"
        lines += [f"The remote model is a stand-in priced as {price}: dollars are what that model would "
                  "have charged for the same tokens.", ""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(display_row(s)) + " |" for s in summary]
    lines += ["", LEGEND]
    if warnings:  # e.g. unreadable results.jsonl lines: the table may be missing rows
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in warnings]
    files["md"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    if summary:
        files["png"] = pareto_plot(summary, run_dir / "pareto.png", title=cfg.name if cfg else "")
        if any(s.verbatim_share is not None for s in summary):
            files["privacy_png"] = privacy_plot(summary, run_dir / "privacy.png", title=cfg.name if cfg else "")
    return files


def frontier(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points (lower cost, higher accuracy), by increasing cost."""
    idx = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    best, keep = -math.inf, []
    for i in idx:
        if points[i][1] > best:
            keep.append(i)
            best = points[i][1]
    return keep


def pareto_plot(summary: list[Summary], path: Path, *, title: str = "") -> Path:
    """Accuracy against remote dollars per query, per dataset, with the Pareto frontier."""
    return _frontier_plot(summary, path, title=title, axis="cost")


def privacy_plot(summary: list[Summary], path: Path, *, title: str = "") -> Path:
    """Accuracy against the share of the documents sent to the remote verbatim (less is more
    private), per dataset, with the Pareto frontier: privacy beside quality, as pareto.png shows cost."""
    return _frontier_plot(summary, path, title=title, axis="verbatim")


def _x(s: Summary, axis: str) -> float | None:
    if axis == "cost":
        return s.remote_usd_per_query
    return None if s.verbatim_share is None else 100 * s.verbatim_share


def _frontier_plot(summary: list[Summary], path: Path, *, title: str, axis: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    datasets = list(dict.fromkeys(s.dataset for s in summary))
    fig, axes = plt.subplots(1, len(datasets), figsize=(7.5 * len(datasets), 5.5), squeeze=False)
    colors: dict[str, Any] = {}
    for ax, ds in zip(axes[0], datasets, strict=True):
        pts = [s for s in summary if s.dataset == ds and _x(s, axis) is not None]
        xy = [(_x(s, axis) or 0.0, 100 * s.accuracy) for s in pts]
        positive = [x for x, _ in xy if x > 0]
        if positive and max(positive) / min(positive) > 20:
            ax.set_xscale("symlog", linthresh=min(positive), linscale=0.5)
        labelled: set[str] = set()
        at: dict[tuple[float, float], list[str]] = {}  # configurations that land on the same point share a label
        for s, (x, y) in zip(pts, xy, strict=True):
            c = colors.setdefault(s.protocol, f"C{len(colors)}")
            ax.scatter([x], [y], s=60, color=c, zorder=3, label=None if s.protocol in labelled else s.protocol)
            labelled.add(s.protocol)
            at.setdefault((x, y), []).append(s.config)
        right = max((x for x, _ in xy), default=0.0)
        seen_rows: dict[int, int] = {}
        for (x, y), names in sorted(at.items()):
            # Labels stay inside the axes: above a point unless it is near the top, to the left of points
            # at the right edge, and alternating above/below along a row of similar accuracy.
            k = seen_rows[round(y / 10)] = seen_rows.get(round(y / 10), -1) + 1
            below = y > 85 or (y > 15 and k % 2 == 1)
            at_right = right > 0 and x >= 0.8 * right
            ax.annotate("\n".join(names), (x, y), textcoords="offset points", fontsize=8, zorder=4,
                        xytext=(-6 if at_right else 6, -8 if below else 8), ha="right" if at_right else "left",
                        va="top" if below else "bottom")
        front = frontier(xy)
        if len(front) > 1:
            fx, fy = [xy[i][0] for i in front], [xy[i][1] for i in front]
            ax.step(fx, fy, where="post", color="0.4", linestyle="--", linewidth=1.2, zorder=2, label="Pareto frontier")
        elif front:
            ax.scatter([xy[front[0]][0]], [xy[front[0]][1]], s=160, facecolors="none", edgecolors="0.4",
                       label="Pareto frontier")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-8, 108)
        ax.grid(True, alpha=0.3)
        if axis == "cost":
            stand_in = any(s.stand_in for s in pts)
            ax.set_xlabel("remote $ per query" + (" (stand-in remote, priced as the named model)" if stand_in else ""))
            ax.set_title(f"{ds}: cost vs accuracy" + (f" — {title}" if title else ""))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: "$0" if v == 0 else f"${v:g}"))
        else:
            ax.set_xlabel("documents sent to the remote verbatim (% of their text, spans of 40+ chars)")
            ax.set_title(f"{ds}: privacy vs accuracy" + (f" — {title}" if title else ""))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}%"))
        ax.legend(loc="best", fontsize=8)
        missing = [s.config for s in summary if s.dataset == ds and _x(s, axis) is None]
        if missing:
            ax.text(0.01, 0.01, ("unpriced" if axis == "cost" else "not measured") + " (not shown): "
                    + ", ".join(missing), transform=ax.transAxes, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
