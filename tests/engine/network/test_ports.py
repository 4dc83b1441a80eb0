"""`-p` and `-P` values: every Docker form parses, bad ones name the value and the expected form."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from engine.network.errors import PortSpecError
from engine.network.ports import PortMapping, Protocol, merge_publish, parse_publish, publish_all

ANY = IPv4Address("0.0.0.0")
LOCAL = IPv4Address("127.0.0.1")


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("80", PortMapping(ANY, 0, 80)),
        ("8080:80", PortMapping(ANY, 8080, 80)),
        ("127.0.0.1:8080:80", PortMapping(LOCAL, 8080, 80)),
        ("127.0.0.1::80", PortMapping(LOCAL, 0, 80)),
        ("5353:53/udp", PortMapping(ANY, 5353, 53, Protocol.UDP)),
        ("8080:80/TCP", PortMapping(ANY, 8080, 80, Protocol.TCP)),
    ],
)
def test_every_docker_form_parses(spec, expected):
    assert parse_publish(spec) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("8080:0", "invalid container port '0' in -p 8080:0"),
        ("99999:80", "invalid host port '99999'"),
        ("x:80", "invalid host port 'x'"),
        ("1.2.3:80:80", "invalid host address '1.2.3'"),
        ("1:2:3:4", "cannot parse -p 1:2:3:4"),
        ("80/sctp", "unknown protocol 'sctp'"),
        ("", "invalid container port ''"),
    ],
)
def test_bad_values_say_what_and_where(spec, message):
    with pytest.raises(PortSpecError, match=message.replace(".", r"\.")) as caught:
        parse_publish(spec)
    assert caught.value.hint


def test_publish_all_maps_every_exposed_port_to_a_free_port_and_explicit_ones_win():
    automatic = publish_all(["80/tcp", "53/udp", "8080"], LOCAL)
    assert automatic == [
        PortMapping(LOCAL, 0, 80),
        PortMapping(LOCAL, 0, 53, Protocol.UDP),
        PortMapping(LOCAL, 0, 8080),
    ]
    explicit = [parse_publish("9000:80")]
    assert merge_publish(explicit, automatic) == explicit + automatic[1:]


def test_mapping_reads_like_docker_port():
    assert str(PortMapping(LOCAL, 8080, 80)) == "127.0.0.1:8080->80/tcp"
