"""The container state machine: the states a container can be in, the one table of legal moves, and the
`can_*` guards commands ask before acting.

Sans-I/O: nothing here touches disk. `advance()` raises `StateError` on an illegal move so that a bug or
a stale update is never silently applied.
"""

from __future__ import annotations

import enum

from jobs.errors import StateError


class ContainerStatus(enum.Enum):
    """Where a container is in its life, spelled as `docker inspect` spells `State.Status`."""

    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    EXITED = "exited"
    REMOVING = "removing"


_S = ContainerStatus
TRANSITIONS: dict[ContainerStatus, frozenset[ContainerStatus]] = {
    # created -> exited: the start failed before the command ran (not found, bad mount...).
    _S.CREATED: frozenset({_S.RUNNING, _S.EXITED, _S.REMOVING}),
    _S.RUNNING: frozenset({_S.PAUSED, _S.EXITED}),
    _S.PAUSED: frozenset({_S.RUNNING, _S.EXITED}),
    _S.EXITED: frozenset({_S.RUNNING, _S.EXITED, _S.REMOVING}),
    # removing -> exited: `rm` failed half-way and gave the container back.
    _S.REMOVING: frozenset({_S.EXITED}),
}


def advance(current: ContainerStatus, new: ContainerStatus) -> ContainerStatus:
    """`new` if the table allows moving there from `current`; StateError otherwise."""
    if new not in TRANSITIONS[current]:
        raise StateError(f"a container cannot go from {current.value} to {new.value}")
    return new


def is_active(status: ContainerStatus) -> bool:
    """Whether a process tree exists for the container (running or paused)."""
    return status in (_S.RUNNING, _S.PAUSED)


def can_start(status: ContainerStatus) -> bool:
    return _S.RUNNING in TRANSITIONS[status] and not is_active(status)


def can_signal(status: ContainerStatus) -> bool:
    """stop, kill, exec and attach need a live process tree."""
    return is_active(status)


def can_remove(status: ContainerStatus, force: bool) -> bool:
    """A running container goes only with `-f` (it is killed first); one being removed never twice."""
    if status is _S.REMOVING:
        return False
    return force or not is_active(status)
