"""The wire form of typed values: a dataclass field's value checked against its annotation and turned into
what msgpack carries (tuples as lists, enums as their values, dataclasses as maps), and back.

Both directions check the same way, so a value that would not decode is never sent, and a frame's contents
can produce only `ProtocolError`. `jobs.messages` frames messages with it; what it knows is types, not
messages: the field names in its errors are the `where` its callers pass.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Callable
from typing import Any

import msgpack

from jobs.errors import ProtocolError


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    # Resolving annotations costs ~100 us a call; every frame needs them, and they never change.
    return typing.get_type_hints(cls)


@functools.cache
def _shape(kind: Any) -> tuple[Any, tuple[Any, ...]]:
    """A type's origin and arguments, asked once per type: typing's answers cost more than the encoding."""
    return typing.get_origin(kind), typing.get_args(kind)


@functools.cache
def fields_of(cls: type) -> tuple[tuple[str, Any, bool, str], ...]:
    """Each field's name, type, whether a frame must carry it, and where it is in a message of this class
    (for errors), asked once per class."""
    hints = _hints(cls)
    return tuple((spec.name, hints[spec.name],
                  spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING,
                  f"{getattr(cls, 'TYPE', cls.__name__)}.{spec.name}")
                 for spec in dataclasses.fields(cls))


def from_map(cls: type, body: dict[str, Any], where: str) -> Any:
    """An instance of the dataclass `cls` from a decoded map: every field checked, none unknown or missing
    (but those with defaults); `where` names the map in errors (a message's type at the top)."""
    fields = fields_of(cls)
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
        values[name] = from_wire(body[name], kind, place if top else f"{where}.{name}")
    return cls(**values)


def _wrong(where: str, kind: Any, value: Any) -> ProtocolError:
    name = getattr(kind, "__name__", str(kind))
    return ProtocolError(f"{where}: expected {name}, got {type(value).__name__}")


_SCALARS = (int, str, bool)
_UNIONS = (types.UnionType, typing.Union)


def _either_way(value: Any, kind: Any, args: tuple[Any, ...], where: str,
                convert: Callable[[Any, Any, str], Any]) -> Any:
    """What both directions do alike: free-form data (`Any`) and an optional value (`X | None`: None, or
    `convert` of the value as an X)."""
    if kind is Any:
        return _plain(value, where)
    if value is None and type(None) in args:
        return None
    return convert(value, next(a for a in args if a is not type(None)), where)


def from_wire(value: Any, kind: Any, where: str) -> Any:
    """`value` as read from msgpack, checked against `kind` and turned into it (tuples, enums...)."""
    if kind in _SCALARS and type(value) is kind:
        return value  # the common case, before the general checks below
    origin, args = _shape(kind)
    if kind is Any or origin in _UNIONS:
        return _either_way(value, kind, args, where, from_wire)
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
            return tuple(from_wire(item, args[0], f"{where}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            raise ProtocolError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(from_wire(item, a, f"{where}[{i}]") for i, (item, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong(where, "a map", value)
        if args == (str, str) and _all_of(value, str) and _all_of(value.values(), str):
            return value
        if args == (str, Any) and _all_of(value, str):
            return _plain(value, where, -1)
        return {from_wire(k, args[0], where): from_wire(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise _wrong(where, kind, value)
        return from_map(kind, dict(value), where)
    raise ProtocolError(f"{where}: no wire form for {kind!r}")


def to_wire(value: Any, kind: Any, where: str) -> Any:
    """`value` as msgpack should carry it, after checking it against `kind` as decoding would."""
    if kind in _SCALARS and type(value) is kind:
        return value  # the common case, before the general checks below
    origin, args = _shape(kind)
    if kind is Any or origin in _UNIONS:
        return _either_way(value, kind, args, where, to_wire)
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
        return [to_wire(item, k, f"{where}[{i}]") for i, (item, k) in enumerate(zip(value, item_kinds))]
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong(where, "a dict", value)
        if args == (str, str) and _all_of(value, str) and _all_of(value.values(), str):
            return value  # an environment, labels
        if args == (str, Any) and _all_of(value, str):
            return _plain(value, where, -1)  # a spec: free-form below its text keys (each at depth 0)
        return {to_wire(k, args[0], where): to_wire(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, kind):
            raise _wrong(where, kind, value)
        return {name: to_wire(getattr(value, name), k, f"{where}.{name}") for name, k in _hints(kind).items()}
    return from_wire(value, kind, where)  # scalars: the same check both ways


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
