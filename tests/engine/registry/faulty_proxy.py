"""A TCP proxy in front of a registry that misbehaves on blob downloads, to prove the client copes.

It forwards every byte both ways, except for blob GETs: the first `busy` of them are answered by the proxy
itself with `503 Service Unavailable` (Retry-After: 0); after that, a blob GET without a Range header is
cut (both sockets closed) after `after` bytes of the answer, `cuts` times in all. Ranged requests (the
resumed downloads) are not cut unless `cut_ranged`.
"""

from __future__ import annotations

import select
import socket
import threading


class FaultyProxy:
    """Listen on 127.0.0.1 (`host`), forward to `upstream` (`host:port`)."""

    def __init__(self, upstream: str, after: int = 0, cuts: int = 0, cut_ranged: bool = False, busy: int = 0) -> None:
        self._upstream = upstream.rsplit(":", 1)[0], int(upstream.rsplit(":", 1)[1])
        self._after = after
        self._cut_ranged = cut_ranged
        self._lock = threading.Lock()
        self.cuts_left = cuts
        self.cut = 0
        self.busy_left = busy
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._accept.join()
        for thread in self._threads:
            thread.join(timeout=5)

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._listener], [], [], 0.05)
            if not ready:
                continue
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._pump, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _take_cut(self) -> bool:
        with self._lock:
            if self.cuts_left <= 0:
                return False
            self.cuts_left -= 1
            self.cut += 1
            return True

    def _take_busy(self) -> bool:
        with self._lock:
            if self.busy_left <= 0:
                return False
            self.busy_left -= 1
            return True

    def _pump(self, client: socket.socket) -> None:
        server = socket.create_connection(self._upstream)
        watching, sent = False, 0
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([client, server], [], [], 0.05)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        if data[:4] in (b"GET ", b"HEAD", b"POST", b"PUT ", b"PATC"):
                            head = data.split(b"\r\n\r\n", 1)[0].lower()
                            watching = data.startswith(b"GET ") and b"/blobs/sha256:" in head \
                                and (self._cut_ranged or b"\r\nrange:" not in head)
                            sent = 0
                            if data.startswith(b"GET ") and b"/blobs/sha256:" in head and self._take_busy():
                                client.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\n"
                                               b"Content-Length: 0\r\n\r\n")
                                watching = False
                                continue
                        server.sendall(data)
                    else:
                        if watching and sent + len(data) > self._after and self._take_cut():
                            client.sendall(data[: self._after - sent])
                            return
                        sent += len(data)
                        client.sendall(data)
        except OSError:
            return
        finally:
            client.close()
            server.close()
