"""`rade exec`: a process in a running container, through `engine.nsenter` (every namespace and the
cgroup, the container's user, capabilities and seccomp), with this process's stdio or, for `-t`, a new
pty relayed to this terminal. The exec'd process is a child of the caller, which waits for it.
"""

from __future__ import annotations

import os
import select
from dataclasses import replace

from engine.containers import launchspec, status
from engine.containers.record import ContainerRecord
from engine.containers.store import ContainerStore
from engine.errors import ContainerError


def exec_in(store: ContainerStore, record: ContainerRecord, argv: tuple[str, ...], interactive: bool = False,
            tty: bool = False, env: tuple[str, ...] = (), user: str | None = None,
            workdir: str | None = None) -> int:
    """Run `argv` in the container; its exit status."""
    from engine.cgroups import open_cgroup
    from engine.cgroups.driver import DEFAULT_PARENT
    from engine.containers.lifecycle import merge_env, refresh
    from engine.nsenter import enter

    record = refresh(store, record)
    if not status.can_signal(record.status) or not record.pid:
        raise ContainerError(f"container {record.name} is not running", "start it first")
    if record.status is status.ContainerStatus.PAUSED:
        # A process joining a frozen cgroup would freeze at once: refused, as Docker does.
        raise ContainerError(f"container {record.name} is paused", f"unpause it first: 'rade unpause {record.name}'")
    layers = launchspec.image_layers(store.root, record.config.image_id)
    if user is not None:
        record = replace(record, config=replace(record.config, user=user))
    config = launchspec.build(record, store.dir(record.id), layers, "host", None, (0, 1, 2))
    environment = launchspec.env_mapping(merge_env(list(record.config.env), env))
    cgroup = open_cgroup(record.id, record.host_config.resources.cgroup_parent or DEFAULT_PARENT)
    if not tty:
        stdin = 0 if interactive else os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            process = enter(record.pid, cgroup, config, argv, env=environment, cwd=workdir, stdin=stdin)
        finally:
            if stdin != 0:
                os.close(stdin)
        return process.wait()
    return _exec_with_pty(enter, record, cgroup, config, argv, environment, workdir, interactive)


def _exec_with_pty(enter, record, cgroup, config, argv, environment, workdir, interactive: bool) -> int:
    from engine.containers.terminal import raw_terminal, window_size

    master, slave = os.openpty()
    size = window_size(0)
    if size:
        _set_size(master, *size)
    try:
        process = enter(record.pid, cgroup, config, argv, env=environment, cwd=workdir, tty=True,
                        stdin=slave, stdout=slave, stderr=slave)
    finally:
        os.close(slave)
    with raw_terminal(0, lambda rows, cols: _set_size(master, rows, cols)) if interactive and os.isatty(0) \
            else _nothing():
        _relay(master, 0 if interactive else None)
    os.close(master)
    return process.wait()


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _set_size(fd: int, rows: int, cols: int) -> None:
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _relay(master: int, stdin: int | None) -> None:
    """Copy the terminal to the pty and back until the pty closes (the process and its children ended)."""
    watched = [master] + ([stdin] if stdin is not None else [])
    while True:
        ready, _, _ = select.select(watched, [], [])
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""
            if not data:
                return
            os.write(1, data)
        if stdin is not None and stdin in ready:
            data = os.read(stdin, 65536)
            if not data:
                watched.remove(stdin)
                stdin = None
            else:
                os.write(master, data)
