"""What the verbatim budget withholds, and what enforcing it costs (issue 22, item 3).

    python benchmarks/verbatim_budget.py [--filings N]

MinionS and Minion with scripted clients (no model time): a worker that cites a real sentence of its
excerpt (benchmarks/egress.py's `quoting_worker`), a remote that plans one task and answers. On the
bundled sample and on N FinanceBench filings (default 5; skipped when ../shared/datasets/financebench
is absent), under: no budget (the baseline, measured in the same run), `max_verbatim=0`, `500`,
`1%`, and `quotes=off`.

Printed per setting: the documents' characters that reached the remote verbatim (measured by the
run's egress summary, independently of the budget's own accounting) and their share; what was
withheld (quotes, other spans); and the run's orchestration time as a ratio to the no-budget run —
the cost of enforcing (indexing each document once, locating every outbound span).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from egress import filings, quoting_worker, remote_for  # noqa: E402

from minions.clients.function import FunctionClient  # noqa: E402
from minions.documents import Document, load  # noqa: E402
from minions.protocols import get_protocol  # noqa: E402

SETTINGS: list[tuple[str, dict]] = [("no budget", {}), ("max_verbatim=0", {"max_verbatim": 0}),
                                    ("max_verbatim=500", {"max_verbatim": 500}),
                                    ("max_verbatim=1%", {"max_verbatim": "1%"}), ("quotes=off", {"quotes": "off"})]


def run(protocol: str, doc: Document, knobs: dict) -> tuple[int, int, int, int, float]:
    kw = {"ask_question": False, "max_rounds": 1} if protocol == "minions" else {}
    proto = get_protocol(protocol, FunctionClient(quoting_worker, model="scripted-local"), remote_for(protocol),
                         **kw, **knobs)
    result = proto.run("What was total revenue?", [doc])
    assert result.error is None, result.error
    eg = result.egress
    w = eg.withheld
    return (eg.documents[0].verbatim_chars, eg.documents[0].chars, w.quotes_withheld if w else 0,
            w.spans_cut if w else 0, result.elapsed_s)


def table(title: str, docs: list[Document]) -> None:
    print(f"\n{title} ({len(docs)} document{'s' * (len(docs) != 1)}, "
          f"{statistics.mean(len(d.text) for d in docs):,.0f} chars on average)")
    print(f"  {'protocol':<9}{'setting':<18}{'verbatim chars':>15}{'share':>9}{'quotes withheld':>17}"
          f"{'spans cut':>11}{'run ms':>9}{'vs no budget':>14}")
    for protocol in ("minions", "minion"):
        run(protocol, docs[0], {})  # warm-up: imports and first-use caches are not the budget's cost
        base = None
        for name, knobs in SETTINGS:
            rows = [run(protocol, d, knobs) for d in docs]
            vchars, chars, quotes, spans = (sum(r[i] for r in rows) for i in range(4))
            elapsed = sum(r[4] for r in rows)
            base = base or elapsed
            print(f"  {protocol:<9}{name:<18}{vchars:>15,}{vchars / chars:>9.3%}{quotes:>17}{spans:>11}"
                  f"{1000 * elapsed:>9.0f}{elapsed / base:>13.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--filings", type=int, default=5)
    args = ap.parse_args()
    table("bundled sample", [load(ROOT / "datasets" / "sample" / "northwind_annual_report.md")])
    docs = filings(args.filings)
    if docs:
        table("FinanceBench filings", docs)
    else:
        print("\nFinanceBench not found: skipped")


if __name__ == "__main__":
    main()
