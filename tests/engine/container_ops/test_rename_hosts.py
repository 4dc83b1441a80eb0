"""The alias rewrite in a container's /etc/hosts on rename, as text (no root needed)."""

from __future__ import annotations

from ipaddress import IPv4Address

from engine.containers.hostsfile import renamed_hosts
from engine.network.hosts import render_hosts

ADDRESS = "198.19.0.5"


def test_rename_replaces_the_alias_and_keeps_the_host_name_and_added_entries():
    text = render_hosts("3f2a9c1b7d10", IPv4Address(ADDRESS), ["web"]) + "198.19.0.9\tdb web\n"
    renamed = renamed_hosts(text, ADDRESS, "3f2a9c1b7d10", "web", "front")
    assert f"{ADDRESS}\t3f2a9c1b7d10 front\n" in renamed
    assert "198.19.0.9\tdb web\n" in renamed  # another address's entry is the user's: untouched
    assert renamed.replace("3f2a9c1b7d10 front", "3f2a9c1b7d10 web") == text


def test_rename_keeps_a_host_name_equal_to_the_old_name():
    text = render_hosts("web", IPv4Address(ADDRESS), ["web"])
    renamed = renamed_hosts(text, ADDRESS, "web", "web", "front")
    assert renamed == render_hosts("web", IPv4Address(ADDRESS), ["front"])


def test_a_file_without_the_old_name_is_left_as_it_is():
    text = render_hosts("3f2a9c1b7d10", IPv4Address(ADDRESS), ["web"])
    assert renamed_hosts(text, ADDRESS, "3f2a9c1b7d10", "other", "front") == text
