"""The client library: talk to the scheduler's client socket, one request at a time or many in flight.

The address comes from `--scheduler`, else `RADE_SCHEDULER`, else the endpoints file the scheduler (or the
local dev cluster) wrote under the state root, else the default port on this machine. Every request
carries an id that its reply echoes, over a DEALER socket, so `submit_many` can keep a window of requests
in flight. A scheduler that does not answer within the timeout is one clear error, never a hang.

CURVE: the client's key pair comes from `RADE_KEY` (a key file), else the dev cluster's key for this user
under the state root, else `~/.rade/key` (what `rade keys user NAME` gives a user); the scheduler's public
key from `RADE_SCHEDULER_KEY`, else the key file's `scheduler-key`, else the endpoints file. A refused
handshake is silent in ZeroMQ (the messages just wait), so a monitor on the socket watches for it and
turns it into one clear error at once.
"""

from __future__ import annotations

import itertools
import json
import os
import pwd
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import zmq

from jobs.errors import RadeError
from jobs.messages import Cancel, Drain, ErrorReply, Message, Query, Reply, Resume, Submit, decode, encode

DEFAULT_CLIENT_PORT = 7411
DEFAULT_TIMEOUT = 10.0


class SchedulerUnreachable(RadeError):
    """No answer from the scheduler in time."""


class SchedulerRefused(RadeError):
    """The scheduler answered with an error (a bad request, an unknown job, not allowed...)."""


class AuthenticationFailed(RadeError):
    """The CURVE handshake with the scheduler failed: an unknown key, a wrong scheduler key, no key."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """A client's CURVE key pair and the scheduler's public key, Z85; `source` names the key file."""

    public: str
    secret: str
    server: str
    source: str


def find_credentials(root: str) -> Credentials | None:
    """This user's key and the scheduler's public key, from where the module docstring says; None when
    this user has no key (the client then connects without CURVE, which a CURVE scheduler refuses)."""
    from jobs.keyfiles import KeyDir, read_key_file

    candidates = [os.environ.get("RADE_KEY", ""), str(KeyDir(Path(root, "cluster", "keys")).user_secret(current_user())),
                  os.path.expanduser("~/.rade/key")]
    path = next((c for c in candidates if c and os.path.exists(c)), None)
    if path is None:
        if os.environ.get("RADE_KEY"):
            read_key_file(os.environ["RADE_KEY"], secret=True)  # raises: no such key file
        return None
    key = read_key_file(path, secret=True)
    server = os.environ.get("RADE_SCHEDULER_KEY") or key.metadata.get("scheduler-key", "")
    if not server:
        try:
            with open(endpoints_file(root), encoding="utf-8") as handle:
                server = str(json.load(handle).get("server_key") or "")
        except (OSError, ValueError, AttributeError):
            server = ""
    if not server:
        raise AuthenticationFailed(f"{path}: no scheduler key to check the scheduler with",
                                   "set RADE_SCHEDULER_KEY to the scheduler's public key (its scheduler.key)")
    assert key.secret is not None
    return Credentials(key.public, key.secret, server, path)


def endpoints_file(root: str) -> str:
    return os.path.join(root, "scheduler", "endpoints.json")


def find_scheduler(explicit: str | None, root: str) -> str:
    """The scheduler's client endpoint, from the flag, the environment, the endpoints file, or the default."""
    address = explicit or os.environ.get("RADE_SCHEDULER")
    if address:
        return client_endpoint(address)
    try:
        with open(endpoints_file(root), encoding="utf-8") as handle:
            return str(json.load(handle)["clients"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"tcp://127.0.0.1:{DEFAULT_CLIENT_PORT}"


def client_endpoint(address: str) -> str:
    """`host`, `host:port` or a full ZeroMQ endpoint, as an endpoint (the default port for a bare host)."""
    if "://" in address:
        return address
    if ":" in address:
        return f"tcp://{address}"
    return f"tcp://{address}:{DEFAULT_CLIENT_PORT}"


def current_user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def wire_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A job spec (plain data, e.g. `JobSpec.to_dict()`) without the keys that say only what leaving them
    out says: null, or a field's default (of the same type). The scheduler reads it to the same `JobSpec`,
    and a smaller spec costs less to send, decode and check on every submission. Anything not understood
    is kept as it is, so the scheduler judges a wrong spec exactly as it was written."""
    from jobs.fields import JOB

    return _without_defaults(spec, JOB)


def _without_defaults(data: Mapping[str, Any], record: Any) -> dict[str, Any]:
    from jobs.compound_kinds import Record  # loaded with jobs.fields already: a lookup, not an import

    lean: dict[str, Any] = {}
    for key, value in data.items():
        field = record.by_name.get(key) if isinstance(key, str) else None
        if field is None or field.required:
            lean[key] = value
        elif value is None:
            continue  # a null field is one not given
        elif isinstance(field.kind, Record) and isinstance(value, Mapping):
            inner = _without_defaults(value, field.kind)
            if inner or field.default != {}:
                lean[key] = inner  # an empty section stays when leaving it out would mean something else
        elif not _is_default(value, field.default):
            lean[key] = value
    return lean


def _is_default(value: Any, default: Any) -> bool:
    if isinstance(default, tuple):  # sequences' defaults are tuples; plain data carries lists
        return isinstance(value, list | tuple) and not value and not default
    if isinstance(default, dict):
        return isinstance(value, dict) and not value and not default
    # `type is`: True == 1 == 1.0, but `tasks: true` is an error the scheduler must still see.
    return default is not None and type(value) is type(default) and value == default


class SchedulerClient:
    """A connection to the scheduler's client socket. Not thread-safe: one per thread."""

    def __init__(self, endpoint: str, timeout: float = DEFAULT_TIMEOUT, credentials: Credentials | None = None,
                 root: str | None = None) -> None:
        """`credentials` (or those `find_credentials(root)` finds when `root` is given) make it a CURVE client."""
        self.endpoint = endpoint
        self.timeout = timeout
        self.credentials = credentials if credentials is not None or root is None else find_credentials(root)
        self._context = zmq.Context.instance()
        self._ids = itertools.count(1)
        self._socket: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self._poller = zmq.Poller()  # the socket and its monitor, once connected

    def _sock(self) -> zmq.Socket:
        if self._socket is None:
            sock = self._context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDTIMEO, max(1, int(self.timeout * 1000)))
            if self.credentials is not None:
                sock.setsockopt(zmq.CURVE_SERVERKEY, self.credentials.server.encode())
                sock.setsockopt(zmq.CURVE_PUBLICKEY, self.credentials.public.encode())
                sock.setsockopt(zmq.CURVE_SECRETKEY, self.credentials.secret.encode())
            self._monitor = sock.get_monitor_socket(
                zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
            sock.connect(self.endpoint)
            self._socket = sock
            self._poller = zmq.Poller()
            self._poller.register(sock, zmq.POLLIN)
            self._poller.register(self._monitor, zmq.POLLIN)
        return self._socket

    def close(self) -> None:
        if self._socket is not None:
            if self._monitor is not None:
                self._socket.disable_monitor()
                self._monitor.close(0)
                self._monitor = None
            self._socket.close(0)
            self._socket = None
            self._poller = zmq.Poller()

    def _handshake_failure(self) -> None:
        """Raise AuthenticationFailed if the monitor saw the handshake fail."""
        from zmq.utils.monitor import recv_monitor_message

        assert self._monitor is not None
        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)
            code = event["event"]
            if code not in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                            zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                continue
            self.close()
            creds = self.credentials
            if creds is None:
                raise AuthenticationFailed(f"the scheduler at {self.endpoint} refused this client: it has no key",
                                           "ask an admin for one ('rade keys user NAME'), or set RADE_KEY")
            if code == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                raise AuthenticationFailed(f"the scheduler at {self.endpoint} refused the key in {creds.source}",
                                           "this key is not (or no longer) registered: ask an admin for one")
            raise AuthenticationFailed(f"the secure handshake with {self.endpoint} failed",
                                       "the scheduler's key is not the one this client expects "
                                       "(RADE_SCHEDULER_KEY or the key file's scheduler-key), or it does not "
                                       "use CURVE")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- request/reply --------------------------------------------------------------------------------------

    def request(self, msg: Message, timeout: float | None = None) -> Any:
        """Send one request and return its reply's data; raise on an error reply or no reply in time."""
        # `request_many` with a window of one, without its bookkeeping: one at a time is what most
        # commands (and a script submitting in a loop) do, and each round trip waits on this code.
        sock = self._sock()
        limit = self.timeout if timeout is None else timeout
        request_id = next(self._ids).to_bytes(8, "big")
        self._send(sock, [request_id, encode(msg)], limit)
        while True:
            frames = self._receive(sock, limit)
            for reply_id, frame in zip(frames[::2], frames[1::2]):
                if reply_id == request_id:
                    reply = decode(frame)
                    if isinstance(reply, ErrorReply):
                        raise SchedulerRefused(reply.message, reply.hint)
                    return reply.data if isinstance(reply, Reply) else None

    def _send(self, sock: zmq.Socket, frames: list[bytes], limit: float) -> None:
        try:
            sock.send_multipart(frames)
        except zmq.Again:
            # No connection to queue it on: a refused handshake drops it, and a DEALER without one
            # would wait forever.
            self._handshake_failure()
            self.close()
            raise SchedulerUnreachable(f"cannot send to the scheduler at {self.endpoint} within {limit:g}s",
                                       "is 'rade scheduler' running there?") from None

    def _receive(self, sock: zmq.Socket, limit: float) -> list[bytes]:
        """The next message of replies; raises when none comes within `limit` seconds."""
        while True:
            ready = dict(self._poller.poll(limit * 1000))
            if self._monitor in ready:
                self._handshake_failure()
            if sock in ready:
                return sock.recv_multipart()
            if self._monitor not in ready:
                self.close()  # a late reply must not be taken for the answer to a later request
                raise SchedulerUnreachable(
                    f"no answer from the scheduler at {self.endpoint} within {limit:g}s",
                    "is 'rade scheduler' running there? give its address with --scheduler or RADE_SCHEDULER")

    def request_many(self, msgs: Iterable[Message], window: int = 256, timeout: float | None = None) -> list[Any]:
        """Send requests with up to `window` in flight; replies' data in request order."""
        sock = self._sock()
        limit = self.timeout if timeout is None else timeout
        pending: dict[bytes, int] = {}
        results: dict[int, Any] = {}
        errors: dict[int, ErrorReply] = {}
        source = enumerate(msgs)
        exhausted = False
        count = 0
        while True:
            while not exhausted and len(pending) < window:
                item = next(source, None)
                if item is None:
                    exhausted = True
                    break
                index, msg = item
                request_id = next(self._ids).to_bytes(8, "big")
                self._send(sock, [request_id, encode(msg)], limit)
                pending[request_id] = index
                count += 1
            if not pending:
                break
            frames = self._receive(sock, limit)
            for request_id, frame in zip(frames[::2], frames[1::2]):  # replies come in (id, message) pairs
                if request_id not in pending:
                    continue
                index = pending.pop(request_id)
                reply = decode(frame)
                if isinstance(reply, ErrorReply):
                    errors[index] = reply
                elif isinstance(reply, Reply):
                    results[index] = reply.data
        if errors:
            first = errors[min(errors)]
            raise SchedulerRefused(first.message, first.hint)
        return [results.get(i) for i in range(count)]

    # -- the requests ---------------------------------------------------------------------------------------

    def submit(self, spec: Mapping[str, Any], user: str | None = None) -> list[int]:
        return list(self.request(Submit(spec=wire_spec(spec), user=user or current_user(), cwd=os.getcwd()))["jobs"])

    def submit_many(self, specs: Iterable[Mapping[str, Any]], user: str | None = None,
                    window: int = 256) -> list[int]:
        who = user or current_user()
        replies = self.request_many((Submit(spec=wire_spec(s), user=who) for s in specs), window=window)
        return [job for reply in replies for job in reply["jobs"]]

    def queue(self, user: str | None = None, include_ended: bool = False) -> list[dict[str, Any]]:
        return self.request(Query(what="queue", filters={"user": user, "all": include_ended}))

    def show(self, job_id: int) -> dict[str, Any]:
        return self.request(Query(what="show", filters={"job": job_id}))

    def nodes(self) -> list[dict[str, Any]]:
        return self.request(Query(what="nodes"))

    def stats(self) -> dict[str, Any]:
        return self.request(Query(what="stats"))

    def cancel(self, job_ids: Iterable[int], user: str | None = None) -> dict[str, str]:
        return self.request(Cancel(job_ids=tuple(job_ids), user=user or current_user()))["results"]

    def drain(self, nodes: Iterable[str], reason: str, deadline: float | None = None) -> dict[str, str]:
        return self.request(Drain(nodes=tuple(nodes), reason=reason, deadline=deadline))["results"]

    def resume(self, nodes: Iterable[str]) -> dict[str, str]:
        return self.request(Resume(nodes=tuple(nodes)))["results"]

    def wait(self, job_id: int, chunk: float = 30.0) -> dict[str, Any]:
        """Block until the job ends; returns its state and exit code. Asks again every `chunk` seconds, so a
        scheduler restart in between costs nothing but the time it is away."""
        while True:
            reply = self.request(Query(what="wait", filters={"job": job_id, "timeout": chunk}),
                                 timeout=chunk + self.timeout)
            if reply.get("ended"):
                return reply
