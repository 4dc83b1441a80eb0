"""Accounting: what each job used, from the scheduler's database, as `rade acct` shows it (Slurm's sacct).

One row per job: who ran it, how it ended, when it was submitted, started and ended, how long it ran, the
CPU time its tasks used (as their agents measured it from the task's cgroup), the largest peak memory of
any of its tasks, its exit code, and the nodes of its last attempt. `alloc_cpu_seconds` is what it held
(allocated CPUs times elapsed), Slurm's CPUTime, next to the measured TotalCPU. Pure over records: the
store reads them, this module makes rows of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scheduler.records import JobRecord, TaskRecord


@dataclass(frozen=True, slots=True)
class AcctRow:
    """One job's accounting record; times are wall seconds since the epoch, None until they happen."""

    job: str
    job_id: int
    name: str
    user: str
    state: str
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    elapsed: float | None
    alloc_cpus: float
    alloc_cpu_seconds: float
    cpu_seconds: float
    peak_memory: int
    exit_code: int | None
    nodes: tuple[str, ...]
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["nodes"] = list(self.nodes)
        return data


def job_label(job: JobRecord) -> str:
    """`123` for a job, `120_3` for index 3 of the array that job 120 names (as Slurm writes them)."""
    if job.array_of is not None and job.array_index is not None:
        return f"{job.array_of}_{job.array_index}"
    return str(job.id)


def acct_row(job: JobRecord, tasks: Sequence[TaskRecord], now: float) -> AcctRow:
    """The accounting row of one job from its record and its tasks (every attempt's)."""
    last = [t for t in tasks if t.attempt == job.attempt] or list(tasks)
    elapsed = None
    if job.started_at is not None:
        elapsed = max(0.0, (job.ended_at if job.ended_at is not None else now) - job.started_at)
    alloc = sum(t.grant.cpus_milli for t in last) / 1000
    return AcctRow(
        job=job_label(job), job_id=job.id, name=job.name, user=job.user, state=job.state.value,
        submitted_at=job.submitted_at, started_at=job.started_at, ended_at=job.ended_at, elapsed=elapsed,
        alloc_cpus=alloc, alloc_cpu_seconds=round(alloc * (elapsed or 0.0), 3),
        cpu_seconds=round(sum(t.cpu_seconds for t in tasks), 3),
        peak_memory=max((t.peak_memory for t in tasks), default=0), exit_code=job.exit_code,
        nodes=tuple(dict.fromkeys(t.grant.node for t in last)), reason=job.reason)


def acct_rows(jobs: Iterable[tuple[JobRecord, Sequence[TaskRecord]]], now: float, user: str | None = None,
              since: float | None = None) -> list[AcctRow]:
    """Rows for the jobs of `user` (everyone's when None) that were submitted, or still ran, after `since`."""
    rows = []
    for job, tasks in jobs:
        if user is not None and job.user != user:
            continue
        if since is not None and job.submitted_at < since and (job.ended_at is not None and job.ended_at < since):
            continue
        rows.append(acct_row(job, tasks, now))
    rows.sort(key=lambda r: r.job_id)
    return rows
