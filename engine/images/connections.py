"""Kept-alive HTTP connections to registries, and a registry's answer as the client hands it on.

Several layers download at once, each on its own connection; a finished connection goes back to the pool
for the next request to the same (scheme, host), so a pull opens a few connections, not one per blob.
TLS is verified unless the pool was made with `tls_verify=False`.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass

# Bigger writes than http.client's 8 KiB default: an upload body is sent in 1 MiB reads.
_BLOCK = 1 << 20


@dataclass(slots=True)
class Response:
    """A registry's answer: status, headers, and either the whole body or the open stream."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes
    url: str
    raw: http.client.HTTPResponse | None = None
    _release: Callable[[bool], None] | None = None

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)

    def close(self, reusable: bool = False) -> None:
        """Give the connection back (only when the stream was read to its end) or close it."""
        if self._release is not None:
            self._release(reusable)
            self._release = None


class ConnectionPool:
    """Idle kept-alive connections per (scheme, host); a connection is used by one thread at a time."""

    def __init__(self, tls_verify: bool, timeout: float) -> None:
        self._idle: dict[tuple[str, str], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._timeout = timeout
        self._context = ssl.create_default_context()
        if not tls_verify:
            self._context.check_hostname = False
            self._context.verify_mode = ssl.CERT_NONE

    def take(self, scheme: str, host: str) -> tuple[http.client.HTTPConnection, bool]:
        """A connection (and whether it was reused: a reused one may have been closed by the server)."""
        with self._lock:
            idle = self._idle.get((scheme, host))
            if idle:
                return idle.pop(), True
        if scheme == "https":
            return http.client.HTTPSConnection(host, timeout=self._timeout, context=self._context,
                                               blocksize=_BLOCK), False
        return http.client.HTTPConnection(host, timeout=self._timeout, blocksize=_BLOCK), False

    def give(self, scheme: str, host: str, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.setdefault((scheme, host), []).append(conn)

    def close(self) -> None:
        with self._lock:
            for conns in self._idle.values():
                for conn in conns:
                    conn.close()
            self._idle.clear()
