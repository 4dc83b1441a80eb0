"""The agent's launcher: a child forked before the agent starts any thread, that starts containers'
supervisors by forking itself, with the engine already imported.

The agent has threads (ZeroMQ's), so it must not fork and run Python code in the child; the engine's
threaded path (`spawn_exec`) starts a fresh interpreter per container instead, which costs a few hundred
milliseconds a task. The launcher has no threads: asked over a socket pair with a container id, it
calls the engine's `lifecycle.start`, which forks a supervisor from the launcher's warm image,
and passes back the end of the supervisor's ready pipe (SCM_RIGHTS). The agent reads the start report
from that pipe in its poller as before. The launcher exits when the agent's end of the socket closes.
"""

from __future__ import annotations

import logging
import os
import signal
import socket

from engine.errors import ContainerError
from jobs.errors import RadeError

log = logging.getLogger(__name__)


class Launcher:
    """The agent's handle on its launcher process."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.sock: socket.socket | None = None
        self.pid = 0

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

    def spawn(self, container_id: str):
        """Start the container's supervisor; its ready pipe's reader. ContainerError if it cannot start."""
        from engine.containers.spawn import ReadyReader

        if self.sock is None:
            raise ContainerError("the agent's launcher is not running")
        try:
            self.sock.sendall(container_id.encode())
            message, fds, _, _ = socket.recv_fds(self.sock, 65536, 1)
        except OSError as err:
            self.close()
            raise ContainerError(f"the agent's launcher is gone: {err}") from None
        if fds:
            return ReadyReader(fds[0])
        if not message:
            self.close()
            raise ContainerError("the agent's launcher exited")
        text = message.decode(errors="replace")
        raise ContainerError(text.partition("\n")[0], text.partition("\n")[2] or None)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
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
            request = sock.recv(256)
        except ConnectionResetError:
            return  # the agent was killed: its end went without a goodbye, which is the same end
        if not request:
            return
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
