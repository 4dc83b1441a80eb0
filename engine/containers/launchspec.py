"""From a container record to the launch's `LaunchConfig`: image layers, overlay dirs, user, volumes,
limits, network namespace and the generated /etc files.

Pure translation plus two lookups on disk (the image's layer dirs, the image's /etc/passwd for `-u NAME`);
the supervisor calls it right before `launch()`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from engine.containers.record import ContainerRecord
from engine.containers.store import ContainerDir
from engine.errors import ContainerError

# Inside every container these exist as mount points made by the launch, not as changes of the user.
LAUNCH_MOUNTPOINTS = frozenset({"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev", "/proc", "/sys",
                                "/dev/shm", "/dev/pts", "/dev/mqueue", "/run", "/tmp"})


def image_layers(root: str | os.PathLike[str], image_id: str) -> list[Path]:
    """The image's layer directories, top first; none for `scratch`."""
    if not image_id:
        return []
    from engine.images.store import ImageStore

    image = ImageStore(root).resolve(image_id)
    return [Path(p) for p in image.layer_dirs()]


def _passwd_lookup(layers: Sequence[Path], filename: str, name: str) -> list[str] | None:
    for layer in layers:
        path = layer / "etc" / filename
        if os.path.lexists(path) and not os.path.islink(path):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                return None
            for line in text.splitlines():
                fields = line.split(":")
                if fields and fields[0] == name:
                    return fields
            return None
    return None


def resolve_user(spec: str, layers: Sequence[Path]) -> tuple[int, int]:
    """(uid, gid) for `-u` as Docker reads it: `UID`, `UID:GID`, `NAME`, `NAME:GROUP` (names from the
    image's /etc/passwd and /etc/group)."""
    if not spec:
        return 0, 0
    user, _, group = spec.partition(":")
    if user.isdigit():
        uid, gid = int(user), 0
        fields = None
    else:
        fields = _passwd_lookup(layers, "passwd", user)
        if fields is None or len(fields) < 4:
            raise ContainerError(f"-u {spec}: no user {user!r} in the image's /etc/passwd",
                                 "give a numeric UID[:GID]")
        uid, gid = int(fields[2]), int(fields[3])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            gfields = _passwd_lookup(layers, "group", group)
            if gfields is None or len(gfields) < 3:
                raise ContainerError(f"-u {spec}: no group {group!r} in the image's /etc/group",
                                     "give a numeric GID")
            gid = int(gfields[2])
    return uid, gid


def env_mapping(env: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def default_hostname(record: ContainerRecord) -> str:
    """The given --hostname; else, as Docker, the host's own name on the host network, the short id otherwise."""
    if record.config.hostname:
        return record.config.hostname
    return os.uname().nodename if record.host_config.network == "host" else record.id[:12]


def mountpoints(record: ContainerRecord) -> frozenset[str]:
    """Every path the launch mounts something on, for diff and commit to leave out."""
    return LAUNCH_MOUNTPOINTS | {v.destination for v in record.host_config.volumes}


def build(record: ContainerRecord, cdir: ContainerDir, layers: Sequence[Path], network: str,
          hosts: str | None, stdio: tuple[int, int, int]):
    """The LaunchConfig for this record; `network` is "host" or a namespace file to join."""
    from engine.cgroups.driver import DEFAULT_PARENT, Limits
    from engine.launch_config import DEFAULT_SHM_SIZE, LaunchConfig, Mount

    cfg, host = record.config, record.host_config
    res = host.resources
    if not cfg.argv:
        raise ContainerError(f"container {record.name}: no command given and the image has none",
                             "give a command after the image name")
    uid, gid = resolve_user(cfg.user, layers)
    limits = Limits(cpus=res.cpus, cpu_shares=res.cpu_shares, cpuset_cpus=res.cpuset_cpus,
                    cpuset_mems=res.cpuset_mems, memory=res.memory, memory_swap=res.memory_swap,
                    pids=res.pids_limit)
    mounts = tuple(Mount(v.source, v.destination, v.read_only) for v in host.volumes)
    return LaunchConfig(
        container_id=record.id,
        lower_dirs=tuple(str(p) for p in layers),
        upper_dir=str(cdir.upper),
        work_dir=str(cdir.work),
        rootfs_dir=str(cdir.rootfs),
        argv=cfg.argv,
        env=env_mapping(cfg.env),
        cwd=cfg.workdir or "/",
        uid=uid,
        gid=gid,
        hostname=default_hostname(record),
        network=network,
        mounts=mounts,
        read_only=host.read_only,
        capabilities="default" if host.default_capabilities else frozenset(),
        nosuid=host.nosuid,
        shm_size=host.shm_size or DEFAULT_SHM_SIZE,
        limits=limits,
        cgroup_parent=res.cgroup_parent or DEFAULT_PARENT,
        stdin=stdio[0],
        stdout=stdio[1],
        stderr=stdio[2],
        tty=cfg.tty,
        hosts=hosts,
        state_dir=str(cdir.path),
    )
