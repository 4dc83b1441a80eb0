"""The supervisor: one small process per running container (as Podman's conmon), detached from whoever
started it, that launches the container and outlives the `rade` command.

It holds the container's stdio (pipes, or the pty master for `-t`), writes every byte to the log, serves
attach clients on the unix socket in the container's dir, relays signals, and when the container exits
records the exit code, OOM kill and finish time in `state.json`, then cleans up (the launch's mounts and
cgroup, the network namespace) and removes the container if it was started with `--rm`. The command that
started it may exit or be killed at any point: nothing here depends on it after the start is reported.

The launcher is passed in (normally `engine.launch.launch`), so the event loop is tested on its own. The
loop over the channels, and the frames to attach clients, are `engine.containers.loop` (mixed in here).
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.containers import launchspec, wiring
from engine.containers.attach import Frame, Message, encode
from engine.containers.channels import (
    Channel,
    ClientChannel,
    InputChannel,
    ListenerChannel,
    OutputChannel,
    SignalChannel,
)
from engine.containers.logs import STDERR, STDOUT, LogWriter
from engine.containers.loop import DRAIN_SECONDS, ChannelLoop
from engine.containers.record import ContainerRecord, now_rfc3339
from engine.containers.status import ContainerStatus, can_start
from engine.containers.store import ContainerStore
from jobs.errors import RadeError

log = logging.getLogger(__name__)

ATTACH_WAIT_SECONDS = 30.0


class Ready:
    """The pipe back to the starter: JSON lines `listening`, then `started` or `error`. Best effort: the
    starter may be gone, which must not stop the container."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    def send(self, **message: Any) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, json.dumps(message).encode() + b"\n")
        except OSError:
            self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def exit_status(code: int) -> int:
    """A shell-style exit code: a death by signal N is 128+N."""
    return 128 - code if code < 0 else code


class Supervisor(ChannelLoop):
    """One container's supervisor: `run()` is its whole life, from listening to the final cleanup."""

    def __init__(self, store: ContainerStore, container_id: str, ready: Ready, wait_attach: bool,
                 launcher: Callable[[Any], Any] | None = None, first_client: socket.socket | None = None,
                 layers: list[Path] | None = None) -> None:
        self.store = store
        self.cid = container_id
        self.cdir = store.dir(container_id)
        self.ready = ready
        self.wait_attach = wait_attach
        self.launcher = launcher
        self.selector = selectors.DefaultSelector()
        self.channels: dict[int, Channel] = {}
        self.clients: list[ClientChannel] = []
        self.stdin: Channel | None = None
        self.pty_master: int | None = None
        self.process: Any = None
        self.exited = False
        self.log_writer: LogWriter | None = None
        self.proxy: Any = None
        self.early_stdin = bytearray()
        self.early_eof = False
        self.record_network = "bridge"
        self.lock_fd: int | None = None
        self.first_client = first_client  # connected by the starter before the fork (spawn's preconnect)
        self.layers = layers  # the image's layer dirs when the starter looked them up already

    # -- clients --------------------------------------------------------------------------------------

    def on_client(self, conn: socket.socket) -> None:
        # Kept even once the container has exited: the hang-up at the very end is what tells a client the
        # exit is recorded and cleaned up (a client closed at once here read a record still saying running).
        client = ClientChannel(conn, self.on_message)
        self.clients.append(client)
        self.add(client)

    def on_message(self, client: ClientChannel, message: Message) -> None:
        if message.kind is Frame.HELLO:
            client.hello = message.json()
            self._resize(client.hello)
        elif message.kind is Frame.STDIN:
            if self.stdin is not None:
                self.stdin.queue(message.data)
            elif self.process is None:
                self.early_stdin += message.data  # sent before the launch: kept for the container
        elif message.kind is Frame.STDIN_EOF:
            if isinstance(self.stdin, InputChannel):
                self.stdin.finish()
            elif self.process is None:
                self.early_eof = True
        elif message.kind is Frame.RESIZE:
            self._resize(message.json())
        elif message.kind is Frame.SIGNAL and self.process is not None and not self.exited:
            try:
                self.process.kill(int(message.json().get("signal", signal.SIGTERM)))
            except (OSError, RadeError) as err:
                log.warning("signal to container %s: %s", self.cid[:12], err)

    def _resize(self, size: dict) -> None:
        if self.pty_master is None or not size.get("rows"):
            return
        import fcntl
        import struct
        import termios

        winsize = struct.pack("HHHH", int(size["rows"]), int(size.get("cols") or 80), 0, 0)
        try:
            fcntl.ioctl(self.pty_master, termios.TIOCSWINSZ, winsize)
        except OSError:
            pass

    def on_output(self, stream: str, data: bytes) -> None:
        assert self.log_writer is not None
        self.log_writer.write(stream, data)
        self.broadcast(Frame.STDOUT if stream == STDOUT else Frame.STDERR, data, stream)

    def on_exit(self) -> None:
        self.exited = True

    # -- the container's life -------------------------------------------------------------------------

    def listen(self) -> None:
        # Bind by a relative name: the socket's full path may exceed the 108 bytes sun_path holds.
        os.chdir(self.cdir.path)
        try:
            os.unlink("attach.sock")
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.bind("attach.sock")
        sock.listen(16)
        self.add(ListenerChannel(sock, self.on_client))

    def await_first_client(self) -> None:
        deadline = time.monotonic() + ATTACH_WAIT_SECONDS
        while time.monotonic() < deadline and not any(c.hello is not None for c in self.clients):
            self.poll(deadline - time.monotonic())

    def open_stdio(self, record: ContainerRecord) -> tuple[tuple[int, int, int], list[int]]:
        """The fds the container gets as 0, 1, 2, and the ones to close here once it has them."""
        if record.config.tty:
            master, slave = os.openpty()
            os.set_inheritable(slave, False)
            self.pty_master = master
            out = OutputChannel(master, STDOUT, self.on_output, takes_input=True)
            self.add(out)
            self.stdin = out if record.config.open_stdin else None
            if self.stdin is not None and self.early_stdin:
                self.stdin.queue(bytes(self.early_stdin))
            for client in self.clients:
                if client.hello:
                    self._resize(client.hello)
            return (slave, slave, slave), [slave]
        to_close = []
        if record.config.open_stdin:
            stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
            self.stdin = InputChannel(stdin_w)
            self.stdin.queue(bytes(self.early_stdin))
            if self.early_eof:
                self.stdin.finish()
            self.add(self.stdin)
            to_close.append(stdin_r)
        else:
            stdin_r = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            to_close.append(stdin_r)
        fds = [stdin_r]
        for stream in (STDOUT, STDERR):
            r, w = os.pipe2(os.O_CLOEXEC)
            self.add(OutputChannel(r, stream, self.on_output))
            fds.append(w)
            to_close.append(w)
        return (fds[0], fds[1], fds[2]), to_close

    def start(self, record: ContainerRecord) -> ContainerRecord:
        """Network, launch, and the record marked running; RadeError if any step fails."""
        network_state, launch_network, hosts = wiring.setup_network(self.store.root, record, self.cdir.path)
        layers = self.layers if self.layers is not None else launchspec.image_layers(self.store.root,
                                                                                     record.config.image_id)
        wiring.fill_new_volumes(record, layers)
        stdio, to_close = self.open_stdio(record)
        try:
            config = launchspec.build(record, self.cdir, layers, launch_network, hosts, stdio)
            self.process = self.launcher(config)
        finally:
            for fd in to_close:
                os.close(fd)
        self.add(SignalChannel(os.pidfd_open(self.process.pid), self.on_exit))
        self.proxy, network_state = wiring.publish_ports(record, network_state)
        return self.store.update(self.cid, lambda r: r.moved(
            ContainerStatus.RUNNING, pid=self.process.pid, supervisor_pid=os.getpid(), started_at=now_rfc3339(),
            finished_at=r.finished_at, exit_code=0, oom_killed=False, error="", network=network_state,
            restart_count=r.restart_count + (1 if r.status is ContainerStatus.EXITED else 0)))

    def serve(self) -> int:
        """Relay until the container has exited and its output is drained; its exit status."""
        while not self.exited:
            self.poll(None)
        code = exit_status(self.process.wait())
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline and any(
                isinstance(c, OutputChannel) for c in self.channels.values()):
            self.poll(deadline - time.monotonic())
        return code

    def finish(self, code: int) -> ContainerRecord:
        oom = False
        try:
            oom = bool(self.process.oom_killed())
        except (OSError, RadeError) as err:
            log.warning("container %s: reading the OOM state: %s", self.cid[:12], err)
        record = self.store.update(self.cid, lambda r: r.moved(
            ContainerStatus.EXITED, exit_code=code, oom_killed=oom, finished_at=now_rfc3339(), pid=0))
        self.broadcast(Frame.EXIT, {"exit_code": code, "oom_killed": oom})
        return record

    def teardown(self) -> None:
        """Undo what the start made, each step on its own so one failure does not keep the rest."""
        steps: list[tuple[str, Callable[[], Any]]] = []
        if self.proxy is not None:
            steps.append(("port proxy", self.proxy.stop))
        if self.process is not None:
            steps.append(("launch cleanup", self.process.cleanup))

        steps.append(("network", lambda: wiring.teardown_network(self.store.root, self.cid, self.record_network)))
        for what, step in steps:
            try:
                step()
            except Exception as err:  # noqa: BLE001 - every step runs, failures are logged
                log.error("container %s: %s: %s", self.cid[:12], what, err)

    def claim(self) -> bool:
        """Hold the container's supervisor lock for the rest of this process's life; False if another
        supervisor holds it (two `start`s raced: only one may launch)."""
        from engine.filelock import try_lock

        self.lock_fd = try_lock(self.cdir.path / "supervisor.lock")
        return self.lock_fd is not None

    def release(self) -> None:
        """Let go of the lock before hanging up on clients: a client told "it is over" may act at once."""
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None

    def _refuse(self, message: str, hint: str) -> int:
        """Decline to start (before listening): said on the ready pipe and to a preconnected client."""
        self.ready.send(state="error", message=message, hint=hint, exit_code=125)
        self.ready.close()
        if self.first_client is not None:
            try:
                self.first_client.sendall(encode(Frame.ERROR, {"message": message, "hint": hint, "exit_code": 125}))
            except OSError:
                pass
            self.first_client.close()
        return 125

    def run(self) -> int:
        if not self.claim():
            return self._refuse(f"container {self.cid[:12]} is already running",
                                "it was started by another command at the same time")
        record = self.store.get(self.cid)
        if not can_start(record.status):
            return self._refuse(f"container {record.name} is {record.status.value}", "it cannot be started now")
        self.record_network = record.host_config.network
        self.log_writer = LogWriter(self.cdir.log)
        self.listen()
        if self.first_client is not None:
            self.on_client(self.first_client)
        log.info("container %s: supervisor listening", self.cid[:12])
        self.ready.send(state="listening")
        if self.launcher is None:
            # Imported while the attaching client connects, rather than after it did.
            from engine.launch import launch

            self.launcher = launch
        if self.wait_attach:
            self.await_first_client()
        try:
            record = self.start(record)
        except Exception as err:  # noqa: BLE001 - a failed start is recorded, whatever it was
            self._start_failed(err)
            return getattr(err, "exit_code", 125)
        log.info("container %s: started, pid %d", self.cid[:12], record.pid)
        self.ready.send(state="started", pid=record.pid)
        self.ready.close()
        self.broadcast(Frame.STARTED, {"pid": record.pid})
        if record.host_config.auto_remove:
            # Needed for the removal at the end; imported now, while the container runs.
            from engine.containers import lifecycle  # noqa: F401
        try:
            code = self.serve()
        except BaseException:
            # A bug here must not leave the container running unwatched: end it, record, clean up.
            log.exception("container %s: supervisor failed; killing the container", self.cid[:12])
            self.process.kill(signal.SIGKILL)
            code = exit_status(self.process.wait())
        record = self.finish(code)
        log.info("container %s: exited with %d", self.cid[:12], code)
        self.flush_clients(close=False)
        self.teardown()
        log.info("container %s: cleaned up", self.cid[:12])
        self.log_writer.close()
        self._hang_up(record)
        return code

    def _hang_up(self, record: ContainerRecord) -> None:
        """The end: with `--rm` the container taken out of the store, then everyone hung up on, then (for
        `--rm`) its files deleted, which the client waiting for the hang-up need not wait for. The lock is
        held until the files are gone, so that a `create` meanwhile leaves them to this process."""
        retired = None
        if record.host_config.auto_remove:
            from engine.containers.lifecycle import remove_stopped

            retired = remove_stopped(self.store, record, volumes=True, purge=False)
        else:
            self.release()
        self.flush_clients(close=True)
        if retired is not None:
            self.store.purge(retired)
            self.release()

    def _start_failed(self, err: Exception) -> None:
        code = getattr(err, "exit_code", 125)
        message = err.message if isinstance(err, RadeError) else f"{type(err).__name__}: {err}"
        hint = err.hint if isinstance(err, RadeError) else None
        if not isinstance(err, RadeError):
            log.exception("container %s: start failed", self.cid[:12])
        self.teardown()
        record = self.store.update(self.cid, lambda r: r.moved(
            ContainerStatus.EXITED, exit_code=code, error=message, finished_at=now_rfc3339(), pid=0))
        self.ready.send(state="error", message=message, hint=hint, exit_code=code)
        self.ready.close()
        self.broadcast(Frame.ERROR, {"message": message, "hint": hint, "exit_code": code})
        if self.log_writer is not None:
            self.log_writer.close()
        self._hang_up(record)
