"""The outer archives images travel in (docker-archive, oci-archive) and OCI layout directories, read in place.

An archive is indexed once (tarfile reads only headers, seeking over data); a blob inside it is then read
straight from its offset into the store's `ingest_blob`, so a 200 MB layer is never copied to a temporary
file first. A compressed archive (`docker save | gzip`) is the exception: it is decompressed to a temporary
file once, since members of a compressed stream cannot be reached by offset. Member names are only looked up
here, never written to disk; symbolic and hard links between members (docker-archive deduplicates layers
that way) are followed inside the archive.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from typing import BinaryIO, Self

from engine.errors import ImageError
from engine.images.compression import compression_of, decompressed
from engine.images.content import METADATA_LIMIT, Compression, Descriptor, sniff_compression
from engine.images.store import ImageStore

_MEMBER_HOPS = 16


class Bundle:
    """Named files in a tar archive or a directory: `read`, `open` and `ingest` by name."""

    def __init__(self, path: str, tmp: str) -> None:
        self.path = path
        self.is_dir = os.path.isdir(path)
        self._scratch: str | None = None
        self.members: dict[str, tarfile.TarInfo] = {}
        self._file: BinaryIO | None = None
        if self.is_dir:
            return
        try:
            source = path
            if compression_of(path) is not Compression.NONE:
                fd, self._scratch = tempfile.mkstemp(prefix="archive-", dir=tmp)
                with os.fdopen(fd, "wb") as out, decompressed(path, path) as plain:
                    shutil.copyfileobj(plain, out, 1 << 20)
                source = self._scratch
            self._file = open(source, "rb")  # noqa: SIM115 - open for the bundle's life; close() closes it
            with tarfile.open(fileobj=self._file, mode="r:") as tar:
                for member in tar:
                    name = _clean(member.name)
                    if name is not None:
                        self.members[name] = member
        except (tarfile.TarError, EOFError, ValueError) as err:
            self.close()
            raise ImageError(f"{path} is not a readable tar archive: {err}",
                             "give a docker-archive, an oci-archive or an OCI layout directory") from None
        except OSError as err:
            self.close()
            raise ImageError(f"cannot read {path}: {err.strerror or err}") from None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._scratch is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._scratch)
            self._scratch = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exists(self, name: str) -> bool:
        try:
            self._locate(name)
        except ImageError:
            return False
        return True

    def read(self, name: str, limit: int = METADATA_LIMIT) -> bytes:
        """A small file's bytes (a manifest, a config, an index)."""
        with self.open(name) as (stream, size):
            if size > limit:
                raise ImageError(f"{self.path}: {name} is {size} bytes, too large for a metadata file")
            return stream.read(size)

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[tuple[BinaryIO, int]]:
        """A stream positioned at the start of the named file, and its size (read no more than that)."""
        located = self._locate(name)
        if isinstance(located, str):
            with open(located, "rb") as src:
                yield src, os.fstat(src.fileno()).st_size
            return
        assert self._file is not None
        self._file.seek(located.offset_data)
        yield self._file, located.size

    def region(self, name: str) -> tuple[str, int, int]:
        """Where the named file's bytes are: (file path, offset, size), to be read in place."""
        located = self._locate(name)
        if isinstance(located, str):
            return located, 0, os.stat(located).st_size
        assert self._file is not None
        return self._file.name, located.offset_data, located.size

    def compression(self, name: str) -> Compression:
        with self.open(name) as (stream, size):
            return sniff_compression(stream.read(min(4, size)))

    def ingest(self, store: ImageStore, name: str, expected_digest: str | None = None,
               expected_size: int | None = None, media_type: str = "application/octet-stream",
               limit: int | None = None) -> Descriptor:
        """Store the named file as a blob (verified against the digest/size given), read in place; with
        `limit`, a file larger than that is refused before anything is stored."""
        size = self.region(name)[2]
        if limit is not None and size > limit:
            raise ImageError(f"{self.path}: {name} is {size} bytes, too large for image metadata")
        if expected_digest is not None and store.has_blob(expected_digest):
            size = store.blob_size(expected_digest)
            if expected_size is None or size == expected_size:
                return Descriptor(media_type, expected_digest, size)
        with self.open(name) as (stream, size):
            if expected_size is not None and size != expected_size:
                raise ImageError(f"{self.path}: {name} has {size} bytes, its descriptor says {expected_size}")
            try:
                return store.ingest_blob(stream, expected_digest, size, media_type=media_type, limit=size)
            except ImageError as err:
                raise ImageError(f"{self.path}: {name}: {err.message}", err.hint) from None

    def _locate(self, name: str) -> str | tarfile.TarInfo:
        clean = _clean(name)
        if clean is None:
            raise ImageError(f"{self.path}: {name!r} is not a file name inside the archive")
        if self.is_dir:
            path = os.path.join(self.path, clean)
            real_root = os.path.realpath(self.path)
            if not os.path.realpath(path).startswith(real_root + os.sep) or not os.path.isfile(path):
                raise ImageError(f"{self.path} has no file {name!r}")
            return path
        for _ in range(_MEMBER_HOPS):
            member = self.members.get(clean)
            if member is None:
                raise ImageError(f"{self.path} has no member {name!r}", "the archive is incomplete or not an image")
            if member.isreg():
                return member
            if member.issym():
                clean = _clean(posixpath.join(posixpath.dirname(clean), member.linkname))
            elif member.islnk():
                clean = _clean(member.linkname)
            else:
                raise ImageError(f"{self.path}: member {name!r} is not a file")
            if clean is None:
                break
        raise ImageError(f"{self.path}: member {name!r} links outside the archive or in a loop")


def _clean(name: str) -> str | None:
    """A member name relative to the archive root, or None if it leaves it."""
    normal = posixpath.normpath("/" + name.lstrip("/")).lstrip("/") if not name.startswith("/") else None
    if normal is None or normal in ("", ".") or normal.startswith(".."):
        return None
    if ".." in name.split("/"):
        # normpath folded a '..' away; only accept names that stay inside the archive as written.
        depth = 0
        for part in name.split("/"):
            depth += -1 if part == ".." else (0 if part in ("", ".") else 1)
            if depth < 0:
                return None
    return normal
