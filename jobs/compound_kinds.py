"""The kinds that hold other kinds: lists (`Seq`), maps of names (`StrMap`) and records of fixed keys
(`Record` of `Field`s), the job spec's own shape among them.

They check their items with the items' kinds and collect every problem, as the scalar kinds of
`jobs.kinds` do; a record's unknown key says where it belongs (a misspelling, a key one level too deep
or too shallow, another tool's name for it).
"""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from jobs.document import Node
from jobs.kinds import INVALID, Kind, clip, describe
from jobs.problems import Problems


@dataclass(frozen=True, slots=True)
class Seq:
    """A list of one kind; `split_text` also takes a single string split as a shell would (`command`),
    `single` also takes one bare item as a one-item list (`exclude: n3`)."""

    item: Kind
    split_text: bool = False
    single: bool = False
    example: str = "[a, b]"

    def check(self, node: Node, path: str, problems: Problems) -> Any:
        if self.split_text and isinstance(node.value, str):
            try:
                return tuple(shlex.split(node.value))
            except ValueError as err:
                problems.add(node.mark, path, f"cannot split {clip(node.value)!r} into words ({err}); "
                                              "write a list instead, e.g. [python3, run.py]")
                return INVALID
        if self.single and not node.is_sequence and node.value is not None:
            value = self.item.check(node, path, problems)
            return INVALID if value is INVALID else (value,)
        if not node.is_sequence:
            problems.add(node.mark, path, f"expected a list (e.g. {self.example}), got {describe(node)}")
            return INVALID
        values = [self.item.check(child, f"{path}[{i}]", problems) for i, child in enumerate(node.value)]
        return INVALID if any(v is INVALID for v in values) else tuple(values)

    def schema(self) -> dict[str, Any]:
        listed = {"type": "array", "items": self.item.schema()}
        if self.split_text:
            return {"anyOf": [listed, {"type": "string"}]}
        if self.single:
            return {"anyOf": [listed, self.item.schema()]}
        return listed


@dataclass(frozen=True, slots=True)
class StrMap:
    """A mapping from names (matching `key_pattern`) to values of one kind: `env`, `constraints`."""

    key_pattern: str
    key_hint: str
    value: Kind
    reserved_prefix: str | None = None
    example: str = "{KEY: value}"

    def check(self, node: Node, path: str, problems: Problems) -> Any:
        if not _is_mapping(node, path, problems, f"e.g. {self.example}"):
            return INVALID
        result: dict[str, Any] = {}
        for key, child in node.value.items():
            where = f"{path}.{key}"
            if not re.fullmatch(self.key_pattern, key):
                problems.add(node.keys[key], where, f"{clip(key)!r} {self.key_hint}")
                continue
            if self.reserved_prefix and key.startswith(self.reserved_prefix):
                problems.add(node.keys[key], where, f"names starting with {self.reserved_prefix} are set by "
                                                    "rade inside every container; choose another name")
                continue
            result[key] = self.value.check(child, where, problems)
        return INVALID if any(v is INVALID for v in result.values()) else result

    def schema(self) -> dict[str, Any]:
        return {"type": "object", "propertyNames": {"pattern": f"^(?:{self.key_pattern})$"},
                "additionalProperties": self.value.schema()}


@dataclass(frozen=True, slots=True)
class Field:
    """One key of a mapping: its kind, whether it must be given, its default, and what it means."""

    name: str
    kind: Kind
    doc: str
    default: Any = None
    required: bool = False
    example: str = ""


@dataclass(frozen=True, slots=True)
class Record:
    """A mapping with a fixed set of keys. Unknown keys name the closest known one."""

    fields: tuple[Field, ...]
    example: str = "a mapping"
    aliases: dict[str, str] = field(default_factory=dict)  # what other tools call a field -> its name here
    by_name: dict[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name: f for f in self.fields})

    def check(self, node: Node, path: str, problems: Problems) -> Any:
        if not _is_mapping(node, path, problems, self.example):
            return INVALID
        result: dict[str, Any] = {}
        for key, child in node.value.items():
            where = f"{path}.{key}" if path else key
            spec = self.by_name.get(key)
            if spec is None:
                problems.add(node.keys[key], where, self.unknown_key_message(key, child, path))
                continue
            if child.value is None and not spec.required:
                continue  # `mpi:` with nothing after it means no mpi section, as if the key were absent
            result[key] = spec.kind.check(child, where, problems)
        for spec in self.fields:
            if spec.required and spec.name not in node.value:
                where = f"{path}.{spec.name}" if path else spec.name
                problems.add(node.mark, where, f"is missing; add e.g. '{spec.name}: {spec.example}'")
                result[spec.name] = INVALID
        return result

    def unknown_key_message(self, key: str, child: Node, path: str) -> str:
        names = [f.name for f in self.fields]
        unknown = f"unknown key {clip(key)!r}"
        if key in self.aliases:
            return f"{unknown}; rade calls it {self.aliases[key]!r}"
        if child.is_mapping and len(set(child.value) & set(names)) * 2 >= max(len(child.value), 1):
            # `job: {name: ..., image: ...}`: the right fields, one level too deep.
            inner = ", ".join(k for k in child.value if k in self.by_name)
            where = f"under '{path}:'" if path else "at the top level"
            return f"{unknown}; the fields under it ({inner}) belong {where}: remove '{clip(key)}:' and " \
                   "move them out one level"
        for spec in self.fields:
            inner = spec.kind
            if isinstance(inner, Record) and key in inner.by_name:
                return f"{unknown} here; it belongs under '{spec.name}:' (indent it below '{spec.name}:')"
        close = difflib.get_close_matches(key.lower().replace("-", "_"), names, n=1, cutoff=0.7)
        if close:
            return f"{unknown}; did you mean {close[0]!r}?"
        return f"{unknown}; known keys are {', '.join(names)}"

    def schema(self) -> dict[str, Any]:
        properties = {}
        for spec in self.fields:
            entry = dict(spec.kind.schema())
            if not spec.required:
                # An optional key with nothing after it (`mpi:`) means the key is not given.
                entry = {"anyOf": [entry, {"type": "null"}]}
            entry["description"] = spec.doc
            if spec.default is not None and not spec.required:
                entry["default"] = list(spec.default) if isinstance(spec.default, tuple) else spec.default
            properties[spec.name] = entry
        result: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
        required = [spec.name for spec in self.fields if spec.required]
        if required:
            result["required"] = required
        return result


def _is_mapping(node: Node, path: str, problems: Problems, example: str) -> bool:
    """Whether `node` is a mapping; when it is not, the problem is added, showing `example`."""
    if node.is_mapping:
        return True
    problems.add(node.mark, path, f"expected a mapping ({example}), got {describe(node)}")
    return False
