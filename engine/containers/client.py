"""The client side of attach: connect to a container's supervisor, say what it wants, and relay the
terminal or pipes of the calling process to and from the container.

Used by `rade run` (attached), `attach`, `start -a`, and for control (`stop`, `kill`, `wait`): a control
client asks for no streams and simply waits for the supervisor to close the connection, which it does
only when the container has exited.
"""

from __future__ import annotations

import os
import select
import selectors
import socket
from collections.abc import Callable
from dataclasses import dataclass

from engine.containers.attach import Frame, FrameDecoder, Message, encode, encode_data
from engine.containers.store import ContainerDir
from engine.errors import ContainerError


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attach ended: the container's exit, or a start error, or the connection closed (None)."""

    exit_code: int | None
    oom_killed: bool = False
    error: dict | None = None
    detached: bool = False  # the user typed the detach keys; the container runs on


DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q, as Docker's default


class DetachScanner:
    """Finds the detach sequence in typed input, even split across reads; passes the rest through."""

    def __init__(self, keys: bytes = DETACH_KEYS) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to send on, whether the sequence was typed)."""
        data = self.held + data
        self.held = b""
        at = data.find(self.keys)
        if at != -1:
            return data[:at], True
        for n in range(len(self.keys) - 1, 0, -1):
            if data.endswith(self.keys[:n]):
                self.held = data[-n:]
                return data[:-n], False
        return data, False


def connect(cdir: ContainerDir) -> socket.socket:
    """A connection to the container's supervisor; ConnectionError if there is none listening."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    # Through an fd of the directory: the socket's full path may be too long for sun_path.
    dirfd = os.open(cdir.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sock.connect(f"/proc/self/fd/{dirfd}/attach.sock")
    except (FileNotFoundError, ConnectionRefusedError) as err:
        sock.close()
        raise ConnectionError(str(err)) from None
    finally:
        os.close(dirfd)
    return sock


class AttachClient:
    """One connection to a supervisor."""

    def __init__(self, cdir: ContainerDir, stdin: bool = False, stdout: bool = False, stderr: bool = False,
                 size: tuple[int, int] | None = None, sock: socket.socket | None = None) -> None:
        """Connect to the supervisor's socket, or use `sock`, a connection it already counts (`spawn`'s
        preconnect), and say what this client wants."""
        if sock is not None:
            self.sock = sock
        else:
            try:
                self.sock = connect(cdir)
            except ConnectionError:
                raise ContainerError(f"container {cdir.path.name[:12]} has no supervisor to attach to",
                                     "it is not running") from None
        self.decoder = FrameDecoder()
        hello = {"stdin": stdin, "stdout": stdout, "stderr": stderr}
        if size:
            hello.update(rows=size[0], cols=size[1])
        self.send(Frame.HELLO, hello)

    def send(self, kind: Frame, data: bytes | dict = b"") -> None:
        try:
            if isinstance(data, bytes) and data:
                self.sock.sendall(encode_data(kind, data))
            else:
                self.sock.sendall(encode(kind, data))
        except OSError:
            pass  # the supervisor is gone; the read side will see it

    def signal(self, signum: int) -> None:
        self.send(Frame.SIGNAL, {"signal": int(signum)})

    def resize(self, rows: int, cols: int) -> None:
        self.send(Frame.RESIZE, {"rows": rows, "cols": cols})

    def receive(self, timeout: float | None = None) -> list[Message] | None:
        """The next messages; [] on timeout; None once the supervisor closed the connection."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return []
        except OSError:
            return None
        if not data:
            return None
        return self.decoder.feed(data)

    def wait(self, timeout: float | None = None) -> Outcome | None:
        """Wait for the exit; None if `timeout` passed first."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if remaining == 0.0:
                return None
            messages = self.receive(remaining)
            if messages is None:
                return Outcome(None)
            for message in messages:
                outcome = _outcome(message)
                if outcome is not None:
                    return outcome

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Read until the supervisor hangs up, which it does once the container has exited and been
        cleaned up; False if `timeout` passed first."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if remaining == 0.0:
                return False
            if self.receive(remaining) is None:
                return True

    def relay(self, stdin_fd: int | None, stdout_fd: int, stderr_fd: int,
              on_started: Callable[[int], None] | None = None, detach_keys: bytes | None = None) -> Outcome:
        """Copy `stdin_fd` to the container and its output to `stdout_fd`/`stderr_fd` until it exits
        (or, with `detach_keys`, until they are typed: the container then runs on)."""
        scanner = DetachScanner(detach_keys) if detach_keys else None
        sel = selectors.DefaultSelector()
        self.sock.setblocking(True)
        sel.register(self.sock, selectors.EVENT_READ, "sock")
        if stdin_fd is not None:
            sel.register(stdin_fd, selectors.EVENT_READ, "stdin")
        try:
            while True:
                for key, _ in sel.select():
                    if key.data == "stdin":
                        data = os.read(stdin_fd, 65536)
                        if data and scanner is not None:
                            data, detach = scanner.feed(data)
                            if data:
                                self.send(Frame.STDIN, data)
                            if detach:
                                return Outcome(None, detached=True)
                        elif data:
                            self.send(Frame.STDIN, data)
                        else:
                            self.send(Frame.STDIN_EOF)
                            sel.unregister(stdin_fd)
                        continue
                    try:
                        data = self.sock.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        return Outcome(None)
                    for message in self.decoder.feed(data):
                        if message.kind is Frame.STDOUT:
                            _write_all(stdout_fd, message.data)
                        elif message.kind is Frame.STDERR:
                            _write_all(stderr_fd, message.data)
                        elif message.kind is Frame.STARTED and on_started is not None:
                            on_started(int(message.json().get("pid", 0)))
                        else:
                            outcome = _outcome(message)
                            if outcome is not None:
                                return outcome
        finally:
            sel.close()

    def close(self) -> None:
        self.sock.close()


def _outcome(message: Message) -> Outcome | None:
    if message.kind is Frame.EXIT:
        body = message.json()
        return Outcome(int(body.get("exit_code", 0)), bool(body.get("oom_killed", False)))
    if message.kind is Frame.ERROR:
        body = message.json()
        return Outcome(int(body.get("exit_code", 125)), error=body)
    return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        except BrokenPipeError:
            return
        view = view[written:]
