"""`rade rename` of a running bridge container changes the name in its generated /etc/hosts (the name
its network answers to, as Docker's rename updates), and leaves its host name and others' files alone."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]


def _hosts(rade, name: str) -> str:
    return rade.out("exec", name, "cat", "/etc/hosts")


def test_rename_of_a_running_bridge_container_rewrites_its_hosts_alias(rade):
    cid = rade.out("run", "-d", "--name", "hosts-old", "busybox", "sleep", "1000")
    address = json.loads(rade.out("inspect", "hosts-old"))[0]["NetworkSettings"]["IPAddress"]
    assert f"{address}\t{cid[:12]} hosts-old" in _hosts(rade, "hosts-old")
    rade("rename", "hosts-old", "hosts-new")
    hosts = _hosts(rade, "hosts-new")
    assert f"{address}\t{cid[:12]} hosts-new" in hosts and "hosts-old" not in hosts
    assert rade.out("exec", "hosts-new", "hostname") == cid[:12]  # the host name is not the name
    # The name resolves inside: busybox's ping looks it up through /etc/hosts.
    assert rade("exec", "hosts-new", "ping", "-c", "1", "-W", "5", "hosts-new").returncode == 0
    rade("rm", "-f", "hosts-new")


def test_rename_keeps_a_hostname_equal_to_the_old_name_and_paused_ones_change_too(rade):
    rade("run", "-d", "--name", "same", "--hostname", "same", "busybox", "sleep", "1000")
    rade("pause", "same")
    rade("rename", "same", "renamed")
    rade("unpause", "renamed")
    hosts = _hosts(rade, "renamed")
    line = next(l for l in hosts.splitlines() if l.split()[1:] and "renamed" in l.split())
    assert line.split()[1:] == ["same", "renamed"]
    assert rade.out("exec", "renamed", "hostname") == "same"
    rade("rm", "-f", "renamed")


def test_rename_leaves_a_volume_at_etc_hosts_and_a_none_network_alone(rade, tmp_path):
    own = tmp_path / "hosts"
    own.write_text("10.0.0.1\tmine vol-old\n")
    rade("run", "-d", "--name", "vol-old", "-v", f"{own}:/etc/hosts", "busybox", "sleep", "1000")
    rade("run", "-d", "--network", "none", "--name", "none-old", "busybox", "sleep", "1000")
    none_before = _hosts(rade, "none-old")
    rade("rename", "vol-old", "vol-new")
    rade("rename", "none-old", "none-new")
    assert own.read_text() == "10.0.0.1\tmine vol-old\n"
    assert _hosts(rade, "none-new") == none_before
    rade("rm", "-f", "vol-new", "none-new")


def test_a_stopped_container_renamed_starts_with_the_new_name(rade):
    rade("create", "--name", "cold-old", "busybox", "cat", "/etc/hosts")
    rade("rename", "cold-old", "cold-new")
    out = rade.out("start", "-a", "cold-new")
    assert "cold-new" in out and "cold-old" not in out
    rade("rm", "cold-new")
