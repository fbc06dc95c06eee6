"""OCR for PDF pages that have no text layer (scans), in the `ocr` extra.

Only pages whose text layer is empty and that carry an image are read; every other page keeps its
text layer. The page's embedded images are OCR'd in place (a scan is one image per page), so no
PDF renderer is needed. Engine: Tesseract through `pytesseract` (Debian package `tesseract-ocr`),
chosen over RapidOCR by `benchmarks/ocr.py`: on generated 200 dpi scans it finds 99.9% of the words
and 99% of the figures where RapidOCR (PP-OCR, onnxruntime) finds 15% and 35% (it runs words
together), in 0.5-1x RapidOCR's time per page, and it weighs a few MB instead of onnxruntime + OpenCV. Progress goes to an `on_progress` callback as
`OcrProgress` events; documents never print.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

from minions.errors import DocumentError, MissingDependencyError

EXTRA = "ocr"
#: an image with more pixels than this is not decoded (a 600 dpi A3 scan is ~70 MP); a bomb's is larger
MAX_IMAGE_PIXELS = 80_000_000
#: images are scaled down to at most this many pixels on their long side before OCR (~300 dpi Letter)
MAX_SIDE = 3600
#: seconds Tesseract may spend on one image before the page is given up (with a warning)
TIMEOUT_S = 180
#: a page with fewer non-space characters than this in its text layer (a page number, a scanner's
#: stamp) and an image is OCR'd; what text it had is kept above what OCR read
MIN_TEXT_CHARS = 10


class OcrProgress(BaseModel):
    """OCR of a document's scanned pages: sent once before the first (`done` 0) and after each page;
    front ends draw a progress bar."""

    kind: Literal["ocr_progress"] = "ocr_progress"
    source: str
    page: int           # 1-based number of the page just read (done 0: the first to be read)
    done: int           # pages read so far
    total: int          # pages that need OCR in this document


ProgressHandler = Callable[[Any], Any]


def missing(what: str = "pytesseract") -> MissingDependencyError:
    return MissingDependencyError(what, EXTRA)


def needs_ocr(text: str) -> bool:
    return sum(not c.isspace() for c in text[:64]) < MIN_TEXT_CHARS


class Tesseract:
    """Tesseract 4/5 (LSTM) through pytesseract; page segmentation 3 (automatic, columns kept)."""

    name = "tesseract"

    def __init__(self, lang: str = "eng"):
        try:
            import pytesseract
        except ImportError as exc:
            raise missing("pytesseract") from exc
        if shutil.which(pytesseract.pytesseract.tesseract_cmd) is None:
            raise MissingDependencyError("tesseract-ocr program (apt-get install tesseract-ocr; brew install "
                                         "tesseract) and the Python package pytesseract", EXTRA)
        self._pt, self.lang = pytesseract, lang

    def read(self, image: Any) -> str:
        return self._pt.image_to_string(image, lang=self.lang, config="--psm 3", timeout=TIMEOUT_S)


ENGINES: dict[str, Callable[[], Any]] = {"tesseract": Tesseract}
DEFAULT_ENGINE = "tesseract"


def engine(name: str = DEFAULT_ENGINE) -> Any:
    """An OCR engine by name; MissingDependencyError naming the `ocr` extra when it is not installed."""
    return ENGINES[name]()


def _image_pixels(page: Any) -> list[int]:
    """Pixel counts of the page's image XObjects, read from their dictionaries (nothing decoded)."""
    try:
        xobjects = page["/Resources"]["/XObject"]
    except (KeyError, TypeError):
        return []
    sizes = []
    for ref in xobjects.values():
        obj = ref.get_object()
        if obj.get("/Subtype") == "/Image":
            sizes.append(int(obj.get("/Width", 0)) * int(obj.get("/Height", 0)))
    return sizes


def page_images(page: Any, *, where: str, number: int) -> list[Any]:
    """The page's images as PIL images, each scaled to MAX_SIDE; refuses a decompression bomb."""
    pixels = _image_pixels(page)
    if any(p > MAX_IMAGE_PIXELS for p in pixels):
        raise DocumentError(
            f"{where} hit a safety limit on page {number}: an image of {max(pixels):,} pixels (limit "
            f"{MAX_IMAGE_PIXELS:,}), as a decompression bomb has. If you trust the file, re-scan it at a lower "
            "resolution.", source=where)
    images = []
    for file in page.images:
        image = file.image
        if image is None:
            continue
        if max(image.size) > MAX_SIDE:
            image = image.copy()
            image.thumbnail((MAX_SIDE, MAX_SIDE))
        images.append(image)
    return images


def ocr_pages(data: bytes, pages: list[str], *, where: str, password: str | None = None,
              on_progress: ProgressHandler | None = None, engine_name: str = DEFAULT_ENGINE,
              warnings: list[str] | None = None) -> list[int]:
    """Fill in, in place, the texts of `pages` (one per PDF page) that have no text layer but carry
    an image, by OCR. Returns the 1-based numbers of the pages OCR'd.

    Without the `ocr` extra: a document with no text at all raises MissingDependencyError naming it;
    one with some text keeps its scanned pages empty and says so in `warnings`."""
    todo = [i for i, text in enumerate(pages) if needs_ocr(text)]
    if not todo:
        return []
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        reader.decrypt(password or "")
    todo = [i for i in todo if _image_pixels(reader.pages[i]) or _has_inline_images(reader.pages[i])]
    if not todo:
        return []
    try:
        ocr = engine(engine_name)
    except MissingDependencyError as exc:
        if any(not needs_ocr(p) for p in pages):
            if warnings is not None:
                warnings.append(f"{where}: page(s) {[i + 1 for i in todo]} have no text layer (scanned) and were "
                                f"left empty: {exc}")
            return []
        raise DocumentError(
            f"{where} has no text layer in its {len(pages)} page(s): it is scanned (image-only) and needs OCR. "
            f"{exc}", source=where) from exc
    done: list[int] = []
    failed: list[int] = []
    if on_progress is not None:
        on_progress(OcrProgress(source=where, page=todo[0] + 1, done=0, total=len(todo)))
    for k, i in enumerate(todo):
        try:
            images = page_images(reader.pages[i], where=where, number=i + 1)
            texts = [ocr.read(image) for image in images]
        except DocumentError:
            raise
        except Exception:  # an image format the decoder lacks (e.g. JBIG2), a damaged stream: keep the rest
            failed.append(i + 1)
        else:
            pages[i] = "\n".join(t.strip() for t in [pages[i], *texts] if t.strip())
            done.append(i + 1)
        if on_progress is not None:
            on_progress(OcrProgress(source=where, page=i + 1, done=k + 1, total=len(todo)))
    if failed and warnings is not None:
        warnings.append(f"{where}: OCR could not read the images of page(s) {failed}; they are left as they were.")
    return done


def _has_inline_images(page: Any) -> bool:
    try:
        return bool(page.inline_images)
    except Exception:  # a damaged content stream: no OCR for this page
        return False
