"""The wire codec: every message type round-trips, and any bytes at all decode to a message or raise
ProtocolError, never anything else."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.errors import ProtocolError
from jobs.messages import (
    MAX_FRAME,
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Heartbeat,
    Launch,
    Submit,
    TaskRef,
    decode,
    encode,
)
from jobs.spec import JobSpec

plain = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False),
              st.text(max_size=10), st.binary(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=10,
)


def strategy_for(kind: Any) -> st.SearchStrategy:
    """Values of an annotated field type, as the codec accepts them."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return plain
    if origin in (types.UnionType, typing.Union):
        return st.one_of(*[strategy_for(a) for a in args])
    if kind is type(None):
        return st.none()
    if kind is int:
        return st.integers(-(2**63), 2**64 - 1)
    if kind is float:
        return st.floats(allow_nan=False)
    if kind is str:
        return st.text(max_size=12)
    if kind is bool:
        return st.booleans()
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return st.sampled_from(list(kind))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(strategy_for(args[0]), max_size=4).map(tuple)
        return st.tuples(*[strategy_for(a) for a in args])
    if origin is dict:
        return st.dictionaries(strategy_for(args[0]), strategy_for(args[1]), max_size=4)
    if dataclasses.is_dataclass(kind):
        return messages_of(kind)
    raise AssertionError(f"no strategy for {kind!r}")


def messages_of(cls: type) -> st.SearchStrategy:
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(cls)})


@pytest.mark.parametrize("name", sorted(MESSAGE_TYPES))
def test_every_message_type_round_trips(name):
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(messages_of(MESSAGE_TYPES[name]))
    def round_trip(message):
        frame = encode(message)
        assert isinstance(frame, bytes) and len(frame) <= MAX_FRAME
        assert decode(frame) == message

    round_trip()


def test_a_launch_carries_a_job_spec_that_reads_back():
    spec = JobSpec("heat", "mpi:bookworm", command=("python3", "heat.py"))
    launch = Launch(7, 0, 1, spec.to_dict(), ("n1", "n2"), (0, 1), 2**30, env={"RADE_JOB_ID": "7"})
    back = decode(encode(launch))
    assert back == launch and JobSpec.from_dict(back.spec) == spec


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_protocol_error(frame):
    try:
        decode(frame)
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(MESSAGE_TYPES) + ["nope", 3]), st.sampled_from([PROTOCOL_VERSION, 0, 2, "1"]),
       st.dictionaries(st.sampled_from(["node", "seq", "running", "job_id", "task_id", "attempt", "spec",
                                        "state", "ok", "data", "message", "nodes", "x"]), plain, max_size=6))
def test_well_formed_msgpack_with_wrong_fields_raises_protocol_error(name, version, fields):
    frame = msgpack.packb({"v": version, "t": name, **fields}, use_bin_type=True)
    try:
        decode(frame)
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(messages_of(Heartbeat), st.integers(0, 200))
def test_truncated_frames_raise_protocol_error(message, cut):
    frame = encode(message)
    with pytest.raises(ProtocolError):
        decode(frame[: cut % len(frame)])


@pytest.mark.parametrize(("body", "error"), [
    ({"v": 2, "t": "heartbeat", "node": "n1", "seq": 1}, "protocol version 2 is not 1"),
    ({"t": "heartbeat", "node": "n1", "seq": 1}, "protocol version None is not 1"),
    ({"v": 1, "t": "teleport"}, "unknown message type 'teleport'"),
    ({"v": 1, "node": "n1"}, "a frame without a type 't'"),
    ({"v": 1, "t": "heartbeat", "node": "n1"}, "heartbeat: missing field 'seq'"),
    ({"v": 1, "t": "heartbeat", "node": "n1", "seq": "1"}, "heartbeat.seq: expected int, got str"),
    ({"v": 1, "t": "heartbeat", "node": "n1", "seq": True}, "heartbeat.seq: expected int, got bool"),
    ({"v": 1, "t": "heartbeat", "node": "n1", "seq": 1, "extra": 0}, "heartbeat: unknown field 'extra'"),
    ({"v": 1, "t": "heartbeat", "node": "n1", "seq": 1, "running": [{"job_id": 1}]},
     "heartbeat.running[0]: missing field 'task_id'"),
    ({"v": 1, "t": "task_update", "job_id": 1, "task_id": 0, "attempt": 1, "seq": 1, "state": "DANCING"},
     "task_update.state: 'DANCING' is not a TaskState"),
])
def test_each_kind_of_bad_frame_names_what_is_wrong(body, error):
    with pytest.raises(ProtocolError) as info:
        decode(msgpack.packb(body))
    assert str(info.value).startswith(error)


def test_oversized_and_non_map_frames_are_refused():
    with pytest.raises(ProtocolError, match="over the"):
        decode(b"\x00" * (MAX_FRAME + 1))
    with pytest.raises(ProtocolError, match="a frame is a map, not list"):
        decode(msgpack.packb([1, 2]))
    with pytest.raises(ProtocolError, match="over the"):
        encode(Submit({"blob": b"x" * MAX_FRAME}, "u"))


def test_encoding_checks_field_types_too():
    with pytest.raises(ProtocolError, match="heartbeat.seq: expected int, got str"):
        encode(Heartbeat("n1", "1"))  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="cannot travel"):
        encode(Submit({"when": object()}, "u"))
    with pytest.raises(ProtocolError, match="not a message type"):
        encode(TaskRef(1, 2, 3))  # type: ignore[arg-type]
