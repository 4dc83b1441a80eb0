"""The kinds of value a job spec field can hold, each able to check a `Node` and to describe itself.

Here are the protocol every kind follows and the scalar kinds (text, numbers, yes/no, units, choices); the
kinds that hold other kinds are in `jobs.compound_kinds`. A kind's `check(node, path, problems)` returns
the plain Python value of a good node, or `INVALID` after adding a located problem that says what was
expected and how to write it. `schema()` gives the same rules as JSON Schema, so that the validator and
`rade schema` cannot drift apart: both read one field table (`jobs.fields`). Checks never raise for bad input; they collect, so that one run shows every problem.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from jobs.document import Node
from jobs.errors import UnitError
from jobs.problems import Problems
from jobs.units import parse_array, parse_cpus, parse_duration, parse_size

MAX_INT = 2**63 - 1  # what msgpack and SQLite can carry


class _Invalid:
    """The result of a check that failed (None is a value: an empty optional field)."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()


class Kind(Protocol):
    """What a field may hold."""

    def check(self, node: Node, path: str, problems: Problems) -> Any: ...

    def schema(self) -> dict[str, Any]: ...


def describe(node: Node) -> str:
    """How a value reads in an error message: 'a list', 'the number 4', "the text '4'"."""
    value = node.value
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{node.text or str(value).lower()} (a yes/no value)"
    if isinstance(value, int | float):
        return f"the number {node.text or value}"
    if isinstance(value, str):
        return f"the text {clip(value)!r}"
    return f"{node.text or value!s} (read by YAML as a {type(value).__name__})"


def clip(text: str, width: int = 40) -> str:
    """`text` cut to `width` characters, marked as cut: a quoted value in an error stays one line."""
    return text if len(text) <= width else text[: width - 3] + "..."


def _scalar_text(node: Node) -> str | None:
    """The text of a scalar as written: quoted text, or a plain scalar's source even if YAML typed it."""
    if isinstance(node.value, str):
        return node.value
    if node.is_scalar and node.value is not None and node.text is not None:
        return node.text
    return None


@dataclass(frozen=True, slots=True)
class Text:
    """A string; `pattern` (with `hint`) restricts it, `absolute` demands an absolute container path."""

    pattern: str | None = None
    hint: str = ""
    absolute: bool = False
    example: str = "text"
    allow_empty: bool = False
    suggest: Callable[[str], str] | None = None

    def check(self, node: Node, path: str, problems: Problems) -> Any:
        text = _scalar_text(node)
        if node.value is None:
            empty = ' (or "" for an empty one)' if self.allow_empty else ""
            problems.add(node.mark, path, f"has no value; write e.g. {self.example}{empty}")
            return INVALID
        if text is None:
            problems.add(node.mark, path, f"expected text (e.g. {self.example}), got {describe(node)}")
            return INVALID
        if not text and not self.allow_empty:
            problems.add(node.mark, path, f"is empty; write e.g. {self.example}")
            return INVALID
        if "\0" in text:
            problems.add(node.mark, path, "contains a NUL character; remove it")
            return INVALID
        if self.absolute and not text.startswith("/"):
            problems.add(node.mark, path, f"{clip(text)!r} is not an absolute path inside the container; "
                                          f"start it with '/', e.g. /{text.lstrip('~./') or 'work'}")
            return INVALID
        if self.pattern and not re.fullmatch(self.pattern, text):
            better = self.suggest(text) if self.suggest else ""
            fix = f"; try {better!r}" if better and better != text and re.fullmatch(self.pattern, better) else ""
            problems.add(node.mark, path, f"{clip(text)!r} {self.hint}{fix}")
            return INVALID
        return text

    def schema(self) -> dict[str, Any]:
        # A plain `1.5` or `yes` is read as the text written, so numbers and booleans are text here too.
        result: dict[str, Any] = {"type": ["string", "number", "boolean"]}
        if not self.allow_empty:
            result["minLength"] = 1
        if self.pattern:
            result["pattern"] = f"^(?:{self.pattern})$"
        elif self.absolute:
            result["pattern"] = "^/"
        return result


@dataclass(frozen=True, slots=True)
class Integer:
    """A whole number in [minimum, maximum]."""

    minimum: int | None = None
    maximum: int = MAX_INT
    example: str = "1"

    def check(self, node: Node, path: str, problems: Problems) -> Any:
        value = node.value
        if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_INT:
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            hint = " (remove the quotes)" if isinstance(value, str) and re.fullmatch(r"-?\d+", value) else ""
            problems.add(node.mark, path, f"expected a whole number (e.g. {self.example}), "
                                          f"got {describe(node)}{hint}")
            return INVALID
        if self.minimum is not None and value < self.minimum:
            problems.add(node.mark, path, f"must be at least {self.minimum}, got {value}")
            return INVALID
        if value > self.maximum:
            problems.add(node.mark, path, f"must be at most {self.maximum}, got {value}")
            return INVALID
        return value

    def schema(self) -> dict[str, Any]:
        result: dict[str, Any] = {"type": "integer", "maximum": self.maximum}
        if self.minimum is not None:
            result["minimum"] = self.minimum
        return result


@dataclass(frozen=True, slots=True)
class Boolean:
    """true or false (YAML also reads yes/no and on/off as these)."""

    def check(self, node: Node, path: str, problems: Problems) -> Any:
        if isinstance(node.value, bool):
            return node.value
        hint = " (remove the quotes)" if str(node.value).lower() in ("true", "false", "yes", "no") else ""
        problems.add(node.mark, path, f"expected true or false, got {describe(node)}{hint}")
        return INVALID

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True, slots=True)
class Unit:
    """A value read by one of `jobs.units`' parsers: a size, a duration, a CPU count, an array range."""

    parse: Callable[[Any], Any]
    what: str
    string_pattern: str
    minimum: int = 0
    below_minimum: str = ""

    def check(self, node: Node, path: str, problems: Problems) -> Any:
        value = node.value
        if not node.is_scalar or value is None or isinstance(value, bool):
            problems.add(node.mark, path, f"expected {self.what}, got {describe(node)}")
            return INVALID
        if not isinstance(value, int | float | str):
            value = node.text or str(value)
        elif self.parse is parse_duration and node.text and ":" in node.text:
            value = node.text  # YAML 1.1 read 30:00 as the base-60 number 1800; the user meant 30 minutes
        if isinstance(value, float) and not math.isfinite(value):
            problems.add(node.mark, path, f"{node.text or value!r} is not {self.what}")
            return INVALID
        try:
            parsed = self.parse(value)
            if isinstance(value, str) and not re.fullmatch(self.string_pattern, value):
                # The schema's pattern bounds the text forms (`1_0` would pass float()): what an editor
                # refuses, the validator refuses too.
                raise UnitError(f"{clip(value)!r} is not {self.what}")
        except UnitError as err:
            problems.add(node.mark, path, err.message)
            return INVALID
        except (OverflowError, ValueError):
            problems.add(node.mark, path, f"'{value}' is not {self.what}")
            return INVALID
        number = parsed if isinstance(parsed, int | float) else None
        if number is not None and (number > MAX_INT or number < self.minimum):
            problems.add(node.mark, path, self.below_minimum.format(value=value, parsed=number)
                         if number < self.minimum else f"'{value}' is too large")
            return INVALID
        return parsed

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": self.string_pattern}]}


def Size(minimum: int = 0, below: str = "") -> Unit:
    return Unit(parse_size, "a size such as 512M or 4G", r"^\s*(\d+(\.\d+)?|\.\d+)\s*[kKmMgGtTpP]?([iI]?[bB])?\s*$",
                minimum, below)


def Duration() -> Unit:
    return Unit(parse_duration, "a duration such as 30m, 2h or 1-00:00:00",
                r"^\s*((\d+(\.\d+)?\s*[A-Za-z]+\s*)+|(\d+-)?\d+(:\d+){0,2})\s*$")


def Cpus() -> Unit:
    return Unit(parse_cpus, "a number of CPUs such as 1, 4 or 0.5", r"^\s*(\d+(\.\d*)?|\.\d+)\s*$")


def ArraySpec() -> Unit:
    return Unit(parse_array, "an array range such as 0-9, 1,3,5 or 0-99%10", r"^[\d\s,:%-]+$")


@dataclass(frozen=True, slots=True)
class Choice:
    """One of a few words."""

    values: tuple[str, ...]

    def check(self, node: Node, path: str, problems: Problems) -> Any:
        text = _scalar_text(node)
        if text in self.values:
            return text
        allowed = " | ".join(self.values)
        if text is None:
            problems.add(node.mark, path, f"expected one of {allowed}, got {describe(node)}")
            return INVALID
        close = difflib.get_close_matches(text.lower(), self.values, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        problems.add(node.mark, path, f"{clip(text)!r} is not allowed here; {hint}use one of {allowed}")
        return INVALID

    def schema(self) -> dict[str, Any]:
        return {"enum": list(self.values)}
