"""The container log: ROOT/containers/<id>/ctr.log in the Kubernetes CRI format, one record a line:

    2026-11-28T19:35:06.123456789Z stdout F the line's bytes

`F` marks a full line, `P` a partial one (output that did not end in a newline yet, or a line longer than
the chunk limit), so bytes are kept exactly and `logs` can put lines back together. The supervisor is the
only writer; `rade logs` reads, optionally following the file as it grows.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from engine.containers.record import now_rfc3339

STDOUT = "stdout"
STDERR = "stderr"


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One line (or part of one) a container wrote."""

    time: str
    stream: str
    partial: bool
    data: bytes  # without the trailing newline


def encode(record: LogRecord) -> bytes:
    return b"%s %s %s %s\n" % (record.time.encode(), record.stream.encode(),
                               b"P" if record.partial else b"F", record.data)


def decode(line: bytes) -> LogRecord | None:
    """The record on one line of the file (without its newline); None for a line that is not one."""
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[2] not in (b"P", b"F"):
        return None
    data = parts[3] if len(parts) == 4 else b""
    return LogRecord(parts[0].decode(), parts[1].decode(), parts[2] == b"P", data)


class LogWriter:
    """Appends what the container writes, split into records at newlines; the supervisor's half."""

    def __init__(self, path: str | os.PathLike[str], clock: Callable[[], str] = now_rfc3339) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._clock = clock

    def write(self, stream: str, data: bytes) -> None:
        """Log one chunk as read from the container: each newline ends a full record, a tail a partial one."""
        if not data:
            return
        stamp = self._clock()
        lines = data.split(b"\n")
        out = [encode(LogRecord(stamp, stream, False, line)) for line in lines[:-1]]
        if lines[-1]:
            out.append(encode(LogRecord(stamp, stream, True, lines[-1])))
        os.write(self._fd, b"".join(out))

    def close(self) -> None:
        os.close(self._fd)


def _records(fh, follow: Callable[[], bool] | None) -> Iterator[LogRecord]:
    """Records from an open log file; at its end, with `follow`, call it: it blocks until there may be
    more (True) or the writer is gone (False)."""
    pending = b""
    while True:
        chunk = fh.readline()
        if chunk.endswith(b"\n"):
            record = decode(pending + chunk[:-1])
            pending = b""
            if record is not None:
                yield record
            continue
        pending += chunk
        if follow is None:
            return
        if not follow():
            # The writer is gone: read what it wrote last, then stop.
            rest = fh.read()
            for line in (pending + rest).split(b"\n"):
                record = decode(line)
                if record is not None:
                    yield record
            return


def read(path: str | os.PathLike[str], tail: int | None = None,
         follow: Callable[[], bool] | None = None) -> Iterator[LogRecord]:
    """The log's records, the last `tail` only if given; then, with `follow`, new ones as they come."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - held across the generator's yields, closed by the with below
    except FileNotFoundError:
        return
    with fh:
        if tail is not None:
            last: deque[LogRecord] = deque(maxlen=tail) if tail > 0 else deque(maxlen=0)
            # Count full lines only: a partial record belongs to the line after it.
            for record in _records(fh, None):
                last.append(record)
            yield from last
        if follow is not None or tail is None:
            yield from _records(fh, follow)


def render(record: LogRecord, timestamps: bool) -> bytes:
    """The bytes `rade logs` prints for a record: its data, a newline unless partial, maybe a timestamp."""
    prefix = record.time.encode() + b" " if timestamps else b""
    return prefix + record.data + (b"" if record.partial else b"\n")
