"""The one safe way to unpack a layer: every path that turns a layer tar into files calls this module
(`unpack_layer` for a stored blob, `unpack_region` for a tar inside an archive, `unpack_stream` for a
pipe), and all of them place entries through the one `Extractor` (extractor.py).

A layer is untrusted input. Each entry is written only inside the target directory: names that are absolute
or contain `..` are refused; a path whose parent goes through a symlink is resolved inside the layer (chains
included, 40 hops at most) and refused if it would leave it or the link is absolute; hard links must point at
an entry already unpacked in this layer; device nodes need root. The final component of a path is never
followed: an existing entry is replaced, never written through. OCI whiteouts become what overlayfs reads:
`.wh.NAME` a 0:0 character device, `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory.
Modes, owners (as root), mtimes and xattrs are kept where the filesystem allows.

Speed: an uncompressed layer is read in place; file contents move with copy_file_range (kernel to kernel)
at the offsets tarfile found, so Python touches only the headers. Compressed layers are read as a stream
(compression.py). Every refusal is an UnsafeArchiveError naming the entry and why.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from typing import BinaryIO

from engine.errors import ImageError
from engine.images.compression import compression_of, decompressed
from engine.images.content import Compression
from engine.images.extractor import OPAQUE_XATTR, WHITEOUT_PREFIX, Extractor, split_entry_name
from engine.images.tarsplit import Region, SplitRecorder

__all__ = ["OPAQUE_XATTR", "WHITEOUT_PREFIX", "UnpackResult", "split_entry_name", "unpack_layer", "unpack_region",
           "unpack_stream"]

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class UnpackResult:
    """What unpacking a layer produced: the diff id (sha256 of the uncompressed tar), bytes and entries."""

    diff_id: str
    size: int
    entries: int


def unpack_layer(source: str, dest: str, *, verified_digest: str | None = None, label: str = "layer") -> UnpackResult:
    """Unpack the tar at `source` (plain, gzip or zstd) into the empty directory `dest`.

    `verified_digest` is the sha256 of `source` when the caller already checked it (a stored blob): for an
    uncompressed tar that is the diff id, and hashing it again is skipped. `label` names the layer in errors.
    On any error `dest` is left for the caller to remove; nothing outside it has been touched.
    """
    if compression_of(source) is not Compression.NONE:
        with decompressed(source, label) as plain:
            return unpack_stream(plain, dest, label=label)
    with open(source, "rb") as raw:
        hasher = None if verified_digest else hashlib.sha256()
        if hasher is not None:
            _hash_file(raw, hasher)
            raw.seek(0)
        size, entries = Extractor(dest, label).run_seekable(raw)
        diff_id = verified_digest if hasher is None else "sha256:" + hasher.hexdigest()
        return UnpackResult(diff_id, size, entries)


def unpack_region(path: str, base: int, size: int, dest: str, recorder: SplitRecorder | None = None, *,
                  label: str = "layer") -> UnpackResult:
    """Unpack the uncompressed tar stored at [base, base+size) of the file at `path` (a member of an
    archive, read in place) into `dest`, recording its layout in `recorder`. The bytes are hashed on a
    second thread meanwhile; the caller compares the diff id before trusting `dest`."""
    with open(path, "rb") as raw:
        hasher = hashlib.sha256()
        hashing = threading.Thread(target=_hash_range, args=(raw.fileno(), base, size, hasher),
                                   name="rade-layer-hash")
        hashing.start()
        try:
            region = Region(raw.fileno(), base, size)
            extractor = Extractor(dest, label, recorder)
            written, entries = extractor.run_seekable(region, raw.fileno(), base)  # type: ignore[arg-type]
        finally:
            hashing.join()
    return UnpackResult("sha256:" + hasher.hexdigest(), written, entries)


def _hash_range(fd: int, base: int, size: int, hasher: hashlib._Hash) -> None:
    done = 0
    while done < size:
        chunk = os.pread(fd, min(_CHUNK, size - done), base + done)
        if not chunk:
            break
        hasher.update(chunk)
        done += len(chunk)


def unpack_stream(stream: BinaryIO, dest: str, *, label: str = "layer") -> UnpackResult:
    """Unpack an uncompressed tar read sequentially from `stream` (a pipe, a decompressor), hashing it."""
    reader = _HashingReader(stream)
    try:
        size, entries = Extractor(dest, label).run_stream(reader)
        reader.drain()
    except (OSError, EOFError) as err:
        if isinstance(err, ImageError):
            raise
        raise ImageError(f"{label}: cannot read tar stream: {err}") from None
    return UnpackResult("sha256:" + reader.hasher.hexdigest(), size, entries)


def _hash_file(raw: BinaryIO, hasher: hashlib._Hash) -> None:
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    while n := raw.readinto(buf):
        hasher.update(view[:n])


class _HashingReader:
    """A read-only stream that hashes every byte read through it (tarfile's stream mode reads it)."""

    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.hasher = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        self.hasher.update(data)
        return data

    def drain(self) -> None:
        """Read to the end, so trailing padding after the end-of-archive marker is hashed too."""
        while self.read(_CHUNK):
            pass


