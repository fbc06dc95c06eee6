"""The document size limit: one knob, read where documents are loaded.

A document may hold at most `max_chars` characters of text: 50 million by default (about 12 million
tokens), overridden per call with `load(..., max_chars=N)`, for every call with the
environment variable MINIONS_MAX_DOCUMENT_CHARS, or on the command line with
`minions ask --max-document-chars N`. Files that cannot fit are refused before they are read into
memory (text by size, DOCX by the declared size of its XML); others once their text passes it.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable

from minions.errors import ConfigError, DocumentError

DEFAULT_MAX_CHARS = 50_000_000
MAX_CHARS_ENV = "MINIONS_MAX_DOCUMENT_CHARS"
#: UTF-8 needs at most 4 bytes a character: a text file over 4 x max_chars bytes is over the limit
TEXT_BYTES_PER_CHAR = 4
#: HTML carries markup around the text; more bytes than this per allowed character is refused
#: before parsing (BeautifulSoup needs several times the markup's size in memory)
MARKUP_BYTES_PER_CHAR = 10
#: DOCX XML is verbose (~20 bytes per character of text from python-docx, more with formatting);
#: an archive whose XML parts declare more than this per allowed character is refused unopened
DOCX_XML_BYTES_PER_CHAR = 40
#: an archive member inflating more than this many times, past BOMB_MIN_BYTES, is a zip bomb:
#: real DOCX XML compresses 5-20x, a bomb of repeated text 1000x
BOMB_RATIO = 200
BOMB_MIN_BYTES = 10_000_000


def max_document_chars(max_chars: int | None = None) -> int:
    """The size limit in force: `max_chars`, else $MINIONS_MAX_DOCUMENT_CHARS, else 50,000,000."""
    if max_chars is None:
        raw = os.environ.get(MAX_CHARS_ENV, "").strip().replace("_", "")
        if not raw:
            return DEFAULT_MAX_CHARS
        try:
            max_chars = int(raw)
        except ValueError:
            raise ConfigError(f"{MAX_CHARS_ENV}={os.environ[MAX_CHARS_ENV]!r} is not a whole number of "
                              "characters: set it to e.g. 100000000, or unset it for the default "
                              f"({DEFAULT_MAX_CHARS:,}).") from None
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise ConfigError(f"max_chars must be a positive whole number of characters, got {max_chars!r}.")
    return max_chars


def too_big(where: str, size: str, limit: int, *, source: str) -> DocumentError:
    """The error for a document over the size limit; names every knob that raises it."""
    return DocumentError(
        f"{where} is too large: {size}, over the limit of {limit:,} characters of text. Raise the limit "
        f"if you mean it (load(..., max_chars=N), minions ask --max-document-chars N, or the {MAX_CHARS_ENV} "
        "environment variable), or split the document.", source=source)


def check_inflation(members: Iterable[zipfile.ZipInfo], where: str, resave: str) -> None:
    """Refuse an archive member that inflates like a zip bomb, before anything is unpacked.
    `resave` names the application to re-save the file from (DOCX, XLSX, PPTX, EPUB, ODT share this)."""
    for i in members:
        if i.file_size > BOMB_MIN_BYTES and i.file_size > BOMB_RATIO * max(i.compress_size, 1):
            raise DocumentError(
                f"{where} hit a safety limit: its part {i.filename} inflates from {i.compress_size:,} to "
                f"{i.file_size:,} bytes ({i.file_size // max(i.compress_size, 1):,}x), as a zip bomb does. If you "
                f"trust the file, re-save it from {resave} or export it to PDF or text.", source=where)
