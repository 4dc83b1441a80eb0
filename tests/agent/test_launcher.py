"""The agent's launcher, a real forked process: start requests answered in their order without the agent
waiting, a refusal answered in its turn, a retired container deleted with its slice and task file, and
every unanswered request failed when the launcher dies."""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Iterator

import pytest

from agent.launcher import Launcher
from engine.errors import ContainerError

pytestmark = pytest.mark.root


@pytest.fixture
def launcher(busybox_root) -> Iterator[tuple[Launcher, object]]:
    from engine.containers.store import ContainerStore

    store = ContainerStore(busybox_root)
    started = Launcher(str(busybox_root))
    started.start()
    try:
        yield started, store
    finally:
        started.close()
        for record in store.all():
            remove_when_its_supervisor_is_gone(store, record.id)


def remove_when_its_supervisor_is_gone(store, container_id: str) -> None:
    """Remove a container; its record says exited a moment before its supervisor lets go of it."""
    from engine.containers import lifecycle

    deadline = time.monotonic() + 30
    while True:
        try:
            lifecycle.remove(store, lifecycle.refresh(store, store.get(container_id)), force=True)
            return
        except ContainerError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def replies(launcher: Launcher, count: int) -> list:
    """The next `count` replies, waiting on the launcher's socket as the agent's poller does."""
    got: list = []
    deadline = time.monotonic() + 30
    while len(got) < count and time.monotonic() < deadline:
        select.select([launcher.fileno()], [], [], max(0.0, deadline - time.monotonic()))
        got += launcher.replies()
        if launcher.sock is None:
            break
    return got


def container(store, command: tuple[str, ...] = ("true",)):
    from engine.containers import lifecycle

    return lifecycle.create(store, lifecycle.CreateOptions(image="busybox", command=command, network="host"))


def test_requests_are_answered_in_order_with_a_refusal_in_its_turn(launcher):
    started, store = launcher
    first, second = container(store), container(store)
    for container_id in (first.id, "0" * 64, second.id):
        started.request(container_id)  # none of these waits for the launcher
    answers = replies(started, 3)
    assert [type(a).__name__ for a in answers] == ["ReadyReader", "ContainerError", "ReadyReader"]
    assert "no such container" in answers[1].message
    for reader in (answers[0], answers[2]):
        assert reader.until_started()["state"] == "started"
        reader.close()
    assert started.pending == 0


def test_a_retired_container_is_deleted_with_its_slice_and_task_file(launcher, tmp_path):
    from agent.slices import make_slice, node_slices, remove_slice, slice_prefix
    from engine.cgroups.driver import Limits
    from engine.containers import lifecycle

    started, store = launcher
    record = container(store)
    reader = lifecycle.start(store, record)
    assert reader.until_started()["state"] == "started"
    reader.close()
    record = lifecycle.wait(store, store.get(record.id), timeout=30)
    slice_name = f"{slice_prefix(str(store.root), 'n1')}.1.0.0"
    make_slice(slice_name, Limits(pids=16))
    try:
        task_file = tmp_path / "task.json"
        task_file.write_text("{}")
        path, lock_fd = lifecycle.retire_exited(store, record, volumes=True)
        assert started.purge(path, lock_fd, slice_name, task_file)
        os.close(lock_fd)
        deadline = time.monotonic() + 30
        while (path.exists() or task_file.exists() or node_slices(str(store.root), "n1")) and \
                time.monotonic() < deadline:
            time.sleep(0.02)
        assert not path.exists() and not task_file.exists()
        assert node_slices(str(store.root), "n1") == []
    finally:
        remove_slice(slice_name)  # whatever the purge did not


def test_requests_a_dead_launcher_never_answered_fail(launcher):
    started, store = launcher
    record = container(store, ("sleep", "0"))
    os.kill(started.pid, signal.SIGKILL)
    try:
        started.request(record.id)
    except ContainerError:
        return  # the send itself saw it gone
    answers = replies(started, 1)
    assert len(answers) == 1 and isinstance(answers[0], ContainerError)
    assert started.sock is None and started.pending == 0
