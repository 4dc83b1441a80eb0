"""The agent's sweep: ended task containers of its node that no task holds are removed, their log kept where
`rade logs` finds it; the containers its tasks hold, other nodes' containers and running ones stay."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

NODE = "sweepnode"


@pytest.fixture
def store(busybox_root: Path):
    from engine.containers import lifecycle
    from engine.containers.store import ContainerStore

    store = ContainerStore(str(busybox_root))
    try:
        yield store
    finally:
        for record in store.all():
            lifecycle.remove(store, lifecycle.refresh(store, record), force=True, volumes=True)


def task_container(store, node: str, job: int, command: tuple[str, ...] = ("echo", "said")):
    from engine.containers import lifecycle

    labels = (("rade.node", node), ("rade.job", str(job)), ("rade.task", "0"), ("rade.attempt", "0"))
    record = lifecycle.create(store, lifecycle.CreateOptions(image="busybox", command=command, network="host",
                                                             labels=labels))
    reader = lifecycle.start(store, record, threaded_caller=True)
    try:
        assert reader.until_started()["state"] == "started"
    finally:
        reader.close()
    return record


def wait_exited(store, record) -> None:
    from engine.containers import lifecycle
    from engine.containers.status import is_active

    # Its supervisor records the exit, then cleans up holding the container's lock: done when both are.
    deadline = time.monotonic() + 30
    while is_active(lifecycle.refresh(store, store.get(record.id)).status) or \
            lifecycle.is_being_started(store, store.get(record.id)):
        assert time.monotonic() < deadline, "the container did not exit"
        time.sleep(0.05)


def test_an_ended_container_no_task_holds_is_removed_and_its_log_kept(store) -> None:
    from agent.orphans import sweep
    from agent.state import task_log_path

    record = task_container(store, NODE, 7)
    wait_exited(store, record)
    assert sweep(store, str(store.root), NODE, owned=[]) == [record.id]
    assert not store.dir(record.id).path.exists()
    assert task_log_path(store.root, 7, 0, 0).read_bytes() != b""


def test_held_running_and_other_nodes_containers_stay(store) -> None:
    from agent.orphans import sweep

    held = task_container(store, NODE, 1)
    other = task_container(store, "othernode", 2)
    running = task_container(store, NODE, 3, command=("sleep", "30"))
    wait_exited(store, held)
    wait_exited(store, other)
    assert sweep(store, str(store.root), NODE, owned=[held.id]) == []
    assert {r.id for r in store.all()} == {held.id, other.id, running.id}
