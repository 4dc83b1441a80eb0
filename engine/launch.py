"""The container launch: one ordered list of named steps from fork to exec.

The seam other parts call:

    launch(config: LaunchConfig, sys: Syscalls = LINUX) -> ContainerProcess
        returns once the command is exec'ed inside the container, or raises LaunchError (125),
        CommandNotFound (127), CommandNotExecutable (126) or CgroupError; nothing is left behind then.
    ContainerProcess (engine.container_process): .pid (host pid of the container's PID 1), .cgroup (a
        CgroupDriver), .wait() -> exit status (128+N for a signal), .poll(), .kill(sig), .stats(),
        .oom_killed(), .cleanup() (kills what is left and removes the cgroup; safe twice and after a
        failed launch)
    LaunchConfig, Mount (engine.launch_config) and Limits (engine.cgroups) are re-exported here.

How it runs (as crun does it): the parent precomputes everything (capability mask, seccomp BPF, /etc
file contents) so the child only makes syscalls. It unshares a PID namespace for its next child only
(and, for --network none, a network namespace with lo up), forks (so the child is PID 1 of the new
namespace), and returns to its own namespaces. The cgroup is made and its limits written before the
fork; with v1 the child then joins it by itself (writing "0" to each hierarchy's `tasks`, the one move
that does not wait for an RCU grace period), with v2 it is born in it (clone3's CLONE_INTO_CGROUP,
engine.clone3; moved by pid where the kernel cannot). The child waits on a sync pipe before it starts
the command, so nothing the container runs escapes the cgroup. A CLOEXEC error pipe carries any failure
of the child or of the exec back as a structured error; end-of-file on it means the command was exec'ed.

Without root the same steps run inside a user namespace (engine.userns): no cgroup, devices bound from
the host instead of made, and `pid` is the small process holding the namespace, which forwards signals.

Fork happens before any thread: callers must not run threads in the launching process.
"""

from __future__ import annotations

import fcntl
import os
import signal
from dataclasses import dataclass

from engine import capabilities, child_errors, init, rootfs
from engine import seccomp as seccomp_filter
from engine.cgroups import Limits, NoCgroup, container_view, join_through, open_cgroup
from engine.clone3 import fork_in
from engine.container_process import ContainerProcess
from engine.errors import CgroupError, LaunchError
from engine.launch_config import NETWORK_HOST, NETWORK_NONE, LaunchConfig, Mount
from engine.syscalls import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUTS,
    LINUX,
    PR_SET_NO_NEW_PRIVS,
    Syscalls,
    bring_up_loopback,
)
from engine.userns import fork_in_user_namespace

__all__ = ["STEPS", "ContainerProcess", "LaunchConfig", "Limits", "Mount", "launch"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(slots=True)
class Plan:
    """What the parent works out before fork, so the child does no parsing or library work."""

    config: LaunchConfig
    sys: Syscalls
    hostname: str
    env: dict[str, str]
    cap_mask: int
    last_cap: int
    program: seccomp_filter.Program | None
    etc: dict[str, str]
    rootless: bool
    cgroup_view: tuple[tuple[str, str], ...]
    netns_fd: int | None
    console: str | None
    sync_fd: int
    err_fd: int
    join_fds: tuple[int, ...] = ()  # the cgroup's files the child joins it by (CgroupDriver.self_join_files)


def _join_network(p: Plan) -> None:
    # First: the netns file was opened on the host; joining it before unsharing anything keeps the
    # namespace the network engineer built (veth, addresses) as the container's.
    if p.netns_fd is not None:
        p.sys.setns(p.netns_fd, CLONE_NEWNET)
        os.close(p.netns_fd)


def _unshare(p: Plan) -> None:
    # One call for all of them. The parent made the PID namespace (and the network one, as root).
    flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC
    if p.config.network == NETWORK_NONE and p.rootless:
        flags |= CLONE_NEWNET  # owned by the container's user namespace, so made inside it
    p.sys.unshare(flags)


def _private(p: Plan) -> None:
    # Before any mount: with shared propagation, our mounts would appear in the host's table.
    rootfs.make_private(p.sys)


def _overlay(p: Plan) -> None:
    rootfs.mount_overlay(p.sys, p.config, p.rootless)


def _proc_sys(p: Plan) -> None:
    # proc after the PID namespace exists (it shows the namespace of the mounter): we are its PID 1.
    rootfs.mount_proc_sys(p.sys, p.config.rootfs_dir, bind_sys=p.rootless and p.config.network != NETWORK_NONE)


def _dev(p: Plan) -> None:
    rootfs.mount_dev(p.sys, p.config.rootfs_dir, p.config.shm_size, p.console, bind_devices=p.rootless)


def _etc(p: Plan) -> None:
    # After /dev: the files are made on its tmpfs.
    rootfs.bind_etc_files(p.sys, p.config.rootfs_dir, p.etc)


def _volumes(p: Plan) -> None:
    # After /dev and /etc, so a volume may cover them (as Docker lets -v /dev/shm:... win).
    rootfs.mount_volumes(p.sys, p.config.rootfs_dir, p.config.mounts, p.config.nosuid)


def _hostname(p: Plan) -> None:
    p.sys.sethostname(p.hostname)


def _loopback(p: Plan) -> None:
    if p.config.network == NETWORK_NONE and p.rootless:
        bring_up_loopback()


def _pivot(p: Plan) -> None:
    # After every mount that needs a host path as its source; before masking, which names the
    # container's own paths.
    rootfs.pivot(p.sys, p.config.rootfs_dir)


def _mask(p: Plan) -> None:
    rootfs.mask_paths(p.sys)


def _read_only(p: Plan) -> None:
    # After everything that writes to the root: mount points above, and a missing workdir.
    if p.config.read_only:
        rootfs.read_only_root(p.sys)


def _join_cgroup(p: Plan) -> None:
    # As late as possible, so a parent moving us by pid overlaps the mounts above; before the command
    # exists, so it starts inside its limits.
    if os.read(p.sync_fd, 1) != b"1":
        os._exit(125)  # the parent failed and reports it itself
    os.close(p.sync_fd)
    join_through(p.join_fds)


def _cgroup_namespace(p: Plan) -> None:
    # After joining the cgroup, so the container sees its own cgroup as the root of the tree.
    p.sys.unshare(CLONE_NEWCGROUP)


def _cgroup_view(p: Plan) -> None:
    # In the new cgroup namespace (the mounts' roots are the container's cgroups); before seccomp.
    rootfs.mount_cgroup_view(p.sys, p.cgroup_view)


def _workdir(p: Plan) -> None:
    # As root with every capability, before the root turns read-only: a missing workdir is made, as
    # Docker does.
    path = p.config.cwd
    if not os.path.isdir(path):
        if os.path.exists(path):
            raise LaunchError("workdir", f"working directory {path} is not a directory")
        try:
            os.makedirs(path, 0o755)
        except OSError as err:
            raise LaunchError("workdir", f"cannot create working directory {path}: {err.strerror}") from None


def _stdio(p: Plan) -> None:
    # Dup first so the three may be any host fds (even 0-2 in another order), then close every other
    # inherited fd: an open host directory would be a way out of the new root.
    c = p.config
    copies = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in (c.stdin, c.stdout, c.stderr)]
    for target, fd in enumerate(copies):
        os.dup2(fd, target)
    os.dup2(p.err_fd, 3, inheritable=False)
    p.err_fd = 3
    os.closerange(4, 1 << 20)
    os.setsid()


def _no_new_privs(p: Plan) -> None:
    # Before the uid switch and seccomp: the filter needs it (we will lack CAP_SYS_ADMIN), and setuid
    # binaries in the image then cannot regain what is dropped next.
    if p.config.no_new_privs or p.program is not None:
        p.sys.prctl(PR_SET_NO_NEW_PRIVS, 1)


def _credentials(p: Plan) -> None:
    c = p.config
    capabilities.drop(p.sys, p.cap_mask, c.uid, c.gid, c.groups, p.last_cap, set_groups=not p.rootless)


def _chdir(p: Plan) -> None:
    # As the container's user: a directory it may not enter fails here, with this step's name.
    os.chdir(p.config.cwd)


def _seccomp(p: Plan) -> None:
    # Last: the filter would refuse the mount, unshare and setns calls made above.
    if p.program is not None:
        p.sys.seccomp_filter(p.program.fprog)


STEPS = (
    ("join network namespace", _join_network),
    ("unshare namespaces", _unshare),
    ("make mounts private", _private),
    ("mount overlay root", _overlay),
    ("mount /proc and /sys", _proc_sys),
    ("mount /dev", _dev),
    ("bind /etc/hosts, /etc/hostname, /etc/resolv.conf", _etc),
    ("mount volumes", _volumes),
    ("set hostname", _hostname),
    ("bring up loopback", _loopback),
    ("pivot_root", _pivot),
    ("mask /proc paths", _mask),
    ("workdir", _workdir),
    ("read-only root", _read_only),
    ("join the cgroup", _join_cgroup),
    ("unshare cgroup namespace", _cgroup_namespace),
    ("mount /sys/fs/cgroup", _cgroup_view),
    ("set up stdio", _stdio),
    ("no_new_privs", _no_new_privs),
    ("drop capabilities and switch user", _credentials),
    ("enter workdir", _chdir),
    ("seccomp filter", _seccomp),
)


def _child(p: Plan) -> None:
    """The launch child (PID 1 of the new namespace): every step, then the init loop. Never returns."""
    step = "start"
    try:
        # The caller's Python signal handlers must never run here; init takes signals by sigwaitinfo.
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        for step, run in STEPS:
            run(p)
        init.run(p.config.argv, p.env, p.config.tty, p.err_fd)
    except LaunchError as err:
        child_errors.report_launch_error(p.err_fd, err)
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        child_errors.report(p.err_fd, child_errors.KIND_LAUNCH, step, f"{where}{err.strerror or err}")
    except BaseException as err:  # noqa: BLE001 - the child must never return into the caller's code
        child_errors.report(p.err_fd, child_errors.KIND_LAUNCH, step, f"{type(err).__name__}: {err}")
    os._exit(125)


def _capability_mask(config: LaunchConfig) -> int:
    mask = capabilities.resolve(config.capabilities)
    if not config.seccomp and config.capabilities == "default":
        # The filter is what stops CAP_MKNOD from making the host's disks (there is no device cgroup):
        # without it, the default set goes without CAP_MKNOD. An explicit set is taken as asked.
        mask &= ~(1 << capabilities.CAPABILITIES["MKNOD"])
    return mask


def make_plan(config: LaunchConfig, sys: Syscalls) -> Plan:
    """Everything the child needs, worked out before fork (raises LaunchError for a bad config)."""
    if not config.argv:
        raise LaunchError("configure", "no command to run", "give a command, or use an image with one")
    if not config.lower_dirs:
        raise LaunchError("configure", "no image layers to make the root from")
    if not config.cwd.startswith("/"):
        raise LaunchError("configure", f"working directory '{config.cwd}' is not absolute", "use e.g. -w /work")
    hostname = config.hostname or config.container_id[:12]
    env = dict(config.env)
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("HOSTNAME", hostname)
    rootless = os.geteuid() != 0
    if rootless and (config.uid, config.gid, config.groups) != (0, 0, ()):
        raise LaunchError("configure", "without root, the container's only user is root (mapped to yours)",
                          "drop -u, or run as root to use other users")
    netns_fd = None
    if config.network not in (NETWORK_HOST, NETWORK_NONE):
        try:
            netns_fd = os.open(config.network, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            raise LaunchError("join network namespace", f"{config.network}: {err.strerror}") from None
    console = os.readlink(f"/proc/self/fd/{config.stdin}") if config.tty else None
    return Plan(config=config, sys=sys, hostname=hostname, env=env,
                cap_mask=_capability_mask(config), last_cap=capabilities.last_cap(),
                program=seccomp_filter.program() if config.seccomp else None,
                etc=rootfs.etc_files(config, hostname), rootless=rootless,
                cgroup_view=() if rootless else container_view(config.limits), netns_fd=netns_fd,
                console=console, sync_fd=-1, err_fd=-1)


def launch(config: LaunchConfig, sys: Syscalls = LINUX) -> ContainerProcess:
    """Start the container's command; see the module docstring."""
    plan = make_plan(config, sys)
    sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    plan.sync_fd, plan.err_fd = sync_r, err_w
    cgroup = NoCgroup(config.container_id) if plan.rootless else open_cgroup(config.container_id,
                                                                              config.cgroup_parent)
    join_fds: tuple[int, ...] | None = ()
    born_inside = False
    try:
        try:
            cgroup.create()
            cgroup.apply(config.limits)
            join_fds = cgroup.self_join_files()
            plan.join_fds = join_fds or ()
            if plan.rootless:
                pid = fork_in_user_namespace(sys, err_w)
            else:
                into = cgroup.directory_fd() if join_fds is None else None
                try:
                    pid, born_inside = _fork_into_new_namespaces(sys, config.network == NETWORK_NONE, into)
                finally:
                    if into is not None:
                        os.close(into)  # in the child too: it needs it no more
        except BaseException:
            cgroup.remove()  # nothing runs in it yet
            raise
        if pid == 0:
            os.close(sync_w)
            os.close(err_r)
            _child(plan)
        os.close(sync_r)
        os.close(err_w)
        sync_r = err_w = -1
        _close_all(plan.join_fds)
        plan.join_fds = ()
        process = ContainerProcess(pid, cgroup)
        cgroup_error = None
        try:
            if join_fds is None and not born_inside:
                cgroup.add(pid)
            os.write(sync_w, b"1")
        except CgroupError as err:
            cgroup_error = err
        except BrokenPipeError:
            pass  # the child failed before waiting for us: its report is on the error pipe
        # Closing our end lets a child still waiting for the cgroup exit (it reads end-of-file).
        os.close(sync_w)
        sync_w = -1
        failure = child_errors.read_all(err_r)
        if failure or cgroup_error:
            process.cleanup()
            # A step that failed first explains a cgroup error that follows (a pid gone before it joined).
            raise child_errors.error_from(failure) if failure else cgroup_error
        return process
    finally:
        _close_all((sync_r, sync_w, err_r, err_w, plan.netns_fd, *plan.join_fds))


def _close_all(fds: tuple[int | None, ...]) -> None:
    for fd in fds:
        if fd is not None and fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


def _fork_into_new_namespaces(sys: Syscalls, new_network: bool, cgroup_fd: int | None = None) -> tuple[int, bool]:
    """fork() with the child as PID 1 of a new PID namespace (and in a new network namespace with its
    loopback up, when asked); the caller's own namespaces are as they were when this returns. With
    `cgroup_fd` (a v2 cgroup's directory) the child is born in that cgroup where the kernel can (clone3);
    returns (pid, whether it was).

    The network namespace is made here rather than in the child: bringing `lo` up from PID 1 of a new
    PID namespace costs milliseconds more than from here, for reasons inside the kernel."""
    own_pid = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    own_net = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC) if new_network else -1
    moved_net = False
    try:
        try:
            if new_network:
                sys.unshare(CLONE_NEWNET)
                moved_net = True
                bring_up_loopback()
            sys.unshare(CLONE_NEWPID)
        except OSError as err:
            if moved_net:
                sys.setns(own_net, CLONE_NEWNET)
            raise LaunchError("unshare namespaces", err.strerror or str(err),
                              "containers need root (CAP_SYS_ADMIN) on this host") from None
        born_inside = False
        try:
            pid, born_inside = fork_in(cgroup_fd)
        except OSError as err:
            pid = -1
            raise LaunchError("fork", err.strerror or str(err)) from None
        finally:
            if pid != 0:
                # unshare(CLONE_NEWPID) only moved our future children, unshare(CLONE_NEWNET) us:
                # both go back.
                sys.setns(own_pid, CLONE_NEWPID)
                if moved_net:
                    sys.setns(own_net, CLONE_NEWNET)
        return pid, born_inside
    finally:
        os.close(own_pid)
        if own_net >= 0:
            os.close(own_net)
