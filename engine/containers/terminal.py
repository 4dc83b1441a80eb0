"""The caller's terminal while attached with `-t`: raw mode (restored on every exit path), its size, and
window-size changes forwarded to the container."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import struct
import termios
import tty
from collections.abc import Callable, Iterator


def window_size(fd: int) -> tuple[int, int] | None:
    """(rows, cols) of the terminal on `fd`, or None when it is not a terminal."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return (rows, cols) if rows else None


@contextlib.contextmanager
def raw_terminal(fd: int, on_resize: Callable[[int, int], None]) -> Iterator[None]:
    """`fd` in raw mode (if it is a terminal) with SIGWINCH forwarding; both undone on exit."""
    saved = None
    if os.isatty(fd):
        saved = termios.tcgetattr(fd)
        tty.setraw(fd)

    def resized(_signum: int, _frame: object) -> None:
        size = window_size(fd)
        if size:
            on_resize(*size)

    previous = signal.signal(signal.SIGWINCH, resized)
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
