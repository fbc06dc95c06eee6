"""A persistent corpus index: documents, pages, chunks, BM25 and embeddings in one SQLite file.

    store = CorpusStore.create("filings.minions")          # the `index` extra: sqlite-vec
    report = store.update([Path("filings/")], on_progress=print_it)   # incremental, by content hash
    docs = store.pick("What was 3M's FY2018 capex?")       # documents first (FTS5 BM25 + sqlite-vec)
    chunks, vectors = store.chunks(docs, "chars", 3000), store.vectors(docs, "chars", 3000)

What is kept, and why this way:
- documents (text zlib-compressed, pages, metadata), keyed by a file's path and SHA-256: `update` re-reads
  only files whose content changed (same size and mtime: not even hashed), and drops files that are gone.
- pages in an FTS5 table (BM25 in SQLite): `pick` ranks documents by their best pages for a question, and
  the best chunks of sqlite-vec's nearest neighbours, fused by reciprocal rank as `HybridIndex` fuses.
- chunks at the chunkings the protocols start from (MinionS 3,000 characters, RAG 1,500), as offsets into
  the text, and one embedding per chunk in a sqlite-vec `vec0` table. Embedding is what a start over many
  filings pays for (34M characters of FinanceBench: most of the 28.5 s before the first local job); the
  per-run BM25 over the picked documents' chunks is rebuilt in milliseconds with bm25s, so a run's
  ranking is exactly the in-memory one (`HybridIndex` with the stored vectors).

Why SQLite + FTS5 + sqlite-vec rather than LanceDB: measured in docs/scale.md ("Corpus index").

The vector extension is the `index` extra (sqlite-vec; pysqlite3-binary where Python's own sqlite3
cannot load extensions). Without it, one `MissingDependencyError` names the extra. The library never
prints: `update` reports progress through `on_progress` (`IndexProgress` events).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from minions.documents.model import Chunk, Document, PageSpan, slug
from minions.errors import ConfigError, CorpusIndexError, DocumentError, MissingDependencyError

if TYPE_CHECKING:
    from minions.documents.hybrid import HybridIndex, StoredLexical

EXTRA = "index"
SCHEMA = "minions-corpus-index/1"
#: the chunkings stored (chunks, embeddings, BM25 tokens) unless the store is created with others:
#: MinionS's default, 3,000 characters. RAG's 1,500 is one more (`minions index --chunking chars:1500`):
#: each chunking costs about as much again to build and to store; one not stored is cut and embedded
#: in memory for the documents a run reads.
CHUNKINGS: tuple[tuple[str, int], ...] = (("chars", 3000),)
#: documents a question over the whole index reads (picked by `pick`)
PICK_DOCS = 3
# Picking documents, measured on FinanceBench (129 questions, 74 filings; benchmarks/coverage.py --index):
# the question's filing among the 3 picked — pages and embeddings alone 69.0%; with the documents' names
# (weight 1) 90.7%; names at 3 and embeddings at 0.1, 96.1% (top 1: 79.8%). Embeddings at the hybrid's
# 0.3 cost 1.5 points (similar filings of other companies sit close), at 1.0 eleven.
_NAME_WEIGHT, _DENSE_WEIGHT = 3.0, 0.1
_RRF_K = 60
_FTS_PAGES, _KNN = 400, 200   # best pages and nearest chunks looked at when picking documents
_WORD = re.compile(r"[^\W_]+", re.U)
_PIECE = re.compile(r"[^\W\d_]+|\d+", re.U)
_QUESTION_WORDS = frozenset("what how much many which who whom whose when where why does did was were the".split())
_HEAD_WEIGHT = 4.0      # a page's head (the document's id and title) counts this much more than its text

Loader = Callable[[Path], Document]
_T = Any


def _locked(method: Callable[..., _T]) -> Callable[..., _T]:
    """One connection serves a server's requests from several threads: one query at a time."""
    @functools.wraps(method)
    def wrapper(self: CorpusStore, *args: Any, **kw: Any) -> Any:
        with self._lock:
            return method(self, *args, **kw)
    return wrapper
ProgressHandler = Callable[[Any], Any]


class IndexProgress(BaseModel):
    """One step of `CorpusStore.update`, for a front end's progress bar: `done` of `total` files."""

    kind: Literal["index_progress"] = "index_progress"
    stage: Literal["scan", "read", "unchanged", "removed", "done"]
    path: str = ""
    done: int = 0
    total: int = 0


class IndexReport(BaseModel):
    """What `update` did: paths added, changed (re-read), unchanged (not re-read), removed; failures."""

    added: list[str] = Field(default_factory=list)
    changed: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    failed: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    seconds: float = 0.0


def sqlite_modules() -> Any:
    """A sqlite3 module that can load sqlite-vec, and sqlite_vec itself; else the `index` extra's error."""
    try:
        import sqlite_vec
    except ImportError:
        raise MissingDependencyError("sqlite-vec", EXTRA) from None
    import sqlite3

    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return sqlite3, sqlite_vec
    try:  # Python built without extension loading (e.g. some pyenv builds): the pysqlite3 wheel can
        import pysqlite3.dbapi2 as sqlite3_ext
    except ImportError:
        raise MissingDependencyError("pysqlite3-binary (this Python's sqlite3 cannot load extensions)",
                                     EXTRA) from None
    return sqlite3_ext, sqlite_vec


def _pack(obj: Any) -> bytes:
    return zlib.compress(json.dumps(obj, separators=(",", ":")).encode(), 3)


def _unpack(blob: bytes) -> Any:
    return json.loads(zlib.decompress(blob))


def text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest()


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def files_under(paths: Iterable[Path], suffixes: Iterable[str] | None = None) -> list[Path]:
    """The document files a path names: itself, or every file of a supported type under a folder
    (hidden files and folders skipped), sorted."""
    from minions.documents.loaders import KINDS

    allowed = {s.lower() for s in (suffixes if suffixes is not None else KINDS)}
    out: set[Path] = set()
    for p in paths:
        p = p.expanduser().resolve()
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                out.update(Path(root, f) for f in files if not f.startswith(".") and Path(f).suffix.lower() in allowed)
        elif p.is_file():
            out.add(p)
        else:
            raise DocumentError(f"{p} does not exist: pass folders or files to index.", source=str(p))
    return sorted(out)


def fts_terms(text: str) -> list[str]:
    """The words of `text` as the full-text tables hold them: lower-cased, and a word mixing letters
    and digits also in its pieces ("FY2018" -> "fy2018", "fy", "2018"; "3M" -> "3m", "3", "m"), so a
    question's "FY2018" finds a filing named "..._2018_10K"."""
    out = []
    for w in _WORD.findall(text.lower()):
        out.append(w)
        if not (w.isalpha() or w.isdigit()):
            out.extend(_PIECE.findall(w))
    return out


def fts_query(text: str) -> str:
    """The words of `text` as an FTS5 OR-query of quoted terms (no operator in the text is obeyed),
    without stopwords: "the" matches every page and only slows the query."""
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    stop = set(STOPWORDS_EN_PLUS) | _QUESTION_WORDS
    words = dict.fromkeys(w for w in fts_terms(text) if w not in stop)
    return " OR ".join(f'"{w}"' for w in words)


class CorpusStore:
    """One index file. `create` makes or opens one to write; `open` opens an existing one, with an
    error that names the fix when it is missing, not an index, or from another version."""

    def __init__(self, path: str | Path, *, create: bool = False,
                 chunkings: Sequence[tuple[str, int]] | None = None):
        self.path = Path(path).expanduser()
        self._lock = threading.RLock()
        sqlite3, sqlite_vec = sqlite_modules()
        if create and not self.path.parent.is_dir():
            raise CorpusIndexError(f"Cannot create the index {self.path}: the folder {self.path.parent} does not "
                                   "exist. Create it first or give another --store PATH.")
        if not create and not self.path.is_file():
            raise CorpusIndexError(f"No corpus index at {self.path}: build it with "
                                   f"`minions index DIR... --store {self.path}`.")
        fix = (f"{self.path} is not a minions corpus index or is damaged: delete it and rebuild it with "
               f"`minions index DIR... --store {self.path}`")
        try:
            self.db = sqlite3.connect(str(self.path), check_same_thread=False)
            self.db.enable_load_extension(True)
            sqlite_vec.load(self.db)
            self.db.enable_load_extension(False)
            self.db.execute("PRAGMA journal_mode=WAL")
            if create:
                self._schema()
            meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as e:
            raise CorpusIndexError(f"{fix} ({e}).") from None
        if meta.get("schema") != SCHEMA:
            raise CorpusIndexError(f"{fix} (schema {meta.get('schema')!r}, this version reads {SCHEMA!r}).")
        self.meta = meta
        if "chunkings" not in meta:
            with self.db:
                self.db.execute("INSERT INTO meta VALUES ('chunkings', ?)", (json.dumps(list(chunkings or CHUNKINGS)),))
            self.meta["chunkings"] = json.dumps(list(chunkings or CHUNKINGS))
        self.chunkings: list[tuple[str, int]] = [(str(a), int(b)) for a, b in json.loads(self.meta["chunkings"])]
        if chunkings is not None and sorted(map(tuple, chunkings)) != sorted(self.chunkings):
            raise CorpusIndexError(f"{self.path} stores the chunkings {_names(self.chunkings)}, not "
                                   f"{_names(chunkings)}: keep those, or build a new index file with "
                                   "`minions index DIR... --store NEW_PATH --chunking ...`.")

    @classmethod
    def create(cls, path: str | Path, chunkings: Sequence[tuple[str, int]] | None = None) -> CorpusStore:
        """Create an index, or open one to update; `chunkings` (default `CHUNKINGS` for a new file)
        must be the ones an existing file stores."""
        return cls(path, create=True, chunkings=chunkings)

    @classmethod
    def open(cls, path: str | Path) -> CorpusStore:
        return cls(path)

    def close(self) -> None:
        self.db.close()

    def _schema(self) -> None:
        with self.db:
            self.db.executescript("""
                CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
                CREATE TABLE IF NOT EXISTS files(path TEXT PRIMARY KEY, sha256 TEXT, size INT, mtime_ns INT,
                                                 doc_id TEXT UNIQUE);
                CREATE TABLE IF NOT EXISTS documents(id TEXT PRIMARY KEY, title TEXT, source TEXT, chars INT,
                                                     text_sha1 TEXT, text BLOB, pages BLOB, metadata BLOB);
                CREATE TABLE IF NOT EXISTS pages(rowid INTEGER PRIMARY KEY, doc_id TEXT, number INT, head TEXT,
                                                 text TEXT);
                CREATE INDEX IF NOT EXISTS pages_doc ON pages(doc_id);
                CREATE VIRTUAL TABLE IF NOT EXISTS pages_fts USING fts5(head, text, content='pages',
                                                                        content_rowid='rowid');
                CREATE VIRTUAL TABLE IF NOT EXISTS docs_fts USING fts5(doc_id UNINDEXED, head);
                CREATE TABLE IF NOT EXISTS chunkings(doc_id TEXT, strategy TEXT, size INT, chunks BLOB,
                                                     first_key INT, PRIMARY KEY(doc_id, strategy, size));
                CREATE TABLE IF NOT EXISTS lexical(doc_id TEXT, kind TEXT, tokens BLOB, PRIMARY KEY(doc_id, kind));
                CREATE TABLE IF NOT EXISTS chunk_keys(key INTEGER PRIMARY KEY AUTOINCREMENT, doc_id TEXT);
                CREATE INDEX IF NOT EXISTS chunk_keys_doc ON chunk_keys(doc_id);
            """)
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA,))

    # --- writing ----------------------------------------------------------------------------------

    @_locked
    def update(self, paths: Sequence[str | Path], *, loader: Loader | None = None, encoder: Any = None,
               on_progress: ProgressHandler | None = None, suffixes: Iterable[str] | None = None) -> IndexReport:
        """Bring the index in line with the files under `paths`: new and changed files (by SHA-256;
        a file whose size and mtime are unchanged is not even hashed) are read, chunked and embedded;
        unchanged ones are not re-read; files under `paths` that are gone are removed. Each file is
        committed on its own, so an interrupted run keeps what it finished. A file that fails to load
        is reported in `failed` and the others go on."""
        started = time.perf_counter()
        report = IndexReport()
        emit = on_progress or (lambda _e: None)
        roots = [Path(p).expanduser().resolve() for p in paths]
        found = files_under(roots, suffixes)
        emit(IndexProgress(stage="scan", total=len(found)))
        known = {row[0]: row[1:] for row in self.db.execute("SELECT path, sha256, size, mtime_ns, doc_id FROM files")}
        load = loader or _default_loader
        encoder = self._encoder(encoder, report)
        for i, path in enumerate(found, 1):
            key, st = str(path), path.stat()
            old = known.get(key)
            if old is not None and old[1] == st.st_size and old[2] == st.st_mtime_ns:
                report.unchanged.append(key)
                emit(IndexProgress(stage="unchanged", path=key, done=i, total=len(found)))
                continue
            digest = file_hash(path)
            if old is not None and old[0] == digest:  # touched, not changed
                with self.db:
                    self.db.execute("UPDATE files SET size=?, mtime_ns=? WHERE path=?", (st.st_size, st.st_mtime_ns, key))
                report.unchanged.append(key)
                emit(IndexProgress(stage="unchanged", path=key, done=i, total=len(found)))
                continue
            emit(IndexProgress(stage="read", path=key, done=i - 1, total=len(found)))
            try:
                doc = load(path)
            except (DocumentError, ConfigError, OSError) as e:  # one bad file is reported; the others go on
                report.failed[key] = str(e)
                emit(IndexProgress(stage="read", path=key, done=i, total=len(found)))
                continue
            doc_id = old[3] if old is not None else self._free_id(doc.id)
            doc = doc.model_copy(update={"id": doc_id})
            rows = self._rows(doc, encoder)
            with self.db:
                self._delete_doc(doc_id)
                self._insert(doc, rows)
                self.db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
                                (key, digest, st.st_size, st.st_mtime_ns, doc_id))
            (report.changed if old is not None else report.added).append(key)
            emit(IndexProgress(stage="read", path=key, done=i, total=len(found)))
        present = {str(p) for p in found}
        for key, (_h, _s, _m, doc_id) in known.items():
            if key not in present and any(Path(key).is_relative_to(r) for r in roots):
                with self.db:
                    self._delete_doc(doc_id)
                    self.db.execute("DELETE FROM files WHERE path=?", (key,))
                report.removed.append(key)
                emit(IndexProgress(stage="removed", path=key, done=len(found), total=len(found)))
        report.seconds = time.perf_counter() - started
        emit(IndexProgress(stage="done", done=len(found), total=len(found)))
        return report

    @_locked
    def add_documents(self, docs: Iterable[Document], *, encoder: Any = None) -> IndexReport:
        """Index documents that come with no file (a dataset's texts); an id already held is replaced."""
        report = IndexReport()
        encoder = self._encoder(encoder, report)
        for doc in docs:
            rows = self._rows(doc, encoder)
            with self.db:
                self._delete_doc(doc.id)
                self._insert(doc, rows)
            report.added.append(doc.id)
        return report

    def _encoder(self, encoder: Any, report: IndexReport) -> Any:
        if encoder is None:
            from minions.documents.embeddings import load_embedding_model

            try:
                encoder = load_embedding_model()
            except MissingDependencyError as e:
                report.notes.append(f"no embeddings stored (BM25 only): {e}")
                return None
        have = self.meta.get("encoder")
        if have is not None and have != encoder.name:
            raise CorpusIndexError(f"{self.path} holds {have} embeddings, not {encoder.name}: rebuild it into a new "
                                   "file with `minions index DIR... --store NEW_PATH`.")
        return encoder

    def _free_id(self, wanted: str) -> str:
        doc_id, n = wanted or "doc", 2
        while self.db.execute("SELECT 1 FROM documents WHERE id=?", (doc_id,)).fetchone():
            doc_id, n = f"{wanted}-{n}", n + 1
        return doc_id

    def _rows(self, doc: Document, encoder: Any) -> list[tuple[str, int, list[Chunk], np.ndarray | None, str]]:
        """The chunkings of `doc` and their embeddings (the slow part, done before the transaction)."""
        from minions.documents.chunking import chunk_document

        out = []
        for strategy, size in self.chunkings:
            chunks = chunk_document(doc, strategy, size)  # type: ignore[arg-type]
            vectors = encoder.encode([c.text for c in chunks]) if encoder is not None and chunks else None
            out.append((strategy, size, chunks, vectors, getattr(encoder, "name", "")))
        return out

    @staticmethod
    def _lexical(doc: Document, rows: list[tuple[str, int, list[Chunk], np.ndarray | None, str]]) -> dict[str, bytes]:
        """Each chunking's and the pages' BM25 tokens and feedback terms, so a run does not tokenize
        the text again (tokenizing is most of building a `HybridIndex` once embeddings are stored)."""
        from minions.documents.chunking import chunk_document

        out = {f"{strategy}:{size}": _tokens([c.text for c in chunks]) for strategy, size, chunks, _v, _e in rows}
        if len(doc.pages) > 1:
            out["pages"] = _tokens([p.text for p in chunk_document(doc, "pages", 1)], terms=False)
        return out

    def _insert(self, doc: Document, rows: list[tuple[str, int, list[Chunk], np.ndarray | None, str]]) -> None:
        db = self.db
        db.execute("INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (
            doc.id, doc.title, doc.source, len(doc.text), text_hash(doc.text),
            zlib.compress(doc.text.encode("utf-8", "surrogatepass"), 3),
            _pack([[p.number, p.start, p.end, p.ocr] for p in doc.pages]), _pack(doc.metadata)))
        head = _head(doc)
        db.execute("INSERT INTO docs_fts(doc_id, head) VALUES (?, ?)", (doc.id, head))
        for p in doc.pages:  # the pages as the full-text index reads them (fts_terms)
            text = " ".join(fts_terms(doc.text[p.start:p.end]))
            cur = db.execute("INSERT INTO pages(doc_id, number, head, text) VALUES (?, ?, ?, ?)",
                             (doc.id, p.number, head, text))
            db.execute("INSERT INTO pages_fts(rowid, head, text) VALUES (?, ?, ?)", (cur.lastrowid, head, text))
        for kind, blob in self._lexical(doc, rows).items():
            db.execute("INSERT INTO lexical VALUES (?, ?, ?)", (doc.id, kind, blob))
        for strategy, size, chunks, vectors, encoder in rows:
            first = None
            if vectors is not None and len(chunks):
                self._vec_table(vectors.shape[1], encoder)
                for v in vectors:
                    key = db.execute("INSERT INTO chunk_keys(doc_id) VALUES (?)", (doc.id,)).lastrowid
                    first = key if first is None else first
                    db.execute("INSERT INTO chunk_vec(rowid, embedding) VALUES (?, ?)",
                               (key, np.ascontiguousarray(v, dtype=np.float32).tobytes()))
            db.execute("INSERT INTO chunkings VALUES (?, ?, ?, ?, ?)", (
                doc.id, strategy, size,
                _pack([[c.id, c.start, c.end, c.page_start, c.page_end, c.section, c.header] for c in chunks]), first))

    def _vec_table(self, dims: int, encoder: str) -> None:
        if "dims" in self.meta:
            return
        self.db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS chunk_vec USING vec0(embedding float[{int(dims)}])")
        for k, v in (("dims", str(dims)), ("encoder", encoder)):
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, v))
            self.meta[k] = v

    def _delete_doc(self, doc_id: str) -> None:
        db = self.db
        for rowid, head, text in db.execute("SELECT rowid, head, text FROM pages WHERE doc_id=?", (doc_id,)).fetchall():
            db.execute("INSERT INTO pages_fts(pages_fts, rowid, head, text) VALUES ('delete', ?, ?, ?)",
                       (rowid, head, text))
        db.execute("DELETE FROM pages WHERE doc_id=?", (doc_id,))
        db.execute("DELETE FROM docs_fts WHERE doc_id=?", (doc_id,))
        if "dims" in self.meta:
            db.execute("DELETE FROM chunk_vec WHERE rowid IN (SELECT key FROM chunk_keys WHERE doc_id=?)", (doc_id,))
        db.execute("DELETE FROM chunk_keys WHERE doc_id=?", (doc_id,))
        db.execute("DELETE FROM chunkings WHERE doc_id=?", (doc_id,))
        db.execute("DELETE FROM lexical WHERE doc_id=?", (doc_id,))
        db.execute("DELETE FROM documents WHERE id=?", (doc_id,))

    # --- reading ----------------------------------------------------------------------------------

    def doc_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM documents ORDER BY id")]

    def files(self) -> dict[str, str]:
        """Indexed path -> document id."""
        return dict(self.db.execute("SELECT path, doc_id FROM files ORDER BY path").fetchall())

    @_locked
    def documents(self, ids: Sequence[str] | None = None) -> list[Document]:
        """The stored documents, in the order of `ids` (default: all, by id)."""
        ids = list(ids) if ids is not None else self.doc_ids()
        out = []
        for doc_id in ids:
            row = self.db.execute("SELECT id, title, source, text, pages, metadata FROM documents WHERE id=?",
                                  (doc_id,)).fetchone()
            if row is None:
                raise CorpusIndexError(f"{self.path} holds no document {doc_id!r}; update it with "
                                       f"`minions index DIR... --store {self.path}`.")
            pages = [PageSpan(number=n, start=s, end=e, ocr=o) for n, s, e, o in _unpack(row[4])]
            out.append(Document(id=row[0], title=row[1], source=row[2],
                                text=zlib.decompress(row[3]).decode("utf-8", "surrogatepass"),
                                pages=pages, metadata=_unpack(row[5])))
        return out

    @_locked
    def documents_for(self, paths: Sequence[str | Path]) -> list[Document]:
        """The stored documents of these files; an error naming the fix for a file not indexed, or
        changed since it was."""
        ids = []
        for p in paths:
            path = Path(p).expanduser().resolve()
            row = self.db.execute("SELECT doc_id, size, mtime_ns, sha256 FROM files WHERE path=?", (str(path),)).fetchone()
            fix = f"`minions index {path.parent} --store {self.path}`"
            if row is None:
                raise CorpusIndexError(f"{path} is not in the index {self.path}: add it with {fix}.")
            st = path.stat() if path.is_file() else None
            if st is not None and (st.st_size, st.st_mtime_ns) != (row[1], row[2]) and file_hash(path) != row[3]:
                raise CorpusIndexError(f"{path} changed since it was indexed: update the index with {fix}.")
            ids.append(row[0])
        return self.documents(ids)

    def _held(self, docs: Sequence[Document]) -> bool:
        """Whether every document is the stored one (same id, same text)."""
        for d in docs:
            row = self.db.execute("SELECT text_sha1 FROM documents WHERE id=?", (d.id,)).fetchone()
            if row is None or row[0] != text_hash(d.text):
                return False
        return True

    @_locked
    def chunks(self, docs: Sequence[Document], strategy: str, size: int) -> list[Chunk] | None:
        """The stored chunks of `docs` at this chunking, in document order, as `chunk_documents` makes
        them; None when a document or the chunking is not stored (the caller chunks in memory)."""
        if not docs or not self._held(docs):
            return None
        out: list[Chunk] = []
        for d in docs:
            row = self.db.execute("SELECT chunks FROM chunkings WHERE doc_id=? AND strategy=? AND size=?",
                                  (d.id, strategy, size)).fetchone()
            if row is None:
                return None
            out.extend(Chunk(id=cid, doc_id=d.id, index=i, text=d.text[s:e], start=s, end=e, page_start=ps,
                             page_end=pe, section=sec, header=hdr)
                       for i, (cid, s, e, ps, pe, sec, hdr) in enumerate(_unpack(row[0])))
        return out

    @_locked
    def vectors(self, docs: Sequence[Document], strategy: str, size: int, encoder: str | None = None) -> np.ndarray | None:
        """The stored embeddings of those chunks, one row each, in the same order; None when any is
        missing or they were made by another encoder than `encoder` (a name; default: the model
        `HybridIndex` loads, WordLlama)."""
        from minions.documents.embeddings import WordLlamaEncoder

        if "dims" not in self.meta or not docs or (encoder or WordLlamaEncoder.name) != self.meta.get("encoder") \
                or not self._held(docs):
            return None
        parts = []
        for d in docs:
            row = self.db.execute("SELECT first_key, chunks FROM chunkings WHERE doc_id=? AND strategy=? AND size=?",
                                  (d.id, strategy, size)).fetchone()
            if row is None or row[0] is None:
                return None
            n = len(_unpack(row[1]))
            blobs = self.db.execute("SELECT embedding FROM chunk_vec WHERE rowid BETWEEN ? AND ? ORDER BY rowid",
                                    (row[0], row[0] + n - 1)).fetchall()
            if len(blobs) != n:
                return None
            parts.append(np.frombuffer(b"".join(b[0] for b in blobs), dtype=np.float32).reshape(n, -1))
        return np.concatenate(parts) if parts else None

    def index(self, docs: Sequence[Document], strategy: str, size: int, **kw: Any) -> HybridIndex | None:
        """A `HybridIndex` over the stored chunks of `docs`, with their stored embeddings and BM25
        tokens (None if the chunking is not stored): the ranking an in-memory index gives, without
        tokenizing or embedding the text again."""
        from minions.documents.hybrid import HybridIndex

        chunks = self.chunks(docs, strategy, size)
        if chunks is None:
            return None
        return HybridIndex.for_documents(docs, chunks, vectors=self.vectors(docs, strategy, size),
                                         lexical=self.lexical(docs, chunks, f"{strategy}:{size}"), **kw)

    @_locked
    def lexical(self, docs: Sequence[Document], chunks: Sequence[Chunk], kind: str) -> StoredLexical | None:
        """The stored lexical parts of a `HybridIndex.for_documents(docs, chunks)` (a `StoredLexical`),
        or None when any is missing."""
        from minions.documents.hybrid import StoredLexical
        from minions.documents.retrieval import BM25Index

        parts, pages = [], []
        for d in docs:
            row = self.db.execute("SELECT tokens FROM lexical WHERE doc_id=? AND kind=?", (d.id, kind)).fetchone()
            if row is None:
                return None
            parts.append(_untokens(row[0]))
            if len(d.pages) > 1:
                page_row = self.db.execute("SELECT tokens FROM lexical WHERE doc_id=? AND kind='pages'",
                                           (d.id,)).fetchone()
                if page_row is None:
                    return None
                pages.append(_untokens(page_row[0]))
        ids, vocab = _merge(parts)
        terms = [t for p in parts for t in p["terms"]]
        if len(ids) != len(chunks) or len(terms) != len(chunks):
            return None
        passages = None
        if pages:
            from minions.documents.chunking import chunk_document

            page_chunks = [p for d in docs if len(d.pages) > 1 for p in chunk_document(d, "pages", 1)]
            page_ids, page_vocab = _merge(pages)
            if len(page_ids) != len(page_chunks):
                return None
            passages = BM25Index.from_tokens(page_chunks, page_ids, page_vocab)
        return StoredLexical(BM25Index.from_tokens(chunks, ids, vocab), passages, terms)

    def pick(self, query: str, k: int = PICK_DOCS, *, encoder: Any = None) -> list[Document]:
        """The `k` documents best for `query`: three rankings fused by reciprocal rank — the documents'
        names (FTS5 BM25 over each one's id, title and file name: "3M", "2018", "10K"), each
        document's best page (FTS5 BM25 over the pages), and its best chunk among the nearest
        neighbours of the query's embedding (sqlite-vec, at the hybrid's dense weight)."""
        return self.documents(self.rank_documents(query, encoder=encoder)[:k])

    @_locked
    def rank_documents(self, query: str, *, encoder: Any = None) -> list[str]:
        """Every document id, best first for `query` (documents nothing matches last, by id)."""
        lexical: list[str] = []
        named: list[str] = []
        if q := fts_query(query):
            named = [r[0] for r in self.db.execute(
                "SELECT doc_id FROM docs_fts WHERE docs_fts MATCH ? ORDER BY bm25(docs_fts) LIMIT 50", (q,))]
            rows = self.db.execute(
                f"SELECT doc_id FROM pages JOIN (SELECT rowid AS r, bm25(pages_fts, {_HEAD_WEIGHT}, 1.0) AS score "
                f"FROM pages_fts WHERE pages_fts MATCH ? ORDER BY score LIMIT {_FTS_PAGES}) ON pages.rowid = r "
                "ORDER BY score", (q,)).fetchall()
            lexical = list(dict.fromkeys(r[0] for r in rows))
        dense: list[str] = []
        if "dims" in self.meta and query.strip():
            if encoder is None:
                from minions.documents.embeddings import load_embedding_model

                try:
                    encoder = load_embedding_model()
                except MissingDependencyError:
                    encoder = None
            if encoder is not None and getattr(encoder, "name", None) == self.meta.get("encoder"):
                vec = np.ascontiguousarray(encoder.encode([query])[0], dtype=np.float32).tobytes()
                rows = self.db.execute(
                    f"SELECT chunk_keys.doc_id FROM (SELECT rowid AS r, distance FROM chunk_vec WHERE embedding MATCH ? "
                    f"AND k = {_KNN}) JOIN chunk_keys ON chunk_keys.key = r ORDER BY distance", (vec,)).fetchall()
                dense = list(dict.fromkeys(r[0] for r in rows))
        score: dict[str, float] = {}
        for weight, ranking in ((_NAME_WEIGHT, named), (1.0, lexical), (_DENSE_WEIGHT, dense)):
            for rank, doc_id in enumerate(ranking):
                score[doc_id] = score.get(doc_id, 0.0) + weight / (_RRF_K + 1 + rank)
        ids = self.doc_ids()
        return sorted(ids, key=lambda d: (-score.get(d, 0.0), d))

    def size_bytes(self) -> int:
        """The store's size on disk (its WAL included)."""
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the file (after a build, before measuring or copying it)."""
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _tokens(texts: list[str], *, terms: bool = True) -> bytes:
    """BM25 stem ids (as `BM25Index` tokenizes, with this text's own stem vocabulary) and, with
    `terms`, the feedback terms of each text, packed with numpy."""
    import io

    from minions.documents.hybrid import feedback_terms
    from minions.documents.retrieval import bm25_tokenizer

    tokenizer = bm25_tokenizer()
    ids = tokenizer.tokenize(texts, update_vocab=True, return_as="ids", show_progress=False)
    vocab = sorted(tokenizer.get_vocab_dict().items(), key=lambda kv: kv[1])
    arrays: dict[str, np.ndarray] = {
        "ids": np.asarray([i for doc in ids for i in doc], dtype=np.int32),
        "ids_off": np.cumsum([0] + [len(doc) for doc in ids]).astype(np.int64),
        "vocab": np.frombuffer(json.dumps([s for s, _ in vocab]).encode(), dtype=np.uint8)}
    if terms:
        words: dict[str, int] = {}
        counts = [feedback_terms(t) for t in texts]
        arrays["t_ids"] = np.asarray([words.setdefault(w, len(words)) for c in counts for w in c], dtype=np.int32)
        arrays["t_n"] = np.asarray([n for c in counts for n in c.values()], dtype=np.int32)
        arrays["t_off"] = np.cumsum([0] + [len(c) for c in counts]).astype(np.int64)
        arrays["words"] = np.frombuffer(json.dumps(list(words)).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def _untokens(blob: bytes) -> dict[str, Any]:
    import io
    from collections import Counter

    with np.load(io.BytesIO(blob)) as npz:
        z = {k: npz[k] for k in npz.files}  # each read of an NpzFile member decompresses it again
    off = z["ids_off"]
    out: dict[str, Any] = {"vocab": json.loads(z["vocab"].tobytes()), "ids": np.split(z["ids"], off[1:-1]),
                           "terms": []}
    if "t_ids" in z:
        words = np.asarray(json.loads(z["words"].tobytes()), dtype=object)
        t_off, t_words, t_n = z["t_off"].tolist(), words[z["t_ids"]].tolist(), z["t_n"].tolist()
        for a, b in zip(t_off[:-1], t_off[1:], strict=True):
            out["terms"].append(Counter(dict(zip(t_words[a:b], t_n[a:b], strict=True))))
    return out


def _merge(parts: list[dict[str, Any]]) -> tuple[list[list[int]], dict[str, int]]:
    """Per-document stem ids mapped into one vocabulary (stems in order of first appearance)."""
    vocab: dict[str, int] = {}
    ids: list[list[int]] = []
    for part in parts:
        remap = np.asarray([vocab.setdefault(stem, len(vocab)) for stem in part["vocab"]], dtype=np.int64)
        ids.extend(remap[a].tolist() for a in part["ids"])
    return ids, vocab


def _head(doc: Document) -> str:
    """What names a document: its id, title and file name, with "_" and "-" as spaces."""
    parts = [doc.id, doc.title, Path(doc.source).stem]
    return " ".join(dict.fromkeys(fts_terms(" ".join(re.sub(r"[_\-]+", " ", p) for p in parts if p))))


def _names(chunkings: Iterable[tuple[str, int]]) -> str:
    return ", ".join(f"{a}:{b}" for a, b in chunkings)


def parse_chunking(text: str) -> tuple[str, int]:
    """"chars:1500" -> ("chars", 1500), checked as `chunk_document` checks it."""
    from minions.documents.chunking import STRATEGIES

    strategy, _, size = text.partition(":")
    if strategy not in STRATEGIES or not size.isdigit() or int(size) < 1:
        raise ConfigError(f"--chunking {text!r}: use STRATEGY:SIZE with a strategy of {', '.join(STRATEGIES)} "
                          "and a positive size, e.g. chars:1500.")
    return strategy, int(size)


def _default_loader(path: Path) -> Document:
    from minions.documents.loaders import load

    doc = load(path)
    return doc.model_copy(update={"id": slug(path.stem) or doc.id})


def open_store(path: str | Path) -> CorpusStore:
    """An existing index (the `--index PATH` of every door)."""
    return CorpusStore.open(path)


__all__ = ["CHUNKINGS", "EXTRA", "PICK_DOCS", "CorpusStore", "IndexProgress", "IndexReport", "files_under",
           "parse_chunking",
           "open_store"]
