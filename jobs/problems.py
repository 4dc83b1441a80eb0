"""Where a job spec is wrong, and the error that lists every such place at once.

A `Mark` is a position a value came from: a line and column in a YAML file, or a `--set` option on the
command line (line 0). A `Problem` is one thing wrong with one field, written as
`FILE:LINE:COL: field.path: what is wrong and how to fix it`. `SpecError` carries all the problems of a
spec, so that a user fixes a file in one round instead of one error per run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from jobs.errors import EXIT_USAGE, RadeError


@dataclass(frozen=True, slots=True)
class Mark:
    """Where a value was written: `file` and a 1-based `line` and `col`; line 0 when not in a file."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}" if self.line else self.file


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a spec: where, which field (dotted path, may be empty), and what to do."""

    file: str
    line: int
    col: int
    path: str
    message: str

    @classmethod
    def at(cls, mark: Mark, path: str, message: str) -> Problem:
        return cls(mark.file, mark.line, mark.col, path, message)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SpecError(RadeError):
    """A job spec that cannot be used; `problems` lists everything wrong with it, in file order."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: Iterable[Problem]) -> None:
        # Problems from the file first, in reading order; those without a line (from --set options, or
        # from a stored spec) after them, in the order they were found, which follows the command line.
        self.problems = sorted(problems, key=lambda p: (p.line == 0, p.file if p.line else "", p.line, p.col,
                                                        p.path if p.line else ""))
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return self.message


class Problems:
    """A collector: validation adds to it and carries on, so that one run reports every problem."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, mark: Mark, path: str, message: str) -> None:
        self.items.append(Problem.at(mark, path, message))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise SpecError(self.items)
