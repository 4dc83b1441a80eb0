"""Address leases for the container bridge: which container holds which address of the subnet.

The core, `AddressPool`, is plain data in and out (no files), so allocation, release and reclaiming are
tested without root. `LeaseFile` is its on-disk edge: one JSON file under ROOT/network, read and
rewritten only while holding an flock on a sibling lock file, written to a temporary file then renamed,
so that processes starting containers at the same time never see half a file nor hand out one address
twice. A lease names the container's directory: a lease whose directory is gone belongs to a container
that died without tearing its network down, and is reclaimed.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from engine.network.errors import AddressPoolExhausted, NetworkError

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Lease:
    """One address held by one container; `owner` is the container's directory."""

    address: IPv4Address
    container: str
    owner: str


class AddressPool:
    """The leases of one subnet; the gateway, network and broadcast addresses are never handed out.

    Addresses are handed out round-robin after the last one given, so a released address is reused as
    late as possible (a peer's stale ARP entry for it has long expired by then).
    """

    def __init__(
        self, gateway: IPv4Interface, leases: Iterable[Lease] = (), last: IPv4Address | None = None
    ) -> None:
        self.gateway = gateway
        self.subnet: IPv4Network = gateway.network
        self._by_container: dict[str, Lease] = {lease.container: lease for lease in leases}
        self._used = {lease.address for lease in self._by_container.values()}
        self.last = last if last is not None else gateway.ip

    @property
    def leases(self) -> list[Lease]:
        return sorted(self._by_container.values(), key=lambda lease: lease.address)

    def lease_of(self, container: str) -> Lease | None:
        return self._by_container.get(container)

    def allocate(self, container: str, owner: str) -> Lease:
        """Lease a free address to `container`; a container that already holds one gets it again."""
        held = self._by_container.get(container)
        if held is not None:
            return held
        first = int(self.subnet.network_address) + 1
        last = int(self.subnet.broadcast_address) - 1
        size = last - first + 1
        start = int(self.last) + 1
        for step in range(size):
            candidate = IPv4Address(first + (start - first + step) % size)
            if candidate != self.gateway.ip and candidate not in self._used:
                lease = Lease(candidate, container, owner)
                self._by_container[container] = lease
                self._used.add(candidate)
                self.last = candidate
                return lease
        raise AddressPoolExhausted(
            f"no free address left in {self.subnet}: {len(self._used)} leased",
            "remove containers that are no longer needed (`rade rm`)",
        )

    def release(self, container: str) -> Lease | None:
        """Give back the address of `container`; None if it held none."""
        lease = self._by_container.pop(container, None)
        if lease is not None:
            self._used.discard(lease.address)
        return lease

    def reclaim(self, is_gone: Callable[[Lease], bool]) -> list[Lease]:
        """Release every lease whose container `is_gone`, and return them."""
        gone = [lease for lease in self._by_container.values() if is_gone(lease)]
        for lease in gone:
            self.release(lease.container)
        return gone

    def to_json(self) -> dict:
        return {
            "version": FORMAT_VERSION,
            "subnet": str(self.subnet),
            "last": str(self.last),
            "leases": [
                {"address": str(lease.address), "container": lease.container, "owner": lease.owner}
                for lease in self.leases
            ],
        }

    @classmethod
    def from_json(cls, data: dict, gateway: IPv4Interface, where: str) -> AddressPool:
        if data.get("version") != FORMAT_VERSION:
            raise NetworkError(f"{where}: unknown lease file version {data.get('version')!r}")
        if data.get("subnet") != str(gateway.network):
            raise NetworkError(
                f"{where}: leases are for {data.get('subnet')}, not {gateway.network}",
                "stop every container on the bridge, then remove the file",
            )
        try:
            leases = [Lease(IPv4Address(x["address"]), x["container"], x["owner"]) for x in data["leases"]]
            return cls(gateway, leases, IPv4Address(data["last"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise NetworkError(f"{where}: malformed lease file ({exc})") from exc


def owner_is_gone(lease: Lease) -> bool:
    """The default leak test: the container's directory no longer exists."""
    return not os.path.isdir(lease.owner)


class LeaseFile:
    """The pool's file and its lock, in `directory` (ROOT/network)."""

    def __init__(self, directory: Path, gateway: IPv4Interface, name: str = "leases.json") -> None:
        self.directory = Path(directory)
        self.gateway = gateway
        self.path = self.directory / name
        self.lock_path = self.directory / "lock"

    @contextmanager
    def locked(self) -> Iterator[AddressPool]:
        """Hold the lock, yield the pool, and write it back if the body changed it (and raised nothing).

        The same lock serialises the bridge's creation and removal with the leases (see `bridge`).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            pool = self._load()
            before = pool.to_json()
            yield pool
            after = pool.to_json()
            if after != before:
                self._save(after)

    def _load(self) -> AddressPool:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            # A new pool starts at a random place, so that two state roots sharing one host's bridge
            # (a rare set-up: tests, mostly) are unlikely to hand out the same address.
            network = self.gateway.network
            start = int(network.network_address) + secrets.randbelow(max(network.num_addresses - 2, 1))
            return AddressPool(self.gateway, last=IPv4Address(start))
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise NetworkError(f"{self.path}: not JSON ({exc})") from exc
        return AddressPool.from_json(data, self.gateway, str(self.path))

    def _save(self, data: dict) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".leases.", dir=self.directory)
        try:
            # No fsync: the rename keeps readers and crashed writers from seeing half a file, and the
            # leases describe links and namespaces that a reboot removes anyway.
            with os.fdopen(fd, "w") as out:
                json.dump(data, out, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise
