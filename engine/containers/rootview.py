"""Working inside a container's or an image's root filesystem from the host, safely: a forked child
enters the root, chroots into it and runs the work there, so every path it touches, symlinks and `..`
included, resolves inside that root and never reaches the host (as Docker's chrootarchive does; the
openat2 RESOLVE_IN_ROOT guarantee, for a whole tree walk at once).

How the child reaches the root: a running container's through its init's `/proc/PID/root` (the root as
the container sees it, its volumes mounted); a stopped container's or an image's by mounting its layers
(and the container's upper dir and volumes) in a private mount namespace of the child, so nothing is
ever mounted on the host and the mounts vanish with the child, however it ends.

Inside the chroot the child must not import: a module path would resolve in the container, and a file
planted there would run as root on the host. So the work's modules are imported before the fork and the
child's import path is emptied before it enters the root (a stray import then fails, it loads nothing).
The child reports a failure over a pipe as one JSON object; `run_in_root` raises it in the caller.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from engine.errors import ContainerError
from jobs.errors import RadeError


@dataclass(frozen=True, slots=True)
class RootPlan:
    """How to reach a root: `proc_root` (a running container), or layers mounted at `mountpoint`: the
    image's `lower_dirs` (top first) with the container's `upper_dir`/`work_dir` (writable) or without
    (read-only), and the container's `volumes` as (host source, destination, read only)."""

    proc_root: str = ""
    lower_dirs: tuple[str, ...] = ()
    upper_dir: str = ""
    work_dir: str = ""
    mountpoint: str = ""
    volumes: tuple[tuple[str, str, bool], ...] = ()


class RootWorkError(ContainerError):
    """A failure the child reported from inside the root; `broken_pipe` when it was only that the
    caller stopped reading (the caller's own error says why)."""

    broken_pipe = False


def start_in_root(plan: RootPlan, work: Callable[[], None], close_in_child: tuple[int, ...] = ()
                  ) -> tuple[int, int]:
    """Fork a child that enters the root and runs `work()`; (its pid, the read end of its error pipe).
    `close_in_child` are the caller's pipe ends the child must not hold. Finish with `finish_child`."""
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's exit status and report are what the tests see
        code = 0
        try:
            os.close(err_r)
            for fd in close_in_child:
                os.close(fd)
            _enter(plan)
            work()
        except BaseException as err:  # noqa: BLE001 - the child must never return into the caller's code
            _report(err_w, err)
            code = 1
        with contextlib.suppress(Exception):
            sys.stdout.flush()  # what the work printed (a closed stdout changes nothing now)
        os._exit(code)
    os.close(err_w)
    return pid, err_r


def finish_child(pid: int, err_r: int) -> None:
    """Wait for the child; raise what it reported (or a plain error if it died without a report)."""
    chunks = []
    while chunk := os.read(err_r, 65536):
        chunks.append(chunk)
    os.close(err_r)
    _, status = os.waitpid(pid, 0)
    report = b"".join(chunks)
    if report:
        data = json.loads(report)
        err = RootWorkError(data.get("message", "failed"), data.get("hint"))
        err.exit_code = int(data.get("exit_code", 125))
        err.broken_pipe = bool(data.get("broken_pipe"))
        raise err
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RootWorkError(f"the process working in the container's root ended with status {code}")


def _report(fd: int, err: BaseException) -> None:
    if isinstance(err, RadeError):
        data = {"message": err.message, "hint": err.hint, "exit_code": err.exit_code}
    elif isinstance(err, OSError):
        where = f"{err.filename}: " if err.filename else ""
        data = {"message": f"{where}{err.strerror or err}", "hint": None, "exit_code": 125,
                "broken_pipe": isinstance(err, BrokenPipeError)}
    else:
        data = {"message": f"{type(err).__name__}: {err}", "hint": None, "exit_code": 125}
    try:
        os.write(fd, json.dumps(data).encode()[:60000])
    except OSError:
        pass


def _enter(plan: RootPlan) -> None:
    """In the child: reach the root, then chroot into it with imports cut off."""
    if plan.proc_root:
        root = plan.proc_root
    else:
        _mount_layers(plan)
        root = plan.mountpoint
    sys.path[:] = []
    sys.path_importer_cache.clear()
    os.chroot(root)
    os.chdir("/")


def _mount_layers(plan: RootPlan) -> None:
    # Imported here, still outside the root: a copy from a running container does without ctypes.
    from engine import rootfs
    from engine.launch_config import Mount
    from engine.syscalls import CLONE_NEWNS, LINUX, MS_BIND, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT

    LINUX.unshare(CLONE_NEWNS)
    LINUX.mount(None, "/", None, MS_REC | MS_PRIVATE)
    os.makedirs(plan.mountpoint, exist_ok=True)
    if plan.upper_dir:
        data = f"lowerdir={':'.join(plan.lower_dirs)},upperdir={plan.upper_dir},workdir={plan.work_dir}"
        LINUX.mount("overlay", plan.mountpoint, "overlay", 0, data)
    elif len(plan.lower_dirs) == 1:
        # overlayfs wants two lower layers without an upper one: one layer is bound read-only instead.
        LINUX.mount(plan.lower_dirs[0], plan.mountpoint, None, MS_BIND | MS_REC)
        LINUX.mount(None, plan.mountpoint, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    else:
        LINUX.mount("overlay", plan.mountpoint, "overlay", MS_RDONLY, f"lowerdir={':'.join(plan.lower_dirs)}")
    if plan.volumes:
        rootfs.mount_volumes(LINUX, plan.mountpoint, tuple(Mount(s, d, ro) for s, d, ro in plan.volumes))
