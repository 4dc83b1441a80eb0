"""Trees as tar streams for `rade cp` and the builder's `COPY --from`: a directory tree written out
(`add_tree`) and a stream unpacked into a directory (`CopyExtractor`, the image store's safe extractor
with the copied item renamed and owners set as the copy asks).

`add_tree` builds each header from lstat alone, never looking up user or group names: it runs chrooted
in a container, where a name lookup would load the container's NSS libraries into a root process.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Callable
from typing import BinaryIO

from engine.errors import ContainerError, UnsafeArchiveError
from engine.images.extractor import Extractor, split_entry_name

_TYPES = ((stat.S_ISDIR, tarfile.DIRTYPE), (stat.S_ISLNK, tarfile.SYMTYPE), (stat.S_ISCHR, tarfile.CHRTYPE),
          (stat.S_ISBLK, tarfile.BLKTYPE), (stat.S_ISFIFO, tarfile.FIFOTYPE))


def add_tree(tar: tarfile.TarFile, path: str, arcname: str, follow_top: bool = False) -> None:
    """Write `path` (and, for a directory, everything under it) to `tar` as `arcname/...`, parents before
    children. Symlinks are kept as links, except `path` itself with `follow_top`; sockets are left out,
    as tar does. A stack, not recursion: a tree nested deeper than Python's recursion limit is copied too."""
    links: dict[tuple[int, int], str] = {}
    top = os.stat(path) if follow_top else os.lstat(path)
    pending: list[tuple[str, str, os.stat_result, bool]] = [(path, arcname, top, follow_top)]
    while pending:
        current, name, st, follow = pending.pop()
        if _add(tar, current, name, st, links, follow):
            children = sorted(os.listdir(current), reverse=True)  # popped in name order
            pending += [(os.path.join(current, c), f"{name}/{c}", os.lstat(os.path.join(current, c)), False)
                        for c in children]


def _add(tar: tarfile.TarFile, path: str, name: str, st: os.stat_result, links: dict[tuple[int, int], str],
         follow: bool) -> bool:
    """Write one entry; whether it is a directory (whose children come next)."""
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = int(st.st_mtime)
    if stat.S_ISREG(st.st_mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1:
            if key in links:
                info.type, info.linkname = tarfile.LNKTYPE, links[key]
                tar.addfile(info)
                return False
            links[key] = name
        info.size = st.st_size
        # O_NONBLOCK: swapped for a FIFO since the lstat (a running container may), it must not hang us.
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
        with os.fdopen(os.open(path, flags), "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise OSError(f"{path} changed from a file to something else while it was copied")
            os.set_blocking(fh.fileno(), True)
            tar.addfile(info, fh)
        return False
    for test, kind in _TYPES:
        if test(st.st_mode):
            info.type = kind
            break
    else:
        return False  # a socket: nothing a copy can recreate
    if info.type == tarfile.SYMTYPE:
        info.linkname = os.readlink(path)
    elif info.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    tar.addfile(info)
    return info.type == tarfile.DIRTYPE


def write_tree(out: BinaryIO, path: str, arcname: str, follow_top: bool = False) -> None:
    """A whole tar stream of `path` to `out`."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        add_tree(tar, path, arcname, follow_top)


class CopyExtractor(Extractor):
    """The safe extractor, for copies: the stream's top entry `top` lands as `new_top` ("" puts what is
    under it straight into the destination), and with `owner` every entry gets that uid and gid. A name
    with the `.wh.` prefix is refused: it is a whiteout in a layer, and a copy must not make one.

    Unlike an image layer, a copy lands among files that matter: it never replaces a directory with a
    file (that would delete the directory's tree, volumes mounted in it included), nor a device or FIFO
    (a tree copied onto / must not replace /dev/null), nor a file for which
    `is_mounted(path)` says it is a mount of its own (removing it would take a volume away)."""

    def __init__(self, dest: str, label: str, top: str | None = None, new_top: str | None = None,
                 owner: tuple[int, int] | None = None, is_mounted: Callable[[str], bool] | None = None) -> None:
        super().__init__(dest, label)
        self.top = top
        self.new_top = new_top
        self.owner = owner
        self.is_mounted = is_mounted

    def refuse(self, name: str, reason: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(f"{self.label}: entry {name!r} refused: {reason}",
                                  "the archive is corrupt or hostile; the entries before it were copied")

    def _remove(self, rel: str, existing: os.stat_result | None) -> None:
        if existing is not None:
            if stat.S_ISDIR(existing.st_mode):
                raise ContainerError(f"{self.label}: {rel!r} is a directory there, and a copy does not replace "
                                     "a directory with a file", "remove the directory first, or copy elsewhere")
            if stat.S_ISCHR(existing.st_mode) or stat.S_ISBLK(existing.st_mode) or stat.S_ISFIFO(existing.st_mode):
                raise ContainerError(f"{self.label}: {rel!r} is a device or a FIFO there, and a copy of a tree "
                                     "does not replace one", "copy that file alone onto its path to write into it")
            if self.is_mounted is not None and self.is_mounted(os.path.join(self.dest, rel)):
                raise ContainerError(f"{self.label}: {rel!r} is a file mounted of its own there (a volume)",
                                     "copy that file alone onto its path to write into it")
        super()._remove(rel, existing)

    def _rename(self, name: str, member_name: str) -> str | None:
        if self.top is None or self.new_top is None:
            return name
        try:
            parts = split_entry_name(name)
        except ValueError as err:
            raise self.refuse(member_name, str(err)) from None
        if not parts or parts[0] != self.top:
            raise self.refuse(member_name, f"is not under {self.top!r}, the item being copied")
        rest = parts[1:]
        if self.new_top:
            rest.insert(0, self.new_top)
        return "/".join(rest) if rest else None

    def _entry(self, member: tarfile.TarInfo, write_data: object) -> None:
        original = member.name
        name = self._rename(member.name, original)
        if name is None:
            return  # the copied directory itself, whose contents go into an existing one
        member.name = name
        if member.islnk():
            linkname = self._rename(member.linkname, original)
            if linkname is None:
                raise self.refuse(original, "hard link to the copied directory")
            member.linkname = linkname
        if self.owner is not None:
            member.uid, member.gid = self.owner
        super()._entry(member, write_data)

    def _whiteout(self, name: str, parent: str, base: str) -> None:
        raise self.refuse(name, "names starting with '.wh.' are reserved for layer whiteouts")
