"""Starting a supervisor detached from its caller, and hearing back whether the container started.

Two ways, one result: `spawn()` forks the calling process (fast, for the `rade` command, which has no
threads), and `spawn_exec()` runs `python -m engine.containers.spawn`, which double-forks itself (for
callers with threads, such as the node agent, that must not fork their own image). Either way the
supervisor ends up in its own session with stdio on /dev/null, and writes JSON lines on the ready pipe:
`listening`, then `started` or `error`.

`prespawn()` forks the supervisor before the container exists: the child imports the supervisor and the
launch (a good part of a start) while the caller resolves the image and writes the record, then waits
for the container's id (`PendingSupervisor.start`); the caller's exit or `cancel()` before that ends it
having done nothing. With a CPU idle (`has_idle_cpu`) this takes the supervisor's start-up off `rade
run`'s path; on a busy machine the two processes only take turns, and pages copied on write after the
early fork make it slower than forking once the record is made.

`spawn()` double-forks, so the supervisor is init's child at once, unless the caller says `fork_once`:
then the supervisor stays its child, which is right for a caller that exits soon (the `rade` command;
init inherits the supervisor then) or reaps its children itself (the agent's launcher, SIGCHLD ignored),
and spares the caller waiting for an intermediate process to be scheduled, fork and exit, which on a
loaded machine is a good part of a start.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from engine.errors import ContainerError


class ReadyReader:
    """The caller's end of the ready pipe, and with `spawn(preconnect=True)` its end of an attach
    connection made before the fork (`attach`: take it, or `close` closes it)."""

    def __init__(self, fd: int, attach: socket.socket | None = None) -> None:
        self.file = os.fdopen(fd, "rb")
        self.attach = attach

    def next(self) -> dict[str, Any]:
        line = self.file.readline()
        if not line:
            raise ContainerError("the container's supervisor exited before reporting its start",
                                 "see supervisor.log in the container's directory")
        return json.loads(line)

    def until_started(self) -> dict[str, Any]:
        """The `started` or `error` message, skipping `listening`."""
        while True:
            message = self.next()
            if message.get("state") != "listening":
                return message

    def close(self) -> None:
        self.file.close()
        if self.attach is not None:
            self.attach.close()
            self.attach = None


def _detach_stdio() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def _become_supervisor(root: str, container_id: str, ready_fd: int, wait_attach: bool,
                       client_fd: int | None = None, layers: list[str] | None = None) -> int:
    """In the grandchild: detach stdio, log to the container's dir, run the supervisor."""
    from pathlib import Path

    from engine.containers.store import ContainerStore
    from engine.containers.supervisor import Ready, Supervisor

    store = ContainerStore(root)
    _detach_stdio()
    low = 3
    for keep in sorted({ready_fd} | ({client_fd} if client_fd is not None else set())):
        os.closerange(low, keep)
        low = keep + 1
    os.closerange(low, 1 << 16)
    # The caller's handlers are dropped, not closed: their files went with the descriptors above, and
    # closing one (a caller logging to a file) would raise here and take the supervisor with it.
    logging.root.handlers.clear()
    logging.basicConfig(filename=str(store.dir(container_id).supervisor_log), level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # A launcher that reaps its children by ignoring SIGCHLD must not pass that on: the supervisor waits
    # for its container.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(sig, signal.SIG_IGN)
    first = socket.socket(fileno=client_fd) if client_fd is not None else None
    return Supervisor(store, container_id, Ready(ready_fd), wait_attach, first_client=first,
                      layers=None if layers is None else [Path(p) for p in layers]).run()


def spawn(root: str | os.PathLike[str], container_id: str, wait_attach: bool = False,
          fork_once: bool = False, preconnect: bool = False) -> ReadyReader:
    """Fork a supervisor for the container (twice, unless `fork_once`: see above); read its reports from
    the returned reader. With `preconnect`, the reader's `attach` is a connection the supervisor takes
    as its first attach client from the start: the caller sends its hello there at once instead of
    waiting for `listening` and connecting to the socket.

    Only from a process without threads: the child runs Python code before anything is exec'd.
    """
    def run(ready_fd: int, client: socket.socket | None) -> int:
        return _become_supervisor(str(root), container_id, ready_fd, wait_attach,
                                  client.detach() if client is not None else None)

    def failed(ready_fd: int, client: socket.socket | None, err: BaseException) -> None:
        logging.getLogger(__name__).exception("supervisor of %s failed", container_id[:12])

    return _fork_detached(run, failed, fork_once, preconnect)[1]


def _fork_detached(run: Callable[[int, socket.socket | None], int],
                   failed: Callable[[int, socket.socket | None, BaseException], None],
                   fork_once: bool, preconnect: bool, child_closes: tuple[int, ...] = ()) -> tuple[int, ReadyReader]:
    """The fork both starts share: make the ready pipe (and with `preconnect` the attach socket pair),
    fork, and in the child close the caller's ends (and `child_closes`), start a session, fork again unless
    `fork_once`, then run `run(ready_fd, client)` and exit with its code. A raise anywhere in the child goes
    to `failed(ready_fd, client, err)` and exits 125. Returns the child's pid and the caller's reader."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) if preconnect else (None, None)
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 125
        try:
            os.close(read_fd)
            for fd in child_closes:
                os.close(fd)
            if ours is not None:
                ours.close()
            os.setsid()
            if not fork_once and os.fork() != 0:
                os._exit(0)
            code = run(write_fd, theirs)
        # Anything: the child must never unwind into the caller's code. `failed` logs it.
        except BaseException as err:  # noqa: BLE001
            failed(write_fd, theirs, err)
        finally:
            os._exit(code)
    os.close(write_fd)
    if theirs is not None:
        theirs.close()
    if not fork_once:
        os.waitpid(pid, 0)
    return pid, ReadyReader(read_fd, ours)


class PendingSupervisor:
    """A supervisor forked by `prespawn` that waits for its container's id."""

    def __init__(self, pid: int, go_fd: int, reader: ReadyReader, reap: bool) -> None:
        self.pid = pid
        self.go_fd = go_fd
        self.reader = reader
        self.reap = reap  # the supervisor is our child (fork_once): wait for it if it ends unused

    def start(self, container_id: str, layers: list[str] | None = None) -> ReadyReader:
        """Hand the supervisor its container (and, when the caller has them, its image's layer dirs, top
        first, which spares the supervisor reading the image store); read its reports from the reader."""
        message = json.dumps({"id": container_id, "layers": layers}).encode() + b"\n"
        try:
            os.write(self.go_fd, message)
        except BrokenPipeError:
            pass  # it died starting up: the reader meets end-of-file and says so
        finally:
            os.close(self.go_fd)
            self.go_fd = -1
        return self.reader

    def cancel(self) -> None:
        """No container after all: the supervisor reads end-of-file and exits having done nothing."""
        if self.go_fd < 0:
            return
        os.close(self.go_fd)
        self.go_fd = -1
        self.reader.close()
        if self.reap:
            os.waitpid(self.pid, 0)


def has_idle_cpu() -> bool:
    """Whether a CPU this process may use is idle right now: fewer tasks running (this one included, by
    /proc/loadavg's count) than CPUs. An instant's view, which is what choosing `prespawn` needs."""
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].partition("/")[0])
    except (OSError, ValueError, IndexError):
        return False
    return running < len(os.sched_getaffinity(0))


def _await_container(go_fd: int) -> dict[str, Any] | None:
    """What the caller sends (`PendingSupervisor.start`): {"id", "layers"}; None at end-of-file."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(go_fd, 65536)
        if not chunk:
            return None
        data += chunk
    os.close(go_fd)
    return json.loads(data)


def _report_startup_failure(ready_fd: int, client: socket.socket | None, err: BaseException) -> None:
    """A pending supervisor that could not get ready (a broken install) says so on the ready pipe and to
    the preconnected client, as a supervisor reports a failed start: the caller fails with it."""
    report = {"message": f"the container's supervisor could not start: {type(err).__name__}: {err}",
              "hint": "the container was created but not started; remove it with 'rade rm'", "exit_code": 125}
    try:
        os.write(ready_fd, json.dumps({"state": "error", **report}).encode() + b"\n")
    except OSError:
        pass
    if client is not None:
        try:
            from engine.containers.attach import Frame, encode

            client.sendall(encode(Frame.ERROR, report))
        except Exception:  # the client then sees the connection close instead
            logging.getLogger(__name__).debug("telling the attached client failed", exc_info=True)


def prespawn(root: str | os.PathLike[str], wait_attach: bool = False, fork_once: bool = False,
             preconnect: bool = False) -> PendingSupervisor:
    """Fork a supervisor now, for a container the caller is about to make (see the module docstring);
    the options are `spawn`'s. Only from a process without threads."""
    # What both sides need (records, the store, the attach frames, the layer lookup) is imported once,
    # before the fork, rather than by each after it: the same time to the start on idle cores, half the
    # work on busy ones.
    import engine.containers.attach
    import engine.containers.launchspec
    import engine.containers.wiring  # noqa: F401

    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    container_id = "?"

    def run(ready_fd: int, client: socket.socket | None) -> int:
        nonlocal container_id
        _detach_stdio()
        # The work this fork exists for: done while the caller makes the record.
        import engine.containers.supervisor
        import engine.launch  # noqa: F401

        found = _await_container(go_r)
        if found is None:
            return 0
        container_id = found["id"]
        return _become_supervisor(str(root), container_id, ready_fd, wait_attach,
                                  client.detach() if client is not None else None, found.get("layers"))

    def failed(ready_fd: int, client: socket.socket | None, err: BaseException) -> None:
        if container_id == "?":
            _report_startup_failure(ready_fd, client, err)
        logging.getLogger(__name__).exception("supervisor of %s failed", container_id[:12])

    # Out of the collector's reach, so that neither side's collections write to (and so copy) the pages
    # of every object the two share after the fork.
    gc.freeze()
    pid, reader = _fork_detached(run, failed, fork_once, preconnect, child_closes=(go_w,))
    os.close(go_r)
    return PendingSupervisor(pid, go_w, reader, reap=fork_once)


def spawn_exec(root: str | os.PathLike[str], container_id: str, wait_attach: bool = False) -> ReadyReader:
    """As `spawn`, through a fresh interpreter: safe from a process with threads."""
    import subprocess
    from pathlib import Path

    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    argv = [sys.executable, "-m", "engine.containers.spawn", "--root", str(root), "--id", container_id,
            "--ready-fd", str(write_fd)] + (["--wait-attach"] if wait_attach else [])
    try:
        subprocess.run(argv, pass_fds=(write_fd,), stdin=subprocess.DEVNULL, check=True,
                       cwd=str(Path(__file__).resolve().parents[2]))
    except subprocess.CalledProcessError as err:
        os.close(read_fd)
        raise ContainerError(f"starting the supervisor of {container_id[:12]} failed ({err})") from None
    finally:
        os.close(write_fd)
    return ReadyReader(read_fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.containers.spawn")
    parser.add_argument("--root", required=True)
    parser.add_argument("--id", required=True)
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--wait-attach", action="store_true")
    args = parser.parse_args(argv)
    os.setsid()
    if os.fork() != 0:
        return 0
    code = 125
    try:
        code = _become_supervisor(args.root, args.id, args.ready_fd, args.wait_attach)
    finally:
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
