"""The text of a container's /etc/hosts and /etc/hostname: the container knows its own name and address.

Plain text in, text out; the launch writes it where the container will see it.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address


def render_hosts(hostname: str, address: IPv4Address | None, aliases: Iterable[str] = ()) -> str:
    """/etc/hosts for a container called `hostname` (and `aliases`, e.g. its --name) at `address`.

    With no address (network `none`, or before one is known) the names resolve to loopback, so that
    programs that look up their own host name still work.
    """
    names = [hostname] + [alias for alias in aliases if alias and alias != hostname]
    own = str(address) if address is not None else "127.0.1.1"
    return (
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "ff00::0\tip6-mcastprefix\n"
        "ff02::1\tip6-allnodes\n"
        "ff02::2\tip6-allrouters\n"
        f"{own}\t{' '.join(names)}\n"
    )


def render_hostname(hostname: str) -> str:
    return hostname + "\n"
