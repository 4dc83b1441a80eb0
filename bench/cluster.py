"""Real agents on a dev cluster: submit→RUNNING latency on an idle cluster, and the end-to-end rate of
trivial containerised jobs.

`rade cluster up` on a temporary root (the busybox image bootstrapped into it), then:

- latency: one `true` job at a time on the idle cluster, each waited for before the next; the time from
  the scheduler accepting the job (its submitted_at) to the agent's RUNNING report being applied (the
  task's started_at), both on the scheduler's clock, so the client's own start-up is left out as
  `sbatch`'s is in the Slurm figure;
- throughput: JOBS trivial jobs (`true`, one CPU each) submitted at once through the client library,
  from the first submission to the last job's end.

Slurm 22.05 measured on this machine kind (Debian's slurm-wlm, one slurmctld, 4 slurmd; see the project's
notes on peers) is not installed here to rerun, so its figures are constants: 80 jobs/s end to end at
best, submit→RUNNING median 1.6 s by default and 0.47 s tuned (batch_sched_delay=0).

    python bench/cluster.py [--nodes 2] [--jobs 200] [--samples 30]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))

SLURM_END_TO_END = 80.0
SLURM_LATENCY_DEFAULT = 1.6
SLURM_LATENCY_TUNED = 0.47


def spec(name: str) -> dict:
    from jobs.spec import JobSpec

    return JobSpec.from_dict({"name": name, "image": "busybox", "command": ["true"],
                              "resources": {"cpus": 1, "memory": "64M"}}).to_dict()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def latency(client, samples: int) -> list[float]:
    found = []
    for i in range(samples + 2):
        (job,) = client.submit(spec(f"lat-{i}"), user="bench")
        client.wait(job)
        shown = client.show(job)
        task = shown["tasks"][0]
        if i >= 2:  # the first two warm the agents' page cache and the image's layers
            found.append(task["started_at"] - shown["submitted_at"])
    return found


def throughput(client, count: int) -> tuple[float, float]:
    began = time.time()
    jobs = client.submit_many([spec(f"tp-{i}") for i in range(count)], user="bench")
    submitted = time.time() - began
    for job in jobs:
        client.wait(job)
    ends = [client.show(job) for job in jobs]
    failed = [j["id"] for j in ends if j["state"] != "COMPLETED"]
    if failed:
        raise SystemExit(f"{len(failed)} jobs did not complete, e.g. {failed[:5]}")
    last = max(j["ended_at"] for j in ends)
    first = min(j["submitted_at"] for j in ends)
    return count / (last - first), count / submitted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()

    from rade import devcluster
    from rade.client import SchedulerClient, find_scheduler

    with tempfile.TemporaryDirectory(prefix="rade-bench-cluster-") as root:
        subprocess.run([sys.executable, "-m", "rade", "--root", root, "image", "bootstrap", "busybox", "busybox"],
                       check=True, capture_output=True, cwd=TOP)
        try:
            devcluster.up(root, args.nodes)
            with SchedulerClient(find_scheduler(None, root), timeout=60, root=root) as client:
                lat = latency(client, args.samples)
                rate, submit_rate = throughput(client, args.jobs)
        finally:
            devcluster.down(root)
    median, p99 = statistics.median(lat), percentile(lat, 0.99)
    rows = [
        ("submit->RUNNING median (ms)", f"{median * 1000:.1f}",
         f"{SLURM_LATENCY_DEFAULT * 1000:.0f} default, {SLURM_LATENCY_TUNED * 1000:.0f} tuned"),
        ("submit->RUNNING p99 (ms)", f"{p99 * 1000:.1f}", "-"),
        (f"{args.jobs} trivial jobs end to end (jobs/s)", f"{rate:.1f}", f"{SLURM_END_TO_END:.0f} at best"),
        ("  of which submission (jobs/s)", f"{submit_rate:.0f}", "-"),
    ]
    print(f"dev cluster: {args.nodes} nodes with real agents, busybox containers, {args.samples} latency samples")
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  {'rade':>10}  slurm 22.05")
    for name, rade, slurm in rows:
        print(f"{name.ljust(width)}  {rade:>10}  {slurm}")
    print(f"ratio rade/slurm end_to_end_jobs_per_s {rate / SLURM_END_TO_END:.3f}")
    print(f"ratio slurm_default/rade submit_to_running_median {SLURM_LATENCY_DEFAULT / median:.3f}")
    print(f"ratio slurm_tuned/rade submit_to_running_median {SLURM_LATENCY_TUNED / median:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
