"""The --privacy scrubber on real 10-K text: its speed, and what it redacts from filings that hold no
personal data (every redaction there is a false positive, or a company's own phone and email).

    python benchmarks/privacy.py [--filings N] [--data ../shared/datasets/financebench]

Baseline, measured in the same run on the same text: counting its tokens with the offline
tokenizer (`minions.tokens.count_tokens`), which `RunContext.call` already does for every remote
message. The ratio says what scrubbing adds on top. Also timed: `scrub_slice` over 3,000-char
excerpts with the document's spans computed once (RAG's path).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minions.protocols.privacy import Scrubber  # noqa: E402
from minions.tokens import count_tokens  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "financebench"


def load_texts(data: Path, n: int) -> list[str]:
    texts = []
    with gzip.open(data / "docs.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            if len(texts) >= n:
                break
            texts.append("\n".join(json.loads(line)["pages"]))
    return texts


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--filings", type=int, default=10, help="how many FinanceBench filings to read")
    ap.add_argument("--data", type=Path, default=DATA, help="the FinanceBench folder (holds docs.jsonl.gz)")
    args = ap.parse_args()
    if not (args.data / "docs.jsonl.gz").exists():
        print(f"skipped: FinanceBench data not found at {args.data} (it lives on development and CI machines)")
        return 0
    texts = load_texts(args.data, args.filings)
    mb = sum(len(t) for t in texts) / 1e6
    scrubber = Scrubber(["Maria Gonzalez"])  # one listed name, as a --private-name run has

    base = timed(lambda: [count_tokens(t) for t in texts])
    scrub = timed(lambda: [scrubber.scrub(t) for t in texts])

    def excerpts() -> None:
        for t in texts:
            spans = scrubber.spans(t)
            for i in range(0, len(t), 3000):
                scrubber.scrub_slice(t, i, i + 3000, spans)

    sliced = timed(excerpts)
    print(f"{len(texts)} filings, {mb:.1f} MB of text")
    print(f"count_tokens (baseline)    {base:6.2f} s  {mb / base:6.2f} MB/s")
    print(f"Scrubber.scrub             {scrub:6.2f} s  {mb / scrub:6.2f} MB/s  {scrub / base:.2f}x the baseline")
    print(f"spans + 3,000-char slices  {sliced:6.2f} s  {mb / sliced:6.2f} MB/s  {sliced / base:.2f}x the baseline")

    kinds: Counter[str] = Counter()
    examples: dict[str, list[str]] = defaultdict(list)
    for t in texts:
        for start, end, placeholder in scrubber.spans(t):
            kinds[placeholder] += 1
            if len(examples[placeholder]) < 5:
                examples[placeholder].append(" ".join(t[max(0, start - 30):end + 10].split()))
    print(f"redactions in filings without personal data: {dict(kinds) or 'none'}")
    for placeholder, xs in sorted(examples.items()):
        for x in xs:
            print(f"  {placeholder:8} …{x}…")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
