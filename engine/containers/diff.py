"""What a container changed: the A/C/D list `rade diff` prints, and the layer tar `rade commit` stores.

Both read only the container's overlay upper dir (what the container wrote) against the image's layer
dirs (what it started from). overlayfs records a deletion as a 0:0 character device (a whiteout) and a
directory replaced wholesale with the `trusted.overlay.opaque` xattr; in a layer tar those become the OCI
`.wh.NAME` and `.wh..wh..opq` entries, so the committed layer deletes what the container deleted.
"""

from __future__ import annotations

import enum
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


class ChangeKind(enum.Enum):
    ADDED = "A"
    CHANGED = "C"
    DELETED = "D"


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    path: str  # absolute, inside the container

    def __str__(self) -> str:
        return f"{self.kind.value} {self.path}"


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str | os.PathLike[str]) -> bool:
    for name in _OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def exists_below(layers: Sequence[Path], rel: str) -> bool:
    """Whether `rel` is in the merged view of `layers` (top first), honouring their whiteouts."""
    parts = rel.split("/")
    for layer in layers:
        target = layer / rel
        try:
            st = os.lstat(target)
        except OSError:
            st = None
        if st is not None:
            return not is_whiteout(st)
        # An opaque parent in this layer hides everything beneath it in the layers further down.
        for depth in range(1, len(parts)):
            if is_opaque(layer.joinpath(*parts[:depth])):
                return False
    return False


def _walk(upper: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of everything in the upper dir, parents before children, sorted."""
    stack = [""]
    while stack:
        rel = stack.pop()
        base = upper / rel if rel else upper
        with os.scandir(base) as entries:
            names = sorted((e.name for e in entries), reverse=True)
        for name in names:
            child = f"{rel}/{name}" if rel else name
            st = os.lstat(upper / child)
            yield child, st
            if stat.S_ISDIR(st.st_mode):
                stack.append(child)


def _is_bare_mountpoint(path: Path, st: os.stat_result) -> bool:
    if stat.S_ISDIR(st.st_mode):
        return not any(os.scandir(path))
    return stat.S_ISREG(st.st_mode) and st.st_size == 0


def changes(upper: Path, layers: Sequence[Path], mountpoints: frozenset[str] = frozenset()) -> list[Change]:
    """The container's changes, sorted by path as `docker diff` prints them.

    `mountpoints` (absolute paths) are left out when the upper dir holds only the empty file or directory
    the launch made to mount something there.
    """
    out: list[Change] = []
    for rel, st in _walk(upper):
        path = "/" + rel
        if path in mountpoints and _is_bare_mountpoint(upper / rel, st):
            continue
        if is_whiteout(st):
            out.append(Change(ChangeKind.DELETED, path))
            continue
        below = exists_below(layers, rel)
        if below and stat.S_ISDIR(st.st_mode) and _holds_only_mountpoints(upper / rel, path, mountpoints):
            continue
        out.append(Change(ChangeKind.CHANGED if below else ChangeKind.ADDED, path))
        if below and stat.S_ISDIR(st.st_mode) and is_opaque(upper / rel):
            for layer in layers:
                if (layer / rel).is_dir():
                    for name in sorted(os.listdir(layer / rel)):
                        if not os.path.lexists(upper / rel / name) and exists_below(layers, f"{rel}/{name}"):
                            out.append(Change(ChangeKind.DELETED, f"{path}/{name}"))
    out = list({c.path: c for c in out}.values())
    out.sort(key=lambda c: c.path)
    return out


def write_layer(upper: Path, out_path: Path, mountpoints: frozenset[str] = frozenset()) -> int:
    """The upper dir as an uncompressed OCI layer tar at `out_path`; returns how many entries it holds."""
    import tarfile  # only commit and build need it; `rade run` should not pay for its import

    count = 0
    with tarfile.open(out_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for rel, st in _walk(upper):
            full = upper / rel
            if "/" + rel in mountpoints and _is_bare_mountpoint(full, st):
                continue
            if is_whiteout(st):
                head, _, name = rel.rpartition("/")
                info = tarfile.TarInfo(f"{head}/{WHITEOUT_PREFIX}{name}" if head else WHITEOUT_PREFIX + name)
                info.mtime = int(st.st_mtime)
                tar.addfile(info)
                count += 1
                continue
            info = tar.gettarinfo(str(full), arcname=rel)
            info.uname = info.gname = ""
            if info.isreg():
                with open(full, "rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
            count += 1
            if info.isdir() and is_opaque(full):
                marker = tarfile.TarInfo(f"{rel}/{OPAQUE_MARKER}")
                marker.mtime = int(st.st_mtime)
                tar.addfile(marker)
                count += 1
    return count


def _holds_only_mountpoints(directory: Path, path: str, mountpoints: frozenset[str]) -> bool:
    """Whether an upper-dir directory holds nothing but the bare mount points the launch made in it
    (the /etc of an image without /etc/hosts): then the directory is no change of the user's."""
    try:
        names = os.listdir(directory)
    except OSError:
        return False
    return bool(names) and all(f"{path}/{name}" in mountpoints
                               and _is_bare_mountpoint(directory / name, os.lstat(directory / name))
                               for name in names)
