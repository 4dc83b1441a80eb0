"""The attach protocol between the supervisor and its clients (`rade run`, `attach`, `start -a`, `wait`,
`stop`, `kill`) over the unix socket in the container's directory.

A frame is one type byte, a 4-byte big-endian length, and the payload. Sans-I/O: `encode` makes bytes,
`FrameDecoder` turns received bytes into frames; the sockets live in the supervisor and the client.

client -> supervisor: HELLO {stdin, stdout, stderr, rows, cols} first; then STDIN bytes, STDIN_EOF,
RESIZE {rows, cols}, SIGNAL {signal}. supervisor -> client: STARTED {pid}, STDOUT/STDERR bytes,
EXIT {exit_code, oom_killed}, ERROR {message, hint, exit_code} (the start failed). The supervisor closes
every connection when it exits, so a client that waits for EOF waits for the container.
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass
from typing import Any

from jobs.errors import ProtocolError

MAX_FRAME = 1 << 20
_HEADER = struct.Struct(">BI")


class Frame(enum.IntEnum):
    HELLO = 1
    STDIN = 2
    STDIN_EOF = 3
    RESIZE = 4
    SIGNAL = 5
    STARTED = 16
    STDOUT = 17
    STDERR = 18
    EXIT = 19
    ERROR = 20


_JSON_FRAMES = {Frame.HELLO, Frame.RESIZE, Frame.SIGNAL, Frame.STARTED, Frame.EXIT, Frame.ERROR}


@dataclass(frozen=True, slots=True)
class Message:
    kind: Frame
    data: bytes = b""

    def json(self) -> dict[str, Any]:
        return json.loads(self.data) if self.data else {}


def encode(kind: Frame, data: bytes | dict[str, Any] = b"") -> bytes:
    """One frame; a dict payload is sent as JSON."""
    payload = json.dumps(data).encode() if isinstance(data, dict) else data
    if len(payload) > MAX_FRAME:
        raise ProtocolError(f"attach frame of {len(payload)} bytes is over the {MAX_FRAME}-byte limit")
    return _HEADER.pack(kind, len(payload)) + payload


def encode_data(kind: Frame, data: bytes) -> bytes:
    """Bytes of any length as as many frames as needed."""
    return b"".join(encode(kind, data[i:i + MAX_FRAME]) for i in range(0, len(data), MAX_FRAME)) or b""


class FrameDecoder:
    """Feed received bytes; take whole messages out."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        out: list[Message] = []
        while len(self._buffer) >= _HEADER.size:
            kind, length = _HEADER.unpack_from(self._buffer)
            if length > MAX_FRAME:
                raise ProtocolError(f"attach frame of {length} bytes is over the {MAX_FRAME}-byte limit")
            try:
                frame = Frame(kind)
            except ValueError:
                raise ProtocolError(f"unknown attach frame type {kind}") from None
            if len(self._buffer) < _HEADER.size + length:
                break
            payload = bytes(self._buffer[_HEADER.size:_HEADER.size + length])
            del self._buffer[:_HEADER.size + length]
            if frame in _JSON_FRAMES:
                try:
                    json.loads(payload or b"{}")
                except ValueError:
                    raise ProtocolError(f"attach frame {frame.name} is not JSON") from None
            out.append(Message(frame, payload))
        return out
