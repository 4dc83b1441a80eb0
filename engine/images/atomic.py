"""Atomic files for the image store's on-disk state.

Several rade processes (two loads, a pull and an rmi) may touch one store at once. Every metadata file is
written to a temporary name in the same directory, flushed, and renamed over the old one, so a reader sees
the old document or the new one, never half of either; writers that read-modify-write hold a lock
(engine.filelock).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any


def write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` in one step: temp file in the same directory, fsync, rename."""
    directory = os.path.dirname(path) or "."
    import tempfile  # here: a container start only reads the store

    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str, document: Any) -> None:
    """Write a JSON document atomically (indented: these files are read by people too)."""
    write_atomic(path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str, default: Any = None) -> Any:
    """A JSON document, or `default` when the file does not exist."""
    try:
        with open(path, "rb") as src:
            return json.load(src)
    except FileNotFoundError:
        return default
