"""Regression from the soak: an agent SIGKILLed while removing a finished task's container left it marked
`removing`, which the engine refused to remove again, so the container stayed forever (and the dev
cluster's `down` left it). The next agent of the node, `stop_leftovers`, or a `rade rm` now finishes the
removal."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

NODE = "halfnode"


@pytest.fixture
def store_with_half_removed(busybox_root: Path):
    from engine.containers import lifecycle
    from engine.containers.status import ContainerStatus
    from engine.containers.store import ContainerStore

    store = ContainerStore(str(busybox_root))
    record = lifecycle.create(store, lifecycle.CreateOptions(image="busybox", command=("true",), network="host",
                                                             labels=(("rade.node", NODE),)))
    try:
        # What the killed agent left: the record moved to `removing`, its directory still there.
        store.update(record.id, lambda r: r.moved(ContainerStatus.REMOVING))
        yield busybox_root, store, record
    finally:
        shutil.rmtree(store.dir(record.id).path, ignore_errors=True)


def test_the_engine_finishes_a_removal_a_killed_remover_left(store_with_half_removed) -> None:
    from engine.containers import lifecycle

    _, store, record = store_with_half_removed
    lifecycle.remove(store, store.get(record.id), force=True)
    assert not store.dir(record.id).path.exists()


def test_stop_leftovers_finishes_a_removal_a_killed_agent_left(store_with_half_removed) -> None:
    from agent.tasks import stop_leftovers

    root, store, record = store_with_half_removed
    assert stop_leftovers(str(root), NODE) == 1
    assert not store.dir(record.id).path.exists()


def test_the_next_agent_removes_the_container_it_reports_again(store_with_half_removed) -> None:
    from agent.tasks import reclaim
    from engine.containers import lifecycle

    _, store, record = store_with_half_removed
    lifecycle.remove_stopped(store, reclaim(store, store.get(record.id)), volumes=True)
    assert not store.dir(record.id).path.exists()
