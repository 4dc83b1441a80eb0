"""`rade rename OLD NEW`: a container's name changed, as `docker rename` does.

Names are unique: the check and the change happen under the store lock that `create` takes to hand out
names, so a rename and a `rade run --name NEW` at once cannot both get NEW. The record itself changes
under its own lock, like every other update. A running bridge container's /etc/hosts, where rade wrote the
name as an alias, gets the new name too (`engine.containers.hostsfile`).
"""

from __future__ import annotations

from dataclasses import replace

from engine.containers.hostsfile import rename_in_hosts
from engine.containers.names import check_name
from engine.containers.record import ContainerRecord
from engine.containers.store import ContainerStore
from engine.errors import ContainerError
from engine.filelock import file_lock


def rename(store: ContainerStore, ref: str, new_name: str) -> ContainerRecord:
    """Give the container `ref` (name, id or id prefix) the name `new_name`; its updated record."""
    check_name(new_name)
    store.base.mkdir(parents=True, exist_ok=True, mode=0o700)
    with file_lock(store.base / ".lock"):
        record = store.find(ref)
        if record.name == new_name:
            raise ContainerError(f"container {record.name} already has the name {new_name!r}",
                                 "give a different new name")
        holder = next((r for r in store.all() if r.name == new_name), None)
        if holder is not None:
            raise ContainerError(f"the container name {new_name!r} is already in use by {holder.short_id}",
                                 f"remove or rename that container first ('rade rename {new_name} OTHER')")
        renamed = store.update(record.id, lambda r: replace(r, name=new_name))
        try:
            rename_in_hosts(renamed, record.name, new_name)
        except ContainerError:
            store.update(record.id, lambda r: replace(r, name=record.name))  # all or nothing, as Docker
            raise
        return renamed
