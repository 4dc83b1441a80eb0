"""Plain layer blobs kept as their unpacked files plus the tar's own bytes between them ("tar-split").

A docker-archive carries its layers as uncompressed tars, whose digest is the diff id. Keeping such a blob
beside its unpacked files would write every byte twice; instead the extractor records the tar's layout:
raw stretches (headers, padding, the end marker, kept verbatim in `tar-split.raw`) and, between them, the
data of regular files (read back from the layer's own files). `rebuild` writes the identical tar again and
checks its digest, for `save` and `push`. A layer whose tar replaces or deletes a file it wrote earlier
cannot be rebuilt from its final files; the recorder notices and the blob is stored whole instead.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from engine.errors import ImageError

SPLIT_JSON = "tar-split.json"
SPLIT_RAW = "tar-split.raw"
SPLIT_FORMAT = 1
_CHUNK = 1 << 20


@dataclass
class SplitRecorder:
    """Collects the layout of a tar while the extractor writes it (offsets relative to the tar's start)."""

    segments: list[tuple[str, int | str, int]] = field(default_factory=list)
    cursor: int = 0
    files: set[str] = field(default_factory=set)
    rebuildable: bool = True

    def file(self, rel: str, data_offset: int, size: int) -> None:
        """A regular file's data, now in the layer at `rel`, sits at data_offset in the tar."""
        if size == 0:
            return
        self.segments.append(("raw", self.cursor, data_offset))
        self.segments.append(("file", rel, size))
        self.cursor = data_offset + size
        self.files.add(rel)

    def removed(self, rel: str, was_dir: bool) -> None:
        """Something at `rel` was replaced: if it held recorded data, the tar can no longer be rebuilt."""
        prefix = rel + "/"
        if rel in self.files or (was_dir and any(f.startswith(prefix) for f in self.files)):
            self.rebuildable = False

    def save(self, source: str, base: int, total: int, layer_dir: str) -> None:
        """Write tar-split.json and tar-split.raw into layer_dir; raw bytes are read from `source`."""
        segments = [*self.segments, ("raw", self.cursor, total)]
        stored: list[list[object]] = []
        with open(source, "rb") as src, open(os.path.join(layer_dir, SPLIT_RAW), "wb") as raw:
            for kind, first, second in segments:
                if kind == "raw":
                    length = second - int(first)
                    if length < 0:
                        raise ImageError("tar layout overlaps itself; cannot record it")
                    if length:
                        raw.write(os.pread(src.fileno(), length, base + int(first)))
                        stored.append(["raw", length])
                else:
                    stored.append(["file", first, second])
        with open(os.path.join(layer_dir, SPLIT_JSON), "w", encoding="utf-8") as out:
            json.dump({"version": SPLIT_FORMAT, "size": total, "segments": stored}, out)


def split_size(layer_dir: str) -> int | None:
    """The size of the tar a layer can be rebuilt into, or None when it has no tar-split."""
    try:
        with open(os.path.join(layer_dir, SPLIT_JSON), encoding="utf-8") as src:
            return int(json.load(src)["size"])
    except (OSError, ValueError, KeyError):
        return None


def rebuild(layer_dir: str, diff_dir: str, out_fd: int) -> str:
    """Write the layer's original tar to out_fd from its files and tar-split; return its sha256 digest."""
    with open(os.path.join(layer_dir, SPLIT_JSON), encoding="utf-8") as src:
        split = json.load(src)
    import hashlib  # here: a container start never rebuilds a layer's tar

    hasher = hashlib.sha256()
    with open(os.path.join(layer_dir, SPLIT_RAW), "rb") as raw:
        for segment in split["segments"]:
            if segment[0] == "raw":
                _copy(raw, segment[1], out_fd, hasher, "tar-split.raw")
            else:
                path = os.path.join(diff_dir, segment[1])
                try:
                    with open(path, "rb", opener=_open_nofollow) as data:
                        if os.fstat(data.fileno()).st_size != segment[2]:
                            raise ImageError(f"layer file {segment[1]!r} changed size since it was unpacked",
                                             "the layer directory was modified; load the image again")
                        _copy(data, segment[2], out_fd, hasher, segment[1])
                except OSError as err:
                    raise ImageError(f"cannot rebuild layer tar: {segment[1]!r}: {err.strerror}") from None
    return "sha256:" + hasher.hexdigest()


def _open_nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def _copy(src: object, length: int, out_fd: int, hasher: object, what: str) -> None:
    remaining = length
    while remaining:
        chunk = src.read(min(_CHUNK, remaining))  # type: ignore[attr-defined]
        if not chunk:
            raise ImageError(f"cannot rebuild layer tar: {what} is shorter than recorded")
        hasher.update(chunk)  # type: ignore[attr-defined]
        view = memoryview(chunk)
        while view:
            view = view[os.write(out_fd, view):]
        remaining -= len(chunk)


class Region:
    """A read-only, seekable view of `size` bytes at `base` in an open file (a member of an archive)."""

    def __init__(self, fd: int, base: int, size: int) -> None:
        self.fd, self.base, self.size, self.pos = fd, base, size, 0

    def read(self, n: int = -1) -> bytes:
        if n < 0 or self.pos + n > self.size:
            n = self.size - self.pos
        data = os.pread(self.fd, n, self.base + self.pos) if n > 0 else b""
        self.pos += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        start = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: self.size}[whence]
        self.pos = max(0, start + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos
