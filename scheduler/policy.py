"""The site's scheduling policy, as the configuration sets it, and the state's one call per pass.

    backfill_depth: 1                 # blocked jobs that get a reservation (1: EASY; 0: strict order, no backfill)
    topology: /etc/rade/topology.conf # switches and their nodes (Slurm topology.conf tree); pack/spread by it
    priority_weights: {job: 100000, age: 0, fairshare: 0}   # multifactor priority (see scheduler.fairshare)
    fairshare_half_life: 7d           # usage halves every this long
    priority_max_age: 7d              # a job's age factor reaches 1 after this long in the queue
    metrics_port: 9410                # Prometheus endpoint on 127.0.0.1 (off when not set)

The defaults keep the plain order (priority, then submission) with EASY backfill. `SchedulingPolicy`
turns the state's records into the backfill pass's inputs (priorities, time limits, running work and its
estimated ends), runs it, and keeps what `rade show` and `rade queue --priority` read back: each pending
job's expected start and priority factors. It charges each ended job's CPU time to its user for fair
share. Pure over records; the state calls it, and commits what it decides.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jobs.errors import RadeError
from jobs.units import parse_duration
from scheduler.backfill import BackfillResult, Reservation, Running, backfill_pass
from scheduler.fairshare import DAY, PendingJob, PriorityFactors, PriorityWeights, UsageLedger, priorities
from scheduler.queue import QueuedJob
from scheduler.records import JobRecord, TaskRecord
from scheduler.resources import NodeView

POLICY_KEYS = {"backfill_depth", "topology", "priority_weights", "fairshare_half_life", "priority_max_age",
               "metrics_port"}


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    backfill_depth: int = 1
    topology: str = ""
    weights: PriorityWeights = field(default_factory=lambda: PriorityWeights(job=100_000.0, age=0.0, fairshare=0.0))
    metrics_port: int | None = None


def policy_settings(data: Mapping[str, Any], where: str) -> PolicyConfig:
    """The policy keys of a scheduler configuration, checked; ConfigError naming the key otherwise."""
    from scheduler.config import ConfigError

    depth = data.get("backfill_depth", 1)
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
        raise ConfigError(f"{where}: backfill_depth: {depth!r} is not a count (0 turns backfill off)")
    weights = data.get("priority_weights") or {}
    if not isinstance(weights, dict) or set(map(str, weights)) - {"job", "age", "fairshare"}:
        raise ConfigError(f"{where}: priority_weights: write a map of job, age and fairshare to numbers",
                          "e.g. priority_weights: {job: 100000, age: 1000, fairshare: 10000}")
    numbers = {}
    for key, default in (("job", 100_000.0), ("age", 0.0), ("fairshare", 0.0)):
        value = weights.get(key, default)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{where}: priority_weights.{key}: {value!r} is not a number of at least 0")
        numbers[key] = float(value)
    spans = {}
    for key, default in (("fairshare_half_life", 7 * DAY), ("priority_max_age", 7 * DAY)):
        try:
            spans[key] = float(parse_duration(data[key])) if key in data else default
        except RadeError as err:
            raise ConfigError(f"{where}: {key}: {err.message}", "write a duration, e.g. 7d or 12h") from None
    port = data.get("metrics_port")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 <= port < 65536):
        raise ConfigError(f"{where}: metrics_port: {port!r} is not a TCP port")
    topology = str(data.get("topology") or "")
    if topology:
        from scheduler.topology import load_topology

        load_topology(topology)  # refused now, with the line, rather than at the first pass
    return PolicyConfig(depth, topology, PriorityWeights(numbers["job"], numbers["age"], numbers["fairshare"],
                                                         spans["priority_max_age"], spans["fairshare_half_life"]),
                        port)


def time_limit(job: JobRecord) -> float | None:
    """The job's time limit in seconds, None when it has none."""
    text = job.spec.get("time_limit")
    return float(parse_duration(text)) if text else None


class SchedulingPolicy:
    """Priorities, backfill and topology for the state's passes, and what they found out."""

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()
        self.ledger = UsageLedger(half_life=self.config.weights.half_life)
        self.factors: dict[int, PriorityFactors] = {}
        self.expected_start: dict[int, float] = {}
        self.reservations: tuple[Reservation, ...] = ()
        self._limits: dict[int, float | None] = {}
        self.topology = None
        self._placer = None
        if self.config.topology:
            from scheduler.topology import load_topology, topology_placer

            self.topology = load_topology(self.config.topology)
            self._placer = topology_placer(self.topology)

    @property
    def weighs_jobs(self) -> bool:
        """Whether priorities need working out (anything but the job's own priority counts)."""
        weights = self.config.weights
        return weights.age > 0 or weights.fairshare > 0

    def priorities(self, jobs: Iterable[JobRecord], now: float) -> dict[int, int]:
        """Each pending job's priority by the weights (its own priority when only that counts); the factors
        are kept for `rade queue --priority`."""
        jobs = list(jobs)
        if not self.weighs_jobs:
            return {j.id: j.priority for j in jobs}
        self.factors = self.explain(jobs, now)
        return {job_id: f.priority for job_id, f in self.factors.items()}

    def explain(self, jobs: Iterable[JobRecord], now: float) -> dict[int, PriorityFactors]:
        """The priority factors of pending jobs, now."""
        pending = [PendingJob(j.id, j.user, j.priority, j.submitted_at) for j in jobs]
        return priorities(pending, self.ledger, self.config.weights, now)

    def limit_of(self, job: JobRecord) -> float | None:
        if job.id not in self._limits:
            self._limits[job.id] = time_limit(job)
        return self._limits[job.id]

    def run(self, queued: Iterable[QueuedJob], views: Mapping[str, NodeView], jobs: Mapping[int, JobRecord],
            running: Callable[[], Iterable[tuple[JobRecord, TaskRecord]]], now: float, limit: int | None = None,
            carried: BackfillResult | None = None, open_names: list[str] | None = None) -> BackfillResult:
        """One pass: backfill over the queue, the running tasks' ends estimated from their jobs' limits
        (`running` lists them, asked only when a reservation needs them). `carried` is the previous pass's
        result when this one looks only at jobs submitted since, nothing else having changed."""
        def work() -> list[Running]:
            ends = []
            for job, task in running():
                started = task.started_at or job.started_at or now
                seconds = self.limit_of(job)
                ends.append(Running(started + seconds if seconds else math.inf, task.grant))
            return ends

        queued = list(queued)
        limits = {q.job_id: self.limit_of(jobs[q.job_id]) for q in queued if q.job_id in jobs}
        depth = self.config.backfill_depth
        result = backfill_pass(queued, views, work, limits, now, depth=max(depth, 1),
                               mode="easy" if depth else "fifo", placer=self._placer, limit=limit,
                               carried=carried.reservations if carried else (), open_names=open_names,
                               memo=carried.memo if carried else None)
        self.reservations = result.reservations
        self.expected_start = result.expected_start
        return result

    def forget(self, job_id: int) -> None:
        """A job left the queue or ended: drop what was kept about it."""
        self._limits.pop(job_id, None)
        self.factors.pop(job_id, None)
        self.expected_start.pop(job_id, None)

    def charge(self, job: JobRecord, tasks: Iterable[TaskRecord], at: float) -> None:
        """Charge an ended job's CPU time to its user: what its tasks measured, else what they held."""
        measured = 0.0
        held = 0.0
        for task in tasks:
            measured += task.cpu_seconds
            if task.started_at is not None:
                held += task.grant.cpus_milli / 1000 * max(0.0, (task.ended_at or at) - task.started_at)
        self.ledger.add(job.user, measured or held, at)

    def hops(self, nodes: Iterable[str]) -> int | None:
        return self.topology.max_hops(nodes) if self.topology is not None else None
