"""Node liveness: who has been heard from lately, and who has missed too many heartbeats.

An agent heartbeats every `interval` seconds; a node not heard from for `misses` intervals is down. After
the scheduler starts, every known node gets that same grace to reconnect before it is declared down, so a
scheduler restart never fails the nodes that were fine all along. This module only watches the clock: what
happens to a down node's tasks is the state's business.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from scheduler.clock import Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Liveness:
    """How often agents heartbeat, and how many missed heartbeats make a node down."""

    interval: float = 2.0
    misses: int = 3

    @property
    def timeout(self) -> float:
        return self.interval * self.misses


class HeartbeatBook:
    """The last time each node was heard from, on the monotonic clock."""

    def __init__(self, clock: Clock, liveness: Liveness) -> None:
        self.clock = clock
        self.liveness = liveness
        self._seen: dict[str, float] = {}

    def expect(self, node: str) -> None:
        """Start the grace period for a node known from before (a scheduler restart)."""
        self._seen.setdefault(node, self.clock.monotonic())

    def heard(self, node: str) -> None:
        self._seen[node] = self.clock.monotonic()

    def forget(self, node: str) -> None:
        self._seen.pop(node, None)

    def is_alive(self, node: str) -> bool:
        seen = self._seen.get(node)
        return seen is not None and self.clock.monotonic() - seen < self.liveness.timeout

    def silent(self) -> list[str]:
        """Nodes whose last heartbeat is older than the timeout; each is then forgotten until heard again."""
        now = self.clock.monotonic()
        gone = [name for name, seen in self._seen.items() if now - seen >= self.liveness.timeout]
        for name in gone:
            log.info("node %s: no heartbeat for %.1fs (%d missed)", name, now - self._seen[name],
                     self.liveness.misses)
            del self._seen[name]
        return gone

    def next_deadline(self) -> float | None:
        """The monotonic time at which the next node would become silent, for the daemon's poll timeout."""
        if not self._seen:
            return None
        return min(self._seen.values()) + self.liveness.timeout
