"""The network errors: a bridge, address, namespace, link or published port that could not be made."""

from __future__ import annotations

from jobs.errors import RadeError


class NetworkError(RadeError):
    """A container or test-host network that cannot be set up, torn down or published."""


class AddressPoolExhausted(NetworkError):
    """Every address of the pool is leased: no container can join the bridge until one is released."""


class PortSpecError(NetworkError):
    """A `-p` value that does not parse: names the value and the form expected."""
