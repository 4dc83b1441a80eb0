"""What holds a pending job back before any node is looked at: its dependencies, its array's `%N` limit.

Pure functions over the live jobs and the final states of ended ones; the state asks them before each
pass and gives the held jobs to the queue with their reason (Dependency, DependencyNeverSatisfied,
JobArrayTaskLimit), which `rade queue` shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from jobs.states import JobState
from jobs.units import parse_array
from scheduler.placement import PendingReason
from scheduler.records import JobRecord


def dependency_hold(job: JobRecord, live: Mapping[int, JobRecord],
                    ended: Mapping[int, tuple[JobState, int | None]]) -> tuple[PendingReason, str] | None:
    """Whether a dependency holds the job (and which one), or None when all are satisfied."""
    for entry in job.depends_on:
        for kind, targets in entry.items():
            for target in targets if isinstance(targets, list) else [targets]:
                verdict = _dependency(kind, int(target), live, ended)
                if verdict is not None:
                    return verdict, f"{kind}:{target}"
    return None


def _dependency(kind: str, target: int, live: Mapping[int, JobRecord],
                ended: Mapping[int, tuple[JobState, int | None]]) -> PendingReason | None:
    """after: the target started; afterok: it completed; afternotok: it ended otherwise; afterany: it ended."""
    if target in live:
        started = live[target].state is not JobState.PENDING
        return None if kind == "after" and started else PendingReason.DEPENDENCY
    if target not in ended:
        return PendingReason.DEPENDENCY_NEVER_SATISFIED
    ok = ended[target][0] is JobState.COMPLETED
    if (kind == "afterok" and not ok) or (kind == "afternotok" and ok):
        return PendingReason.DEPENDENCY_NEVER_SATISFIED
    return None


def array_limit(job: JobRecord) -> int | None:
    """How many jobs of this job's array may run at once (`array: 0-99%10`), or None for no limit."""
    if job.array_of is None or not job.spec.get("array"):
        return None
    return parse_array(job.spec["array"]).max_running


def over_array_limits(arrays: Iterable[tuple[int, set[int]]], live: Mapping[int, JobRecord]) -> set[int]:
    """Pending jobs of limited arrays beyond what their limit leaves room for (queue order decides which)."""
    held: set[int] = set()
    for limit, members in arrays:
        jobs = [live[i] for i in members if i in live]
        active = sum(1 for job in jobs if job.state is not JobState.PENDING)
        waiting = sorted((j for j in jobs if j.state is JobState.PENDING), key=lambda j: (-j.priority, j.id))
        held.update(job.id for job in waiting[max(0, limit - active):])
    return held
