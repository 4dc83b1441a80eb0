"""The supervisor's file descriptors as small channel objects its event loop drives: the container's
output pipes or pty, its stdin, the attach listener and each attach client.

Each channel says whether it wants to read and whether it has bytes waiting to be written, so one
selector loop serves them all and a slow reader (a stalled client, a container not reading stdin) never
blocks the others: its bytes queue up to a bound and the client is dropped past it.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable

from engine.containers.attach import FrameDecoder, Message

MAX_QUEUED = 16 * 1024 * 1024
READ_CHUNK = 65536


class Channel:
    """One fd in the loop. Subclasses override `on_readable`; `queue` + `on_writable` are shared."""

    reads = True

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = bytearray()
        self.closed = False

    def wants_write(self) -> bool:
        return bool(self.pending) and not self.closed

    def queue(self, data: bytes) -> bool:
        """Queue bytes to write; False (and the channel closed) if too much is waiting already."""
        if self.closed:
            return False
        if len(self.pending) + len(data) > MAX_QUEUED:
            self.close()
            return False
        self.pending += data
        return True

    def on_readable(self) -> None:
        raise NotImplementedError

    def on_writable(self) -> None:
        try:
            sent = os.write(self.fd, self.pending)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        del self.pending[:sent]
        self.after_flush()

    def after_flush(self) -> None:
        """Called after each write; a channel that must close once drained does it here."""

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)


class OutputChannel(Channel):
    """The container's stdout or stderr pipe, or its pty master (which also takes the input bytes)."""

    def __init__(self, fd: int, stream: str, sink: Callable[[str, bytes], None], takes_input: bool = False) -> None:
        super().__init__(fd)
        os.set_blocking(fd, False)
        self.stream = stream
        self.sink = sink
        self.takes_input = takes_input

    def on_readable(self) -> None:
        try:
            data = os.read(self.fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as err:
            # A pty master reads EIO once every slave is closed: that is its end of file.
            if err.errno != errno.EIO:
                raise
            data = b""
        if not data:
            self.close()
            return
        self.sink(self.stream, data)


class InputChannel(Channel):
    """The write end of the container's stdin pipe; closes once drained after end of input."""

    reads = False

    def __init__(self, fd: int) -> None:
        super().__init__(fd)
        os.set_blocking(fd, False)
        self.eof = False

    def finish(self) -> None:
        self.eof = True
        self.after_flush()

    def after_flush(self) -> None:
        if self.eof and not self.pending:
            self.close()


class SignalChannel(Channel):
    """A pidfd: readable once the process exits."""

    def __init__(self, fd: int, on_exit: Callable[[], None]) -> None:
        super().__init__(fd)
        self.on_exit = on_exit

    def on_readable(self) -> None:
        self.close()
        self.on_exit()


class ClientChannel(Channel):
    """One attach connection: frames in, frames out."""

    def __init__(self, sock: socket.socket, on_message: Callable[[ClientChannel, Message], None]) -> None:
        super().__init__(sock.fileno())
        sock.setblocking(False)
        self.sock = sock
        self.decoder = FrameDecoder()
        self.on_message = on_message
        self.hello: dict | None = None

    def wants(self, stream: str) -> bool:
        return self.hello is not None and bool(self.hello.get(stream, False))

    def on_readable(self) -> None:
        try:
            data = self.sock.recv(READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        try:
            messages = self.decoder.feed(data)
        except Exception:  # noqa: BLE001 - a client speaking nonsense is dropped, the container goes on
            self.close()
            return
        for message in messages:
            if self.closed:
                return
            self.on_message(self, message)

    def on_writable(self) -> None:
        try:
            sent = self.sock.send(self.pending)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        del self.pending[:sent]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()


class ListenerChannel(Channel):
    def __init__(self, sock: socket.socket, on_client: Callable[[socket.socket], None]) -> None:
        super().__init__(sock.fileno())
        sock.setblocking(False)
        self.sock = sock
        self.on_client = on_client

    def on_readable(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        self.on_client(conn)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()
