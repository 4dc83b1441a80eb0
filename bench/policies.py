"""Scheduling policies on a synthetic HPC workload: FIFO, EASY backfill, and EASY backfill with fair share.

5,000 jobs on 128 simulated nodes (32 cores, 128 GiB each), run as a discrete-event simulation over the
scheduler's own pass (`scheduler.backfill.backfill_pass`, which places with `scheduler.placement`) and its
priority (`scheduler.fairshare`), on a virtual clock: time jumps from event to event (an arrival or a job's
end), a pass runs after each, and what it plans starts at once. Nothing sleeps; wall time is measured only
for the scheduling cycle.

The workload, seeded, shaped like published HPC logs: most jobs are small and short, a few are wide and
long. Sub-node jobs take 1-32 cores (powers of two); node jobs take whole nodes, their count drawn from a
Pareto tail (1 to 64 nodes). Runtimes are log-normal (median 10 minutes, sigma 1.6, 10 s to 36 h); each
job's time limit over-estimates its runtime by a factor drawn uniformly from 1 to 5 (users guess high,
rounded up to the minute). Jobs arrive as a Poisson process offering 105% of the machine, from 8 users of
unequal activity (Zipf), so a queue builds and the policy decides what the machine does.

Reported per policy: utilisation (core-seconds used over core-seconds the machine had, from the first
arrival to the last: while work keeps coming), mean and p95 wait, mean bounded slowdown (max(1, (wait + run) / max(run, 10 s))). Then the
wall time of one scheduling pass at 5,000 pending jobs on a busy machine (the median of several).
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# This directory holds a scheduler.py of its own: the project's top directory must come first.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scheduler.backfill import Running, backfill_pass
from scheduler.fairshare import PendingJob, PriorityWeights, UsageLedger, priorities
from scheduler.queue import QueuedJob
from scheduler.resources import GIB, JobDemand, NodeView, TaskDemand

NODES = 128
CORES = 32
MEMORY = 128 * GIB
JOBS = 5000
USERS = 8
LOAD = 1.05
SEED = 42
RUNTIME_MEDIAN = 600.0
RUNTIME_SIGMA = 1.6
RUNTIME_MAX = 12 * 3600.0
# Jobs a pass looks at, at most: Slurm's bf_max_job_test default. The cycle-time measurement looks at all.
BF_MAX_JOB_TEST = 500
GOAL_POINTS = 10.0
GOAL_CYCLE_MS = 50.0


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    user: str
    arrival: float
    runtime: float
    limit: float
    cores: int
    demand: JobDemand


def workload(count: int, seed: int) -> list[Job]:
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(USERS)]
    shapes = []
    for i in range(1, count + 1):
        if rng.random() < 0.6:
            cores = 2 ** rng.randint(0, 5)
            demand = JobDemand(i, TaskDemand(cores * 1000, cores * 2 * GIB))
        else:
            nodes = min(64, int(rng.paretovariate(1.2)))
            cores = nodes * CORES
            demand = JobDemand(i, TaskDemand(CORES * 1000, 64 * GIB), tasks=nodes, nodes=nodes)
        runtime = min(RUNTIME_MAX, max(10.0, rng.lognormvariate(math.log(RUNTIME_MEDIAN), RUNTIME_SIGMA)))
        limit = math.ceil(runtime * rng.uniform(1, 5) / 60) * 60
        user = f"user{rng.choices(range(USERS), weights)[0]}"
        shapes.append((i, user, runtime, limit, cores, demand))
    mean_work = statistics.fmean(s[2] * s[4] for s in shapes)
    rate = LOAD * NODES * CORES / mean_work
    now = 0.0
    jobs = []
    for i, user, runtime, limit, cores, demand in shapes:
        now += rng.expovariate(rate)
        jobs.append(Job(i, user, now, runtime, float(limit), cores, demand))
    return jobs


def cluster() -> dict[str, NodeView]:
    return {f"n{i:03d}": NodeView(name=f"n{i:03d}", cores=tuple(range(CORES)), memory=MEMORY)
            for i in range(1, NODES + 1)}


@dataclass
class Outcome:
    utilisation: float
    mean_wait: float
    p95_wait: float
    slowdown: float
    passes: int
    backfilled: int
    wall: float = 0.0


def simulate(jobs: list[Job], mode: str, fairshare: bool, max_tested: int | None) -> Outcome:
    views = cluster()
    by_id = {j.id: j for j in jobs}
    limits = {j.id: j.limit for j in jobs}
    arrivals = sorted(jobs, key=lambda j: j.arrival)
    pending: dict[int, QueuedJob] = {}
    running: dict[int, list[Running]] = {}
    ends: list[tuple[float, int]] = []
    started: dict[int, float] = {}
    ledger = UsageLedger(half_life=24 * 3600.0)
    weights = PriorityWeights(job=0.0, age=1000.0, fairshare=10_000.0, max_age=7 * 86400.0)
    index = passes = backfilled = 0
    now = 0.0
    while index < len(arrivals) or ends or pending:
        next_arrival = arrivals[index].arrival if index < len(arrivals) else math.inf
        next_end = ends[0][0] if ends else math.inf
        now = min(next_arrival, next_end)
        if math.isinf(now):
            raise RuntimeError(f"{len(pending)} jobs can never start")
        while index < len(arrivals) and arrivals[index].arrival <= now:
            job = arrivals[index]
            pending[job.id] = QueuedJob(job.id, 0, job.id, job.demand)
            index += 1
        while ends and ends[0][0] <= now:
            _, job_id = heapq.heappop(ends)
            for item in running.pop(job_id):
                views[item.grant.node] = views[item.grant.node].give_back(item.grant)
            job = by_id[job_id]
            ledger.add(job.user, job.cores * job.runtime, now)
        if fairshare and pending:
            got = priorities((PendingJob(q.job_id, by_id[q.job_id].user, 0, by_id[q.job_id].arrival)
                              for q in pending.values()), ledger, weights, now)
            queue = [QueuedJob(q.job_id, got[q.job_id].priority, q.submit_seq, q.demand) for q in pending.values()]
        else:
            queue = list(pending.values())
        result = backfill_pass(queue, views, [r for items in running.values() for r in items], limits, now,
                               mode=mode, max_tested=max_tested, explain=0)
        passes += 1
        backfilled += len(result.backfilled)
        for plan in result.plans:
            job = by_id[plan.job_id]
            del pending[job.id]
            started[job.id] = now
            end = now + min(job.runtime, job.limit)
            items = []
            for grant in plan.grants:
                views[grant.node] = views[grant.node].with_grant(grant)
                items.append(Running(now + job.limit, grant))
            running[job.id] = items
            heapq.heappush(ends, (end, job.id))
    # Utilisation while work keeps arriving (first to last arrival): the tail where the last long jobs
    # drain an empty queue says nothing of the policy.
    first, last = arrivals[0].arrival, arrivals[-1].arrival
    used = sum(j.cores * max(0.0, min(last, started[j.id] + j.runtime) - max(first, started[j.id])) for j in jobs)
    waits = sorted(started[j.id] - j.arrival for j in jobs)
    slowdowns = [max(1.0, (started[j.id] - j.arrival + j.runtime) / max(j.runtime, 10.0)) for j in jobs]
    return Outcome(used / (NODES * CORES * (last - first)), statistics.fmean(waits),
                   waits[int(0.95 * (len(waits) - 1))], statistics.fmean(slowdowns), passes, backfilled)


def cycle_time(jobs: list[Job], mode: str, rounds: int) -> tuple[float, float]:
    """Wall and CPU seconds (medians) of one pass with every job pending on a machine whose nodes are all
    partly busy: the pass places what fits (a few hundred small jobs) and reserves for the head job."""
    rng = random.Random(SEED + 1)
    views = cluster()
    running = []
    for name in views:
        views[name], grant = views[name].take(TaskDemand(rng.randint(8, CORES - 1) * 1000, 8 * GIB))
        running.append(Running(float(rng.randint(60, 36 * 3600)), grant))
    queue = [QueuedJob(j.id, 0, j.id, j.demand) for j in jobs]
    limits = {j.id: j.limit for j in jobs}
    walls, cpus = [], []
    for _ in range(rounds):
        began, began_cpu = time.perf_counter(), time.process_time()
        backfill_pass(queue, views, running, limits, 0.0, mode=mode)
        walls.append(time.perf_counter() - began)
        cpus.append(time.process_time() - began_cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=JOBS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--quick", action="store_true", help="fewer rounds of the cycle-time measurement")
    args = parser.parse_args()
    jobs = workload(args.jobs, args.seed)
    print(f"{len(jobs)} jobs, {NODES} nodes x {CORES} cores, offered load {LOAD:.0%}, seed {args.seed}")
    results = {}
    for label, mode, fair in (("FIFO", "fifo", False), ("EASY backfill", "easy", False),
                              ("EASY + fair share", "easy", True)):
        began = time.perf_counter()
        results[label] = simulate(jobs, mode, fair, BF_MAX_JOB_TEST)
        results[label].wall = time.perf_counter() - began
    cycles = {mode: cycle_time(jobs, mode, 3 if args.quick else 9) for mode in ("fifo", "easy")}
    print()
    print(f"{'policy':<20} {'util':>6} {'mean wait':>10} {'p95 wait':>10} {'bsld':>7} {'backfilled':>10} "
          f"{'passes':>7} {'sim wall':>9}")
    for label, r in results.items():
        print(f"{label:<20} {r.utilisation:6.1%} {r.mean_wait / 60:9.1f}m {r.p95_wait / 60:9.1f}m "
              f"{r.slowdown:7.1f} {r.backfilled:10d} {r.passes:7d} {r.wall:8.1f}s")
    print()
    print(f"scheduling pass at {len(jobs)} pending jobs, median wall (CPU): FIFO {cycles['fifo'][0] * 1000:.1f} ms "
          f"({cycles['fifo'][1] * 1000:.1f}), EASY backfill {cycles['easy'][0] * 1000:.1f} ms "
          f"({cycles['easy'][1] * 1000:.1f}) (goal < {GOAL_CYCLE_MS:.0f} ms)")
    fifo, easy, fair = results["FIFO"], results["EASY backfill"], results["EASY + fair share"]
    print(f"utilisation gain of EASY backfill over FIFO: {100 * (easy.utilisation - fifo.utilisation):+.1f} points "
          f"(goal >= {GOAL_POINTS:.0f})")
    print(f"ratio easy/fifo utilisation {easy.utilisation / fifo.utilisation:.3f}")
    print(f"ratio easy/fifo mean-wait {easy.mean_wait / fifo.mean_wait:.3f}")
    print(f"ratio easy/fifo bounded-slowdown {easy.slowdown / fifo.slowdown:.3f}")
    print(f"ratio fairshare/easy mean-wait {fair.mean_wait / easy.mean_wait:.3f}")
    print(f"ratio easy-cycle/goal at-{len(jobs)}-pending {cycles['easy'][0] * 1000 / GOAL_CYCLE_MS:.3f}")


if __name__ == "__main__":
    main()
