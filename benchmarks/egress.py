"""What each protocol sends verbatim, and what measuring it costs (issue 22).

    python benchmarks/egress.py [--sample-items N] [--filings N] [--no-model]

Three tables, five protocols each (remote-only, rag, minion, minions, local-only):

1. The bundled sample with the embedded model: llamacpp/smollm2 in both roles (the remote a
   stand-in priced as openai/gpt-4o), with the knobs of the offline demo sweep (evals/offline.toml:
   one round, short replies). N sample questions, one per document (default 3). Slow on a busy CPU
   (minutes); `--no-model` skips it.
2. The bundled sample with scripted clients (deterministic, no model time): a worker that cites a
   real sentence of its excerpt (the first one of 40+ characters holding a figure) and a remote that
   plans one task and then answers.
3. N FinanceBench filings (default 10; skipped when ../shared/datasets/financebench is absent), whole
   10-Ks and 10-Qs, with the same scripted clients.

Printed per protocol: requests, bytes sent, the documents' characters sent verbatim (spans of 40+
characters after whitespace normalisation, `RunResult.egress`) and their share, and the cost of
measuring (`egress.measure_s`) as a ratio to the run (`elapsed_s`, which the measure is not part
of). With scripted clients the run is all orchestration (chunking, prompts, parsing, the meter); with
the embedded model it includes the model's time. Expected shape: remote-only ~100%, RAG about its
retrieved share, MinionS and Minion well under 5%.
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
from minions.eval.config import expand, load_config  # noqa: E402
from minions.protocols import get_protocol  # noqa: E402
from minions.protocols.build import build_protocol  # noqa: E402
from tests.test_protocol_minion import ask as minion_ask  # noqa: E402
from tests.test_protocol_minion import final as minion_final  # noqa: E402
from tests.test_protocol_minions import final, plan, scripted_remote  # noqa: E402

PROTOCOLS = ("remote-only", "rag", "minion", "minions", "local-only")
FB = ROOT.parent / "shared" / "datasets" / "financebench"
SAMPLE = ROOT / "datasets" / "sample"
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


Row = tuple[int, int, int, int, float, float, bool]  # requests, bytes, verbatim, chars, measure s, run s, answered


def scripted_run(protocol: str, doc: Document) -> Row:
    kw = {"ask_question": False, "max_rounds": 1} if protocol == "minions" else {}
    proto = get_protocol(protocol, FunctionClient(quoting_worker, model="scripted-local"), remote_for(protocol), **kw)
    return measured(proto.run("What was total revenue?", [doc]))


def measured(result) -> Row:
    eg = result.egress
    return (eg.requests, eg.bytes, eg.verbatim_chars, sum(d.chars for d in eg.documents), eg.measure_s,
            result.elapsed_s, result.answer is not None)


def sample_items(n: int) -> list[tuple[str, Document]]:
    """The first question of each bundled sample document, up to n."""
    out: dict[str, tuple[str, Document]] = {}
    for line in (SAMPLE / "questions.jsonl").read_text().splitlines():
        q = json.loads(line)
        if q["doc"] not in out and len(out) < n:
            out[q["doc"]] = (q["question"], load(SAMPLE / q["doc"]))
    return list(out.values())


def embedded_runner():
    """Runs one protocol with the embedded model in both roles, with evals/offline.toml's knobs (the
    model is loaded once and shared; the remote is priced as a stand-in by the recipe)."""
    from minions.clients import get_client

    engine = get_client("llamacpp/smollm2")
    runs = {r.protocol: r for r in expand(load_config(ROOT / "evals" / "offline.toml"))}

    def run(protocol: str, question: str, doc: Document) -> Row:
        settings = runs[protocol].settings().model_copy(update={"local": engine, "remote": engine})
        return measured(build_protocol(settings).run(question, [doc]))
    return run


def table(title: str, items: list[tuple[str, Document]], run) -> None:
    docs = [d for _q, d in items]
    print(f"\n{title} ({len(docs)} document{'s' * (len(docs) != 1)}, "
          f"{statistics.mean(len(d.text) for d in docs):,.0f} chars on average)", flush=True)
    print(f"  {'protocol':<12}{'answered':>9}{'requests':>9}{'kB sent':>10}{'verbatim chars':>16}{'share':>9}"
          f"{'measure ms':>12}{'run ms':>11}{'ratio':>8}", flush=True)
    for p in PROTOCOLS:
        rows = [run(p, q, d) for q, d in items]
        req, sent, vchars, chars = (sum(r[i] for r in rows) for i in range(4))
        measure, elapsed = sum(r[4] for r in rows), sum(r[5] for r in rows)
        answered = sum(r[6] for r in rows)
        print(f"  {p:<12}{f'{answered}/{len(rows)}':>9}{req:>9}{sent / 1000:>10.1f}{vchars:>16,}{vchars / chars:>9.2%}"
              f"{1000 * measure:>12.1f}{1000 * elapsed:>11.0f}{measure / elapsed if elapsed else 0:>8.4f}", flush=True)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample-items", type=int, default=3, help="sample questions run with the embedded model")
    ap.add_argument("--filings", type=int, default=10)
    ap.add_argument("--no-model", action="store_true", help="skip the embedded-model table")
    args = ap.parse_args()
    print("verbatim = spans of 40+ characters of a document in what was sent, after whitespace normalisation; "
          "ratio = measure time / run time")
    if not args.no_model:
        table("bundled sample, embedded model (llamacpp/smollm2 both roles, evals/offline.toml knobs)",
              sample_items(args.sample_items), embedded_runner())
    scripted = [("What was total revenue?", load(SAMPLE / "northwind_annual_report.md"))]
    table("bundled sample, scripted quoting worker", scripted, lambda p, _q, d: scripted_run(p, d))
    docs = filings(args.filings)
    if docs:
        table("FinanceBench filings, scripted quoting worker", [("What was total revenue?", d) for d in docs],
              lambda p, _q, d: scripted_run(p, d))
    else:
        print(f"\nFinanceBench not found at {FB}: skipped")


if __name__ == "__main__":
    main()
