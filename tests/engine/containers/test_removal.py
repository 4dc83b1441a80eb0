"""Removal in two steps: a container leaves the store in one rename (its name free at once) and its files
are deleted after; what a killed remover left is deleted by the next creation, unless its remover still
holds it; `run --rm` returns with the container gone and its files follow."""

from __future__ import annotations

import fcntl
import os
import subprocess

import pytest

from engine.containers.record import ContainerConfig, ContainerRecord, HostConfig
from engine.containers.store import RETIRED, ContainerStore
from engine.errors import ContainerError
from tests.engine.containers.conftest import wait_for


def _make(cid: str, name: str) -> ContainerRecord:
    return ContainerRecord(id=cid, name=name, created="2026-01-01T00:00:00.000000000Z",
                           config=ContainerConfig(image="busybox", image_id="sha256:ab", cmd=("sh",)),
                           host_config=HostConfig())


def retired_dirs(store: ContainerStore) -> list[str]:
    return sorted(e.name for e in os.scandir(store.base) if e.name.startswith(RETIRED))


def test_a_retired_container_is_gone_and_its_name_free_before_its_files_are_deleted(tmp_path):
    store = ContainerStore(tmp_path)
    record = store.create(_make, "web")
    (store.dir(record.id).upper / "file").write_bytes(b"data")
    retired = store.retire(record.id)
    with pytest.raises(ContainerError, match="no such container"):
        store.find("web")
    assert store.ids() == [] and store.all() == []
    assert (retired / "upper" / "file").read_bytes() == b"data"
    again = store.create(_make, "web")
    assert again.id != record.id and store.find("web") == again
    store.purge(retired)
    assert not retired.exists()
    assert retired_dirs(store) == []


def test_a_creation_deletes_what_a_killed_remover_left_but_not_what_a_remover_holds(tmp_path):
    store = ContainerStore(tmp_path)
    abandoned = store.retire(store.create(_make, "a").id)
    held = store.retire(store.create(_make, "b").id)
    fd = os.open(held / "supervisor.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        store.create(_make, "c")
        assert not abandoned.exists()
        assert held.exists()
    finally:
        os.close(fd)
    store.create(_make, "d")
    assert retired_dirs(store) == []


def test_delete_of_a_container_with_a_mounted_root_is_refused_and_it_stays(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    store = ContainerStore(tmp_path)
    record = store.create(_make, "m")
    rootfs = store.dir(record.id).rootfs
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(rootfs)], check=True)
    try:
        with pytest.raises(ContainerError, match="still mounted"):
            store.delete(record.id)
        assert store.find("m") == record
    finally:
        subprocess.run(["umount", str(rootfs)], check=True)
    store.delete(record.id)
    assert store.ids() == [] and retired_dirs(store) == []


@pytest.mark.root
@pytest.mark.slow
def test_run_rm_returns_with_the_container_gone_and_its_files_follow(rade, image_root):
    store = ContainerStore(image_root)
    before = set(store.ids())
    for _ in range(3):
        rade("run", "--rm", "--name", "again", "--network", "none", "busybox", "true")
        assert set(store.ids()) == before
    wait_for(lambda: retired_dirs(store) == [], 10, "the removed containers' files to be deleted")

