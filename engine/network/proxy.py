"""The userspace port proxy: published ports of a container, listened on by the host and relayed to the
container's address, as docker-proxy does — so no NAT or firewall rule is ever needed.

One thread runs one selector loop for all of a container's published ports. TCP data never enters
Python: splice(2) moves up to 1 MiB at a time from one socket into a pipe and from the pipe into the
other socket; while a pipe holds bytes the peer has not taken, the side feeding it is not read
(back-pressure rather than unbounded buffering). An end-of-stream on one side becomes a shutdown(SHUT_WR)
on the other once everything before it is delivered, so half-closed protocols work, and a connection
is closed when both directions are done or either side fails. UDP datagrams go through one 1 MiB
buffer; each client address gets its own connected socket to the container, dropped after `udp_idle`
seconds without traffic.

Binding happens in `start`, in the caller's thread, so a port already in use is an error the user sees.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address
from typing import Self

from engine.network.errors import NetworkError
from engine.network.ports import PortMapping, Protocol

log = logging.getLogger(__name__)

BUFFER_SIZE = 1024 * 1024
_F_SETPIPE_SZ = 1031
_SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE


class _Stream:
    """One TCP side of a relayed connection; `peer` is the other side.

    Bytes on their way to this side wait in a pipe (`queued` of them), moved in and out with splice(2)
    so that they never cross into Python.
    """

    __slots__ = ("eof", "fd", "peer", "pipe_r", "pipe_w", "queued", "registered", "shut", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.peer: _Stream | None = None
        self.pipe_r = self.pipe_w = -1
        self.queued = 0
        self.eof = False  # this side sent end-of-stream
        self.shut = False  # end-of-stream passed on to this side
        self.registered = 0

    def open_pipe(self, size: int) -> None:
        self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(self.pipe_w, _F_SETPIPE_SZ, size)
        except OSError:
            pass  # over the user's pipe quota: the default 64 KiB still works, in smaller steps

    def close(self) -> None:
        self.sock.close()
        for fd in (self.pipe_r, self.pipe_w):
            if fd >= 0:
                os.close(fd)
        self.pipe_r = self.pipe_w = -1


class _Connection:
    """An accepted client and its connection to the container."""

    __slots__ = ("client", "closed", "connected", "upstream")

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = _Stream(client)
        self.upstream = _Stream(upstream)
        self.client.peer, self.upstream.peer = self.upstream, self.client
        self.connected = False
        self.closed = False


class _UdpFlow:
    __slots__ = ("client_address", "last_seen", "listener", "upstream")

    def __init__(self, listener: socket.socket, client_address, upstream: socket.socket, now: float) -> None:
        self.listener = listener
        self.client_address = client_address
        self.upstream = upstream
        self.last_seen = now


class PortProxy:
    """Relays each mapping's host port to `target`'s container port until `stop`."""

    def __init__(
        self,
        target: IPv4Address,
        mappings: Sequence[PortMapping],
        buffer_size: int = BUFFER_SIZE,
        udp_idle: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = str(target)
        self.mappings = list(mappings)
        self.udp_idle = udp_idle
        self._clock = clock
        self._buffer = bytearray(buffer_size)
        self._view = memoryview(self._buffer)
        self._selector = selectors.DefaultSelector()
        self._listeners: list[tuple[socket.socket, PortMapping]] = []
        self._connections: set[_Connection] = set()
        self._flows: dict[tuple[socket.socket, object], _UdpFlow] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.bound: list[PortMapping] = []

    # ---- life cycle -----------------------------------------------------------------------------------

    def start(self) -> list[PortMapping]:
        """Bind every mapping and start relaying; return the mappings with their actual host ports."""
        if self._thread is not None or self._stopping or self.bound:
            raise NetworkError("this port proxy was already started", "make a new PortProxy")
        try:
            for mapping in self.mappings:
                self._listen(mapping)
        except OSError as exc:
            self._close_all()
            raise NetworkError(
                f"cannot publish {mapping}: {exc.strerror or exc}",
                "choose another host port" if exc.errno == errno.EADDRINUSE else None,
            ) from exc
        self._selector.register(self._wake_r, _READ, ("wake", None))
        self._thread = threading.Thread(target=self._run, name=f"port proxy {self.target}", daemon=True)
        self._thread.start()
        return self.bound

    def stop(self) -> None:
        """Stop listening and close every relayed connection; safe to call twice."""
        self._stopping = True
        if self._thread is not None:
            try:
                self._wake_w.send(b"x")
            except OSError:
                pass
            self._thread.join()
            self._thread = None
        else:
            self._close_all()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _listen(self, mapping: PortMapping) -> None:
        kind = socket.SOCK_STREAM if mapping.protocol is Protocol.TCP else socket.SOCK_DGRAM
        sock = socket.socket(socket.AF_INET, kind)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((str(mapping.host_ip), mapping.host_port))
            if kind == socket.SOCK_STREAM:
                sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        bound = mapping.with_host_port(sock.getsockname()[1])
        self._listeners.append((sock, bound))
        self.bound.append(bound)
        role = "accept" if kind == socket.SOCK_STREAM else "udp"
        self._selector.register(sock, _READ, (role, bound))

    def _run(self) -> None:
        try:
            while not self._stopping:
                timeout = self.udp_idle / 2 if self._flows else None
                for key, events in self._selector.select(timeout):
                    role, data = key.data
                    try:
                        self._dispatch(role, data, key.fileobj, events)
                    except OSError as exc:
                        log.debug("proxy %s: %s", self.target, exc)
                    except Exception:  # a bug must not take every published port down with it
                        log.exception("proxy %s: unexpected error", self.target)
                self._expire_flows()
        finally:
            self._close_all()

    def _dispatch(self, role: str, data, sock: socket.socket, events: int) -> None:
        if role == "wake":
            return
        if role == "accept":
            self._accept(sock, data)
        elif role == "stream":
            self._on_stream(data, events)
        elif role == "connect":
            self._on_connected(data)
        elif role == "udp":
            self._udp_from_client(sock, data)
        elif role == "udp-up":
            self._udp_from_container(data)

    def _close_all(self) -> None:
        for connection in list(self._connections):
            self._close(connection)
        for flow in list(self._flows.values()):
            self._drop_flow(flow)
        for sock, _ in self._listeners:
            self._unregister(sock)
            sock.close()
        self._listeners.clear()
        for sock in (self._wake_r, self._wake_w):
            sock.close()
        self._selector.close()

    # ---- TCP ------------------------------------------------------------------------------------------

    def _accept(self, listener: socket.socket, mapping: PortMapping) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: drop this one, keep serving
                log.warning("proxy %s: accept on %s failed: %s", self.target, mapping, exc)
                return
            client.setblocking(False)
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            upstream.setblocking(False)
            connection = _Connection(client, upstream)
            self._connections.add(connection)
            code = upstream.connect_ex((self.target, mapping.container_port))
            if code not in (0, errno.EINPROGRESS):
                self._close(connection)
                continue
            connection.upstream.registered = _WRITE
            self._selector.register(upstream, _WRITE, ("connect", connection))

    def _on_connected(self, connection: _Connection) -> None:
        code = connection.upstream.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code != 0:
            log.debug("proxy %s: connect failed: %s", self.target, errno.errorcode.get(code, code))
            self._close(connection)
            return
        connection.connected = True
        for stream in (connection.client, connection.upstream):
            stream.open_pipe(len(self._buffer))
        # Re-registered below with the "stream" role.
        self._selector.unregister(connection.upstream.sock)
        connection.upstream.registered = 0
        for stream in (connection.client, connection.upstream):
            self._update(connection, stream)

    def _on_stream(self, item: tuple[_Connection, _Stream], events: int) -> None:
        connection, stream = item
        try:
            if events & _WRITE:
                self._flush(stream)
            if events & _READ and not connection.closed:
                self._pump(stream)
        except OSError:
            self._close(connection)
            return
        if connection.closed:
            return
        if stream.eof and stream.peer.eof and stream.queued == 0 and stream.peer.queued == 0:
            self._close(connection)
            return
        self._update(connection, stream)
        self._update(connection, stream.peer)

    def _pump(self, stream: _Stream) -> None:
        """Move what `stream` has into its peer's pipe and on to the peer, as far as the peer takes it."""
        peer = stream.peer
        try:
            count = os.splice(stream.fd, peer.pipe_w, len(self._buffer), flags=_SPLICE_FLAGS)
        except (BlockingIOError, InterruptedError):
            return
        if count == 0:
            stream.eof = True
            if peer.queued == 0:
                self._pass_eof(peer)
            return
        peer.queued += count
        self._flush(peer)

    def _flush(self, stream: _Stream) -> None:
        if stream.queued == 0:
            return
        try:
            stream.queued -= os.splice(stream.pipe_r, stream.fd, stream.queued, flags=_SPLICE_FLAGS)
        except (BlockingIOError, InterruptedError):
            return
        if stream.queued == 0 and stream.peer.eof:
            self._pass_eof(stream)

    def _pass_eof(self, stream: _Stream) -> None:
        if not stream.shut:
            stream.shut = True
            stream.sock.shutdown(socket.SHUT_WR)

    def _update(self, connection: _Connection, stream: _Stream) -> None:
        """Listen for what `stream` can do next: read while its peer has nothing queued, write while it has."""
        wanted = 0
        if not stream.eof and stream.peer.queued == 0:
            wanted |= _READ
        if stream.queued:
            wanted |= _WRITE
        if wanted == stream.registered:
            return
        if stream.registered and wanted:
            self._selector.modify(stream.sock, wanted, ("stream", (connection, stream)))
        elif wanted:
            self._selector.register(stream.sock, wanted, ("stream", (connection, stream)))
        else:
            self._selector.unregister(stream.sock)
        stream.registered = wanted

    def _close(self, connection: _Connection) -> None:
        if connection.closed:
            return
        connection.closed = True
        self._connections.discard(connection)
        for stream in (connection.client, connection.upstream):
            if stream.registered:
                self._unregister(stream.sock)
                stream.registered = 0
            stream.close()

    def _unregister(self, sock: socket.socket) -> None:
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass

    # ---- UDP ------------------------------------------------------------------------------------------

    def _udp_from_client(self, listener: socket.socket, mapping: PortMapping) -> None:
        while True:
            try:
                count, client_address = listener.recvfrom_into(self._buffer)
            except (BlockingIOError, InterruptedError):
                return
            flow = self._flows.get((listener, client_address))
            if flow is None:
                upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                upstream.setblocking(False)
                upstream.connect((self.target, mapping.container_port))
                flow = _UdpFlow(listener, client_address, upstream, self._clock())
                self._flows[(listener, client_address)] = flow
                self._selector.register(upstream, _READ, ("udp-up", flow))
            flow.last_seen = self._clock()
            try:
                flow.upstream.send(self._view[:count])
            except OSError:
                self._drop_flow(flow)

    def _udp_from_container(self, flow: _UdpFlow) -> None:
        while True:
            try:
                count = flow.upstream.recv_into(self._buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ICMP port unreachable from the container, reported on the next recv
                self._drop_flow(flow)
                return
            flow.last_seen = self._clock()
            flow.listener.sendto(self._view[:count], flow.client_address)

    def _expire_flows(self) -> None:
        if not self._flows:
            return
        deadline = self._clock() - self.udp_idle
        for flow in [f for f in self._flows.values() if f.last_seen < deadline]:
            self._drop_flow(flow)

    def _drop_flow(self, flow: _UdpFlow) -> None:
        if self._flows.pop((flow.listener, flow.client_address), None) is not None:
            self._unregister(flow.upstream)
            flow.upstream.close()
