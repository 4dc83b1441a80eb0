"""The extractor's rules: how each tar entry is placed inside a layer directory, safely.

Owns the checks every unpack path shares (unpack.py drives it): entry names (no absolute paths, no `..`),
parents resolved inside the layer (symlinks followed only while they stay inside, 40 hops at most, never
an absolute target), the last component never followed (an existing entry is replaced), hard links only to
what this layer already holds, device nodes only for root, overlayfs whiteouts, and the metadata kept
(modes, owners as root, mtimes, xattrs). It writes nothing outside `dest`, and refuses by entry name.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import tarfile
from typing import BinaryIO

from engine.errors import ImageError, UnsafeArchiveError
from engine.images.tarsplit import SplitRecorder

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_SYMLINK_HOPS = 40
_CHUNK = 1 << 20
_XATTR_PAX = "SCHILY.xattr."
# overlayfs trusts these on lower layers (redirects, metacopy): only rade may set them, never an archive.
_FORBIDDEN_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")


def split_entry_name(name: str) -> list[str]:
    """The components of a tar entry name inside the layer, or UnsafeArchiveError-worthy reason via ValueError.

    `./a//b/` is ['a', 'b']; the root itself is []; absolute names and `..` components raise ValueError.
    """
    if name.startswith("/"):
        raise ValueError("absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError("'..' path component")
    return parts


class Extractor:
    """Writes one layer's entries under `dest`, remembering which directories it made (never symlinks)."""

    def __init__(self, dest: str, label: str, recorder: SplitRecorder | None = None) -> None:
        self.recorder = recorder
        self.dest = os.path.abspath(dest)
        self.label = label
        self.is_root = os.geteuid() == 0
        self.known_dirs: set[str] = {""}
        self.dir_metadata: dict[str, tarfile.TarInfo] = {}
        self.size = 0
        self.entries = 0

    # -- drivers ------------------------------------------------------------------------------------------

    def run_seekable(self, raw: BinaryIO, src_fd: int | None = None, base: int = 0) -> tuple[int, int]:
        """Unpack from a seekable file; data is copied from `src_fd` (raw's own fd by default) at
        `base` plus each member's offset, so `raw` may be a Region of a larger archive."""
        src_fd = raw.fileno() if src_fd is None else src_fd
        tar = self._open(raw, "r:")
        while (member := self._next(tar, lenient_end=True)) is not None:
            self._entry(member, lambda fd, m: self._copy_range(src_fd, fd, m, tar, base))
        self._finish_dirs()
        return self.size, self.entries

    def run_stream(self, reader: BinaryIO) -> tuple[int, int]:
        tar = self._open(reader, "r|")
        while (member := self._next(tar)) is not None:
            self._entry(member, lambda fd, m: self._copy_stream(tar, fd, m))
        self._finish_dirs()
        return self.size, self.entries

    def _open(self, fileobj: object, mode: str) -> tarfile.TarFile:
        try:
            return tarfile.open(fileobj=fileobj, mode=mode)  # type: ignore[call-overload]
        except (tarfile.TarError, EOFError, ValueError, OverflowError, UnicodeError) as err:
            if isinstance(err, tarfile.ReadError) and "empty file" in str(err):
                raise ImageError(f"{self.label} is empty, not a tar archive") from None
            raise ImageError(f"{self.label} is not a readable tar archive: {err}") from None

    def _next(self, tar: tarfile.TarFile, lenient_end: bool = True) -> tarfile.TarInfo | None:
        try:
            return tar.next()
        except tarfile.ReadError as err:
            # Some writers (umoci 0.4's `insert`) end the tar right after the last file's data, with neither
            # padding nor end-of-archive blocks. The data itself was complete (a short read while copying
            # it is an error), so this is the end of the archive.
            if lenient_end and self.entries and str(err) == "unexpected end of data":
                return None
            raise ImageError(f"{self.label}: corrupt tar after {self.entries} entries: {err}") from None
        except (tarfile.TarError, EOFError, ValueError, OverflowError, UnicodeError) as err:
            raise ImageError(f"{self.label}: corrupt tar after {self.entries} entries: {err}") from None

    # -- one entry ----------------------------------------------------------------------------------------

    def refuse(self, name: str, reason: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(f"{self.label}: entry {name!r} refused: {reason}",
                                  "the archive is corrupt or hostile; nothing was stored")

    def _entry(self, member: tarfile.TarInfo, write_data: object) -> None:
        name = member.name
        try:
            parts = split_entry_name(name)
        except ValueError as err:
            raise self.refuse(name, str(err)) from None
        self.entries += 1
        try:
            self._place(member, parts, write_data)
        except UnsafeArchiveError:
            raise
        except OSError as err:
            raise ImageError(f"{self.label}: entry {name!r}: cannot unpack: {err.strerror or err}") from None

    def _place(self, member: tarfile.TarInfo, parts: list[str], write_data: object) -> None:
        name = member.name
        if not parts:
            if not member.isdir():
                raise self.refuse(name, "names the layer root but is not a directory")
            self.dir_metadata[""] = member
            return
        base = parts[-1]
        parent = self._parent(parts[:-1], name, create=True)
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(name, parent, base)
            return
        rel = f"{parent}/{base}" if parent else base
        path = os.path.join(self.dest, rel)
        xattrs = self._xattrs(member)
        if member.isdir():
            existing = _lstat(path)
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                self._remove(rel, existing)
                os.mkdir(path, 0o700)
            self.known_dirs.add(rel)
            self.dir_metadata[rel] = member
            for key, value in xattrs.items():
                _set_xattr(path, key, value)
        elif member.isreg():
            self._remove(rel, _lstat(path))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                write_data(fd, member)  # type: ignore[operator]
                self.size += member.size
                if self.recorder is not None:
                    if member.issparse():
                        self.recorder.rebuildable = False
                    self.recorder.file(rel, member.offset_data, member.size)
                if self.is_root:
                    os.fchown(fd, member.uid, member.gid)
                os.fchmod(fd, member.mode & 0o7777)
                for key, value in xattrs.items():
                    _set_xattr(fd, key, value)
                os.utime(fd, ns=(_ns(member.mtime), _ns(member.mtime)))
            finally:
                os.close(fd)
        elif member.issym():
            self._remove(rel, _lstat(path))
            os.symlink(member.linkname, path)
            self._finish_node(path, member, xattrs, chmod=False)
        elif member.islnk():
            target = self._link_target(member)
            existing = _lstat(path)
            if existing is not None and existing.st_ino == os.lstat(target).st_ino:
                return
            self._remove(rel, existing)
            os.link(target, path, follow_symlinks=False)
        elif member.ischr() or member.isblk() or member.isfifo():
            self._remove(rel, _lstat(path))
            if member.isfifo():
                os.mkfifo(path, 0o600)
            elif not self.is_root:
                raise self.refuse(name, "device nodes are unpacked only by root")
            else:
                kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
                os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
            self._finish_node(path, member, xattrs, chmod=True)
        else:
            raise self.refuse(name, f"unsupported entry type {member.type!r}")

    def _finish_node(self, path: str, member: tarfile.TarInfo, xattrs: dict[str, bytes], chmod: bool) -> None:
        if self.is_root:
            os.chown(path, member.uid, member.gid, follow_symlinks=False)
        if chmod:
            os.chmod(path, member.mode & 0o7777)
        for key, value in xattrs.items():
            _set_xattr(path, key, value, follow=False)
        os.utime(path, ns=(_ns(member.mtime), _ns(member.mtime)), follow_symlinks=False)

    def _xattrs(self, member: tarfile.TarInfo) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for key, value in member.pax_headers.items():
            if not key.startswith(_XATTR_PAX):
                continue
            xname = key[len(_XATTR_PAX):]
            if xname.startswith(_FORBIDDEN_XATTR_PREFIXES):
                raise self.refuse(member.name, f"carries overlayfs-private xattr {xname!r}")
            found[xname] = value.encode("utf-8", "surrogateescape")
        return found

    def _whiteout(self, name: str, parent: str, base: str) -> None:
        parent_path = os.path.join(self.dest, parent) if parent else self.dest
        if base == OPAQUE_WHITEOUT:
            if not self.is_root:
                raise self.refuse(name, "opaque directories need root (trusted.overlay xattr)")
            os.setxattr(parent_path, OPAQUE_XATTR, b"y")
            return
        if base.startswith(WHITEOUT_PREFIX * 2):
            return  # AUFS bookkeeping (.wh..wh.plnk...): no meaning on overlayfs
        hidden = base[len(WHITEOUT_PREFIX):]
        if hidden in ("", ".", ".."):
            raise self.refuse(name, "whiteout names no file")
        if not self.is_root:
            raise self.refuse(name, "whiteouts are unpacked only by root (a 0:0 character device)")
        rel = f"{parent}/{hidden}" if parent else hidden
        path = os.path.join(self.dest, rel)
        self._remove(rel, _lstat(path))
        os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))

    # -- paths --------------------------------------------------------------------------------------------

    def _parent(self, parts: list[str], name: str, create: bool) -> str:
        """The real directory (relative to dest, no symlinks in it) that `parts` names, made if missing."""
        joined = "/".join(parts)
        if joined in self.known_dirs:
            return joined
        real: list[str] = []
        hops = 0
        pending = list(parts)
        while pending:
            part = pending.pop(0)
            if part == "..":
                if not real:
                    raise self.refuse(name, "path leaves the layer through a symlink's '..'")
                real.pop()
                continue
            candidate = "/".join(real + [part])
            if candidate in self.known_dirs:
                real.append(part)
                continue
            path = os.path.join(self.dest, candidate)
            st = _lstat(path)
            if st is None:
                if not create:
                    raise self.refuse(name, f"'{candidate}' does not exist in this layer")
                os.mkdir(path, 0o755)
                self.known_dirs.add(candidate)
                real.append(part)
            elif stat.S_ISDIR(st.st_mode):
                self.known_dirs.add(candidate)
                real.append(part)
            elif stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > _SYMLINK_HOPS:
                    raise self.refuse(name, "too many levels of symbolic links")
                target = os.readlink(path)
                if target.startswith("/"):
                    raise self.refuse(name, f"goes through symlink '{candidate}' -> '{target}', which points "
                                            "outside the layer")
                pending[:0] = [p for p in target.split("/") if p not in ("", ".")]
            else:
                raise self.refuse(name, f"'{candidate}' is not a directory")
        return "/".join(real)

    def _link_target(self, member: tarfile.TarInfo) -> str:
        try:
            parts = split_entry_name(member.linkname)
        except ValueError as err:
            raise self.refuse(member.name, f"hard link target {member.linkname!r}: {err}") from None
        if not parts:
            raise self.refuse(member.name, "hard link to the layer root")
        parent = self._parent(parts[:-1], member.name, create=False)
        rel = f"{parent}/{parts[-1]}" if parent else parts[-1]
        target = os.path.join(self.dest, rel)
        st = _lstat(target)
        if st is None:
            raise self.refuse(member.name, f"hard link target {member.linkname!r} is not in this layer")
        if stat.S_ISDIR(st.st_mode):
            raise self.refuse(member.name, f"hard link target {member.linkname!r} is a directory")
        return target

    def _remove(self, rel: str, existing: os.stat_result | None) -> None:
        """Clear the way for a new entry at rel: later entries replace earlier ones, as tar does."""
        if existing is None:
            return
        if self.recorder is not None:
            self.recorder.removed(rel, stat.S_ISDIR(existing.st_mode))
        path = os.path.join(self.dest, rel)
        if stat.S_ISDIR(existing.st_mode):
            shutil.rmtree(path)
            prefix = rel + "/"
            self.known_dirs = {d for d in self.known_dirs if d != rel and not d.startswith(prefix)}
            self.dir_metadata = {d: m for d, m in self.dir_metadata.items() if d != rel and not d.startswith(prefix)}
        else:
            os.unlink(path)

    # -- data and directories -----------------------------------------------------------------------------

    def _copy_range(self, src_fd: int, dst_fd: int, member: tarfile.TarInfo, tar: tarfile.TarFile,
                    base: int = 0) -> None:
        if member.issparse():
            self._write_sparse(dst_fd, member, lambda n, at: os.pread(src_fd, n, base + member.offset_data + at))
            return
        offset, remaining = base + member.offset_data, member.size
        while remaining > 0:
            try:
                n = os.copy_file_range(src_fd, dst_fd, remaining, offset_src=offset)
            except OSError as err:
                if err.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                n = os.sendfile(dst_fd, src_fd, offset, remaining)
            if n == 0:
                raise ImageError(f"{self.label}: entry {member.name!r} is truncated")
            offset += n
            remaining -= n

    def _write_sparse(self, dst_fd: int, member: tarfile.TarInfo, read_at: object) -> None:
        """Write a sparse member's data segments where its map puts them and leave the holes as holes:
        a small archive may declare a file of terabytes that is nearly all hole."""
        stored = 0
        for offset, length in member.sparse or []:
            if offset < 0 or length < 0 or offset + length > member.size:
                raise self.refuse(member.name, "sparse map points outside the file")
            done = 0
            while done < length:
                chunk = read_at(min(_CHUNK, length - done), stored + done)  # type: ignore[operator]
                if not chunk:
                    raise ImageError(f"{self.label}: entry {member.name!r} is truncated")
                view = memoryview(chunk)
                while view:
                    written = os.pwrite(dst_fd, view, offset + done)
                    view = view[written:]
                    done += written
            stored += length
        os.ftruncate(dst_fd, member.size)

    def _copy_stream(self, tar: tarfile.TarFile, dst_fd: int, member: tarfile.TarInfo) -> None:
        if member.issparse():
            # The segments lie back to back where the stream now stands; tarfile skips past them after.
            self._write_sparse(dst_fd, member, lambda n, _at: tar.fileobj.read(n))  # type: ignore[union-attr]
            return
        source = tar.extractfile(member)
        assert source is not None
        try:
            _copy_fileobj(source, dst_fd)
        except tarfile.TarError as err:
            raise ImageError(f"{self.label}: entry {member.name!r} is truncated or corrupt: {err}") from None

    def _finish_dirs(self) -> None:
        # Deepest first, after every entry is in: a read-only mode or an mtime set earlier would be
        # undone (or block) by the files written into the directory afterwards.
        for rel in sorted(self.dir_metadata, key=lambda r: r.count("/") + (len(r) > 0), reverse=True):
            member = self.dir_metadata[rel]
            path = os.path.join(self.dest, rel) if rel else self.dest
            if self.is_root:
                os.chown(path, member.uid, member.gid, follow_symlinks=False)
            os.chmod(path, member.mode & 0o7777)
            os.utime(path, ns=(_ns(member.mtime), _ns(member.mtime)), follow_symlinks=False)


def _copy_fileobj(source: BinaryIO, dst_fd: int) -> None:
    while chunk := source.read(_CHUNK):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst_fd, view):]


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _set_xattr(target: str | int, key: str, value: bytes, follow: bool = True) -> None:
    try:
        os.setxattr(target, key, value, follow_symlinks=follow)
    except OSError as err:
        # "Where the filesystem allows": an unsupported namespace or a symlink's user.* xattr is skipped.
        if err.errno not in (errno.ENOTSUP, errno.EPERM, errno.EINVAL, errno.EACCES):
            raise
        log.debug("xattr %s not kept on %s: %s", key, target, err.strerror)


def _ns(mtime: float) -> int:
    return int(mtime * 1_000_000_000)
