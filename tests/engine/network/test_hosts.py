"""/etc/hosts text: the container resolves its own names to its address, loopback stays localhost."""

from __future__ import annotations

from ipaddress import IPv4Address

from engine.network.hosts import render_hosts


def test_container_names_resolve_to_its_bridge_address():
    text = render_hosts("c0ffee", IPv4Address("198.19.0.7"), aliases=["web", "c0ffee"])
    lines = text.splitlines()
    assert "127.0.0.1\tlocalhost" in lines
    assert lines[-1] == "198.19.0.7\tc0ffee web"


def test_without_an_address_the_names_resolve_to_loopback():
    assert render_hosts("box", None).splitlines()[-1] == "127.0.1.1\tbox"
