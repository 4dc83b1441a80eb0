"""The per-layer progress display of a pull or a push: one line per blob, redrawn in place on a terminal.

Transfers report through the `TransferProgress` protocol from several download threads at once; the
terminal display serializes them under a lock and redraws at most ten times a second (a redraw per
megabyte would cost more than the copy). When stderr is not a terminal nothing is drawn at all: logs and
pipes get no control characters; the command prints its one-line result instead.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Protocol, TextIO

_REDRAW_EVERY = 0.1


class TransferProgress(Protocol):
    """What a transfer tells its display, per blob (keyed by digest)."""

    def begin(self, digest: str, size: int, status: str) -> None: ...

    def advance(self, digest: str, nbytes: int) -> None: ...

    def finish(self, digest: str, status: str) -> None: ...

    def close(self) -> None: ...


class NoProgress:
    """The display when nobody is watching."""

    def begin(self, digest: str, size: int, status: str) -> None:
        pass

    def advance(self, digest: str, nbytes: int) -> None:
        pass

    def finish(self, digest: str, status: str) -> None:
        pass

    def close(self) -> None:
        pass


def format_bytes(n: float) -> str:
    """1.5 MB, 320 kB: decimal units as Docker's progress bars use."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


class TerminalProgress:
    """Lines like `3f4a1b2c9d0e: Downloading [=====>      ] 12.3 MB/45.6 MB`, redrawn on a terminal."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic, width: int = 30) -> None:
        self._stream = stream
        self._clock = clock
        self._width = width
        self._lock = threading.Lock()
        self._order: list[str] = []
        self._state: dict[str, list] = {}  # digest -> [status, done, size]
        self._drawn = 0
        self._last = 0.0

    def begin(self, digest: str, size: int, status: str) -> None:
        with self._lock:
            if digest not in self._state:
                self._order.append(digest)
            self._state[digest] = [status, 0, size]
            self._draw(force=True)

    def advance(self, digest: str, nbytes: int) -> None:
        with self._lock:
            entry = self._state.get(digest)
            if entry is None:
                return
            entry[1] += nbytes
            self._draw(force=False)

    def finish(self, digest: str, status: str) -> None:
        with self._lock:
            entry = self._state.setdefault(digest, [status, 0, 0])
            if digest not in self._order:
                self._order.append(digest)
            entry[0] = status
            entry[1] = entry[2]
            self._draw(force=True)

    def close(self) -> None:
        with self._lock:
            self._draw(force=True)

    def _line(self, digest: str) -> str:
        status, done, size = self._state[digest]
        short = digest.split(":", 1)[-1][:12]
        if size and 0 < done < size:
            filled = int(self._width * done / size)
            bar = "=" * max(filled - 1, 0) + ">" + " " * (self._width - filled)
            return f"{short}: {status} [{bar[:self._width]}] {format_bytes(done)}/{format_bytes(size)}"
        return f"{short}: {status}"

    def _draw(self, force: bool) -> None:
        now = self._clock()
        if not force and now - self._last < _REDRAW_EVERY:
            return
        self._last = now
        out = [f"\x1b[{self._drawn}A"] if self._drawn else []
        out.extend(f"\r\x1b[2K{self._line(d)}\n" for d in self._order)
        self._stream.write("".join(out))
        self._stream.flush()
        self._drawn = len(self._order)


def progress_for(stream: TextIO | None = None) -> TransferProgress:
    """A terminal display on stderr when it is a terminal, else nothing."""
    stream = stream or sys.stderr
    try:
        is_tty = stream.isatty()
    except (AttributeError, ValueError):
        is_tty = False
    return TerminalProgress(stream) if is_tty else NoProgress()
