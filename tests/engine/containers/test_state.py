"""Container records: the transition table, the JSON round trip, and the store's names and atomic writes."""

import json

import pytest

from engine.containers.record import (
    ContainerConfig,
    ContainerRecord,
    HostConfig,
    PortMapping,
    Resources,
    VolumeMount,
)
from engine.containers.status import ContainerStatus, advance, can_remove, can_start
from engine.containers.store import STATE_VERSION, ContainerStore
from engine.errors import ContainerError
from jobs.errors import StateError


def _make(cid, name):
    return ContainerRecord(id=cid, name=name, created="2026-01-01T00:00:00.000000000Z",
                           config=ContainerConfig(image="busybox", image_id="sha256:ab", cmd=("sh",)),
                           host_config=HostConfig(volumes=(VolumeMount("bind", "/a", "/b", True),),
                                                  ports=(PortMapping(80, 8080),),
                                                  resources=Resources(cpus=0.5, memory=1 << 26)))


def test_illegal_transition_is_refused():
    with pytest.raises(StateError, match="from removing to running"):
        advance(ContainerStatus.REMOVING, ContainerStatus.RUNNING)
    assert advance(ContainerStatus.EXITED, ContainerStatus.RUNNING) is ContainerStatus.RUNNING


def test_guards_follow_the_table():
    assert can_start(ContainerStatus.CREATED) and can_start(ContainerStatus.EXITED)
    assert not can_start(ContainerStatus.RUNNING)
    assert not can_remove(ContainerStatus.RUNNING, force=False)
    assert can_remove(ContainerStatus.RUNNING, force=True)
    assert not can_remove(ContainerStatus.REMOVING, force=True)


def test_record_survives_the_store_round_trip(tmp_path):
    store = ContainerStore(tmp_path)
    record = store.create(_make, "web")
    again = store.get(record.id)
    assert again == record
    body = json.loads(store.dir(record.id).state.read_text())
    assert body["version"] == STATE_VERSION
    assert body["container"]["config"]["image_id"] == "sha256:ab"


def test_names_are_unique_and_generated_when_missing(tmp_path):
    store = ContainerStore(tmp_path)
    first = store.create(_make, "web")
    with pytest.raises(ContainerError, match="already in use"):
        store.create(_make, "web")
    other = store.create(_make)
    assert other.name != "web" and "_" in other.name
    assert store.find("web") == first
    assert store.find(first.id[:10]) == first


def test_unknown_container_says_how_to_list(tmp_path):
    with pytest.raises(ContainerError, match="no such container: nope"):
        ContainerStore(tmp_path).find("nope")


def test_update_applies_a_checked_move(tmp_path):
    store = ContainerStore(tmp_path)
    record = store.create(_make, "web")
    updated = store.update(record.id, lambda r: r.moved(ContainerStatus.RUNNING, pid=42))
    assert store.get(record.id).pid == 42 == updated.pid
    with pytest.raises(StateError):
        store.update(record.id, lambda r: r.moved(ContainerStatus.CREATED))
    assert store.get(record.id).status is ContainerStatus.RUNNING
    assert not list(store.dir(record.id).path.glob(".*.tmp"))


def test_bad_name_is_refused_with_the_rule(tmp_path):
    with pytest.raises(ContainerError, match="invalid container name"):
        ContainerStore(tmp_path).create(_make, "-bad name")
