#!/usr/bin/env python3
"""The remote-start protocol of MPI jobs, and `rade-rsh`, its client inside the job's containers.

`mpirun` (Open MPI's `plm_rsh_agent`, MPICH's `HYDRA_LAUNCHER_EXEC`) starts its daemon on another node as
`rade-rsh HOST COMMAND...`, as it would with ssh. `rade-rsh` connects to the rade agent of HOST (its rsh
port, on the node's own network), proves it belongs to the job, and the agent starts `sh -c COMMAND` in
that job's container on its node (`agent.rsh_service`): stdin, stdout and stderr are carried both ways,
the exit status comes back, and a dropped connection kills the remote process. The other nodes'
containers run `rade-rsh --hold`, which waits at its own node's agent until the daemons started there
have come and gone, then exits 0: their task ends when the job's `mpirun` is done.

This file is copied into every MPI container and run there by the image's `python3`, where rade is not
installed: it uses the standard library only, and must stay runnable by older Pythons (3.7 on).

The wire: frames of one type byte, a 4-byte big-endian length and the payload. The server opens with
CHALLENGE (a random nonce); the client answers HELLO, a JSON request (`op` "run" or "hold", `job`,
`attempt`, `argv`) and an HMAC-SHA256 of the nonce and request under the job's secret; the job's secret
is an HMAC of the node agents' shared key and the job's id and attempt, so a job's containers (which get
their job's secret in a read-only file) can start processes only in their own job's containers. Then
STDIN (an empty one is end-of-input) goes up; STDOUT, STDERR and finally EXIT (the status as 4 bytes) or
ERROR (one line of text) come down.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import select
import signal
import socket
import struct
import sys

PROTOCOL_VERSION = 1
RSH_PORT = 7412
MAX_PAYLOAD = 1 << 20
_HEADER = struct.Struct(">BI")

CHALLENGE, HELLO, STDIN, STDOUT, STDERR, EXIT, ERROR = (ord(c) for c in "CHIOEXR")
FRAME_TYPES = frozenset((CHALLENGE, HELLO, STDIN, STDOUT, STDERR, EXIT, ERROR))

# Inside the container: where the agent mounts the job's MPI files (hostfile, secret, this program).
MOUNT_POINT = "/run/rade"
KEY_FILE = "key"
JOB_FILE = "job.json"
# Exit status of `rade-rsh` when it cannot reach or use the remote side, as ssh's.
FAILED = 255


class RshProtocolError(Exception):
    """A peer broke the protocol (bad frame, bad handshake)."""


# -- frames (no I/O) -----------------------------------------------------------------------------------------

def encode_frame(kind: int, payload: bytes = b"") -> bytes:
    if kind not in FRAME_TYPES:
        raise RshProtocolError(f"unknown frame type {kind!r}")
    if len(payload) > MAX_PAYLOAD:
        raise RshProtocolError(f"frame of {len(payload)} bytes is over the {MAX_PAYLOAD} limit")
    return _HEADER.pack(kind, len(payload)) + payload


class FrameReader:
    """Bytes in, (type, payload) frames out, whatever the chunking."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list:
        self._buffer += data
        frames = []
        while len(self._buffer) >= _HEADER.size:
            kind, length = _HEADER.unpack_from(self._buffer)
            if kind not in FRAME_TYPES:
                raise RshProtocolError(f"unknown frame type {kind!r}")
            if length > MAX_PAYLOAD:
                raise RshProtocolError(f"frame of {length} bytes is over the {MAX_PAYLOAD} limit")
            end = _HEADER.size + length
            if len(self._buffer) < end:
                break
            frames.append((kind, self._buffer[_HEADER.size:end]))
            self._buffer = self._buffer[end:]
        return frames

    @property
    def pending(self) -> int:
        return len(self._buffer)


def encode_exit(status: int) -> bytes:
    return encode_frame(EXIT, struct.pack(">i", status))


def decode_exit(payload: bytes) -> int:
    if len(payload) != 4:
        raise RshProtocolError(f"an EXIT frame holds 4 bytes, not {len(payload)}")
    return struct.unpack(">i", payload)[0]


# -- the handshake (no I/O) ----------------------------------------------------------------------------------

def job_secret(cluster_key: bytes, job_id: int, attempt: int) -> bytes:
    """The secret of one attempt of one job: what its containers hold, derived from the agents' key."""
    return hmac.new(cluster_key, f"rade-rsh job {job_id}.{attempt}".encode(), hashlib.sha256).digest()


def make_hello(secret: bytes, nonce: bytes, request: dict) -> bytes:
    """The HELLO payload answering `nonce`: the request as JSON, then a 32-byte MAC of nonce and request."""
    body = json.dumps(dict(request, v=PROTOCOL_VERSION), sort_keys=True).encode()
    return body + hmac.new(secret, nonce + body, hashlib.sha256).digest()


def read_hello(payload: bytes) -> tuple:
    """(request, body, mac) of a HELLO payload, before the MAC is checked."""
    if len(payload) <= 32:
        raise RshProtocolError("HELLO too short")
    body, mac = payload[:-32], payload[-32:]
    try:
        request = json.loads(body.decode())
    except ValueError:
        raise RshProtocolError("HELLO is not JSON") from None
    if not isinstance(request, dict) or request.get("v") != PROTOCOL_VERSION:
        raise RshProtocolError("HELLO of another protocol version")
    if request.get("op") not in ("run", "hold"):
        raise RshProtocolError("HELLO asks for an unknown operation")
    for name in ("job", "attempt"):
        if not isinstance(request.get(name), int) or isinstance(request.get(name), bool):
            raise RshProtocolError(f"HELLO: {name} is not a number")
    argv = request.get("argv", [])
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise RshProtocolError("HELLO: argv is not a list of strings")
    if request["op"] == "run" and not argv:
        raise RshProtocolError("HELLO: no command to run")
    return request, body, mac


def is_authentic(secret: bytes, nonce: bytes, body: bytes, mac: bytes) -> bool:
    return hmac.compare_digest(hmac.new(secret, nonce + body, hashlib.sha256).digest(), mac)


# -- the command line (no I/O) -------------------------------------------------------------------------------

# ssh options that take a value: `rade-rsh` accepts and ignores them, as launchers add some (`-x`, `-l`).
_OPTIONS_WITH_VALUE = frozenset("bcDEeFIiJLlmOopQRSWw")


def parse_rsh_args(args: list) -> tuple:
    """(host, command words) of an ssh-style argument list: options before the host are skipped."""
    index = 0
    while index < len(args) and args[index].startswith("-") and args[index] != "--":
        option = args[index]
        index += 1
        if len(option) == 2 and option[1] in _OPTIONS_WITH_VALUE:
            index += 1
    if index < len(args) and args[index] == "--":
        index += 1
    if index >= len(args):
        raise ValueError("usage: rade-rsh HOST COMMAND... | rade-rsh --hold")
    host, words = args[index], list(args[index + 1:])
    if not words:
        raise ValueError(f"rade-rsh: no command for {host} (an interactive login is not offered)")
    return host, words


# -- the client: `rade-rsh` inside the container -------------------------------------------------------------

def _read_files(base: str) -> tuple:
    with open(os.path.join(base, KEY_FILE), "rb") as handle:
        secret = bytes.fromhex(handle.read().decode().strip())
    with open(os.path.join(base, JOB_FILE), encoding="utf-8") as handle:
        job = json.load(handle)
    return secret, job


def _address_of(host: str, job: dict) -> str:
    return str(job.get("addresses", {}).get(host) or host)


def _connect(address: str, port: int, secret: bytes, request: dict, timeout: float = 30.0) -> socket.socket:
    sock = socket.create_connection((address, port), timeout=timeout)
    reader = FrameReader()
    frames: list = []
    while not frames:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("the agent closed the connection")
        frames = reader.feed(data)
    kind, nonce = frames[0]
    if kind != CHALLENGE:
        raise RshProtocolError("the agent did not open with a challenge")
    sock.sendall(encode_frame(HELLO, make_hello(secret, nonce, request)))
    sock.settimeout(None)
    return sock


def _relay(sock: socket.socket, stdin: int | None) -> int:
    """Carry stdin up and stdout/stderr down until EXIT or ERROR; the remote status."""
    reader = FrameReader()
    outputs = {STDOUT: sys.stdout.fileno(), STDERR: sys.stderr.fileno()}
    while True:
        watched = [sock] + ([stdin] if stdin is not None else [])
        ready, _, _ = select.select(watched, [], [])
        if stdin is not None and stdin in ready:
            try:
                data = os.read(stdin, 65536)
            except OSError:
                data = b""
            sock.sendall(encode_frame(STDIN, data))
            if not data:
                stdin = None
        if sock in ready:
            data = sock.recv(65536)
            if not data:
                sys.stderr.write("rade-rsh: the agent closed the connection\n")
                return FAILED
            for kind, payload in reader.feed(data):
                if kind in outputs:
                    _write_all(outputs[kind], payload)
                elif kind == EXIT:
                    return decode_exit(payload)
                elif kind == ERROR:
                    sys.stderr.write("rade-rsh: {}\n".format(payload.decode(errors="replace")))
                    return FAILED


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _hold(base: str, secret: bytes, job: dict) -> int:
    """Wait at this node's agent until the job's daemons here are done; reconnect if the agent restarts."""
    import time

    address = _address_of(job.get("node", ""), job) or "127.0.0.1"
    request = {"op": "hold", "job": job["job"], "attempt": job["attempt"], "argv": []}
    while True:
        try:
            sock = _connect(address, int(job.get("port", RSH_PORT)), secret, request)
            status = _relay(sock, None)
            if status != FAILED:
                return status
        except (OSError, RshProtocolError):
            pass
        time.sleep(1.0)


def _quit(signum: int, frame: object) -> None:
    # Closing the connection is what stops the remote side: exit at once, as ssh does when killed.
    os._exit(128 + signum)


def main(args: list) -> int:
    base = os.environ.get("RADE_MPI_DIR", MOUNT_POINT)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _quit)
    try:
        secret, job = _read_files(base)
    except (OSError, ValueError) as err:
        sys.stderr.write(f"rade-rsh: cannot read the job's files in {base}: {err}\n")
        return FAILED
    if args[:1] == ["--hold"]:
        return _hold(base, secret, job)
    try:
        host, words = parse_rsh_args(args)
    except ValueError as err:
        sys.stderr.write(f"{err}\n")
        return FAILED
    request = {"op": "run", "job": job["job"], "attempt": job["attempt"], "argv": [" ".join(words)]}
    try:
        sock = _connect(_address_of(host, job), int(job.get("port", RSH_PORT)), secret, request)
    except (OSError, RshProtocolError) as err:
        sys.stderr.write(f"rade-rsh: cannot reach the rade agent of {host}: {err}\n")
        return FAILED
    try:
        return _relay(sock, sys.stdin.fileno() if sys.stdin is not None else None)
    except (OSError, RshProtocolError) as err:
        sys.stderr.write(f"rade-rsh: connection to {host} lost: {err}\n")
        return FAILED
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
