"""The wire protocol between scheduler, agents and clients, without any I/O: messages to bytes and back.

A frame is one msgpack map: `v` (the protocol version), `t` (the message type) and the message's fields.
`encode(message) -> bytes` and `decode(frame) -> message` are the whole interface; sockets live at the
daemons' edges. Every field is checked against its dataclass annotation in both directions (`jobs.wireform`),
so a peer's bug or a hostile client can produce only `ProtocolError`, never a half-read message or another
exception.

Orders to agents (`Launch`, `Kill`) and the task reports they answer with (`TaskUpdate`) carry
(job_id, task_id, attempt), so a resent order is recognised and never starts a second copy; reports carry
a sequence number so a stale one can be dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from jobs.errors import ProtocolError
from jobs.states import NodeState, TaskState
from jobs.wireform import fields_of, from_map, to_wire

PROTOCOL_VERSION = 1
MAX_FRAME = 16 * 1024 * 1024

_TYPES: dict[str, type] = {}


def _message(name: str):  # a class decorator
    def register(cls: type) -> type:
        cls.TYPE = name  # type: ignore[attr-defined]
        _TYPES[name] = cls
        return cls
    return register


@dataclass(frozen=True, slots=True)
class TaskRef:
    """One attempt of one task of one job: the key every order and report is idempotent by."""

    job_id: int
    task_id: int
    attempt: int


# agent -> scheduler

@_message("register")
@dataclass(frozen=True, slots=True)
class Register:
    """An agent introduces its node: what it has, where it is, and what it still runs (after a restart)."""

    node: str
    cpus: int
    memory: int
    gpus: int
    arch: str
    labels: dict[str, str] = field(default_factory=dict)
    cpu_ids: tuple[int, ...] = ()
    numa_nodes: tuple[tuple[int, ...], ...] = ()  # the CPU ids of each NUMA node
    address: str = ""
    running: tuple[TaskRef, ...] = ()
    agent_version: str = ""


@_message("heartbeat")
@dataclass(frozen=True, slots=True)
class Heartbeat:
    node: str
    seq: int
    running: tuple[TaskRef, ...] = ()


@_message("task_update")
@dataclass(frozen=True, slots=True)
class TaskUpdate:
    """What a task is now, written only by its agent; `seq` orders the updates of one task."""

    job_id: int
    task_id: int
    attempt: int
    seq: int
    state: TaskState
    node: str = ""
    exit_code: int | None = None
    reason: str = ""
    cpu_seconds: float = 0.0
    peak_memory: int = 0


# scheduler -> agent

@_message("registered")
@dataclass(frozen=True, slots=True)
class Registered:
    """The scheduler's welcome: how often to send heartbeats, and the node's state as it sees it."""

    node: str
    heartbeat_interval: float
    state: NodeState = NodeState.IDLE
    scheduler_id: str = ""


@_message("reregister")
@dataclass(frozen=True, slots=True)
class Reregister:
    """The scheduler does not know what this node runs (it restarted, or had declared the node down):
    the agent sends `Register` again with its running tasks, then its tasks' latest updates."""

    node: str
    reason: str = ""


@_message("launch")
@dataclass(frozen=True, slots=True)
class Launch:
    """Start one task's container: the job's spec (`JobSpec.to_dict()`), every node of the job in rank
    order, this task's CPUs, memory, GPUs and the environment rade adds."""

    job_id: int
    task_id: int
    attempt: int
    spec: dict[str, Any]
    nodes: tuple[str, ...]
    cpus: tuple[int, ...]
    memory: int
    gpus: tuple[int, ...] = ()
    ranks: int = 1
    env: dict[str, str] = field(default_factory=dict)
    uid: int = -1  # who the task runs as: the job owner's ids (-1: as the image says)
    gid: int = -1
    pids_limit: int = 0  # processes per task (0: no limit)


@_message("kill")
@dataclass(frozen=True, slots=True)
class Kill:
    """Stop one task attempt: `signal` first, SIGKILL after `grace` seconds."""

    job_id: int
    task_id: int
    attempt: int
    signal: int = 15
    reason: str = ""
    grace: float = 10.0


# client -> scheduler

@_message("submit")
@dataclass(frozen=True, slots=True)
class Submit:
    spec: dict[str, Any]
    user: str
    cwd: str = ""


@_message("cancel")
@dataclass(frozen=True, slots=True)
class Cancel:
    job_ids: tuple[int, ...]
    user: str = ""


@_message("query")
@dataclass(frozen=True, slots=True)
class Query:
    """`what` is queue, show or nodes; `filters` narrows it (user, state, job id...)."""

    what: str
    filters: dict[str, Any] = field(default_factory=dict)


@_message("drain")
@dataclass(frozen=True, slots=True)
class Drain:
    nodes: tuple[str, ...]
    reason: str
    deadline: float | None = None  # seconds from now after which running work is stopped and requeued


@_message("resume")
@dataclass(frozen=True, slots=True)
class Resume:
    nodes: tuple[str, ...]


@_message("logs")
@dataclass(frozen=True, slots=True)
class Logs:
    job_id: int
    task_id: int | None = None
    follow: bool = False
    offset: int = 0


# scheduler -> client

@_message("reply")
@dataclass(frozen=True, slots=True)
class Reply:
    ok: bool = True
    data: Any = None


@_message("error")
@dataclass(frozen=True, slots=True)
class ErrorReply:
    message: str
    hint: str | None = None


Message = (Register | Heartbeat | TaskUpdate | Registered | Reregister | Launch | Kill | Submit | Cancel | Query
           | Drain | Resume | Logs | Reply | ErrorReply)
MESSAGE_TYPES: dict[str, type] = dict(_TYPES)


def encode(message: Message) -> bytes:
    """The frame of a message; ProtocolError if a field has the wrong type or the frame is too large."""
    cls = type(message)
    if _TYPES.get(getattr(cls, "TYPE", None)) is not cls:
        raise ProtocolError(f"{cls.__name__} is not a message type")
    body: dict[str, Any] = {"v": PROTOCOL_VERSION, "t": cls.TYPE}
    for name, kind, _, where in fields_of(cls):
        body[name] = to_wire(getattr(message, name), kind, where)
    try:
        frame = msgpack.packb(body, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as err:
        raise ProtocolError(f"cannot encode {cls.__name__}: {err}") from None
    if len(frame) > MAX_FRAME:
        raise ProtocolError(f"a {cls.TYPE} frame of {len(frame)} bytes is over the {MAX_FRAME}-byte limit")
    return frame


def decode(frame: bytes) -> Message:
    """The message in a frame; ProtocolError for anything malformed, truncated, oversized, of an unknown
    type or version, or with a missing, unknown or wrongly typed field."""
    if not isinstance(frame, bytes | bytearray | memoryview):
        raise ProtocolError(f"a frame is bytes, not {type(frame).__name__}")
    if len(frame) > MAX_FRAME:
        raise ProtocolError(f"a frame of {len(frame)} bytes is over the {MAX_FRAME}-byte limit")
    try:
        body = msgpack.unpackb(frame, raw=False, strict_map_key=True,
                               use_list=True)
    except Exception as err:  # noqa: BLE001 - msgpack raises many types for bad input; the peer gets one
        raise ProtocolError(f"malformed frame: {type(err).__name__}: {err}") from None
    if not isinstance(body, dict):
        raise ProtocolError(f"a frame is a map, not {type(body).__name__}")
    version, name = body.pop("v", None), body.pop("t", None)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {version!r} is not {PROTOCOL_VERSION}",
                            "run the same rade version on the scheduler, agents and clients")
    cls = _TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message type {name!r}" if name is not None else "a frame without a type 't'")
    return from_map(cls, body, cls.TYPE)
