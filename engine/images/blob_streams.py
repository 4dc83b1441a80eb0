"""Blob bytes in flight: a download stream that resumes itself, and an upload body that can be resent.

`ResumingBlobStream` is what the store's `ingest_blob` reads a download from: when the connection drops
part-way it reopens the blob with a Range request from the offset reached (a bounded number of times),
so a flaky link costs a reconnect, not the whole layer. `UploadWindow` is a slice of a stored blob as a
request body: counted for the progress display and seekable, since a 401 or a stale kept-alive connection
means sending it again.
"""

from __future__ import annotations

import http.client
import os
from typing import BinaryIO

from engine.images.connections import Response
from engine.images.content import Descriptor
from engine.images.progress import TransferProgress
from engine.images.registry import RegistryClient, RegistryUnreachable

# Resumes within one download before it starts over (a new ingest): a link that keeps dropping gets a
# bounded number of tries, not one per chunk.
_RESUMES = 5


class TransferFailed(Exception):
    """The connection failed in a way the blob stream could not mend by resuming."""


class ResumingBlobStream:
    """A blob download as a readable stream that resumes itself with Range requests after a drop.

    When the registry ignores Range (a 200 instead of 206) the bytes already read are skipped in the
    new answer; the store's digest check still vouches for the whole blob.
    """

    def __init__(self, client: RegistryClient, repository: str, desc: Descriptor,
                 progress: TransferProgress) -> None:
        self._client = client
        self._repository = repository
        self._desc = desc
        self._progress = progress
        self._offset = 0
        self._resumes_left = _RESUMES
        self._resp: Response | None = None

    def readinto(self, buffer: bytearray | memoryview) -> int:
        view = memoryview(buffer)
        while True:
            try:
                raw = self._open()
                n = raw.readinto(view)
                if n == 0 and len(view) and self._offset < self._desc.size:
                    # http.client reports a connection closed early as a plain end of stream.
                    raise http.client.IncompleteRead(b"", self._desc.size - self._offset)
            except (OSError, http.client.HTTPException, RegistryUnreachable) as err:
                # A drop mid-blob: reconnect and carry on from the offset reached.
                self._drop()
                if self._resumes_left == 0:
                    raise TransferFailed(f"{type(err).__name__}: {err}") from None
                self._resumes_left -= 1
                continue
            self._offset += n
            if n:
                self._progress.advance(self._desc.digest, n)
            return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            chunks = []
            while chunk := self.read(1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        buffer = bytearray(size)
        n = self.readinto(buffer)
        return bytes(buffer[:n])

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close(reusable=self._resp.raw is not None and self._resp.raw.isclosed())
            self._resp = None

    def _open(self) -> http.client.HTTPResponse:
        if self._resp is None:
            resp = self._client.open_blob(self._repository, self._desc.digest, self._offset)
            assert resp.raw is not None
            if resp.status == 200 and self._offset:
                _skip(resp.raw, self._offset)
            self._resp = resp
        assert self._resp.raw is not None
        return self._resp.raw

    def _drop(self) -> None:
        if self._resp is not None:
            self._resp.close(reusable=False)
            self._resp = None


def _skip(raw: http.client.HTTPResponse, count: int) -> None:
    while count:
        chunk = raw.read(min(count, 1 << 20))
        if not chunk:
            raise OSError("the blob ended early while skipping what was already read")
        count -= len(chunk)


class UploadWindow:
    """`length` bytes of a file from `start`, as a request body: seekable (for a resend), and counted."""

    def __init__(self, file: BinaryIO, start: int, length: int, digest: str, progress: TransferProgress) -> None:
        self._file = file
        self._start = start
        self._length = length
        self._pos = 0
        self._digest = digest
        self._progress = progress
        file.seek(start)

    def read(self, size: int = -1) -> bytes:
        left = self._length - self._pos
        size = left if size is None or size < 0 else min(size, left)
        data = self._file.read(size) if size else b""
        self._pos += len(data)
        self._progress.advance(self._digest, len(data))
        return data

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        self._progress.advance(self._digest, pos - self._pos)
        self._pos = pos
        self._file.seek(self._start + pos)
        return pos
