"""Volumes: parsing `-v`, the named-volume directories under ROOT/volumes/NAME/_data, and filling a new
volume with what the image holds at its mount path (as Docker does on first use).

`-v /host:/ctr[:ro]` binds a host path; `-v NAME:/ctr` uses (and on first use makes) a named volume;
`-v /ctr` makes an anonymous one, named by a random id, removed with the container that made it when the
container is removed with `--rm` or `rm -v`. The mounts themselves are done by the launch.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from engine.containers.diff import OPAQUE_MARKER, is_opaque, is_whiteout
from engine.containers.record import VolumeMount
from engine.errors import ContainerError

VOLUME_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_MODES = {"ro": True, "rw": False}


class VolumeError(ContainerError):
    """A `-v` that does not parse, or a volume that cannot be made or removed."""


def parse_volume(spec: str, cwd: str | None = None) -> tuple[str, str, str, bool]:
    """(kind, source or name, destination, read_only) of one `-v` value; kind is bind, volume or anonymous."""
    parts = spec.split(":")
    read_only = False
    if len(parts) in (2, 3) and parts[-1] in _MODES:
        read_only = _MODES[parts[-1]]
        parts = parts[:-1]
    if len(parts) == 1:
        dest = parts[0]
        if not dest.startswith("/"):
            raise VolumeError(f"-v {spec}: the path in the container must be absolute", "use e.g. -v /data")
        return "anonymous", "", os.path.normpath(dest), read_only
    if len(parts) != 2:
        raise VolumeError(f"-v {spec}: expected SRC:DST[:ro]", "use e.g. -v /scratch:/scratch:ro or -v NAME:/data")
    source, dest = parts
    if not dest.startswith("/"):
        raise VolumeError(f"-v {spec}: the path in the container must be absolute ({dest!r} is not)",
                          "use e.g. -v /scratch:/scratch")
    dest = os.path.normpath(dest)
    if source.startswith(("/", "./", "../")) or source in (".", ".."):
        return "bind", os.path.abspath(os.path.join(cwd or os.getcwd(), source)), dest, read_only
    if not VOLUME_NAME_RE.match(source):
        raise VolumeError(f"-v {spec}: {source!r} is neither an absolute host path nor a volume name",
                          "host paths start with / (or ./), names use letters, digits, '_', '.', '-'")
    return "volume", source, dest, read_only


class VolumeStore:
    """Named volumes under ROOT/volumes."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.base = Path(root) / "volumes"

    def data_dir(self, name: str) -> Path:
        return self.base / name / "_data"

    def exists(self, name: str) -> bool:
        return self.data_dir(name).is_dir()

    def create(self, name: str) -> tuple[Path, bool]:
        """The volume's data dir, and whether this call made it."""
        if not VOLUME_NAME_RE.match(name):
            raise VolumeError(f"invalid volume name {name!r}", "use letters, digits, '_', '.' and '-'")
        data = self.data_dir(name)
        if data.is_dir():
            return data, False
        data.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        try:
            data.mkdir(mode=0o755)
        except FileExistsError:
            return data, False
        return data, True

    def names(self) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self.base) if (Path(e.path) / "_data").is_dir())
        except FileNotFoundError:
            return []

    def remove(self, name: str, users: Iterable[str] = ()) -> None:
        """Delete a volume; refused while a container (named in `users`) uses it."""
        users = list(users)
        if users:
            raise VolumeError(f"volume {name} is in use by {', '.join(users)}", "remove those containers first")
        if not self.exists(name):
            raise VolumeError(f"no such volume: {name}", "see 'rade volume ls'")
        shutil.rmtree(self.base / name)


def resolve(specs: Sequence[str], store: VolumeStore, cwd: str | None = None) -> list[tuple[VolumeMount, bool]]:
    """The mounts for `-v` values, each with whether its volume was made just now (and should be filled
    from the image). Bind sources that do not exist are made as directories, as Docker does."""
    out: list[tuple[VolumeMount, bool]] = []
    seen: set[str] = set()
    for spec in specs:
        kind, source, dest, read_only = parse_volume(spec, cwd)
        if dest in seen:
            raise VolumeError(f"-v {spec}: {dest} is already a mount point", "mount each path once")
        seen.add(dest)
        if kind == "bind":
            if not os.path.lexists(source):
                os.makedirs(source, mode=0o755)
            out.append((VolumeMount("bind", source, dest, read_only), False))
            continue
        name = source or os.urandom(32).hex()
        data, made = store.create(name)
        out.append((VolumeMount("volume", str(data), dest, read_only, name=name), made))
    return out


def copy_image_content(layers: Sequence[Path], dest: str, target: Path) -> None:
    """Fill `target` with the merged content of `layers` (top first) at `dest`, bottom layer first so
    that upper layers and their whiteouts win."""
    rel = dest.strip("/")
    for layer in reversed(layers):
        source = layer / rel
        try:
            st = os.lstat(source)
        except OSError:
            continue
        if is_whiteout(st) or not stat.S_ISDIR(st.st_mode):
            _clear(target)
            continue
        if is_opaque(source):
            _clear(target)
        _overlay_copy(source, target)


def _clear(target: Path) -> None:
    for entry in os.scandir(target):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def _overlay_copy(source: Path, target: Path) -> None:
    for entry in os.scandir(source):
        src, dst = Path(entry.path), target / entry.name
        st = entry.stat(follow_symlinks=False)
        if entry.name == OPAQUE_MARKER:
            continue
        if is_whiteout(st):
            if dst.is_dir() and not dst.is_symlink():
                shutil.rmtree(dst)
            elif os.path.lexists(dst):
                os.unlink(dst)
            continue
        if stat.S_ISDIR(st.st_mode):
            if os.path.lexists(dst) and not dst.is_dir():
                os.unlink(dst)
            if is_opaque(src) and dst.is_dir():
                shutil.rmtree(dst)
            dst.mkdir(exist_ok=True)
            shutil.copystat(src, dst, follow_symlinks=False)
            os.chown(dst, st.st_uid, st.st_gid)
            _overlay_copy(src, dst)
            continue
        if os.path.lexists(dst):
            if dst.is_dir() and not dst.is_symlink():
                shutil.rmtree(dst)
            else:
                os.unlink(dst)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst, follow_symlinks=False)
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
