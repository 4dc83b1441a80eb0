"""The rsh service loop: the agent's side of `rade-rsh`, starting MPI daemons in the job's container here.

One `selectors` loop over every connection (run by the server process of `agent.rsh_server`): the
handshake of `agent.rsh` (the request must carry a MAC under its job's secret, so a job's containers
reach only their own job's container), then `sh -c COMMAND` in the container of that job's task on this
node, found in the agent's task files, with pipes for stdin, stdout and stderr relayed as frames and the
exit status sent last (a pidfd says when it exited). A connection that drops kills its process (SIGTERM,
SIGKILL after a grace): `mpirun` killing its rsh children is how it stops its remote daemons. The started
process is in the container's cgroup and PID namespace, so it also dies with the job's container.

It also answers `hold` requests: the waiting process of a job's other nodes is told (EXIT 0) once the
daemons started for that job here have all ended, so those tasks end when `mpirun` is done.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import selectors
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from agent import rsh
from agent.state import AgentState
from jobs.errors import RadeError

log = logging.getLogger(__name__)

KILL_GRACE = 5.0
HANDSHAKE_TIMEOUT = 30.0
START_WAIT = 120.0  # how long a start waits for the job's container on this node to run
START_POLL = 0.2


def find_container(root: str, node: str, job_id: int, attempt: int) -> str | None:
    """The container of the job's task on this node (from the agent's task files), or None."""
    files, _ = AgentState(root, node).load_all()
    for task in files:
        if task.job_id == job_id and task.attempt == attempt and task.container_id:
            return task.container_id
    return None


def is_running(root: str, container_id: str) -> bool:
    """Whether the container exists and its process runs (so it can be entered)."""
    from engine.containers import status
    from engine.containers.lifecycle import refresh
    from engine.containers.store import ContainerStore
    from engine.errors import ContainerError

    store = ContainerStore(root)
    try:
        record = refresh(store, store.get(container_id))
    except ContainerError:
        return False
    return status.can_signal(record.status) and bool(record.pid)


def start_in_container(root: str, container_id: str, argv: tuple[str, ...], stdin: int, stdout: int,
                       stderr: int) -> Any:
    """Start `argv` in the running container as `rade exec` would, with the given descriptors."""
    from engine.cgroups import open_cgroup
    from engine.cgroups.driver import DEFAULT_PARENT
    from engine.containers import launchspec, status
    from engine.containers.lifecycle import refresh
    from engine.containers.store import ContainerStore
    from engine.errors import ContainerError
    from engine.nsenter import enter

    store = ContainerStore(root)
    record = refresh(store, store.get(container_id))
    if not status.can_signal(record.status) or not record.pid:
        raise ContainerError(f"container {record.name} is not running")
    layers = launchspec.image_layers(store.root, record.config.image_id)
    config = launchspec.build(record, store.dir(record.id), layers, "host", None, (0, 1, 2))
    cgroup = open_cgroup(record.id, record.host_config.resources.cgroup_parent or DEFAULT_PARENT)
    return enter(record.pid, cgroup, config, argv, env=launchspec.env_mapping(record.config.env),
                 stdin=stdin, stdout=stdout, stderr=stderr)


@dataclass(eq=False)
class Session:
    """One connection: its handshake, then the process it started (or the hold it waits on)."""

    sock: socket.socket
    nonce: bytes
    opened: float
    reader: rsh.FrameReader = field(default_factory=rsh.FrameReader)
    job: tuple[int, int] | None = None
    op: str = ""
    process: Any = None
    pidfd: int = -1
    stdin_w: int = -1
    outputs: dict[int, int] = field(default_factory=dict)  # pipe read end -> frame type
    status: int | None = None
    kill_at: float | None = None
    command: str = ""
    start_by: float | None = None  # while waiting for the job's container to run here


class RshService:
    """The loop's state: sessions, and per job how many daemons were started here and how many run."""

    def __init__(self, root: str, node: str, listener: socket.socket, key: bytes) -> None:
        self.root, self.node, self.key = root, node, key
        self.listener = listener
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, ("accept", None))
        self.sessions: set[Session] = set()
        self.started: dict[tuple[int, int], int] = {}
        self.running: dict[tuple[int, int], int] = {}
        self.holds: dict[tuple[int, int], list[Session]] = {}

    def serve_forever(self, stop: int | None = None) -> None:
        if stop is not None:
            self.selector.register(stop, selectors.EVENT_READ, ("stop", None))
        while True:
            for key, _ in self.selector.select(self._timeout()):
                what, session = key.data
                if what == "stop":
                    return
                if what == "accept":
                    self._accept()
                elif what == "sock":
                    self._on_socket(session)
                elif what == "pidfd":
                    self._on_exit(session)
                else:
                    self._on_output(session, key.fd)
            self._on_timers()

    def _timeout(self) -> float | None:
        dues = [s.kill_at for s in self.sessions if s.kill_at is not None]
        dues += [s.opened + HANDSHAKE_TIMEOUT for s in self.sessions if s.job is None]
        dues += [time.monotonic() + START_POLL for s in self.sessions if s.start_by is not None]
        return max(0.0, min(dues) - time.monotonic()) if dues else None

    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        self._forget_ended_jobs()
        session = Session(sock, secrets.token_bytes(32), time.monotonic())
        sock.settimeout(30.0)  # writes block at most this long on a stuck peer
        try:
            sock.sendall(rsh.encode_frame(rsh.CHALLENGE, session.nonce))
        except OSError:
            sock.close()
            return
        self.sessions.add(session)
        self.selector.register(sock, selectors.EVENT_READ, ("sock", session))

    def _send(self, session: Session, frame: bytes) -> None:
        try:
            session.sock.sendall(frame)
        except OSError:
            self._drop(session)

    def _refuse(self, session: Session, why: str) -> None:
        log.warning("rsh: refused a request: %s", why)
        self._send(session, rsh.encode_frame(rsh.ERROR, why.encode()))
        self._close(session)

    def _on_socket(self, session: Session) -> None:
        try:
            data = session.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop(session)
            return
        try:
            frames = session.reader.feed(data)
        except rsh.RshProtocolError as err:
            self._refuse(session, str(err))
            return
        for kind, payload in frames:
            if session not in self.sessions:
                return
            if session.job is None:
                self._on_hello(session, kind, payload)
            elif kind == rsh.STDIN and session.stdin_w >= 0:
                self._write_stdin(session, payload)

    def _on_hello(self, session: Session, kind: int, payload: bytes) -> None:
        try:
            if kind != rsh.HELLO:
                raise rsh.RshProtocolError("the first frame must be HELLO")
            request, body, mac = rsh.read_hello(payload)
        except rsh.RshProtocolError as err:
            self._refuse(session, str(err))
            return
        job = (request["job"], request["attempt"])
        if not rsh.is_authentic(rsh.job_secret(self.key, *job), session.nonce, body, mac):
            self._refuse(session, f"not authenticated for job {job[0]}")
            return
        session.job, session.op = job, request["op"]
        if session.op == "hold":
            if find_container(self.root, self.node, *job) is None:
                self._refuse(session, f"job {job[0]} runs nothing on node {self.node}")
                return
            self.holds.setdefault(job, []).append(session)
            self._answer_holds(job)
            return
        session.command = request["argv"][0]
        session.start_by = time.monotonic() + START_WAIT
        self._try_start(session)

    def _try_start(self, session: Session) -> None:
        """Start the session's command once the job's container here runs: the orders of a job's nodes
        arrive independently, so `mpirun` may call before this node's container is up. Waits (checked
        again at each turn of the loop) until `start_by`, then refuses."""
        container = find_container(self.root, self.node, *session.job)
        if container is not None and is_running(self.root, container):
            session.start_by = None
            self._start(session, container, session.command)
        elif time.monotonic() >= session.start_by:
            session.start_by = None
            what = "runs nothing" if container is None else "has no running container"
            self._refuse(session, f"job {session.job[0]} {what} on node {self.node}")

    def _start(self, session: Session, container: str, command: str) -> None:
        from engine.errors import ContainerError, LaunchError

        stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            process = start_in_container(self.root, container, ("/bin/sh", "-c", command), stdin_r, out_w,
                                         err_w)
        except (ContainerError, LaunchError, RadeError) as err:
            for fd in (stdin_r, stdin_w, out_r, out_w, err_r, err_w):
                os.close(fd)
            self._refuse(session, f"cannot start in container {container[:12]}: {err.message}")
            return
        finally:
            with contextlib.suppress(OSError):
                for fd in (stdin_r, out_w, err_w):
                    os.close(fd)
        log.info("rsh: job %d: started %r in container %s (pid %d)", session.job[0], command[:80],
                 container[:12], process.pid)
        session.process, session.stdin_w = process, stdin_w
        session.pidfd = os.pidfd_open(process.pid)
        session.outputs = {out_r: rsh.STDOUT, err_r: rsh.STDERR}
        self.selector.register(session.pidfd, selectors.EVENT_READ, ("pidfd", session))
        for fd in session.outputs:
            os.set_blocking(fd, False)
            self.selector.register(fd, selectors.EVENT_READ, ("output", session))
        self.started[session.job] = self.started.get(session.job, 0) + 1
        self.running[session.job] = self.running.get(session.job, 0) + 1

    def _write_stdin(self, session: Session, data: bytes) -> None:
        if not data:
            os.close(session.stdin_w)
            session.stdin_w = -1
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(session.stdin_w, view):]
        except OSError as err:
            if err.errno != errno.EPIPE:
                log.warning("rsh: writing stdin: %s", err)
            os.close(session.stdin_w)
            session.stdin_w = -1

    def _on_output(self, session: Session, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._send(session, rsh.encode_frame(session.outputs[fd], data))
            return
        self.selector.unregister(fd)
        os.close(fd)
        del session.outputs[fd]
        self._maybe_finish(session)

    def _on_exit(self, session: Session) -> None:
        self.selector.unregister(session.pidfd)
        os.close(session.pidfd)
        session.pidfd = -1
        session.status = session.process.wait()
        session.kill_at = None
        self._maybe_finish(session)

    def _maybe_finish(self, session: Session) -> None:
        """EXIT goes once the process has exited and its output is read to the end."""
        if session.status is None or session.outputs or session not in self.sessions:
            return
        self._send(session, rsh.encode_exit(session.status))
        self._close(session)

    def _on_timers(self) -> None:
        now = time.monotonic()
        for session in list(self.sessions):
            if session.job is None and now >= session.opened + HANDSHAKE_TIMEOUT:
                self._close(session)
            elif session.kill_at is not None and now >= session.kill_at:
                session.kill_at = None
                session.process.kill(signal.SIGKILL)
            elif session.start_by is not None:
                self._try_start(session)

    def _drop(self, session: Session) -> None:
        """The peer went away: a running process is stopped (its end is still awaited), the rest closed."""
        if session.process is not None and session.status is None:
            if session.kill_at is None:
                log.info("rsh: job %d: connection dropped, stopping pid %d", session.job[0],
                         session.process.pid)
                session.process.kill(signal.SIGTERM)
                session.kill_at = time.monotonic() + KILL_GRACE
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(session.sock)
            return
        self._close(session)

    def _close(self, session: Session) -> None:
        if session not in self.sessions:
            return
        self.sessions.discard(session)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(session.sock)
        session.sock.close()
        for fd in list(session.outputs):
            self.selector.unregister(fd)
            os.close(fd)
        session.outputs.clear()
        if session.stdin_w >= 0:
            os.close(session.stdin_w)
            session.stdin_w = -1
        if session.pidfd >= 0:
            self.selector.unregister(session.pidfd)
            os.close(session.pidfd)
            session.pidfd = -1
            session.process.kill(signal.SIGKILL)
            session.status = session.process.wait()
        if session.op == "hold" and session.job in self.holds:
            with contextlib.suppress(ValueError):
                self.holds[session.job].remove(session)
        if session.op == "run" and session.process is not None and session.job is not None:
            self.running[session.job] -= 1
            self._answer_holds(session.job)

    def _forget_ended_jobs(self) -> None:
        """Drop the counts of jobs with nothing running here and no task left on this node."""
        for job in [j for j, n in self.running.items() if n == 0 and j not in self.holds]:
            if find_container(self.root, self.node, *job) is None:
                self.running.pop(job, None)
                self.started.pop(job, None)

    def _answer_holds(self, job: tuple[int, int]) -> None:
        if self.started.get(job, 0) == 0 or self.running.get(job, 0) > 0:
            return
        for waiter in list(self.holds.pop(job, [])):
            self._send(waiter, rsh.encode_exit(0))
            self._close(waiter)
