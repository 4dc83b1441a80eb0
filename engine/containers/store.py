"""The on-disk layout of containers: ROOT/containers/<64-hex id>/ holding `state.json` (versioned, written
temp-then-rename under a lock), the log, the attach socket and the overlay dirs.

A removed container's directory is first renamed to ROOT/containers/.removed-<id> (gone from the store at
once), then deleted; a `create` deletes what a killed remover left so.

This module is the only writer of `state.json`. Creation takes the store lock so that two `rade run
--name x` at once cannot both get `x`; every update takes the container's own lock, reads, applies a pure
change and renames the new file into place, so a reader never sees half a record.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from engine.containers.names import check_name, random_name
from engine.containers.record import ContainerRecord, from_json, to_json
from engine.errors import ContainerError
from engine.filelock import file_lock, is_held

STATE_VERSION = 1
RETIRED = ".removed-"  # the name prefix of a removed container's directory until its files are deleted


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path` and rename it over `path`: a reader (or a process
    killed mid-write) sees the old record or the new one, never half of one. No fsync: a record lost to
    a power cut describes containers that died with the machine anyway, and each fsync costs a start
    tens of milliseconds."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


class ContainerDir:
    """The paths inside one container's directory (each made when asked for: most callers want one)."""

    __slots__ = ("path",)

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def state(self) -> Path:
        return self.path / "state.json"

    @property
    def lock(self) -> Path:
        return self.path / "state.lock"

    @property
    def log(self) -> Path:
        return self.path / "ctr.log"

    @property
    def socket(self) -> Path:
        return self.path / "attach.sock"

    @property
    def upper(self) -> Path:
        return self.path / "upper"

    @property
    def work(self) -> Path:
        return self.path / "work"

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    @property
    def supervisor_log(self) -> Path:
        return self.path / "supervisor.log"


class ContainerStore:
    """All containers under ROOT/containers."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.base = self.root / "containers"

    def dir(self, container_id: str) -> ContainerDir:
        return ContainerDir(self.base / container_id)

    def _ensure(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True, mode=0o700)

    def create(self, make: Callable[[str, str], ContainerRecord], name: str | None = None) -> ContainerRecord:
        """Make a container: a new id and a unique name, passed to `make(id, name)` for the record."""
        self._ensure()
        with file_lock(self.base / ".lock"):
            self._purge_leftovers()
            taken = self.names()
            if name is not None:
                check_name(name)
                if name in taken:
                    other = self.find(name)
                    raise ContainerError(f"the container name {name!r} is already in use by {other.short_id}",
                                         f"remove it with 'rade rm {name}' or choose another --name")
            else:
                name = random_name(taken)
            container_id = os.urandom(32).hex()  # as secrets.token_hex, without its import cost
            record = make(container_id, name)
            cdir = self.dir(container_id)
            cdir.path.mkdir(mode=0o700)
            for sub in (cdir.upper, cdir.work, cdir.rootfs):
                sub.mkdir(mode=0o755)
            self._write(cdir, record)
        return record

    def _write(self, cdir: ContainerDir, record: ContainerRecord) -> None:
        # `image_id` at the top level is what the image store reads to refuse removing an image in use.
        body = {"version": STATE_VERSION, "image_id": record.config.image_id, "container": to_json(record)}
        write_atomic(cdir.state, json.dumps(body, indent=1).encode())

    def get(self, container_id: str) -> ContainerRecord:
        """The record of a container by its full id."""
        cdir = self.dir(container_id)
        try:
            body = json.loads(cdir.state.read_bytes())
        except FileNotFoundError:
            raise ContainerError(f"no such container: {container_id[:12]}") from None
        except (OSError, ValueError) as err:
            raise ContainerError(f"container {container_id[:12]}: unreadable state.json: {err}") from None
        if body.get("version") != STATE_VERSION:
            raise ContainerError(f"container {container_id[:12]}: state.json version {body.get('version')} "
                                 f"is not {STATE_VERSION}", "this rade is older or newer than the one that made it")
        return from_json(body["container"])

    def ids(self) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self.base) if len(e.name) == 64 and e.is_dir())
        except FileNotFoundError:
            return []

    def all(self) -> list[ContainerRecord]:
        """Every container, newest first (as `ps` lists them)."""
        records = []
        for cid in self.ids():
            try:
                records.append(self.get(cid))
            except ContainerError:
                continue  # removed while we listed, or being created
        records.sort(key=lambda r: r.created, reverse=True)
        return records

    def names(self) -> set[str]:
        """The names in use: read from each record's JSON without building the record, since a creation
        asks while every other container of the node is in the store."""
        names = set()
        base = str(self.base)
        for cid in self.ids():
            try:
                with open(os.path.join(base, cid, "state.json"), "rb") as handle:
                    names.add(json.load(handle)["container"]["name"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # removed while we listed, or being created
        return names

    def find(self, ref: str) -> ContainerRecord:
        """A container by full id, name, or unique id prefix, as Docker resolves them."""
        if len(ref) == 64 and self.dir(ref).state.exists():
            return self.get(ref)
        records = self.all()
        for record in records:
            if record.name == ref:
                return record
        matches = [r for r in records if r.id.startswith(ref)] if ref else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ContainerError(f"{ref!r} matches {len(matches)} containers", "give more of the id")
        raise ContainerError(f"no such container: {ref}", "see 'rade ps -a'")

    def update(self, container_id: str, change: Callable[[ContainerRecord], ContainerRecord]) -> ContainerRecord:
        """Apply `change` to the current record under the container's lock and store the result."""
        cdir = self.dir(container_id)
        if not cdir.path.is_dir():
            raise ContainerError(f"no such container: {container_id[:12]}")
        with file_lock(cdir.lock):
            record = change(self.get(container_id))
            self._write(cdir, record)
        return record

    def delete(self, container_id: str) -> None:
        """Remove the container's directory (`retire`, then `purge`)."""
        self.purge(self.retire(container_id))

    def retire(self, container_id: str) -> Path:
        """Take the container out of the store in one rename, to ROOT/containers/.removed-<id>: from then
        on it is not listed or found and its name is free, so a remover can report the removal done before
        deleting the files (`purge`), which takes a while. Refused while its root is still mounted, since
        removing through a mount would delete what volumes bind into it."""
        cdir = self.dir(container_id)
        if os.path.ismount(cdir.rootfs):
            raise ContainerError(f"container {container_id[:12]}: its root is still mounted at {cdir.rootfs}",
                                 "stop it first, or unmount the path")
        retired = self.base / f"{RETIRED}{container_id}"
        try:
            os.rename(cdir.path, retired)
        except FileNotFoundError:
            pass  # removed already
        return retired

    def purge(self, retired: Path) -> None:
        """Delete a retired container's files, its supervisor lock last: while the lock file is there, a
        `create` sees that its deleter holds it and leaves the directory alone instead of deleting it
        a second time beside the first."""
        lock = "supervisor.lock"
        try:
            entries = list(os.scandir(retired))
        except FileNotFoundError:
            return
        except OSError:
            shutil.rmtree(retired, ignore_errors=True)
            return
        for entry in entries:
            if entry.name == lock:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        shutil.rmtree(retired, ignore_errors=True)

    def _purge_leftovers(self) -> None:
        """Delete what removers killed between `retire` and `purge` left: retired directories whose
        supervisor lock nobody holds (a supervisor purging its own `--rm` container holds it)."""
        for entry in os.scandir(self.base):
            if not entry.name.startswith(RETIRED):
                continue
            try:
                if is_held(os.path.join(entry.path, "supervisor.lock")):
                    continue
            except OSError:
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
