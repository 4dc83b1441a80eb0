"""The container's filesystem: the overlay root and everything mounted into it, then pivot_root.

Each function is one step of the launch (`engine.launch` calls them in order, in the child, inside its
new mount namespace) and goes through the `Syscalls` seam, so a recording fake can check the order of
mounts without root. Mount points missing from the image are made in the overlay (so they show in the
upper dir, as with Docker). Paths inside the image are resolved with `resolve_in_root`, so a symlink in
an image cannot aim a volume or a generated file at a host path.

All mounts happen in the container's own mount namespace: the host's mount table never changes, and the
mounts vanish with the namespace, so there is nothing to unmount on the host afterwards.
"""

from __future__ import annotations

import os
import stat

from engine.errors import LaunchError
from engine.launch_config import NETWORK_HOST, LaunchConfig, Mount
from engine.syscalls import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SLAVE,
    Syscalls,
)

# (name, mode, major, minor): the devices every container gets, as OCI's default set.
DEVICES = (("null", 0o666, 1, 3), ("zero", 0o666, 1, 5), ("full", 0o666, 1, 7), ("random", 0o666, 1, 8),
           ("urandom", 0o666, 1, 9), ("tty", 0o666, 5, 0))
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
             ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"), ("core", "/proc/kcore"))
# Host information and kernel knobs a container must not read (files get /dev/null, dirs an empty tmpfs).
MASKED_FILES = ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats",
                "/proc/timer_stats")
MASKED_DIRS = ("/proc/acpi", "/proc/scsi", "/proc/asound", "/sys/firmware", "/sys/devices/virtual/powercap")
READ_ONLY_PATHS = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs")

# statvfs's ST_NOSUID, ST_NODEV, ST_NOEXEC, ST_NOATIME, ST_NODIRATIME share MS_'s values; ST_RELATIME does not.
_KEPT_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC | os.ST_NOATIME | os.ST_NODIRATIME
_MS_RELATIME = 1 << 21

_DEFAULT_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def resolve_in_root(root: str, path: str) -> str:
    """The host path of `path` inside `root`, following the image's symlinks as if `root` were `/`."""
    parts = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            target = os.readlink(candidate)
        except OSError:
            resolved.append(part)
            continue
        hops += 1
        if hops > 40:
            raise LaunchError("resolve path", f"too many symlinks resolving {path} in the image")
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p and p != "."] + parts
    return os.path.join(root, *resolved)


def _ensure(path: str, is_dir: bool) -> None:
    """Make a mount point (a directory, or an empty file to bind a file onto) if the image lacks it."""
    if is_dir:
        os.makedirs(path, exist_ok=True)
    elif not os.path.lexists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))


def make_private(sys: Syscalls) -> None:
    sys.mount(None, "/", None, MS_REC | MS_PRIVATE)


def mount_overlay(sys: Syscalls, config: LaunchConfig, rootless: bool = False) -> None:
    for layer in (*config.lower_dirs, config.upper_dir, config.work_dir):
        if ":" in layer or "," in layer:
            raise LaunchError("mount overlay root", f"layer path {layer!r} contains ':' or ','",
                              "keep image and container state under a plain path")
    os.makedirs(config.upper_dir, exist_ok=True)
    os.makedirs(config.work_dir, exist_ok=True)
    os.makedirs(config.rootfs_dir, exist_ok=True)
    data = (f"lowerdir={':'.join(config.lower_dirs)},upperdir={config.upper_dir},"
            f"workdir={config.work_dir}")
    if rootless:
        data += ",userxattr"  # trusted.* xattrs (whiteouts, opaque dirs) need real root; user.* do not
    if len(data) >= 4096:
        raise LaunchError("mount overlay root", f"{len(config.lower_dirs)} layers make overlay options longer "
                          "than the kernel's page (4096 bytes)", "keep the image store under a shorter path")
    # nosuid, nodev: a setuid binary or a device node in an image must not be a way back to privileges.
    flags = MS_NOSUID | MS_NODEV if config.nosuid else 0
    try:
        sys.mount("overlay", config.rootfs_dir, "overlay", flags, data)
    except OSError:
        # Only now look for the cause, so a good launch pays nothing for the diagnosis.
        missing = [layer for layer in config.lower_dirs if not os.path.isdir(layer)]
        if missing:
            raise LaunchError("mount overlay root", f"image layer {missing[0]} is missing",
                              "the image store is damaged: pull or load the image again") from None
        raise


def mount_proc_sys(sys: Syscalls, root: str, bind_sys: bool = False) -> None:
    """proc for the new PID namespace; sysfs read-only. `bind_sys` when the kernel refuses a new sysfs
    (a user namespace that does not own the network namespace): the host's, bound read-only."""
    _ensure(root + "/proc", True)
    sys.mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _ensure(root + "/sys", True)
    if bind_sys:
        sys.mount("/sys", root + "/sys", None, MS_BIND | MS_REC)
        remount_read_only(sys, root + "/sys")
    else:
        sys.mount("sysfs", root + "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY)


def remount_read_only(sys: Syscalls, path: str, extra: int = 0) -> None:
    """Make a bind mount read-only. A bind ignores MS_RDONLY on creation, so it takes a remount, which
    must repeat the flags the mount already has: in a user namespace those are locked, and dropping
    one (nosuid, nodev, noexec, the atime flags) is refused."""
    flags = os.statvfs(path).f_flag
    kept = (flags & _KEPT_FLAGS) | (_MS_RELATIME if flags & os.ST_RELATIME else 0)
    sys.mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | kept | extra)


def mount_dev(sys: Syscalls, root: str, shm_size: int, console: str | None, bind_devices: bool = False) -> None:
    """A tmpfs /dev with the default devices, pts, shm, mqueue (and console for a tty). `bind_devices`
    in a user namespace, where mknod is refused: the host's nodes are bound onto empty files instead."""
    dev = root + "/dev"
    _ensure(dev, True)
    sys.mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=755,size=65536k")
    mask = os.umask(0)  # one call instead of a chmod per node: mknod's mode is filtered by the umask
    try:
        for name, mode, major, minor in DEVICES:
            if bind_devices:
                os.close(os.open(f"{dev}/{name}", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, mode))
                sys.mount(f"/dev/{name}", f"{dev}/{name}", None, MS_BIND)
            else:
                sys.mknod(f"{dev}/{name}", stat.S_IFCHR | mode, os.makedev(major, minor))
    finally:
        os.umask(mask)
    for name, target in DEV_LINKS:
        os.symlink(target, f"{dev}/{name}")
    for sub in ("pts", "shm", "mqueue"):
        os.mkdir(f"{dev}/{sub}")
    sys.mount("devpts", dev + "/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")
    sys.mount("shm", dev + "/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode=1777,size={shm_size}")
    sys.mount("mqueue", dev + "/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if console is not None:
        _ensure(dev + "/console", False)
        sys.mount(console, dev + "/console", None, MS_BIND)


def etc_files(config: LaunchConfig, hostname: str) -> dict[str, str]:
    """The contents of /etc/hosts, /etc/hostname and /etc/resolv.conf for this container."""
    hosts = config.hosts
    if hosts is None:
        if config.network == NETWORK_HOST:
            hosts = _read("/etc/hosts", _DEFAULT_HOSTS)
        else:
            hosts = f"{_DEFAULT_HOSTS}127.0.1.1\t{hostname}\n"
    resolv = config.resolv_conf if config.resolv_conf is not None else _read("/etc/resolv.conf", "")
    files = {"hosts": hosts, "hostname": hostname + "\n", "resolv.conf": resolv}
    # A volume at one of these paths wins, as in Docker: nothing may be mounted over the generated file
    # anyway, since its source is unlinked once bound (the kernel refuses a mount on an unlinked file).
    covered = {os.path.normpath(m.target) for m in config.mounts}
    return {name: text for name, text in files.items() if f"/etc/{name}" not in covered}


def _read(path: str, default: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def bind_etc_files(sys: Syscalls, root: str, files: dict[str, str]) -> None:
    """Bind /etc/hosts, /etc/hostname and /etc/resolv.conf from files made on the container's /dev tmpfs.

    Written on tmpfs rather than the host's disk: creating three files on a journaled disk costs about
    2 ms here, on tmpfs 50 µs. Each source is unlinked once bound (the mount keeps it alive), so nothing
    shows in /dev; the files live as long as the container's mount namespace.
    """
    for name, content in files.items():
        source = f"{root}/dev/.rade-{name}"
        fd = os.open(source, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, content.encode())
        finally:
            os.close(fd)
        target = resolve_in_root(root, "/etc/" + name)
        _ensure(target, False)
        sys.mount(source, target, None, MS_BIND)
        os.unlink(source)


def mount_volumes(sys: Syscalls, root: str, mounts: tuple[Mount, ...], nosuid: bool = False) -> None:
    """Each volume at its target; `nosuid` makes bind volumes nosuid and nodev too (a bind takes flags
    only on a remount, which must repeat the ones it has)."""
    extra = MS_NOSUID | MS_NODEV if nosuid else 0
    for m in mounts:
        target = resolve_in_root(root, m.target)
        if m.kind == "tmpfs":
            _ensure(target, True)
            sys.mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | (MS_RDONLY if m.read_only else 0),
                      m.options or "mode=1777")
            continue
        if m.kind != "bind":
            raise LaunchError("mount volumes", f"unknown mount kind {m.kind!r} for {m.target}",
                              "use bind or tmpfs")
        try:
            is_dir = stat.S_ISDIR(os.stat(m.source).st_mode)
        except OSError as err:
            raise LaunchError("mount volumes", f"volume source {m.source}: {err.strerror}",
                              "create it on the host first") from None
        _ensure(target, is_dir)
        sys.mount(m.source, target, None, MS_BIND | MS_REC)
        if m.read_only:
            # A bind mount ignores MS_RDONLY on creation: only a remount makes it read-only.
            remount_read_only(sys, target, extra)
        elif extra:
            flags = os.statvfs(target).f_flag
            kept = (flags & _KEPT_FLAGS) | (_MS_RELATIME if flags & os.ST_RELATIME else 0)
            sys.mount(None, target, None, MS_BIND | MS_REMOUNT | kept | extra)


def pivot(sys: Syscalls, root: str) -> None:
    """Make `root` the root and detach the old one, with pivot_root(".", ".") as runc and crun do: no
    put_old directory is needed, so a read-only image works."""
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.chdir(root)
        sys.pivot_root(".", ".")
        os.fchdir(old)
        # Slave, so that detaching the old root does not propagate back to the host.
        sys.mount(None, ".", None, MS_SLAVE | MS_REC)
        sys.umount2(".", MNT_DETACH)
    finally:
        os.close(old)
    os.chdir("/")


def mask_paths(sys: Syscalls) -> None:
    for path in MASKED_FILES:
        _try_mount(sys, "/dev/null", path, None, MS_BIND)
    for path in MASKED_DIRS:
        _try_mount(sys, "tmpfs", path, "tmpfs", MS_RDONLY, "size=0")
    for path in READ_ONLY_PATHS:
        if _try_mount(sys, path, path, None, MS_BIND | MS_REC):
            try:
                remount_read_only(sys, path, MS_NOSUID | MS_NODEV)
            except FileNotFoundError:
                pass  # gone meanwhile: nothing left to make read-only


def _try_mount(sys: Syscalls, source: str, target: str, fstype: str | None, flags: int,
               data: str | None = None) -> bool:
    """Mount, treating a path this kernel does not have as nothing to mask."""
    try:
        sys.mount(source, target, fstype, flags, data)
    except FileNotFoundError:
        return False
    return True


def mount_cgroup_view(sys: Syscalls, view: tuple[tuple[str, str], ...]) -> None:
    """/sys/fs/cgroup, read-only: the container's own cgroups (`engine.cgroups.container_view`), so that
    runtimes sizing themselves from their limits (JVMs, Go, OpenBLAS thread counts) find them.

    Run inside the container's cgroup namespace, after pivot_root: each hierarchy's root is then the
    container's own cgroup."""
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY
    if view == (("", ""),):
        sys.mount("cgroup2", "/sys/fs/cgroup", "cgroup2", flags)
        return
    if not view:
        return
    sys.mount("tmpfs", "/sys/fs/cgroup", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=64k")
    for name, options in view:
        os.mkdir(f"/sys/fs/cgroup/{name}")
        sys.mount("cgroup", f"/sys/fs/cgroup/{name}", "cgroup", flags, options)
        for controller in options.split(","):
            if controller != name:  # "cpu" and "cpuacct" as links to "cpu,cpuacct", as hosts have them
                os.symlink(name, f"/sys/fs/cgroup/{controller}")
    sys.mount(None, "/sys/fs/cgroup", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def read_only_root(sys: Syscalls) -> None:
    # Keeping the flags the root has (nosuid, nodev for cluster jobs): a remount sets them all anew.
    remount_read_only(sys, "/")
