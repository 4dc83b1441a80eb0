"""Drain: taking a node out of service without surprising the jobs on it.

A drain is a value on the node (`records.Drain`: reason, when it began, an optional deadline in wall time,
since it must survive a scheduler restart). While a drained node still runs tasks it is DRAINING; once
empty it is DRAINED; either way placement gives it nothing new. At the deadline its remaining tasks are
stopped and their jobs requeued. This component only decides; the state applies its decisions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from scheduler.records import Drain, NodeRecord


@dataclass(frozen=True, slots=True)
class DrainDecision:
    """A node whose drain deadline has passed, and the tasks (job, task, attempt) to stop and requeue."""

    node: str
    tasks: tuple[tuple[int, int, int], ...]


def begin_drain(reason: str, now: float, deadline_seconds: float | None) -> Drain:
    """A drain starting now, with a deadline that many seconds away when given."""
    return Drain(reason=reason, started_at=now, deadline=now + deadline_seconds if deadline_seconds else None)


def drain_state(node: NodeRecord, running_tasks: int) -> str | None:
    """DRAINING or DRAINED for a drained node (by whether work still runs there), None when not drained."""
    if node.drain is None:
        return None
    return "DRAINING" if running_tasks else "DRAINED"


def overdue(nodes: Iterable[NodeRecord], running: Mapping[str, list[tuple[int, int, int]]],
            now: float) -> list[DrainDecision]:
    """The drained nodes past their deadline that still run tasks."""
    decisions = []
    for node in nodes:
        drain = node.drain
        if drain is None or drain.deadline is None or now < drain.deadline:
            continue
        tasks = running.get(node.name) or []
        if tasks:
            decisions.append(DrainDecision(node.name, tuple(tasks)))
    return decisions


def next_deadline(nodes: Iterable[NodeRecord], now: float) -> float | None:
    """Seconds until the nearest future drain deadline, for the daemon's timer; None when there is none."""
    ahead = [n.drain.deadline - now for n in nodes if n.drain and n.drain.deadline and n.drain.deadline > now]
    return min(ahead) if ahead else None
