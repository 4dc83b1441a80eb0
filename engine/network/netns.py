"""Network namespaces bound to files under /run/netns, and running code inside one.

A namespace is made by a short-lived thread that unshares its own network namespace and bind-mounts
`/proc/thread-self/ns/net` onto `/run/netns/NAME` (the place `ip netns` uses, so an admin can inspect it
with the standard tools), then exits: the mount keeps the namespace alive and the calling thread never
changes namespace. Work inside a namespace (a netlink socket, a listening socket) is likewise done by a
thread that enters it with setns(2); a socket keeps the namespace it was made in. No fork happens here,
so these functions are safe in a threaded process such as the container supervisor.

This module does not configure links or addresses: `links` does, through sockets made here.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pyroute2 import IPRoute

from engine.network.errors import NetworkError

NETNS_DIR = Path("/run/netns")
_LOCK = Path("/run/lock/rade-netns.lock")

CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_MS_REC = 16384
_MS_SHARED = 1 << 20
_MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)

T = TypeVar("T")


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, flags: int) -> None:
    _check(_libc.mount(source.encode(), target.encode(), b"none", flags, None), f"mount {target}")


def netns_path(name: str) -> Path:
    """The file that holds network namespace `name` (whether or not it exists)."""
    if not name or "/" in name or name in (".", ".."):
        raise NetworkError(f"invalid network namespace name {name!r}", "use a plain name such as rade-node1")
    return NETNS_DIR / name


def _share_netns_dir() -> None:
    """Make /run/netns a shared mount, as iproute2 does, so that removing a namespace file here also
    removes its copies in mount namespaces made since (otherwise they would keep the namespace alive)."""
    NETNS_DIR.mkdir(parents=True, exist_ok=True)
    if _libc.mount(b"", str(NETNS_DIR).encode(), b"none", _MS_SHARED | _MS_REC, None) == 0:
        return
    # Not a mount point yet: bind it onto itself first, then share it. Under a lock, or two processes
    # doing this at once would stack two mounts.
    _LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(_LOCK, "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if _libc.mount(b"", str(NETNS_DIR).encode(), b"none", _MS_SHARED | _MS_REC, None) == 0:
            return
        _mount(str(NETNS_DIR), str(NETNS_DIR), _MS_BIND | _MS_REC)
        _mount("", str(NETNS_DIR), _MS_SHARED | _MS_REC)


def run_in_thread(body: Callable[[], T], name: str) -> T:
    """Run `body` in a fresh thread and return its result or raise its exception in the caller."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = body()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
            box["error"] = exc

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def enter_netns(path: Path | str) -> None:
    """Move the calling thread into the network namespace held by `path` (in a forked child: the process)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, CLONE_NEWNET), f"setns {path}")
    finally:
        os.close(fd)


def call_in_netns(path: Path | str, body: Callable[[], T]) -> T:
    """Run `body` in a thread inside the namespace at `path`; the caller's own namespace never changes."""

    def inside() -> T:
        enter_netns(path)
        return body()

    return run_in_thread(inside, name=f"netns {path}")


def create_netns(name: str) -> Path:
    """Create network namespace `name` bound at /run/netns/NAME and return that path.

    Raises NetworkError if it already exists; leaves nothing behind if it fails half-way.
    """
    path = netns_path(name)
    try:
        _share_netns_dir()
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    except FileExistsError:
        raise NetworkError(f"network namespace {name} already exists", f"remove {path} first") from None
    except OSError as exc:
        raise NetworkError(f"cannot create network namespace {name}: {exc.strerror or exc}") from exc

    def bind_new_namespace() -> None:
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        _mount("/proc/thread-self/ns/net", str(path), _MS_BIND)

    try:
        run_in_thread(bind_new_namespace, name=f"create netns {name}")
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise NetworkError(f"cannot create network namespace {name}: {exc}") from exc
    return path


def delete_netns(path: Path | str) -> bool:
    """Unmount and remove a namespace file; the namespace goes when its last process leaves.

    Returns False if there was nothing to remove; safe to call twice.
    """
    path = Path(path)
    if _libc.umount2(str(path).encode(), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise NetworkError(f"cannot unmount network namespace {path}: {os.strerror(err)}")
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def netns_exists(path: Path | str) -> bool:
    """True if `path` holds a live network namespace (a bind-mounted nsfs file, not a leftover file)."""
    try:
        return os.stat(path).st_dev != os.stat(Path(path).parent).st_dev
    except FileNotFoundError:
        return False


def route_socket(path: Path | str | None = None) -> IPRoute:
    """An rtnetlink handle (pyroute2 IPRoute) acting in the namespace at `path`, or the caller's if None."""
    if path is None:
        return IPRoute()
    sock = call_in_netns(path, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0))
    return IPRoute(use_socket=sock)
