"""Finishing a removal that was cut short: a `rade rm` killed after it marked the container `removing`
and before it took the directory away leaves a record no command would touch again (`rm` refuses a
container being removed). `finish_removal` completes it when no one is removing it now.

Who may be removing it: a supervisor removing its own `--rm` container holds the container's supervisor
lock throughout, so the lock is the test. The finisher holds that lock itself while it works, so two
`rade rm` of one leftover do not both finish it, and a `create` purging leftovers leaves it alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from engine.containers.record import ContainerRecord
from engine.containers.status import ContainerStatus
from engine.containers.store import ContainerStore
from engine.errors import ContainerError
from engine.filelock import try_lock

log = logging.getLogger(__name__)


@contextlib.contextmanager
def supervisor_lock(store: ContainerStore, record: ContainerRecord, busy: str) -> Iterator[None]:
    """Hold the container's supervisor lock (as a supervisor does) for the block; ContainerError saying
    `busy` if another process holds it."""
    try:
        fd = try_lock(store.dir(record.id).path / "supervisor.lock")
    except FileNotFoundError:
        raise ContainerError(f"no such container: {record.name}", "it was removed meanwhile") from None
    if fd is None:
        raise ContainerError(f"container {record.name} {busy}", "try again in a moment")
    try:
        yield
    finally:
        os.close(fd)


def finish_removal(store: ContainerStore, record: ContainerRecord, volumes: bool) -> None:
    """Complete the removal of a container left `removing`; refused while someone is removing it."""
    from engine.containers.lifecycle import remove_stopped

    with supervisor_lock(store, record, "is being removed by another process"):
        current = store.get(record.id)
        if current.status is not ContainerStatus.REMOVING:
            raise ContainerError(f"container {current.name} is {current.status.value}", "look again: it changed")
        log.info("container %s: finishing a removal left half-way", record.short_id)
        # Given back as exited, then removed as any stopped container (the same steps, undone on failure).
        current = store.update(record.id, lambda r: r.moved(ContainerStatus.EXITED))
        remove_stopped(store, current, volumes)
