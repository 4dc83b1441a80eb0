"""The error pipe between a launch child and its parent: one structured report, read back as an error.

A child (the launch's PID 1, the command it starts, a process entering a container) writes at most one
report on a CLOEXEC pipe before it exits; the parent reads the pipe to end-of-file, which comes without
a report once the command is exec'ed. The report is kind, step, message and hint separated by NUL bytes,
written in one write (atomic under PIPE_BUF), and read back as LaunchError, CommandNotFound (127) or
CommandNotExecutable (126).
"""

from __future__ import annotations

import os

from engine.errors import CommandNotExecutable, CommandNotFound, LaunchError

KIND_LAUNCH = "launch"
KIND_NOT_FOUND = "notfound"
KIND_NOT_EXECUTABLE = "noexec"


def report(fd: int, kind: str, step: str, message: str, hint: str = "") -> None:
    """Send a structured failure to the parent over the error pipe (one write: atomic under PIPE_BUF)."""
    payload = f"{kind}\0{step}\0{message}\0{hint}".encode(errors="replace")[:4000]
    try:
        os.write(fd, payload)
    except OSError:
        pass


def report_launch_error(fd: int, err: LaunchError) -> None:
    """Send a LaunchError over the error pipe; the parent rebuilds it (without doubling the step name)."""
    message = err.message.removeprefix(f"{err.step}: ")
    report(fd, KIND_LAUNCH, err.step, message, err.hint or "")


def read_all(fd: int) -> bytes:
    """Read a pipe to end-of-file."""
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def error_from(payload: bytes) -> LaunchError:
    """The error a child reported over the error pipe (see `report`)."""
    kind, step, message, hint = (payload.decode(errors="replace").split("\0") + ["", "", ""])[:4]
    cls = {KIND_NOT_FOUND: CommandNotFound, KIND_NOT_EXECUTABLE: CommandNotExecutable}.get(
        kind, LaunchError)
    return cls(step, message, hint or None)
