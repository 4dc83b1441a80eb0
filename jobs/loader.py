"""Job files to `JobSpec`s: read the file, keep positions, apply `--set` options, validate, build.

`load_spec(path)` and `parse_spec(text, filename)` are what `rade validate` and `rade submit` call. Relative
volume sources (`./data`) start at the directory of the job file. A file that cannot be read or decoded
is a `SpecError` like any other problem.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from jobs.document import load_document
from jobs.overrides import apply_overrides
from jobs.problems import Mark, Problem, Problems, SpecError
from jobs.spec import JobSpec, build_spec


def parse_spec(text: str, filename: str, overrides: Sequence[str] = (),
               base_dir: str | None = None) -> JobSpec:
    """The spec in `text` (named `filename` in problems) with `overrides` applied; raises SpecError."""
    problems = Problems()
    tree = load_document(text, filename, problems)
    tree = apply_overrides(tree, overrides, problems)
    if base_dir is None:
        base_dir = os.path.dirname(os.path.abspath(filename))
    return build_spec(tree, problems, base_dir)


def load_spec(path: str, overrides: Sequence[str] = ()) -> JobSpec:
    """The spec in the file at `path`; raises SpecError for a file that is missing, unreadable or bad."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise _file_error(path, "no such file; check the path") from None
    except IsADirectoryError:
        raise _file_error(path, "is a directory; give the job's YAML file") from None
    except OSError as err:
        raise _file_error(path, f"cannot be read: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        before = data[: err.start]
        line = before.count(b"\n") + 1
        col = len(before) - (before.rfind(b"\n") + 1) + 1
        raise SpecError([Problem.at(Mark(path, line, col), "", f"byte 0x{data[err.start]:02x} is not UTF-8 "
                                                               "text; save the file as UTF-8")]) from None
    return parse_spec(text, path, overrides)


def _file_error(path: str, message: str) -> SpecError:
    return SpecError([Problem.at(Mark(path), "", message)])
