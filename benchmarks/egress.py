"""What each protocol sends verbatim, and what measuring it costs (issue 22).

    python benchmarks/egress.py [--filings N]

Five protocols with scripted clients (deterministic, no model time): a worker that cites a real
sentence of its excerpt (the first one holding a figure) and a remote that plans one task and then
answers. On the bundled sample (datasets/sample/northwind_annual_report.md) and on N FinanceBench
filings (default 10; skipped when ../shared/datasets/financebench is absent).

Printed per protocol: requests, bytes sent, the documents' characters sent verbatim (spans of 40+
characters after whitespace normalisation) and their share, and the cost of measuring
(`RunResult.egress.measure_s`) as a ratio to the run's orchestration time (`elapsed_s`, which with
scripted clients is all orchestration: chunking, prompts, parsing, the meter). Expected shape:
remote-only ~100%, RAG about its retrieved share, MinionS and Minion well under 5%.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minions.clients.function import FunctionClient  # noqa: E402
from minions.documents import Document, load  # noqa: E402
from minions.protocols import get_protocol  # noqa: E402
from tests.test_protocol_minion import ask as minion_ask  # noqa: E402
from tests.test_protocol_minion import final as minion_final  # noqa: E402
from tests.test_protocol_minions import final, plan, scripted_remote  # noqa: E402

PROTOCOLS = ("remote-only", "rag", "minion", "minions", "local-only")
FB = ROOT.parent / "shared" / "datasets" / "financebench"
_SENTENCE = re.compile(r"[^.!?\n]*\d[^.!?\n]*[.!?]")


def quoting_worker(msgs, _opts) -> str:
    """Cites the first sentence of 40+ characters with a figure in its excerpt (MinionS), or in the
    document it was given (Minion)."""
    user = msgs[-1].content
    text = user.split("<excerpt>\n", 1)[1].split("\n</excerpt>", 1)[0] if "<excerpt>" in user else \
        "\n".join(m.content for m in msgs)
    quote = next((s.strip() for s in _SENTENCE.findall(text) if len(s.strip()) >= 40), None)
    if "<excerpt>" not in user:
        return quote or "The document does not say."
    if quote is None:
        return json.dumps({"explanation": "not in this excerpt", "citation": None, "answer": None})
    return json.dumps({"explanation": "stated", "citation": quote, "answer": re.search(r"\d[\d,.]*", quote).group()})


def remote_for(protocol: str) -> FunctionClient:
    if protocol == "minions":
        return scripted_remote([plan("Find the total revenue figure")], [final("$1")])
    if protocol == "minion":
        return FunctionClient.from_replies([minion_ask("What was total revenue? Quote the sentence."),
                                            minion_final("$1")], model="scripted-remote")
    return FunctionClient.from_replies(["$1"], model="scripted-remote")


def run(protocol: str, doc: Document) -> tuple[int, int, int, int, float, float]:
    kw = {"ask_question": False, "max_rounds": 1} if protocol == "minions" else {}
    proto = get_protocol(protocol, FunctionClient(quoting_worker, model="scripted-local"), remote_for(protocol), **kw)
    result = proto.run("What was total revenue?", [doc])
    eg = result.egress
    d = eg.documents[0]
    return eg.requests, eg.bytes, d.verbatim_chars, d.chars, eg.measure_s, result.elapsed_s


def filings(n: int) -> list[Document]:
    if not (FB / "docs.jsonl.gz").exists():
        return []
    out = []
    with gzip.open(FB / "docs.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            out.append(Document.from_pages(doc["pages"], id=doc["doc_name"], title=doc["doc_name"]))
            if len(out) == n:
                break
    return out


def table(title: str, docs: list[Document]) -> None:
    print(f"\n{title} ({len(docs)} document{'s' * (len(docs) != 1)}, "
          f"{statistics.mean(len(d.text) for d in docs):,.0f} chars on average)")
    print(f"  {'protocol':<12}{'requests':>9}{'kB sent':>10}{'verbatim chars':>16}{'share':>9}"
          f"{'measure ms':>12}{'run ms':>10}{'ratio':>8}")
    for p in PROTOCOLS:
        rows = [run(p, d) for d in docs]
        req, sent, vchars, chars = (sum(r[i] for r in rows) for i in range(4))
        measure, elapsed = sum(r[4] for r in rows), sum(r[5] for r in rows)
        print(f"  {p:<12}{req:>9}{sent / 1000:>10.1f}{vchars:>16,}{vchars / chars:>9.2%}"
              f"{1000 * measure:>12.1f}{1000 * elapsed:>10.1f}{measure / elapsed if elapsed else 0:>8.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--filings", type=int, default=10)
    args = ap.parse_args()
    table("bundled sample", [load(ROOT / "datasets" / "sample" / "northwind_annual_report.md")])
    docs = filings(args.filings)
    if docs:
        table("FinanceBench filings", docs)
    else:
        print(f"\nFinanceBench not found at {FB}: skipped")


if __name__ == "__main__":
    main()
