"""Job priority from weighted factors, as Slurm's multifactor plugin does: the job's own priority, its age,
and its user's fair share.

    priority = w_job * job + w_age * age + w_fairshare * fairshare        (each factor in [0, 1])

`job` is the spec's `priority` scaled over the pending jobs (the lowest 0, the highest 1); `age` grows
linearly with time in the queue up to `max_age`; `fairshare` is Slurm's classic 2^(-U/S): U the user's
share of the cluster's decayed usage (CPU seconds, halved every `half_life`), S the user's share of the
machine (equal shares among the users seen). A user who used nothing lately gets 1, one who used exactly
their share 0.5, less for more. Pure: usage and time come in, numbers
go out; the state keeps the ledger and asks for priorities before each pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class PriorityWeights:
    """How much each factor counts; the defaults let an explicit `priority` outrank fair share, and fair
    share outrank age. All zero but `job` gives the plain priority-then-submission order."""

    job: float = 100_000.0
    age: float = 1_000.0
    fairshare: float = 10_000.0
    max_age: float = 7 * DAY
    half_life: float = 7 * DAY

    @property
    def uses_fairshare(self) -> bool:
        return self.fairshare > 0


@dataclass(frozen=True, slots=True)
class PriorityFactors:
    """One job's factors (each in [0, 1]) and the priority they make."""

    job: float
    age: float
    fairshare: float
    priority: int


@dataclass
class UsageLedger:
    """Each user's usage in CPU seconds, decayed with a half-life. A user's value is kept with the time it
    was last brought up to date, and decayed on the way in and out, so adding usage costs O(1)."""

    half_life: float = 7 * DAY
    _usage: dict[str, tuple[float, float]] = field(default_factory=dict)

    def _decayed(self, value: float, since: float, now: float) -> float:
        if self.half_life <= 0:
            return value
        return value * math.pow(0.5, max(0.0, now - since) / self.half_life)

    def add(self, user: str, cpu_seconds: float, at: float) -> None:
        """Charge usage to a user at a time (a job's end)."""
        value, since = self._usage.get(user, (0.0, at))
        self._usage[user] = (self._decayed(value, since, at) + max(0.0, cpu_seconds), at)

    def usage(self, user: str, now: float) -> float:
        value, since = self._usage.get(user, (0.0, now))
        return self._decayed(value, since, now)

    def all_usage(self, now: float) -> dict[str, float]:
        return {user: self.usage(user, now) for user in self._usage}


def fairshare_factor(user: str, usage: Mapping[str, float], users: Iterable[str]) -> float:
    """Slurm's classic 2^(-U/S): U the user's part of all usage, S its share (equal among `users`)."""
    everyone = set(users) | set(usage)
    total = sum(usage.values())
    if total <= 0 or not everyone:
        return 1.0
    share = 1.0 / len(everyone)
    return math.pow(2.0, -(usage.get(user, 0.0) / total) / share)


def job_factor(priority: int, lowest: int, highest: int) -> float:
    if highest <= lowest:
        return 0.0
    return (priority - lowest) / (highest - lowest)


def age_factor(submitted_at: float, now: float, max_age: float) -> float:
    if max_age <= 0:
        return 0.0
    return min(1.0, max(0.0, now - submitted_at) / max_age)


@dataclass(frozen=True, slots=True)
class PendingJob:
    """What priority needs of a pending job."""

    job_id: int
    user: str
    priority: int
    submitted_at: float


def priorities(jobs: Iterable[PendingJob], ledger: UsageLedger, weights: PriorityWeights,
               now: float) -> dict[int, PriorityFactors]:
    """Every pending job's factors and combined priority."""
    pending = list(jobs)
    if not pending:
        return {}
    lowest = min(j.priority for j in pending)
    highest = max(j.priority for j in pending)
    usage = ledger.all_usage(now)
    users = {j.user for j in pending}
    shares = {user: fairshare_factor(user, usage, users) for user in users}
    out = {}
    for job in pending:
        jf = job_factor(job.priority, lowest, highest)
        af = age_factor(job.submitted_at, now, weights.max_age)
        ff = shares[job.user] if weights.uses_fairshare else 0.0
        total = weights.job * jf + weights.age * af + weights.fairshare * ff
        out[job.job_id] = PriorityFactors(round(jf, 4), round(af, 4), round(ff, 4), round(total))
    return out
