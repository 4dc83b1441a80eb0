"""Namespace files: made, entered from a thread without moving the caller, removed twice safely."""

from __future__ import annotations

import os

import pytest

from engine.network.errors import NetworkError
from engine.network.links import link_names_in
from engine.network.netns import call_in_netns, create_netns, delete_netns, netns_exists

pytestmark = pytest.mark.root


def test_new_namespace_is_its_own_and_the_caller_never_moves(new_netns):
    path = new_netns("a")
    ours = os.readlink("/proc/thread-self/ns/net")
    inside = call_in_netns(path, lambda: os.readlink("/proc/thread-self/ns/net"))
    assert inside != ours
    assert os.readlink("/proc/thread-self/ns/net") == ours
    assert os.stat(path).st_ino == int(inside.strip("net:[]"))
    assert link_names_in(path) == ["lo"]


def test_existing_name_is_refused_and_left_intact(new_netns):
    path = new_netns("b")
    with pytest.raises(NetworkError, match="already exists"):
        create_netns(path.name)
    assert netns_exists(path)


def test_delete_removes_the_file_and_is_safe_twice(new_netns):
    path = new_netns("c")
    assert delete_netns(path) is True
    assert not netns_exists(path) and not path.exists()
    assert delete_netns(path) is False


def test_exceptions_inside_reach_the_caller(new_netns):
    path = new_netns("d")

    def fail():
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        call_in_netns(path, fail)


def test_bad_names_are_refused():
    with pytest.raises(NetworkError, match="invalid network namespace name"):
        create_netns("../etc")


def test_netlink_handles_inside_a_namespace_leave_no_descriptor_open(new_netns):
    path = new_netns("e")
    link_names_in(path)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        assert link_names_in(path) == ["lo"]
    assert len(os.listdir("/proc/self/fd")) == before
