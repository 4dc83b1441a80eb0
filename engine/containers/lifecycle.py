"""The container lifecycle as functions over the store: create, start, signal, stop, wait, remove, and
the reconciliation of a record whose supervisor died.

Every command (and the engine API) goes through here, so the rules live in one place: which state allows
what (`engine.containers.status`), what `create` takes from the image and what from the caller, and that
a container is stopped and cleaned up before it is removed.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.containers import status as st
from engine.containers.client import AttachClient, connect
from engine.containers.record import (
    ContainerConfig,
    ContainerRecord,
    HostConfig,
    PortMapping,
    Resources,
    VolumeMount,
    now_rfc3339,
)
from engine.containers.spawn import ReadyReader, spawn, spawn_exec
from engine.containers.status import ContainerStatus
from engine.containers.store import ContainerStore
from engine.containers.volumes import VolumeError, VolumeStore, resolve
from engine.containers.wiring import mark_new_volume
from engine.errors import ContainerError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CreateOptions:
    """What `rade create`/`run` (or the engine API) asks for; None means "as the image says"."""

    image: str
    command: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    name: str | None = None
    env: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    volumes_from: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    publish_all: bool = False
    network: str = "bridge"
    resources: Resources = field(default_factory=Resources)
    user: str | None = None
    workdir: str | None = None
    hostname: str | None = None
    read_only: bool = False
    tty: bool = False
    interactive: bool = False
    auto_remove: bool = False
    default_capabilities: bool = True
    nosuid: bool = False
    labels: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None  # where relative bind sources are resolved
    shm_size: int | None = None  # bytes of /dev/shm; None: the default (64 MiB, as Docker)


def image_config(root: str | os.PathLike[str], ref: str) -> tuple[str, dict[str, Any]]:
    """(image id, the image's OCI `config` object) for a reference; ("", {}) for scratch."""
    if ref == "scratch":
        return "", {}
    from engine.images.store import ImageStore

    image = ImageStore(root).resolve(ref)
    config = image.config or {}
    if "config" in config and isinstance(config["config"], dict):
        config = config["config"]
    return image.id, config


def merge_env(image_env: list[str], extra: tuple[str, ...]) -> tuple[str, ...]:
    """Image env overridden by `-e` by key; `-e NAME` alone takes the caller's value, as Docker does."""
    merged: dict[str, str] = {}
    for item in image_env:
        key, _, value = item.partition("=")
        merged[key] = value
    for item in extra:
        key, sep, value = item.partition("=")
        if not key:
            raise ContainerError(f"-e {item!r}: no variable name", "use -e NAME=VALUE")
        if not sep:
            if key not in os.environ:
                continue
            value = os.environ[key]
        merged[key] = value
    return tuple(f"{k}={v}" for k, v in merged.items())


def create(store: ContainerStore, opts: CreateOptions) -> ContainerRecord:
    """A new container in the created state, its volumes made, nothing running yet."""
    image_id, img = image_config(store.root, opts.image)
    env = merge_env(list(img.get("Env") or []), opts.env)
    entrypoint = tuple(opts.entrypoint if opts.entrypoint is not None else (img.get("Entrypoint") or ()))
    # As Docker: a command replaces the image's CMD; --entrypoint alone also drops the image's CMD.
    if opts.command:
        cmd = tuple(opts.command)
    elif opts.entrypoint is None:
        cmd = tuple(img.get("Cmd") or ())
    else:
        cmd = ()
    exposed = tuple(sorted(img.get("ExposedPorts") or {}))
    ports = publish(opts.ports, exposed if opts.publish_all else ())
    if ports and opts.network != "bridge":
        raise ContainerError(f"publishing ports needs --network bridge (not {opts.network})",
                             "drop -p/-P, or use the bridge network")
    volume_specs = list(opts.volumes)
    given = {spec.split(":")[1] if ":" in spec else spec for spec in volume_specs}
    volume_specs += [path for path in (img.get("Volumes") or {}) if path not in given]
    vstore = VolumeStore(store.root)
    resolved = resolve(volume_specs, vstore, opts.cwd)
    mounts: list[VolumeMount] = [m for m, _ in resolved]
    mounts += _volumes_from(store, opts.volumes_from, {m.destination for m in mounts})
    for mount, made in resolved:
        if made and mount.kind == "volume":
            mark_new_volume(Path(mount.source))
    labels = dict((img.get("Labels") or {}).items())
    labels.update(dict(opts.labels))
    config = ContainerConfig(
        image=opts.image, image_id=image_id, entrypoint=entrypoint, cmd=cmd, env=env,
        workdir=opts.workdir or img.get("WorkingDir") or "/", user=opts.user if opts.user is not None
        else (img.get("User") or ""), hostname=opts.hostname or "", tty=opts.tty, open_stdin=opts.interactive,
        labels=tuple(sorted(labels.items())), exposed_ports=exposed)
    host = HostConfig(
        network=opts.network, volumes=tuple(mounts), volumes_from=opts.volumes_from, ports=ports,
        publish_all=opts.publish_all, resources=opts.resources, read_only=opts.read_only,
        auto_remove=opts.auto_remove, default_capabilities=opts.default_capabilities, nosuid=opts.nosuid,
        shm_size=opts.shm_size)
    try:
        return store.create(lambda cid, name: ContainerRecord(
            id=cid, name=name, created=now_rfc3339(), config=config, host_config=host), opts.name)
    except BaseException:
        for mount, made in resolved:
            if made and mount.kind == "volume":
                vstore.remove(mount.name)
        raise


def publish(specs: tuple[str, ...], exposed: tuple[str, ...]) -> tuple[PortMapping, ...]:
    """The `-p` mappings, plus those of `-P` (the `exposed` ports) not published already."""
    if not specs and not exposed:
        return ()  # most containers publish nothing: no need to import the port parser
    from engine.network.ports import merge_publish, parse_publish, publish_all

    merged = merge_publish([parse_publish(s) for s in specs], publish_all(exposed))
    return tuple(PortMapping(m.container_port, m.host_port, str(m.host_ip), m.protocol.value) for m in merged)


def _volumes_from(store: ContainerStore, refs: tuple[str, ...], taken: set[str]) -> list[VolumeMount]:
    out = []
    for ref in refs:
        name, _, mode = ref.partition(":")
        if mode not in ("", "ro", "rw"):
            raise VolumeError(f"--volumes-from {ref}: mode must be ro or rw", "use e.g. --volumes-from data:ro")
        for mount in store.find(name).host_config.volumes:
            if mount.destination in taken:
                continue
            taken.add(mount.destination)
            out.append(replace(mount, read_only=mount.read_only if not mode else mode == "ro"))
    return out


def start(store: ContainerStore, record: ContainerRecord, attach: bool = False,
          threaded_caller: bool = False, fork_once: bool = False, preconnect: bool = False) -> ReadyReader:
    """Start the container's supervisor; read `listening`/`started`/`error` from the returned reader.

    With `attach`, the supervisor waits for the first attach client before it launches, so no output is
    missed. `threaded_caller` spawns through a fresh interpreter instead of forking the caller;
    `fork_once` leaves the supervisor the caller's child (for a caller that exits soon or reaps its
    children), `preconnect` makes the attach connection before the fork (the reader's `attach`): see
    `engine.containers.spawn`; neither applies to a `threaded_caller`.
    """
    record = refresh(store, record)
    if not st.can_start(record.status):
        raise ContainerError(f"container {record.name} is {record.status.value}", "it cannot be started now")
    from engine.containers.startlock import wait_for_copy

    if wait_for_copy(store, record):  # a `cp` into the stopped container finishes first, as with Docker
        record = store.get(record.id)  # a removal that held the lock may have taken it away meanwhile
        if not st.can_start(record.status):
            raise ContainerError(f"container {record.name} is {record.status.value}", "it cannot be started now")
    if threaded_caller:
        return spawn_exec(store.root, record.id, wait_attach=attach)
    return spawn(store.root, record.id, wait_attach=attach, fork_once=fork_once, preconnect=preconnect)


def is_supervised(store: ContainerStore, record: ContainerRecord) -> bool:
    """Whether a supervisor answers on the container's socket."""
    try:
        connect(store.dir(record.id)).close()
    except ConnectionError:
        return False
    return True


def refresh(store: ContainerStore, record: ContainerRecord) -> ContainerRecord:
    """The record, corrected if it says running but no supervisor answers (it was killed): then the
    container is recorded as exited and whatever the supervisor left is cleaned up."""
    if not st.is_active(record.status) or is_supervised(store, record):
        return record
    _cleanup_orphan(store, record)
    return store.update(record.id, lambda r: r.moved(
        ContainerStatus.EXITED, exit_code=255 if r.exit_code == 0 else r.exit_code, pid=0,
        finished_at=now_rfc3339(), error="the container's supervisor died")
        if st.is_active(r.status) else r)


def _cleanup_orphan(store: ContainerStore, record: ContainerRecord) -> None:
    """Kill what is left of a container whose supervisor died, and undo its mounts and network."""
    if record.pid:
        try:
            os.kill(record.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    from engine.cgroups import open_cgroup
    from engine.cgroups.driver import DEFAULT_PARENT

    try:
        open_cgroup(record.id, record.host_config.resources.cgroup_parent or DEFAULT_PARENT).remove()
    except Exception as err:  # noqa: BLE001 - the remaining steps run all the same
        log.warning("container %s: removing its cgroup: %s", record.short_id, err)
    rootfs = store.dir(record.id).rootfs
    if os.path.ismount(rootfs):
        from engine.syscalls import LinuxSyscalls

        LinuxSyscalls().umount2(str(rootfs), 2)  # MNT_DETACH: busy submounts go with it
    if record.host_config.network not in ("host", "none"):
        from engine.network.container import teardown_container_network

        teardown_container_network(store.root, record.id)


def signal_container(store: ContainerStore, record: ContainerRecord, signum: int) -> None:
    record = refresh(store, record)
    if not st.can_signal(record.status):
        raise ContainerError(f"container {record.name} is not running", f"it is {record.status.value}")
    if signum == signal.SIGKILL:
        from engine.containers.pause import resume_if_paused

        record = resume_if_paused(store, record)  # other signals wait for the unpause, as with Docker
    client = AttachClient(store.dir(record.id))
    try:
        client.signal(signum)
    finally:
        client.close()


def wait(store: ContainerStore, record: ContainerRecord, timeout: float | None = None) -> ContainerRecord:
    """Block until the container has exited and been cleaned up; its final record. A supervisor still
    holding an exited container is waited for: it is still cleaning up (a removal now would be refused)."""
    from engine.containers.startlock import is_lock_free

    record = refresh(store, record)
    if st.is_active(record.status) or (record.status is ContainerStatus.EXITED and not is_lock_free(store, record)):
        try:
            client = AttachClient(store.dir(record.id))
        except ContainerError:
            return refresh(store, store.get(record.id))
        try:
            client.wait_closed(timeout)
        finally:
            client.close()
    try:
        return refresh(store, store.get(record.id))
    except ContainerError:
        return record  # removed by --rm


def stop(store: ContainerStore, record: ContainerRecord, timeout: float = 10.0,
         signum: int = signal.SIGTERM) -> ContainerRecord:
    """SIGTERM, up to `timeout` seconds of grace, then SIGKILL; the final record."""
    record = refresh(store, record)
    if not st.is_active(record.status):
        return record
    if record.status is ContainerStatus.PAUSED:
        from engine.containers.pause import resume_if_paused

        record = resume_if_paused(store, record)  # a frozen process would not see the signal
    try:
        client = AttachClient(store.dir(record.id))
    except ContainerError:
        return refresh(store, store.get(record.id))
    try:
        client.signal(signum)
        if not client.wait_closed(timeout):
            client.signal(signal.SIGKILL)
            client.wait_closed()
    finally:
        client.close()
    try:
        return store.get(record.id)
    except ContainerError:
        return record


def remove(store: ContainerStore, record: ContainerRecord, force: bool = False, volumes: bool = False) -> None:
    """Remove a container: refused while running unless `force`, which kills it first."""
    record = refresh(store, record)
    if record.status is ContainerStatus.REMOVING:
        from engine.containers.removal import finish_removal

        finish_removal(store, record, volumes)
        return
    if not st.can_remove(record.status, force):
        raise ContainerError(f"container {record.name} is {record.status.value}",
                             "stop it first, or use 'rade rm -f'")
    if st.is_active(record.status):
        record = stop(store, record, timeout=0, signum=signal.SIGKILL)
        if record.status is not ContainerStatus.EXITED:
            return  # removed by its own --rm
    elif is_being_started(store, record):
        if record.status is ContainerStatus.EXITED:
            # Its supervisor is still cleaning up (`start -a` has returned): a moment, not a refusal.
            wait(store, record, timeout=10.0)
            try:
                record = store.get(record.id)
            except ContainerError:
                return  # removed by its own --rm
        if is_being_started(store, record):
            raise ContainerError(f"container {record.name} is being started", "try again in a moment")
    remove_stopped(store, record, volumes)


def is_being_started(store: ContainerStore, record: ContainerRecord) -> bool:
    """Whether a supervisor holds the container's lock although the record does not say running yet."""
    from engine.containers.startlock import is_lock_free

    return not is_lock_free(store, record)


def remove_stopped(store: ContainerStore, record: ContainerRecord, volumes: bool,
                   purge: bool = True) -> Path | None:
    """Delete a stopped container's directory, and with `volumes` its anonymous volumes. Without `purge`
    the container is only taken out of the store (gone, its name free); the caller deletes its files
    later with `store.purge(path)`, `path` being what this returns."""
    store.update(record.id, lambda r: r.moved(ContainerStatus.REMOVING))
    try:
        retired = store.retire(record.id)
    except ContainerError:
        store.update(record.id, lambda r: r.moved(ContainerStatus.EXITED))
        raise
    if volumes:
        _remove_anonymous_volumes(store, record)
    if not purge:
        return retired
    store.purge(retired)
    return None


def retire_exited(store: ContainerStore, record: ContainerRecord, volumes: bool) -> tuple[Path, int]:
    """Take an exited container out of the store in one rename, without writing its record again (a
    caller removing many, the node agent, saves a write per container): the container's supervisor lock
    is taken instead of the `removing` mark, so no supervisor can start it meanwhile. `record` is the
    caller's fresh one (`refresh`); ContainerError if it is active or a supervisor holds the lock.
    Returns the retired directory and the lock's descriptor, still held: the caller deletes the files
    (`store.purge`), then closes the descriptor, so that a `create` meanwhile leaves them alone."""
    from engine.filelock import try_lock

    fd = try_lock(store.dir(record.id).path / "supervisor.lock")
    if fd is None:
        raise ContainerError(f"container {record.name} is being started", "try again in a moment")
    try:
        if st.is_active(record.status):
            raise ContainerError(f"container {record.name} is {record.status.value}", "stop it first")
        retired = store.retire(record.id)
    except BaseException:
        os.close(fd)
        raise
    if volumes:
        _remove_anonymous_volumes(store, record)
    return retired, fd


def _remove_anonymous_volumes(store: ContainerStore, record: ContainerRecord) -> None:
    vstore = VolumeStore(store.root)
    for mount in record.host_config.volumes:
        anonymous = mount.kind == "volume" and len(mount.name) == 64
        if anonymous and vstore.exists(mount.name) and not volume_users(store, mount.name):
            vstore.remove(mount.name)


def volume_users(store: ContainerStore, name: str) -> list[str]:
    return [r.name for r in store.all() if any(v.name == name for v in r.host_config.volumes)]
