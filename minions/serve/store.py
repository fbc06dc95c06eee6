"""Documents a server answers over: the corpus given at start, and files uploaded with
`POST /v1/files`. Both are addressed by id; uploads are bounded in count and bytes so a client
cannot grow the server's memory without limit (it deletes what it no longer needs)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel

from minions.documents import SUPPORTED, Document, load
from minions.errors import DocumentError, MissingDependencyError
from minions.serve.errors import BodyTooLarge, InvalidRequest, NotFound


class FileObject(BaseModel):
    """OpenAI's file object (GET/POST /v1/files)."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["processed"] = "processed"


async def parse_upload(data: bytes, filename: str, *, param: str) -> Document:
    """Bytes with a file name -> Document, off the event loop (PDF parsing is CPU work).
    A file that cannot be read is the caller's error (400), named with the fix."""
    if not filename:
        raise InvalidRequest(f"A file needs a filename whose suffix tells its type ({SUPPORTED}).", param=param)
    try:
        return await asyncio.to_thread(load, data, name=filename)
    except (DocumentError, MissingDependencyError) as e:  # MissingDependencyError: a format's extra is missing
        raise InvalidRequest(str(e), param=param) from e


class DocumentStore:
    def __init__(self, corpus: Iterable[Document] = (), *, max_files: int = 64,
                 max_file_bytes: int = 256 * 2**20):
        self.corpus: dict[str, Document] = {d.id: d for d in corpus}
        self.max_files, self.max_file_bytes = max_files, max_file_bytes
        self._files: dict[str, tuple[FileObject, Document]] = {}
        self._bytes = 0    # stored and reserved by uploads being parsed
        self._pending = 0  # uploads being parsed (each holds a slot)

    # -- uploads ----------------------------------------------------------------------------------

    async def upload(self, data: bytes, filename: str, purpose: str) -> FileObject:
        # The slot and the bytes are reserved before the parse is awaited: concurrent uploads see
        # each other's reservations, so together they can never exceed the limits.
        if len(self._files) + self._pending >= self.max_files or self._bytes + len(data) > self.max_file_bytes:
            raise BodyTooLarge(f"The file store is full ({len(self._files)} files, {self._bytes} bytes; limits "
                               f"{self.max_files} files, {self.max_file_bytes} bytes): delete files you no "
                               "longer need with DELETE /v1/files/{file_id}.", param="file")
        self._pending += 1
        self._bytes += len(data)
        stored = False
        try:
            doc = await parse_upload(data, filename, param="file")
            file_id = "file-" + uuid.uuid4().hex[:24]
            obj = FileObject(id=file_id, bytes=len(data), created_at=int(time.time()), filename=filename,
                             purpose=purpose)
            self._files[file_id] = (obj, doc)
            stored = True
            return obj
        finally:
            self._pending -= 1
            if not stored:  # refused, failed or cancelled: give the reservation back
                self._bytes -= len(data)

    def files(self) -> list[FileObject]:
        return [obj for obj, _ in self._files.values()]

    def file(self, file_id: str) -> FileObject:
        if file_id not in self._files:
            raise NotFound(f"No file with id {file_id!r}: list them with GET /v1/files.", param="file_id")
        return self._files[file_id][0]

    def delete(self, file_id: str) -> None:
        obj = self.file(file_id)
        del self._files[file_id]
        self._bytes -= obj.bytes

    # -- lookup -----------------------------------------------------------------------------------

    def get(self, ref: str, *, param: str) -> Document:
        """An uploaded file by file id, else a corpus document by id."""
        if ref in self._files:
            return self._files[ref][1]
        if ref in self.corpus:
            return self.corpus[ref]
        known = ", ".join(sorted(self.corpus)) or "none"
        raise InvalidRequest(f"No document or file with id {ref!r}. Corpus documents: {known}; uploaded files: "
                             "GET /v1/files.", param=param)
