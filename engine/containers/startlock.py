"""Waiting, before a start, for a copy or removal that holds a stopped container's supervisor lock.

`rade cp` into (or out of) a stopped container and `rm` hold the container's supervisor lock while they
work, so that no supervisor can launch it meanwhile; a supervisor that finds the lock held refuses with
"already running". Docker's `start` waits for a `cp` in progress (both take the container's lock) and then
starts, so `start` here waits too, a bounded time, and says what it waited for if the copy outlasts it.
A lock held by a supervisor (another start won the race, or the container runs) is not waited for: the
supervisor's own refusal says that.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from engine.containers.record import ContainerRecord
from engine.containers.store import ContainerStore
from engine.errors import ContainerError
from engine.filelock import is_held

WAIT_SECONDS = 30.0


def is_lock_free(store: ContainerStore, record: ContainerRecord) -> bool:
    """Whether no process holds the container's supervisor lock (tested by taking and dropping it)."""
    # A lock file that does not exist: never started, never copied into, so nothing holds it.
    return not is_held(store.dir(record.id).path / "supervisor.lock")


def wait_for_copy(store: ContainerStore, record: ContainerRecord, timeout: float = WAIT_SECONDS,
                  clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> bool:
    """Return once no copy or removal holds the container's supervisor lock, or a supervisor does:
    whether it had to wait. ContainerError if a copy still holds it after `timeout` seconds."""
    from engine.containers.lifecycle import is_supervised

    deadline = clock() + timeout
    delay = 0.01
    waited = False
    # flock has no timeout of its own, and a blocking one could not be given up: poll, backing off.
    while not is_lock_free(store, record):
        if is_supervised(store, record):
            return waited
        left = deadline - clock()
        if left <= 0:
            raise ContainerError(f"container {record.name} cannot be started: a copy into it (or its removal) "
                                 "is in progress", "try again when 'rade cp' is done")
        sleep(min(delay, left))
        delay = min(delay * 2, 0.2)
        waited = True
    return waited
