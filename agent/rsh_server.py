"""The agent's rsh server process: it runs `agent.rsh_service` on the node's rsh port.

The agent forks it before any thread starts (like its launcher), because each remote start forks and
enters the container's namespaces (`engine.nsenter`), which a threaded process must not do. The agents
of a cluster share one key (`load_cluster_key`) from which every job's secret is derived.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
from pathlib import Path

from agent import rsh
from agent.rsh_service import RshService
from jobs.errors import RadeError

log = logging.getLogger(__name__)

KEY_NAME = "rsh.key"


class RshServerError(RadeError):
    """The rsh server cannot listen or its key cannot be read."""


def cluster_key_path(root: str | os.PathLike[str]) -> Path:
    return Path(root, "agent", KEY_NAME)


def load_cluster_key(root: str | os.PathLike[str]) -> bytes:
    """The key every agent of the cluster shares (ROOT/agent/rsh.key), made on first use.

    Agents on one shared root (the dev cluster) share it by construction; on separate roots the admin
    copies one file to every node, as with munge's key."""
    path = cluster_key_path(root)
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    except ValueError:
        raise RshServerError(f"{path}: not a key", "remove it to make a new one on every node") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{KEY_NAME}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, secrets.token_hex(32).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another agent made it first: theirs wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return bytes.fromhex(path.read_text().strip())


def listen(port: int = rsh.RSH_PORT) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("0.0.0.0", port))
    except OSError as err:
        sock.close()
        raise RshServerError(f"cannot listen on the rsh port {port}: {err.strerror}",
                             "is another agent running in this network namespace?") from None
    sock.listen(64)
    return sock


class RshServer:
    """The agent's handle on its rsh server process."""

    def __init__(self, root: str, node: str, port: int = rsh.RSH_PORT) -> None:
        self.root, self.node, self.port = root, node, port
        self.pid = 0

    def start(self) -> None:
        """Listen and fork the server; call before this process starts a thread. RshServerError if it
        cannot listen (the agent runs on without cross-node MPI)."""
        # Imported before the fork so every start in the server finds them loaded.
        import engine.containers.launchspec
        import engine.nsenter  # noqa: F401

        key = load_cluster_key(self.root)
        listener = listen(self.port)
        agent = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                die_with(agent)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the agent's to handle
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                RshService(self.root, self.node, listener, key).serve_forever()
            except BaseException:
                log.exception("the rsh server failed")
                code = 1
            finally:
                os._exit(code)
        listener.close()
        self.pid = pid

    def close(self) -> None:
        """Stop the server (the processes it started live on in their containers, as the containers do)."""
        if self.pid:
            # A signal rather than a pipe's end: the agent's launcher and the supervisors it forks would
            # hold a copy of any pipe made before them.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.pid = 0


def die_with(parent: int) -> None:
    """End this forked server when the agent that forked it dies, SIGKILL included: an orphan would keep
    the rsh port, so the node's next agent could not listen on it (and nothing would ever stop it)."""
    from engine.syscalls import LINUX

    LINUX.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the prctl took effect
        os._exit(0)


PR_SET_PDEATHSIG = 1


def start_rsh_server(root: str, node: str, port: int = rsh.RSH_PORT) -> RshServer | None:
    """The node's rsh server, started; None (logged) when it cannot be: the node then runs MPI jobs only
    within itself, and everything else as before."""
    server = RshServer(root, node, port)
    try:
        server.start()
    except (RadeError, OSError) as err:
        log.warning("node %s: no rsh server, MPI jobs cannot reach this node's containers: %s", node,
                    getattr(err, "message", None) or err)
        return None
    return server
