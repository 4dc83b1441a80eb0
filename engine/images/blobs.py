"""The blob store: content-addressed files under ROOT/images/blobs/sha256/<hex>.

A blob enters only through `ingest`: its bytes go to a temporary file in the store while sha256 is
computed, are checked against the expected digest and size, and only then renamed to their final name, so
a blob at its name has the content the name promises (or, after a crash, a prefix of it: see
_DURABLE_LIMIT) and a failed ingest leaves nothing. Two
processes ingesting the same blob both rename identical bytes into place, which is harmless.
"""

from __future__ import annotations

import contextlib
import os
from typing import BinaryIO

from engine.errors import ImageError
from engine.images.content import Descriptor, check_digest, digest_hex

_CHUNK = 1 << 20
# Manifests and configs are flushed to disk before they get their name: they vouch for everything else.
# Layer blobs are not (neither does `tar -x` flush what it writes): after a crash a layer blob can only be
# short (ext4 orders data before size), and registering an image checks every blob's size.
_DURABLE_LIMIT = 4 << 20
OCTET_STREAM = "application/octet-stream"


class BlobStore:
    """Blobs by sha256 under `root` (ROOT/images/blobs), temp files under `tmp` (same filesystem)."""

    def __init__(self, root: str, tmp: str) -> None:
        self.root = root
        self.tmp = tmp
        os.makedirs(os.path.join(root, "sha256"), exist_ok=True)
        os.makedirs(tmp, exist_ok=True)

    def path(self, digest: str) -> str:
        """Where the blob with this digest is (or would be) stored."""
        return os.path.join(self.root, "sha256", digest_hex(digest))

    def has(self, digest: str) -> bool:
        """Whether the blob is stored."""
        return os.path.isfile(self.path(digest))

    def size(self, digest: str) -> int:
        """The stored blob's size in bytes."""
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            raise ImageError(f"blob {digest} is not in the store") from None

    def read(self, digest: str) -> bytes:
        """A small blob's bytes (manifests, configs)."""
        try:
            with open(self.path(digest), "rb") as src:
                return src.read()
        except FileNotFoundError:
            raise ImageError(f"blob {digest} is not in the store", "load or pull the image again") from None

    def ingest(self, stream: BinaryIO, expected_digest: str | None = None, expected_size: int | None = None,
               media_type: str = OCTET_STREAM, limit: int | None = None) -> Descriptor:
        """Store the bytes of `stream` (at most `limit` of them) and return their descriptor.

        With `expected_digest`/`expected_size`, a mismatch raises ImageError and leaves nothing behind.
        """
        if expected_digest is not None:
            check_digest(expected_digest, "expected digest")
        import hashlib  # here: a container start only looks blobs up
        import tempfile

        fd, tmp = tempfile.mkstemp(prefix="blob-", dir=self.tmp)
        try:
            hasher = hashlib.sha256()
            size = 0
            buf = bytearray(_CHUNK)
            view = memoryview(buf)
            remaining = limit
            while remaining is None or remaining > 0:
                want = _CHUNK if remaining is None else min(_CHUNK, remaining)
                n = stream.readinto(view[:want]) if hasattr(stream, "readinto") else _read_into(stream, view[:want])
                if not n:
                    break
                chunk = view[:n]
                hasher.update(chunk)
                written = 0
                while written < n:
                    written += os.write(fd, chunk[written:])
                size += n
                if remaining is not None:
                    remaining -= n
                if expected_size is not None and size > expected_size:
                    raise ImageError(f"blob {expected_digest or '(unnamed)'} is larger than the {expected_size} "
                                     "bytes its descriptor says", "the source is corrupt; nothing was stored")
            if remaining:
                raise ImageError(f"blob ended after {size} bytes, {remaining} short")
            digest = "sha256:" + hasher.hexdigest()
            if expected_size is not None and size != expected_size:
                raise ImageError(f"blob {expected_digest or digest} has {size} bytes, its descriptor says "
                                 f"{expected_size}", "the source is truncated or corrupt; nothing was stored")
            if expected_digest is not None and digest != expected_digest:
                raise ImageError(f"blob content has digest {digest}, expected {expected_digest}",
                                 "the source is corrupt or was tampered with; nothing was stored")
            if size <= _DURABLE_LIMIT:
                os.fsync(fd)
            os.close(fd)
            fd = -1
            os.chmod(tmp, 0o644)
            os.rename(tmp, self.path(digest))
            return Descriptor(media_type, digest, size)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def ingest_bytes(self, data: bytes, media_type: str = OCTET_STREAM,
                     expected_digest: str | None = None) -> Descriptor:
        """Store a small blob held in memory (a manifest or config)."""
        import io

        return self.ingest(io.BytesIO(data), expected_digest, len(data) if expected_digest else None, media_type)

    def remove(self, digest: str) -> None:
        """Delete a blob if present (garbage collection)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(digest))

    def digests(self) -> list[str]:
        """Every stored blob's digest."""
        return ["sha256:" + name for name in os.listdir(os.path.join(self.root, "sha256"))]


def _read_into(stream: BinaryIO, view: memoryview) -> int:
    data = stream.read(len(view))
    view[:len(data)] = data
    return len(data)
