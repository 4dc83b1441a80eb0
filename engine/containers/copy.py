"""`rade cp`: files and directories copied between a container and the host, both ways, with Docker's
rules for what lands where, and `-` for a tar stream on stdin or stdout.

The container's side always runs in a child chrooted into the container's root (`rootview`): a running
container's root as it sees it, a stopped one's layers and volumes mounted in a private mount namespace
while its supervisor lock is held (so it cannot start meanwhile). Paths there, symlinks included, resolve
inside the root. What crosses between the two sides is a tar stream; what a container sends is unpacked by
the image store's extractor, which refuses entries that would leave the destination.

Where a copy lands (`place`), as `docker cp`: into an existing directory under the item's own name (with
`SRC/.`, its contents); over an existing file (a file only: never a directory over a file); to a missing
path, under that name in its parent, which must exist. A single file is written beside its destination
and renamed over it, so it is never seen half-written (a file mounted of its own, a file volume, is
written through instead, so that the volume gets the copy). Owners: a copy into a container belongs to its
root, a copy out to whoever runs `rade`; `archive` (`-a`) keeps the owners of the source.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from engine.containers import rootview, tree_archive
from engine.containers.record import ContainerRecord
from engine.containers.store import ContainerStore
from engine.errors import ContainerError


class CopyError(ContainerError):
    """A copy that cannot be done as asked (a missing source, a directory onto a file...)."""


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a copied item goes: unpacked into `directory` with its top entry named `new_top` ("" for its
    contents), then renamed to `final` when that is set (a single file written under a temporary name)."""

    directory: str
    new_top: str
    final: str = ""


def split_arg(arg: str) -> tuple[str | None, str]:
    """`CONTAINER:PATH` as (container, path); a host path as (None, path). As Docker reads it, a path
    starting with `/` or `.` is a host path even with a colon in it."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    container, _, path = arg.partition(":")
    return container, path


def _top_name(path: str) -> str:
    return os.path.basename(os.path.normpath(path)) or "rootfs"


def is_contents(path: str) -> bool:
    """`DIR/.` (and `/`): copy what is in the directory, not the directory itself."""
    return path.endswith("/.") or path == "." or not path.strip("/")


def place(dest: str, source_is_dir: bool, source_top: str, contents: bool) -> Placement:
    """Docker's rules for `dest` (resolved in the root this runs in), for a source file or directory."""
    wants_dir = dest.endswith(("/", "/."))
    real = os.path.realpath(dest)
    try:
        st = os.stat(real)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        inner = os.path.join(real, source_top)
        if not source_is_dir and os.path.lexists(inner) and not os.path.isdir(inner):
            return Placement(real, _temp_name(inner), source_top)  # a file replaced: as over a file
        return Placement(real, "" if source_is_dir and contents else source_top)
    if st is not None:
        if wants_dir:
            raise CopyError(f"{dest} is not a directory", "drop the trailing '/' to replace the file")
        if source_is_dir:
            raise CopyError(f"cannot copy a directory onto the file {dest}", "give a directory as destination")
        return Placement(os.path.dirname(real), _temp_name(real), os.path.basename(real))
    if wants_dir and not source_is_dir:
        raise CopyError(f"the destination directory {dest} does not exist", "create it first")
    parent = os.path.dirname(real.rstrip("/")) or "/"
    if not os.path.isdir(parent):
        if os.path.lexists(parent):
            raise CopyError(f"{os.path.dirname(dest.rstrip('/')) or '/'} is not a directory",
                            f"give a directory path for {dest}")
        raise CopyError(f"the parent directory of {dest} does not exist", "create it first")
    name = os.path.basename(real.rstrip("/"))
    if source_is_dir:
        return Placement(parent, name)
    return Placement(parent, _temp_name(real), name)


def _temp_name(path: str) -> str:
    return f".{os.path.basename(path)}.rade-cp-{os.getpid()}"


def unpack(stream: BinaryIO, placement: Placement, top: str, label: str, owner: tuple[int, int] | None,
           proc_fd: int) -> None:
    """Unpack a copy's tar stream as `placement` says; `proc_fd` is the host's /proc (see `put_in_place`)."""
    extractor = tree_archive.CopyExtractor(placement.directory, label, top, placement.new_top, owner,
                                           is_mounted=lambda path: _is_mounted_file(path, proc_fd))
    try:
        extractor.run_stream(stream)
        if placement.final:
            put_in_place(os.path.join(placement.directory, placement.new_top),
                         os.path.join(placement.directory, placement.final), proc_fd)
    finally:
        if placement.final:
            try:
                os.unlink(os.path.join(placement.directory, placement.new_top))
            except OSError:
                pass


def put_in_place(temp: str, final: str, proc_fd: int) -> None:
    """Rename the finished file over its destination, unless the destination is a mount of its own (a
    file volume, the generated /etc/hosts): a rename would take that mount away, and the volume's file
    would never see the copy, so it is written through instead; so is a device or FIFO there, as `cp`
    writes into one (`rade cp C:/file /dev/null` must not replace the host's /dev/null with a file).
    `proc_fd` is the host's /proc, opened before any chroot, where a file's mount id is read."""
    if not _is_special(final) and not _is_mounted_file(final, proc_fd):
        os.replace(temp, final)
        return
    if not stat.S_ISREG(os.lstat(temp).st_mode):
        raise CopyError(f"{final} is a device, a FIFO or a file mounted of its own", "only a file can be written "
                        "into it")
    src = os.open(temp, os.O_RDONLY | os.O_CLOEXEC)
    dst = os.open(final, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        while chunk := os.read(src, 1 << 20):
            view = memoryview(chunk)
            while view:
                view = view[os.write(dst, view):]
    finally:
        os.close(src)
        os.close(dst)
    os.unlink(temp)


def _is_special(path: str) -> bool:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode)


def _is_mounted_file(path: str, proc_fd: int) -> bool:
    try:
        return _mount_id(path, proc_fd) != _mount_id(os.path.dirname(path) or "/", proc_fd)
    except FileNotFoundError:
        return False


def _mount_id(path: str, proc_fd: int) -> int:
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        info = os.open(f"self/fdinfo/{fd}", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc_fd)
        try:
            text = os.read(info, 4096).decode()
        finally:
            os.close(info)
    finally:
        os.close(fd)
    for line in text.splitlines():
        if line.startswith("mnt_id:"):
            return int(line.split()[1])
    raise CopyError(f"cannot tell which mount {path} is on", "is /proc mounted on the host?")


def _source_stat(path: str, follow: bool, where: str) -> os.stat_result:
    must_dir = path.endswith("/") or is_contents(path)
    try:
        st = os.stat(path) if follow or must_dir else os.lstat(path)
    except FileNotFoundError:
        raise CopyError(f"no such file or directory {where}: {path}", "check the path") from None
    except NotADirectoryError:
        raise CopyError(f"{path} {where}: a part of the path is not a directory", "check the path") from None
    if must_dir and not stat.S_ISDIR(st.st_mode):
        raise CopyError(f"{path} {where} is not a directory", "drop the trailing '/' to copy a file")
    return st


# -- the container's root ------------------------------------------------------------------------------


@contextlib.contextmanager
def _container_root(store: ContainerStore, record: ContainerRecord
                    ) -> Iterator[tuple[ContainerRecord, rootview.RootPlan]]:
    """(the record, the way into its root) for the length of a copy: a running container's root as it
    sees it; a stopped one's layers, held stopped by its supervisor lock (see the module docstring)."""
    from engine.containers.launchspec import image_layers
    from engine.containers.lifecycle import refresh
    from engine.containers.removal import supervisor_lock
    from engine.containers.status import is_active

    record = refresh(store, record)
    if is_active(record.status):
        if not record.pid:
            raise CopyError(f"container {record.name} is {record.status.value} but has no process")
        yield record, rootview.RootPlan(proc_root=f"/proc/{record.pid}/root")
        return
    with supervisor_lock(store, record, "is being started or removed"):
        record = store.get(record.id)  # as it is now that no one can start it
        layers = image_layers(store.root, record.config.image_id)
        if not layers:
            raise CopyError(f"container {record.name} has no image layers (FROM scratch) to copy with")
        cdir = store.dir(record.id)
        yield record, rootview.RootPlan(
            lower_dirs=tuple(str(p) for p in layers), upper_dir=str(cdir.upper), work_dir=str(cdir.work),
            mountpoint=str(cdir.rootfs),
            volumes=tuple((v.source, v.destination, v.read_only) for v in record.host_config.volumes))


def _needs_root() -> None:
    if os.geteuid() != 0:
        raise CopyError("rade cp needs root (it enters the container's root with chroot)", "run it as root")


def copy_out(store: ContainerStore, record: ContainerRecord, src: str, dest: str, follow: bool = False,
             archive: bool = False, stdout: BinaryIO | None = None) -> int:
    """Copy the container's `src` to the host path `dest` (`-`: a tar stream to `stdout`); the size of
    the tar stream that carried it (what `docker cp` reports)."""
    _needs_root()
    inside = "/" + src.lstrip("/")
    top = _top_name(inside)
    owner = None if archive else (os.getuid(), os.getgid())
    with _container_root(store, record) as (current, plan):
        info_r, info_w = os.pipe2(os.O_CLOEXEC)
        data_r, data_w = os.pipe2(os.O_CLOEXEC)

        def work() -> None:
            st = _source_stat(inside, follow, f"in container {current.name}")
            os.write(info_w, json.dumps({"dir": stat.S_ISDIR(st.st_mode)}).encode())
            os.close(info_w)
            with os.fdopen(data_w, "wb") as out:
                tree_archive.write_tree(out, inside, top, follow_top=follow)

        try:
            pid, err_r = rootview.start_in_root(plan, work, close_in_child=(info_r, data_r))
        finally:
            os.close(info_w)
            os.close(data_w)
        proc_fd = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        stream = _Counted(os.fdopen(data_r, "rb", closefd=False))
        try:
            info = _read_all(info_r)
            if info:  # nothing: the child failed before it could say what it sends
                _receive(stream, json.loads(info)["dir"], dest, is_contents(src), top,
                         f"copy of {current.name}:{src}", owner, stdout, proc_fd)
        except BaseException as err:
            os.close(data_r)
            # This side's failure may be the echo of the child's (a stream cut short): its report wins.
            _end_child(pid, err_r, err, own=False)
            raise
        finally:
            os.close(proc_fd)
        os.close(data_r)
        rootview.finish_child(pid, err_r)
    return stream.count


def _receive(stream: Any, is_dir: bool, dest: str, contents: bool, top: str, label: str,
             owner: tuple[int, int] | None, stdout: BinaryIO | None, proc_fd: int) -> None:
    if dest == "-":
        out = stdout if stdout is not None else sys.stdout.buffer
        while chunk := stream.read(1 << 20):
            out.write(chunk)
        out.flush()
        return
    unpack(stream, place(dest, is_dir, top, contents), top, label, owner, proc_fd)


def copy_in(store: ContainerStore, record: ContainerRecord, src: str, dest: str, follow: bool = False,
            archive: bool = False, stdin: BinaryIO | None = None) -> int:
    """Copy the host's `src` (`-`: a tar stream on `stdin`) to `dest` in the container; the size of the
    tar stream that carried it."""
    _needs_root()
    if record.host_config.read_only:
        raise CopyError(f"container {record.name} has a read-only root", "copy into one of its volumes instead")
    from_stream = src == "-"
    source_is_dir = from_stream or stat.S_ISDIR(_source_stat(src, follow, "on the host").st_mode)
    top = _top_name(src)
    inside = "/" + dest.lstrip("/")
    owner = None if archive else (0, 0)
    label = f"copy to {record.name}:{dest}"
    with _container_root(store, record) as (_current, plan):
        data_r, data_w = os.pipe2(os.O_CLOEXEC)
        # The host's /proc, for the child to tell mounted files apart once chrooted (`put_in_place`).
        proc_fd = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

        def work() -> None:
            with os.fdopen(data_r, "rb") as stream:
                if not from_stream:
                    unpack(stream, place(inside, source_is_dir, top, is_contents(src)), top, label, owner,
                           proc_fd)
                    return
                if not os.path.isdir(os.path.realpath(inside)):
                    raise CopyError(f"{dest} is not a directory in the container",
                                    "a tar stream is unpacked into an existing directory")
                tree_archive.CopyExtractor(os.path.realpath(inside), label, owner=owner,
                                           is_mounted=lambda path: _is_mounted_file(path, proc_fd)).run_stream(stream)

        try:
            pid, err_r = rootview.start_in_root(plan, work, close_in_child=(data_w,))
        finally:
            os.close(data_r)
            os.close(proc_fd)
        try:
            with os.fdopen(data_w, "wb") as raw:
                out = _Counted(raw)
                if from_stream:
                    source = stdin if stdin is not None else sys.stdin.buffer
                    while chunk := source.read(1 << 20):
                        out.write(chunk)
                else:
                    tree_archive.write_tree(out, src, top, follow_top=follow)  # type: ignore[arg-type]
        except BaseException as err:
            # Closed: the child sees the stream end, fails and removes what it had begun (a file is
            # written under a temporary name). A broken pipe is the child's failure; else this side's.
            _end_child(pid, err_r, err, own=not isinstance(err, BrokenPipeError))
            raise
        rootview.finish_child(pid, err_r)
    return out.count


class _Counted:
    """A stream that counts the bytes it passes on."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        return data

    def write(self, data: bytes) -> int:
        self.raw.write(data)
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


def _end_child(pid: int, err_r: int, err: BaseException, own: bool) -> None:
    """After this side failed with `err`: wait for the child and raise its report, unless `err` is this
    side's `own` failure or the report is only the echo of it (a broken pipe); then the caller raises
    `err`. An interrupt ends the child at once."""
    if isinstance(err, KeyboardInterrupt):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    try:
        rootview.finish_child(pid, err_r)
    except rootview.RootWorkError as child:
        if not own and not child.broken_pipe:
            raise child from None


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)
