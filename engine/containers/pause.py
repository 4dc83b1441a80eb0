"""`rade pause` and `unpause`: a container's processes stopped by the cgroup freezer and let go again, as
`docker pause` does (v1 `freezer.state`, v2 `cgroup.freeze`: the driver's `freeze`/`thaw`).

The freeze happens under the container's record lock, and the record says `paused` only once the kernel
says the cgroup is frozen; unpausing thaws first and then records `running`. Stopping or killing a paused
container thaws it first (`resume_if_paused`), as Docker does, or the signal would wait for an unpause.
"""

from __future__ import annotations

from engine.containers.record import ContainerRecord
from engine.containers.status import ContainerStatus
from engine.containers.store import ContainerStore
from engine.errors import CgroupError, ContainerError


def _cgroup(record: ContainerRecord):
    from engine.cgroups import open_cgroup
    from engine.cgroups.driver import DEFAULT_PARENT

    return open_cgroup(record.id, record.host_config.resources.cgroup_parent or DEFAULT_PARENT)


def pause(store: ContainerStore, record: ContainerRecord) -> ContainerRecord:
    """Freeze a running container; its record, now paused."""
    from engine.containers.lifecycle import refresh

    record = refresh(store, record)

    def change(current: ContainerRecord) -> ContainerRecord:
        if current.status is ContainerStatus.PAUSED:
            raise ContainerError(f"container {current.name} is already paused", f"'rade unpause {current.name}'")
        if current.status is not ContainerStatus.RUNNING:
            raise ContainerError(f"container {current.name} is not running", f"it is {current.status.value}")
        _cgroup(current).freeze()
        return current.moved(ContainerStatus.PAUSED)

    return store.update(record.id, change)


def unpause(store: ContainerStore, record: ContainerRecord) -> ContainerRecord:
    """Thaw a paused container; its record, running again."""

    def change(current: ContainerRecord) -> ContainerRecord:
        if current.status is not ContainerStatus.PAUSED:
            raise ContainerError(f"container {current.name} is not paused", f"it is {current.status.value}")
        _cgroup(current).thaw()
        return current.moved(ContainerStatus.RUNNING)

    return store.update(record.id, change)


def resume_if_paused(store: ContainerStore, record: ContainerRecord) -> ContainerRecord:
    """The record, thawed first if it was paused (for stop, kill and rm -f)."""
    if record.status is not ContainerStatus.PAUSED:
        return record

    def change(current: ContainerRecord) -> ContainerRecord:
        if current.status is not ContainerStatus.PAUSED:
            return current
        try:
            _cgroup(current).thaw()
        except CgroupError:
            pass  # the cgroup is gone, and its processes with it: nothing is left frozen
        return current.moved(ContainerStatus.RUNNING)

    return store.update(record.id, change)
