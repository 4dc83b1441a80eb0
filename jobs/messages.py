"""The wire protocol between scheduler, agents and clients, without any I/O: messages to bytes and back.

A frame is one msgpack map: `v` (the protocol version), `t` (the message type) and the message's fields.
`encode(message) -> bytes` and `decode(frame) -> message` are the whole interface; sockets live at the
daemons' edges. Every field is checked against its dataclass annotation in both directions, so a peer's
bug or a hostile client can produce only `ProtocolError`, never a half-read message or another exception.

Orders to agents (`Launch`, `Kill`) and the task reports they answer with (`TaskUpdate`) carry
(job_id, task_id, attempt), so a resent order is recognised and never starts a second copy; reports carry
a sequence number so a stale one can be dropped.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import msgpack

from jobs.errors import ProtocolError
from jobs.states import NodeState, TaskState

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
    for name, kind, _, where in _fields(cls):
        body[name] = _to_wire(getattr(message, name), kind, where)
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
    return _from_map(cls, body, cls.TYPE)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    # Resolving annotations costs ~100 us a call; every frame needs them, and they never change.
    return typing.get_type_hints(cls)


@functools.cache
def _shape(kind: Any) -> tuple[Any, tuple[Any, ...]]:
    """A type's origin and arguments, asked once per type: typing's answers cost more than the encoding."""
    return typing.get_origin(kind), typing.get_args(kind)


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, Any, bool, str], ...]:
    """Each field's name, type, whether a frame must carry it, and where it is in a message of this class
    (for errors), asked once per class."""
    hints = _hints(cls)
    return tuple((spec.name, hints[spec.name],
                  spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING,
                  f"{getattr(cls, 'TYPE', cls.__name__)}.{spec.name}")
                 for spec in dataclasses.fields(cls))


def _from_map(cls: type, body: dict[str, Any], where: str) -> Any:
    fields = _fields(cls)
    if len(body) > len(fields) or not body.keys() <= _hints(cls).keys():
        unknown = set(body) - set(_hints(cls))
        raise ProtocolError(f"{where}: unknown field {min(map(str, unknown))!r}")
    top = where == getattr(cls, "TYPE", None)  # a message itself: its fields' places are known
    values = {}
    for name, kind, required, place in fields:
        if name not in body:
            if required:
                raise ProtocolError(f"{where}: missing field {name!r}")
            continue
        values[name] = _from_wire(body[name], kind, place if top else f"{where}.{name}")
    return cls(**values)


def _wrong(where: str, kind: Any, value: Any) -> ProtocolError:
    name = getattr(kind, "__name__", str(kind))
    return ProtocolError(f"{where}: expected {name}, got {type(value).__name__}")


_SCALARS = (int, str, bool)


def _from_wire(value: Any, kind: Any, where: str) -> Any:
    """`value` as read from msgpack, checked against `kind` and turned into it (tuples, enums...)."""
    if kind in _SCALARS and type(value) is kind:
        return value  # the common case, before the general checks below
    origin, args = _shape(kind)
    if kind is Any:
        return _plain(value, where)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _from_wire(value, inner[0], where)
    if kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _wrong(where, kind, value)
    if kind in (int, str, bool):
        if type(value) is kind:
            return value
        raise _wrong(where, kind, value)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(value)
        except (ValueError, TypeError):
            raise ProtocolError(f"{where}: {value!r} is not a {kind.__name__}") from None
    if origin is tuple:
        if not isinstance(value, list):
            raise _wrong(where, "a list", value)
        if len(args) == 2 and args[1] is Ellipsis:
            if args[0] in _SCALARS and _all_of(value, args[0]):
                return tuple(value)
            return tuple(_from_wire(item, args[0], f"{where}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            raise ProtocolError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_from_wire(item, a, f"{where}[{i}]") for i, (item, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong(where, "a map", value)
        if args == (str, str) and _all_of(value, str) and _all_of(value.values(), str):
            return value
        if args == (str, Any) and _all_of(value, str):
            return _plain(value, where, -1)
        return {_from_wire(k, args[0], where): _from_wire(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise _wrong(where, kind, value)
        return _from_map(kind, dict(value), where)
    raise ProtocolError(f"{where}: no wire form for {kind!r}")


def _to_wire(value: Any, kind: Any, where: str) -> Any:
    """`value` as msgpack should carry it, after checking it against `kind` as decoding would."""
    if kind in _SCALARS and type(value) is kind:
        return value  # the common case, before the general checks below
    origin, args = _shape(kind)
    if kind is Any:
        return _plain(value, where)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        return _to_wire(value, next(a for a in args if a is not type(None)), where)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        if not isinstance(value, kind):
            raise _wrong(where, kind, value)
        return value.value
    if origin is tuple:
        if not isinstance(value, tuple | list):
            raise _wrong(where, "a tuple", value)
        if len(args) == 2 and args[1] is Ellipsis and args[0] in _SCALARS and _all_of(value, args[0]):
            return list(value)  # CPU ids, node names: checked in one sweep
        item_kinds = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(item_kinds) != len(value):
            raise ProtocolError(f"{where}: expected {len(item_kinds)} items, got {len(value)}")
        return [_to_wire(item, k, f"{where}[{i}]") for i, (item, k) in enumerate(zip(value, item_kinds))]
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong(where, "a dict", value)
        if args == (str, str) and _all_of(value, str) and _all_of(value.values(), str):
            return value  # an environment, labels
        if args == (str, Any) and _all_of(value, str):
            return _plain(value, where, -1)  # a spec: free-form below its text keys (each at depth 0)
        return {_to_wire(k, args[0], where): _to_wire(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, kind):
            raise _wrong(where, kind, value)
        return {name: _to_wire(getattr(value, name), k, f"{where}.{name}") for name, k in _hints(kind).items()}
    return _from_wire(value, kind, where)  # scalars: the same check both ways


def _all_of(items: Any, kind: type) -> bool:
    """Every item is exactly of `kind` (not a subclass: a bool is no int on the wire)."""
    return all(type(item) is kind for item in items)


_ATOMS = frozenset({type(None), bool, int, float, str, bytes})


def _plain(value: Any, where: str, depth: int = 0) -> Any:
    """Free-form data (a spec, a reply): only what msgpack carries natively, maps keyed by text."""
    if depth > 64:
        raise ProtocolError(f"{where}: nested too deeply")
    if type(value) in _ATOMS or isinstance(value, bool | int | float | str | bytes):
        return value
    # Atoms inside are taken as they are, without a call (or a place name) each: most of a spec is atoms.
    inner = depth < 64
    if isinstance(value, list | tuple) and not isinstance(value, msgpack.ExtType):
        return [item if inner and type(item) in _ATOMS else _plain(item, where, depth + 1) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ProtocolError(f"{where}: map keys must be text")
        return {k: v if inner and type(v) in _ATOMS else _plain(v, f"{where}.{k}", depth + 1)
                for k, v in value.items()}
    raise ProtocolError(f"{where}: {type(value).__name__} cannot travel in a message")
