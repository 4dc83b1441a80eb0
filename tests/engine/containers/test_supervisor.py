"""The supervisor's loop on its own: a plain child process stands in for the launch (the seam is the
launcher argument), so logs, attach, stdin, signals and the recorded exit are tested without root."""

from __future__ import annotations

import os
import signal
import subprocess
import threading

import pytest

from engine.containers import logs
from engine.containers.attach import Frame
from engine.containers.client import AttachClient
from engine.containers.record import ContainerConfig, ContainerRecord, HostConfig
from engine.containers.status import ContainerStatus
from engine.containers.store import ContainerStore
from engine.containers.supervisor import Ready, Supervisor


class PlainProcess:
    """What `launch()` returns, for a host process: pid, wait, kill, oom_killed, cleanup."""

    def __init__(self, config) -> None:
        self.popen = subprocess.Popen(list(config.argv), stdin=config.stdin, stdout=config.stdout,
                                      stderr=config.stderr, env=dict(config.env))
        self.pid = self.popen.pid
        self.cleaned = False

    def wait(self) -> int:
        code = self.popen.wait()
        return 128 - code if code < 0 else code

    def kill(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def oom_killed(self) -> bool:
        return False

    def cleanup(self) -> None:
        self.cleaned = True


def make(store: ContainerStore, argv: tuple[str, ...], open_stdin: bool = False) -> ContainerRecord:
    config = ContainerConfig(image="scratch", image_id="", cmd=argv, env=("PATH=/usr/bin:/bin",),
                             open_stdin=open_stdin)
    return store.create(lambda cid, name: ContainerRecord(cid, name, "2026-01-01T00:00:00Z", config,
                                                          HostConfig(network="host")))


def supervise(store, record, wait_attach=False):
    processes = []

    def launcher(config):
        processes.append(PlainProcess(config))
        return processes[0]

    sup = Supervisor(store, record.id, Ready(None), wait_attach, launcher=launcher)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", sup.run()))
    thread.start()
    return thread, result, processes


@pytest.fixture
def store(tmp_path):
    cwd = os.getcwd()
    yield ContainerStore(tmp_path)
    os.chdir(cwd)  # the supervisor binds its socket from inside the container's directory


def test_output_is_logged_and_the_exit_recorded(store):
    record = make(store, ("sh", "-c", "echo out; echo err >&2; exit 3"))
    thread, result, processes = supervise(store, record)
    thread.join(20)
    assert result["code"] == 3 and processes[0].cleaned
    after = store.get(record.id)
    assert after.status is ContainerStatus.EXITED and after.exit_code == 3 and after.pid == 0
    got = {(r.stream, r.data) for r in logs.read(store.dir(record.id).log)}
    assert got == {("stdout", b"out"), ("stderr", b"err")}


def test_attached_client_gets_stdin_through_and_the_exit(store):
    record = make(store, ("cat",), open_stdin=True)
    thread, result, _ = supervise(store, record, wait_attach=True)
    import time

    deadline = time.monotonic() + 10
    while not store.dir(record.id).socket.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    client = AttachClient(store.dir(record.id), stdin=True, stdout=True, stderr=True)
    client.send(Frame.STDIN, b"through the supervisor\n")
    client.send(Frame.STDIN_EOF)
    r, w = os.pipe()
    outcome = client.relay(None, w, w)
    os.close(w)
    assert os.read(r, 1000) == b"through the supervisor\n" and outcome.exit_code == 0
    client.close()
    thread.join(20)
    assert result["code"] == 0


def test_signal_from_a_client_reaches_the_process(store):
    record = make(store, ("sleep", "30"))
    thread, _result, _ = supervise(store, record)
    import time

    deadline = time.monotonic() + 10
    while store.get(record.id).status is not ContainerStatus.RUNNING and time.monotonic() < deadline:
        time.sleep(0.01)
    client = AttachClient(store.dir(record.id))
    client.signal(signal.SIGTERM)
    assert client.wait(10).exit_code == 128 + signal.SIGTERM
    client.close()
    thread.join(20)
    assert store.get(record.id).exit_code == 143


def test_a_failed_launch_is_recorded_with_its_exit_code(store):
    from engine.errors import CommandNotFound

    record = make(store, ("missing",))

    def launcher(config):
        raise CommandNotFound("exec", "'missing' not found in $PATH", "check the command")

    r, w = os.pipe()
    code = Supervisor(store, record.id, Ready(w), False, launcher=launcher).run()
    with os.fdopen(r) as reports:
        lines = reports.read().splitlines()
    assert code == 127 and '"state": "error"' in lines[-1] and '"exit_code": 127' in lines[-1]
    after = store.get(record.id)
    assert after.status is ContainerStatus.EXITED and after.exit_code == 127 and "not found" in after.error


def test_a_second_supervisor_for_the_same_container_refuses(store):
    record = make(store, ("sleep", "30"))
    thread, _result, processes = supervise(store, record)
    import time

    deadline = time.monotonic() + 10
    while store.get(record.id).status is not ContainerStatus.RUNNING and time.monotonic() < deadline:
        time.sleep(0.01)
    # flock is per open file: a second claim in this process is refused like one from another process.
    assert Supervisor(store, record.id, Ready(None), False).claim() is False
    processes[0].kill(signal.SIGKILL)
    thread.join(20)


def test_a_preconnected_client_is_the_first_attach_client_and_gets_output_and_exit(store):
    import socket

    record = make(store, ("sh", "-c", "echo out; exit 3"))
    ours, theirs = socket.socketpair()

    def launcher(config):
        return PlainProcess(config)

    client = AttachClient(store.dir(record.id), stdout=True, stderr=True, sock=ours)  # hello before the start
    sup = Supervisor(store, record.id, Ready(None), True, launcher=launcher, first_client=theirs)
    thread = threading.Thread(target=sup.run)
    thread.start()
    read, write = os.pipe()
    try:
        outcome = client.relay(None, write, write)
        assert outcome.exit_code == 3
        assert os.read(read, 100) == b"out\n"
        assert client.wait_closed(20)
    finally:
        client.close()
        thread.join(20)
        os.close(read)
        os.close(write)
    assert store.get(record.id).exit_code == 3


def test_a_refusing_supervisor_tells_its_preconnected_client(store):
    import socket

    record = make(store, ("sleep", "30"))
    holder = Supervisor(store, record.id, Ready(None), False)
    assert holder.claim()
    ours, theirs = socket.socketpair()
    client = AttachClient(store.dir(record.id), stdout=True, sock=ours)
    try:
        assert Supervisor(store, record.id, Ready(None), True, first_client=theirs).run() == 125
        outcome = client.relay(None, 1, 2)
        assert outcome.exit_code == 125 and "already running" in outcome.error["message"]
    finally:
        client.close()
        holder.release()
