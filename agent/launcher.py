"""The agent's launcher: a child forked before the agent starts any thread, that starts containers'
supervisors by forking itself, with the engine already imported.

The agent has threads (ZeroMQ's), so it must not fork and run Python code in the child; the engine's
threaded path (`spawn_exec`) starts a fresh interpreter per container instead, which costs a few hundred
milliseconds a task. The launcher has no threads: asked over a socket pair with a container id, it
calls the engine's `lifecycle.start`, which forks a supervisor from the launcher's warm image,
and passes back the end of the supervisor's ready pipe (SCM_RIGHTS). The agent never waits for it: the
requests go out as orders come, the replies come back in the same order on the socket, which the
agent's poller watches, and the agent reads each start report from its pipe in that poller too, so a
fork (milliseconds on a loaded host) holds up no other task's start or end. The launcher also deletes
ended tasks' containers and slices for the agent (`purge`): done in the agent, on a thread, that work
would take the interpreter's lock from the agent's loop for milliseconds at each of its system calls.
The launcher exits when the agent's end of the socket closes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from pathlib import Path
from typing import Any

from engine.errors import ContainerError
from jobs.errors import RadeError

log = logging.getLogger(__name__)

PURGE = b"purge\0"  # a request to delete a retired container (a start request is a container id)


class Launcher:
    """The agent's handle on its launcher process."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.sock: socket.socket | None = None
        self.pid = 0
        self.pending = 0  # requests sent and not answered yet

    def start(self) -> None:
        """Fork the launcher; call before anything in this process starts a thread."""
        # Imported here, before the fork, so every supervisor forked later has them loaded already.
        import engine.containers.lifecycle
        import engine.containers.supervisor
        import engine.images.store  # the supervisor finds the image's layers through it
        import engine.launch  # noqa: F401

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                ours.close()
                _serve(theirs, self.root)
            except BaseException:
                log.exception("the launcher failed")
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        ours.set_inheritable(False)
        self.sock, self.pid = ours, pid

    def fileno(self) -> int:
        """The descriptor that is readable when replies are in (`replies`)."""
        assert self.sock is not None
        return self.sock.fileno()

    def request(self, container_id: str) -> None:
        """Ask for the container's supervisor to be started; the reply comes through `replies`, in the
        order of the requests. ContainerError if the launcher is gone."""
        if self.sock is None:
            raise ContainerError("the agent's launcher is not running")
        try:
            self.sock.send(container_id.encode())
        except OSError as err:
            self.close()
            raise ContainerError(f"the agent's launcher is gone: {err}") from None
        self.pending += 1

    def replies(self) -> list[Any]:
        """The replies in now, oldest request first, without waiting: for each, the ready pipe's reader
        of the supervisor started, or the ContainerError that kept it from starting. When the launcher
        has gone, every request still unanswered gets an error and the launcher is closed."""
        from engine.containers.spawn import ReadyReader

        out: list[Any] = []
        while self.sock is not None and self.pending:
            try:
                message, fds, _, _ = socket.recv_fds(self.sock, 65536, 1, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError:
                message, fds = b"", []
            if fds:
                self.pending -= 1
                out.append(ReadyReader(fds[0]))
            elif message:
                self.pending -= 1
                text = message.decode(errors="replace")
                out.append(ContainerError(text.partition("\n")[0], text.partition("\n")[2] or None))
            else:
                out += [ContainerError("the agent's launcher exited")] * self.pending
                self.close()
        return out

    def purge(self, path: Path, lock_fd: int, slice_name: str, task_file: Path) -> bool:
        """Have the launcher delete a retired container's files, holding `lock_fd` (its supervisor lock:
        the caller may close its own copy) until they are gone, then remove the task's cgroup slice, then
        its task file. No reply comes. False if the launcher is gone: the caller does it itself."""
        if self.sock is None:
            return False
        fields = [os.fsencode(path), slice_name.encode(), os.fsencode(task_file)]
        try:
            socket.send_fds(self.sock, [PURGE + b"\0".join(fields)], [lock_fd])
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            self.pending = 0
        if self.pid:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = 0


def _serve(sock: socket.socket, root: str) -> None:
    from engine.containers import lifecycle
    from engine.containers.store import ContainerStore

    # Signals meant for the agent (a terminal's Ctrl-C) are not the launcher's: it ends with the agent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Supervisors stay the launcher's children (forked once, not waited for): the kernel reaps them.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    store = ContainerStore(root)
    while True:
        try:
            request, fds, _, _ = socket.recv_fds(sock, 4096, 1)
        except ConnectionResetError:
            return  # the agent was killed: its end went without a goodbye, which is the same end
        if not request:
            return
        if request.startswith(PURGE):
            _purge(store, request[len(PURGE):], fds)
            continue
        try:
            reader = lifecycle.start(store, store.get(request.decode()), fork_once=True)
        except RadeError as err:
            sock.send(f"{err.message}\n{err.hint or ''}".encode())
            continue
        except Exception as err:  # noqa: BLE001 - reported to the agent, the launcher keeps serving
            sock.send(f"{type(err).__name__}: {err}\n".encode())
            continue
        try:
            socket.send_fds(sock, [b"ok"], [reader.file.fileno()])
        finally:
            reader.close()


def _purge(store: Any, request: bytes, fds: list[int]) -> None:
    """Delete a retired container's files, let go of its lock, remove its task's slice and its task
file (`Launcher.purge`)."""
    from agent.slices import remove_slice

    path, slice_name, task_file = request.split(b"\0")
    try:
        store.purge(Path(os.fsdecode(path)))
    finally:
        for fd in fds:
            os.close(fd)
    try:
        remove_slice(slice_name.decode())
    except (RadeError, OSError) as err:
        log.warning("removing the cgroup slice %s: %s", slice_name.decode(errors="replace"), err)
    # Last: until it goes, a restarted agent reports this task's end again (which the scheduler drops).
    with contextlib.suppress(FileNotFoundError):
        os.unlink(task_file)
