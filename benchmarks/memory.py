"""Peak memory of loading, counting and chunking one large text file, against its size.

    python benchmarks/memory.py            # a generated 200 MB .txt (in a temp dir, deleted after)
    python benchmarks/memory.py --mb 50    # smaller, quicker

Each stage runs in a fresh subprocess, which reports its peak resident memory (getrusage max RSS)
minus its resident memory after imports, so the interpreter, numpy, tiktoken and the rest do not
count. Figures are multiples of the file's size (ASCII: 1 byte per character on disk and in a
Python str). Named baseline, measured in the same run: `read_bytes().decode()`, the least any
loader must hold (the bytes and the text, once each). Also measured: the previous token count (one
tiktoken `encode` of the whole text, as `count_tokens` and the remote-only estimate did) and the
all-NUL .txt of issue 12 (refused now). Target (issue 12): peak <= 3x the text size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "datasets" / "sample" / "northwind_annual_report.md"
TARGET_X = 3.0

# Each stage: code run after `path` (the file) and `limit` are set; it may leave results in `keep`
# so that what a stage builds is alive at its peak.
STAGES: dict[str, str] = {
    "baseline: read_bytes().decode()": "keep = path.read_bytes().decode()",
    "load()": "keep = load(path, max_chars=limit)",
    "load() + count_tokens": "doc = load(path, max_chars=limit); keep = (doc, count_tokens(doc.text))",
    "load() + chunk (chars 3000)": "doc = load(path, max_chars=limit); keep = (doc, chunk_document(doc, 'chars', 3000))",
    "load() + remote-only estimate": (
        "doc = load(path, max_chars=limit)\n"
        "proto = get_protocol('minions', Tiktoken(lambda m, o: '', model='l'), Tiktoken(lambda m, o: '', model='r'))\n"
        "ctx = RunContext(proto, 'What was revenue?', [doc], None)\n"
        "proto._estimate_remote_only(ctx)\n"
        "keep = (doc, ctx.meter.report().remote_only_estimate_usd)"),
    "previous count: one encode of the whole text": (
        "text = path.read_bytes().decode()\nkeep = (text, len(encoding().encode(text, disallowed_special=())))"),
    "all-NUL .txt (refused)": (
        "try:\n    load(nul_path, max_chars=limit)\nexcept DocumentError as e:\n    keep = str(e)[:60]"),
}

PRELUDE = """
import resource, sys, time
from pathlib import Path
from minions.clients.base import Client
from minions.clients.function import FunctionClient
from minions.documents import chunk_document, load
from minions.errors import DocumentError
from minions.protocols import get_protocol
from minions.protocols.base import RunContext
from minions.tokens import count_tokens, encoding

class Tiktoken(FunctionClient):  # a scripted client that counts like a cloud model (tiktoken)
    count_tokens = Client.count_tokens

encoding(); count_tokens("warm up"); chunk_document(load("warm up text"), "chars", 3000)
path, nul_path, limit = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
import gc; gc.collect()
t = time.perf_counter()
"""

REPORT = """
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_kb": peak - before, "seconds": seconds}))
"""


def make_text(path: Path, size: int) -> None:
    """`size` bytes of ASCII prose (the bundled sample report, repeated)."""
    block = SAMPLE.read_text(encoding="utf-8").encode("ascii", "replace") * 50
    with open(path, "wb") as f:
        left = size
        while left > 0:
            f.write(block[:left])
            left -= len(block)


def run_stage(code: str, path: Path, nul_path: Path, limit: int) -> dict:
    script = "import json\n" + PRELUDE + code + "\n" + REPORT
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script, str(path), str(nul_path), str(limit)], capture_output=True,
                         text=True, env=env, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"stage failed:\n{code}\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    if not sys.platform.startswith("linux"):
        print("skipped: needs Linux (getrusage ru_maxrss in kB)")
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=int, default=200, help="size of the generated text file (MB)")
    p.add_argument("--skip-previous", action="store_true", help="skip the whole-text encode (~2 GB at 200 MB)")
    args = p.parse_args()
    size = args.mb * 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        path, nul_path = Path(tmp) / "big.txt", Path(tmp) / "nul.txt"
        make_text(path, size)
        with open(nul_path, "wb") as f:
            f.truncate(size)  # all NUL bytes (sparse)
        limit = size + 1  # the default limit (50M characters) refuses this file: raise it, as a user would
        print(f"{args.mb} MB ASCII text file ({size:,} characters); peak RSS above the post-import RSS, "
              f"each stage in its own process; python {sys.version.split()[0]}\n")
        print(f"  {'stage':<48}{'peak MB':>9}{'x size':>8}{'vs baseline':>13}{'seconds':>9}")
        base = None
        for name, code in STAGES.items():
            if args.skip_previous and name.startswith("previous"):
                continue
            r = run_stage(code, path, nul_path, limit)
            peak = r["peak_kb"] * 1024
            base = base or peak
            print(f"  {name:<48}{peak / 1e6:>9.0f}{peak / size:>8.2f}{peak / base:>12.2f}x{r['seconds']:>9.1f}",
                  flush=True)
            if name.startswith("load() + remote-only"):
                worst = peak
        verdict = "OK" if worst / size <= TARGET_X else "MISSED"
        print(f"\n  load + remote-only estimate peaks at {worst / size:.2f}x the text size (target <= {TARGET_X:.0f}x: "
              f"{verdict}).")
    return 0


if __name__ == "__main__":
    started = time.perf_counter()
    code = main()
    print(f"  total {time.perf_counter() - started:.0f} s")
    raise SystemExit(code)
