"""Time for the scheduler and the agents' link: a monotonic clock for timeouts, wall time for records.

Everything that waits takes a `Clock`, so tests move time by hand instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Where time comes from."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (for timeouts and heartbeats)."""

    def time(self) -> float:
        """Wall time in seconds since the epoch (for stored timestamps and drain deadlines)."""


class SystemClock:
    """The real clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()
