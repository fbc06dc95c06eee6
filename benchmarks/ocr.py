"""OCR engines on generated scanned pages: accuracy and speed, Tesseract against RapidOCR.

    python benchmarks/ocr.py [--pages 4]

Each page is known text (prose, figures like "(1,577)", a two-column table) rendered with Pillow at
200 dpi, given a slight skew and noise like a scanner's, and wrapped in a PDF with no text layer.
Each installed engine reads the page images as `minions.load` gives them to it. Printed per engine:
seconds per page, start-up seconds, word recall (share of the page's words found, as a multiset),
figure recall (numbers only) and character similarity (difflib ratio). The baseline is the text
layer today's loader had for these pages: none (0% recall).
"""

from __future__ import annotations

import argparse
import difflib
import io
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minions.documents import ocr  # noqa: E402
from minions.errors import MissingDependencyError  # noqa: E402


class RapidOCR:
    """RapidOCR (PP-OCR models on onnxruntime, weights in the wheel), the candidate not chosen."""

    name = "rapidocr"

    def __init__(self) -> None:
        try:
            from rapidocr_onnxruntime import RapidOCR as _Engine
        except ImportError as exc:
            raise MissingDependencyError("rapidocr-onnxruntime (pip install it to compare)", "ocr") from exc
        self._engine = _Engine()

    def read(self, image: Any) -> str:
        import numpy as np

        result, _ = self._engine(np.asarray(image.convert("RGB")))
        return _lines(result or [])


def _lines(boxes: list) -> str:
    """RapidOCR's boxes -> text in reading order: boxes whose vertical centres are within half a
    line height of each other form one line, left to right."""
    items = []
    for box, text, _score in boxes:
        ys, xs = [p[1] for p in box], [p[0] for p in box]
        items.append(((min(ys) + max(ys)) / 2, max(ys) - min(ys), min(xs), text))
    items.sort()
    lines: list[list[tuple]] = []
    for item in items:
        if lines and abs(item[0] - lines[-1][0][0]) < max(item[1], lines[-1][0][1]) / 2:
            lines[-1].append(item)
        else:
            lines.append([item])
    return "\n".join(" ".join(t for *_, t in sorted(line, key=lambda i: i[2])) for line in lines)


ENGINES = {"tesseract": ocr.Tesseract, "rapidocr": RapidOCR}

WORDS = ("revenue operating income segment customers patients discharge medication dosage trial cohort "
         "results analysis quarterly annual report balance sheet liabilities assets equity cash flow "
         "investing financing property plant equipment purchases depreciation amortization approximately "
         "increase decrease compared prior year primarily driven higher lower margin guidance outlook "
         "physician hospital admission diagnosis treatment follow-up clinical laboratory").split()
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
DPI = 200


def page_text(rng: random.Random) -> list[str]:
    lines = []
    for _ in range(14):
        words = [rng.choice(WORDS) for _ in range(rng.randint(7, 10))]
        words[0] = words[0].capitalize()
        lines.append(" ".join(words) + ".")
    lines.append("")
    for _ in range(8):  # a statement-like block: a label and three yearly figures
        label = " ".join(rng.choice(WORDS) for _ in range(3)).capitalize()
        figures = [f"({rng.randint(1, 9)},{rng.randint(0, 999):03d})" if rng.random() < .3
                   else f"{rng.randint(10, 9999):,}" for _ in range(3)]
        lines.append(f"{label}    " + "    ".join(figures))
    return lines


def render(lines: list[str], rng: random.Random):
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    width, height = int(8.5 * DPI), int(11 * DPI)
    img = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.truetype(FONT, size=int(11 / 72 * DPI))
    except OSError:
        font = ImageFont.load_default(size=int(11 / 72 * DPI))
    y = DPI
    for line in lines:
        draw.text((DPI, y), line, fill=0, font=font)
        y += int(font.size * 1.5)
    img = img.rotate(rng.uniform(-0.6, 0.6), fillcolor=255, resample=Image.BICUBIC)
    noise = Image.effect_noise(img.size, 18).point(lambda v: 255 if v > 40 else 0)
    img = Image.composite(img, noise.filter(ImageFilter.MinFilter(1)), noise)
    return img.filter(ImageFilter.GaussianBlur(0.6))


def scanned_pdf(images) -> bytes:
    buf = io.BytesIO()
    images[0].save(buf, "PDF", resolution=DPI, save_all=True, append_images=images[1:])
    return buf.getvalue()


def tokens(text: str) -> Counter:
    return Counter(re.findall(r"[\w,().-]+", text.lower().replace(".", " ").replace("  ", " ")))


def recall(truth: str, got: str, only_figures: bool = False) -> float:
    want, have = tokens(truth), tokens(got)
    if only_figures:
        want = Counter({k: v for k, v in want.items() if any(c.isdigit() for c in k)})
    return sum(min(n, have[w]) for w, n in want.items()) / max(sum(want.values()), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=4)
    args = parser.parse_args()
    rng = random.Random(20)
    truths = ["\n".join(page_text(rng)) for _ in range(args.pages)]
    pdf = scanned_pdf([render(t.split("\n"), rng) for t in truths])

    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(pdf))
    layer = [p.extract_text() or "" for p in reader.pages]
    images = [ocr.page_images(p, where="bench", number=i + 1) for i, p in enumerate(reader.pages)]
    print(f"{args.pages} generated scanned page(s), {DPI} dpi, {len(pdf) / 1e6:.2f} MB PDF")
    print(f"baseline (text layer, today's loader): word recall "
          f"{sum(recall(t, g) for t, g in zip(truths, layer, strict=True)) / len(truths):.1%}")
    print(f"{'engine':<10} {'start s':>8} {'s/page':>8} {'words':>7} {'figures':>8} {'chars':>7}")
    rows = {}
    for name, make in ENGINES.items():
        t0 = time.perf_counter()
        try:
            eng = make()
        except Exception as exc:  # noqa: BLE001  an engine not installed is reported, not fatal
            print(f"{name:<10} not installed ({exc})")
            continue
        start = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = ["\n".join(eng.read(im) for im in page) for page in images]
        per_page = (time.perf_counter() - t0) / len(images)
        words = sum(recall(t, g) for t, g in zip(truths, got, strict=True)) / len(truths)
        figs = sum(recall(t, g, True) for t, g in zip(truths, got, strict=True)) / len(truths)
        chars = sum(difflib.SequenceMatcher(None, t, g, autojunk=False).ratio()
                    for t, g in zip(truths, got, strict=True)) / len(truths)
        rows[name] = per_page
        print(f"{name:<10} {start:8.2f} {per_page:8.2f} {words:7.1%} {figs:8.1%} {chars:7.1%}")
    if len(rows) == 2:
        print(f"speed ratio rapidocr/tesseract: {rows['rapidocr'] / rows['tesseract']:.2f}x seconds per page")


if __name__ == "__main__":
    main()
