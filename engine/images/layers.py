"""Unpacked layers: each layer's files live once in ROOT/images/layers/<diff id hex>/diff.

A layer is keyed by its diff id (the sha256 of its uncompressed tar), so a layer shared by several images,
or arriving once gzip-compressed from a registry and once plain from a docker-archive, is unpacked once.
A layer is unpacked into a temporary directory and renamed into place only when complete and verified;
`layer.json` beside `diff/` records what was verified. A per-layer lock makes two processes that need
the same layer unpack it once: the second waits and finds it done. The directories are overlayfs lower
layers: whiteouts are stored the way overlayfs reads them (see unpack.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from dataclasses import dataclass

from engine.errors import ImageError
from engine.filelock import file_lock
from engine.images.atomic import read_json, write_json_atomic
from engine.images.content import digest_hex
from engine.images.tarsplit import SplitRecorder, rebuild, split_size

# engine.images.unpack (tarfile, the decompressors) is imported where a layer is unpacked: a container's
# start only looks layers up.

LAYER_FORMAT = 1


def _mkdtemp(prefix: str, dir: str) -> str:
    """`tempfile.mkdtemp`, imported only by what writes layers (a container start only reads them)."""
    import tempfile

    return tempfile.mkdtemp(prefix=prefix, dir=dir)


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """An unpacked layer: its diff id, the directory overlayfs mounts, bytes of file content, entries."""

    diff_id: str
    path: str
    size: int
    entries: int


class LayerStore:
    """Unpacked layers under `root` (ROOT/images/layers); temp dirs under `tmp`, locks under `locks`."""

    def __init__(self, root: str, tmp: str, locks: str) -> None:
        self.root = root
        self.tmp = tmp
        self.locks = locks
        for directory in (root, tmp, locks):
            os.makedirs(directory, exist_ok=True)

    def diff_dir(self, diff_id: str) -> str:
        """The directory holding the layer's files (a lowerdir for overlayfs); pure path arithmetic."""
        return os.path.join(self.root, digest_hex(diff_id), "diff")

    def get(self, diff_id: str) -> LayerInfo | None:
        """The unpacked layer, or None if it is not (completely) unpacked."""
        meta = read_json(os.path.join(self.root, digest_hex(diff_id), "layer.json"))
        if not isinstance(meta, dict) or meta.get("diff_id") != diff_id:
            return None
        return LayerInfo(diff_id, self.diff_dir(diff_id), int(meta.get("size", 0)), int(meta.get("entries", 0)))

    def ensure(self, diff_id: str, blob_path: str, blob_digest: str, label: str) -> LayerInfo:
        """The unpacked layer, unpacking the blob at `blob_path` first if needed; checks the diff id."""
        found = self.get(diff_id)
        if found is not None:
            return found
        with file_lock(os.path.join(self.locks, f"layer-{digest_hex(diff_id)}.lock")):
            found = self.get(diff_id)
            if found is not None:
                return found
            from engine.images.unpack import unpack_layer

            work = _mkdtemp(prefix="layer-", dir=self.tmp)
            try:
                diff = os.path.join(work, "diff")
                os.mkdir(diff, 0o755)
                result = unpack_layer(blob_path, diff, verified_digest=blob_digest, label=label)
                if result.diff_id != diff_id:
                    raise ImageError(f"{label} unpacks to diff id {result.diff_id}, the image config says {diff_id}",
                                     "the image is corrupt or was tampered with; nothing was stored")
                write_json_atomic(os.path.join(work, "layer.json"), {
                    "version": LAYER_FORMAT, "diff_id": diff_id, "size": result.size,
                    "entries": result.entries, "from_blob": blob_digest,
                })
                final = os.path.join(self.root, digest_hex(diff_id))
                if os.path.lexists(final):
                    remove_tree(final)  # left by a crash before layer.json: never complete
                os.rename(work, final)
            except BaseException:
                remove_tree(work)
                raise
            found = self.get(diff_id)
            assert found is not None
            return found

    def ensure_region(self, diff_id: str, path: str, base: int, size: int, label: str) -> bool:
        """Unpack the plain tar at [base, base+size) of `path` as layer `diff_id` unless it is unpacked,
        keeping a tar-split so the tar can be rebuilt instead of stored. Returns whether the layer can be
        rebuilt (if not, the caller must store the blob itself). The diff id is checked before the
        layer gets its name; a mismatch leaves nothing."""
        found = self.get(diff_id)
        if found is not None:
            return self.is_rebuildable(diff_id)
        with file_lock(os.path.join(self.locks, f"layer-{digest_hex(diff_id)}.lock")):
            if self.get(diff_id) is not None:
                return self.is_rebuildable(diff_id)
            from engine.images.unpack import unpack_region

            work = _mkdtemp(prefix="layer-", dir=self.tmp)
            try:
                diff = os.path.join(work, "diff")
                os.mkdir(diff, 0o755)
                recorder = SplitRecorder()
                result = unpack_region(path, base, size, diff, recorder, label=label)
                if result.diff_id != diff_id:
                    raise ImageError(f"{label} has digest {result.diff_id}, the image config says {diff_id}",
                                     "the archive is corrupt or was tampered with; nothing was stored")
                if recorder.rebuildable:
                    recorder.save(path, base, size, work)
                write_json_atomic(os.path.join(work, "layer.json"), {
                    "version": LAYER_FORMAT, "diff_id": diff_id, "size": result.size,
                    "entries": result.entries, "tar_size": size, "rebuildable": recorder.rebuildable,
                })
                final = os.path.join(self.root, digest_hex(diff_id))
                if os.path.lexists(final):
                    remove_tree(final)
                os.rename(work, final)
            except BaseException:
                remove_tree(work)
                raise
            return recorder.rebuildable

    def is_rebuildable(self, diff_id: str) -> bool:
        """Whether the layer's plain tar can be rebuilt from its files (it has a tar-split)."""
        return split_size(os.path.join(self.root, digest_hex(diff_id))) is not None and \
            self.get(diff_id) is not None

    def rebuilt_size(self, diff_id: str) -> int | None:
        """The size of the layer's rebuildable tar, or None."""
        return split_size(os.path.join(self.root, digest_hex(diff_id))) if self.get(diff_id) else None

    def rebuild(self, diff_id: str, out_fd: int) -> None:
        """Write the layer's original plain tar to out_fd, verifying it against the diff id."""
        layer_dir = os.path.join(self.root, digest_hex(diff_id))
        digest = rebuild(layer_dir, os.path.join(layer_dir, "diff"), out_fd)
        if digest != diff_id:
            raise ImageError(f"layer {diff_id} rebuilds to {digest}",
                             "its files were modified on disk; remove the image and load it again")

    def remove(self, diff_id: str) -> None:
        """Delete an unpacked layer (garbage collection); its lock keeps a concurrent unpack out."""
        with file_lock(os.path.join(self.locks, f"layer-{digest_hex(diff_id)}.lock")):
            path = os.path.join(self.root, digest_hex(diff_id))
            if os.path.lexists(path):
                # Rename first so a reader never sees a half-deleted layer that still has its layer.json.
                doomed = _mkdtemp(prefix="gone-", dir=self.tmp)
                os.rename(path, os.path.join(doomed, "layer"))
                remove_tree(doomed)

    def diff_ids(self) -> list[str]:
        """Every completely unpacked layer."""
        return ["sha256:" + name for name in os.listdir(self.root)
                if os.path.isfile(os.path.join(self.root, name, "layer.json"))]


def remove_tree(path: str) -> None:
    """Remove a directory tree, even one with read-only directories inside (as an unpacked layer has)."""

    def make_writable(func: object, failed: str, exc_info: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(failed), stat.S_IRWXU)
        with contextlib.suppress(FileNotFoundError):
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, stat.S_IRWXU)
                shutil.rmtree(failed, onerror=make_writable)
            else:
                os.unlink(failed)

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=make_writable)
