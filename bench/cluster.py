"""Real agents on a dev cluster: submit→RUNNING latency on an idle cluster, and the end-to-end rate of
trivial containerised jobs.

`rade cluster up` on a temporary root (the busybox image bootstrapped into it), then:

- latency: one `true` job at a time on the idle cluster, each waited for before the next; the time from
  the scheduler accepting the job (its submitted_at) to the agent's RUNNING report being applied (the
  task's started_at), both on the scheduler's clock, so the client's own start-up is left out as
  `sbatch`'s is in the Slurm figure;
- throughput: JOBS trivial jobs (`true`, one CPU each) submitted at once through the client library,
  from the first submission to the last job's end;
- where the CPU goes during the throughput run, per job: the scheduler, the agents, their launchers
  (/proc/PID/stat), and everything the cluster started (a cpuacct cgroup, v1, or a cgroup v2 the
  benchmark joins before `up`, which every daemon, supervisor and container set-up inherits until a
  container joins its own cgroup); what is left of that total after the named daemons is the supervisors'
  and the containers' set-up, their forks and the kernel's work for them. On 2 cores, 250 jobs/s leaves
  8 ms of CPU a job for everything. Machine-wide load does not enter these CPU figures, unlike the rates.

Slurm 22.05 measured on this machine kind (Debian's slurm-wlm, one slurmctld, 4 slurmd; see the project's
notes on peers) is not installed here to rerun, so its figures are constants: 80 jobs/s end to end at
best, submit→RUNNING median 1.6 s by default and 0.47 s tuned (batch_sched_delay=0).

    python bench/cluster.py [--nodes 2] [--jobs 200] [--samples 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
# The script's own directory first on the path would let bench/copy.py stand for the standard `copy`.
sys.path[0] = str(TOP)

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
    failed = [j for j in ends if j["state"] != "COMPLETED"]
    if failed:
        said = [(j["id"], j["state"], [(t["node"], t["state"], t["exit_code"], t.get("detail")) for t in j["tasks"]])
                for j in failed]
        raise SystemExit(f"{len(failed)} jobs did not complete, e.g. {said[:3]}")
    last = max(j["ended_at"] for j in ends)
    first = min(j["submitted_at"] for j in ends)
    return count / (last - first), count / submitted


class CpuMeter:
    """CPU seconds of this process's descendants (a cgroup joined before they start) and of given PIDs."""

    def __init__(self) -> None:
        self.dir = ""
        self.usage_file = ""
        name = f"rade-bench-cluster-{os.getpid()}"
        # v1 with a cpuacct hierarchy (this machine), else a pure cgroup2 host; neither: no total.
        for base, usage, marker in (("/sys/fs/cgroup/cpuacct", "cpuacct.usage", "cpuacct.usage"),
                                    ("/sys/fs/cgroup", "cpu.stat", "cgroup.controllers")):
            if not os.path.exists(f"{base}/{marker}"):
                continue
            try:
                os.mkdir(f"{base}/{name}")
                self.dir, self.usage_file = f"{base}/{name}", usage
                with open(f"{self.dir}/cgroup.procs", "w") as procs:
                    procs.write(str(os.getpid()))
                return
            except OSError:
                self.close()

    def total(self) -> float | None:
        if not self.dir:
            return None
        with open(f"{self.dir}/{self.usage_file}") as handle:
            text = handle.read()
        if self.usage_file == "cpu.stat":
            return int(text.split("usage_usec", 1)[1].split()[0]) / 1e6
        return int(text) / 1e9

    def close(self) -> None:
        if self.dir:
            parent = os.path.dirname(self.dir)
            try:
                with open(f"{parent}/cgroup.procs", "w") as procs:
                    procs.write(str(os.getpid()))
            except OSError:
                pass
            deadline = time.monotonic() + 5
            while os.path.isdir(self.dir):
                try:
                    os.rmdir(self.dir)
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
            self.dir = ""


def process_cpu(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []


def daemons(root: str) -> dict[str, list[int]]:
    """The cluster's scheduler, agents and the agents' helpers (launcher, rsh server), by PID."""
    from rade import devcluster

    state = devcluster.load_state(root)
    assert state is not None and state.scheduler is not None
    agents = [n.agent.pid for n in state.nodes if n.agent is not None]
    return {"scheduler": [state.scheduler.pid], "agents": agents,
            "launchers": [child for agent in agents for child in children(agent)]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()

    from rade import devcluster
    from rade.client import SchedulerClient, find_scheduler

    meter = CpuMeter()
    with tempfile.TemporaryDirectory(prefix="rade-bench-cluster-") as root:
        subprocess.run([sys.executable, "-m", "rade", "--root", root, "image", "bootstrap", "busybox", "busybox"],
                       check=True, capture_output=True, cwd=TOP)
        try:
            devcluster.up(root, args.nodes)
            with SchedulerClient(find_scheduler(None, root), timeout=60, root=root) as client:
                lat = latency(client, args.samples)
                pids = daemons(root)
                before = {name: sum(map(process_cpu, group)) for name, group in pids.items()}
                total_before, client_before = meter.total(), process_cpu(os.getpid())
                rate, submit_rate = throughput(client, args.jobs)
                used = {name: sum(map(process_cpu, group)) - before[name] for name, group in pids.items()}
                total_after, used["client"] = meter.total(), process_cpu(os.getpid()) - client_before
        finally:
            devcluster.down(root)
            meter.close()
    median, p99 = statistics.median(lat), percentile(lat, 0.99)
    rows = [
        ("submit->RUNNING median (ms)", f"{median * 1000:.1f}",
         f"{SLURM_LATENCY_DEFAULT * 1000:.0f} default, {SLURM_LATENCY_TUNED * 1000:.0f} tuned"),
        ("submit->RUNNING p99 (ms)", f"{p99 * 1000:.1f}", "-"),
        (f"{args.jobs} trivial jobs end to end (jobs/s)", f"{rate:.1f}", f"{SLURM_END_TO_END:.0f} at best"),
        ("  of which submission (jobs/s)", f"{submit_rate:.0f}", "-"),
    ]
    per_job = {name: seconds * 1000 / args.jobs for name, seconds in used.items()}
    if total_before is not None and total_after is not None:
        total = (total_after - total_before) * 1000 / args.jobs
        per_job["supervisors, container set-up"] = total - sum(per_job.values())
        per_job["all of it"] = total
    rows += [(f"CPU per job: {name} (ms)", f"{ms:.1f}", "-") for name, ms in per_job.items()]
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
