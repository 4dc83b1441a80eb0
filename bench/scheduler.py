"""Scheduler throughput: 1,000 simulated nodes (64 CPUs each) and 20,000 one-task jobs.

The scheduler and the simulated agents (two processes of 500 nodes, each node its own ZeroMQ connection)
run as subprocesses on 127.0.0.1, exactly as `rade scheduler` and `rade agent --simulate` run them. Every
node is drained while jobs are submitted, so submissions are measured alone:

- one client, one request at a time (what `rade submit` does, as `sbatch` does), synchronous=normal;
- the same with synchronous=full (an fsync per commit), on a second scheduler, for comparison;
- four clients at once, one request at a time each;
- one client keeping 64 requests in flight (the client library's `submit_many`).

Then every node is resumed with one request and the clock runs until all 20,000 jobs are placed (the
scheduler's count of committed placements, launches sent), and until every task is reported RUNNING.
The placement pass alone (the daemon's pass, in this process, no store and no messages) is measured too,
and so is each piece of one synchronous submission (encoding, decoding, checking, committing), printed
beside ZeroMQ's own round trip to show where the time of a `rade submit` goes.

The Slurm figures are those measured on this machine kind (Debian's slurm-wlm 22.05, one slurmctld, 4
slurmd; see the project's notes on peers): 173 sbatch/s from one client, 463/s from 8, 1,000 trivial jobs
end to end at best 82 jobs/s. Slurm is not installed here to rerun, so they are constants.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))

NODES = 1000
CPUS = 64
JOBS = 20_000
AGENT_PROCESSES = 2
SEQUENTIAL_1 = 4000
SEQUENTIAL_FULL = 1000
PER_CLIENT_4 = 2000
PIPELINED = JOBS - SEQUENTIAL_1 - 4 * PER_CLIENT_4

SLURM_SBATCH_1 = 173.0
SLURM_SBATCH_8 = 463.0
SLURM_END_TO_END = 82.0
GOAL_SUBMIT = 2000.0
GOAL_PLACE = 5000.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def job_spec(index: int) -> dict:
    from jobs.spec import JobSpec

    return JobSpec.from_dict({"name": f"bench-{index}", "image": "busybox", "command": ["sleep", "3600"],
                              "resources": {"cpus": 1, "memory": "512M"}}).to_dict()


def submit_worker(endpoint: str, count: int, start_at: float, window: int) -> None:
    """A client process: wait for the common start, submit `count` jobs, print seconds taken."""
    from rade.client import SchedulerClient

    specs = [job_spec(i) for i in range(count)]
    with SchedulerClient(endpoint, timeout=60) as client:
        client.stats()  # connected before the clock starts
        while time.time() < start_at:
            time.sleep(0.001)
        began = time.perf_counter()
        if window == 1:
            for spec in specs:
                client.submit(spec, user="bench")
        else:
            client.submit_many(specs, user="bench", window=window)
        print(json.dumps({"seconds": time.perf_counter() - began, "count": count}))


class Cluster:
    def __init__(self, root: Path, synchronous: str, agents: bool) -> None:
        self.root = root
        root.mkdir(parents=True)
        self.agents_port, self.clients_port = free_port(), free_port()
        config = root / "scheduler.yaml"
        config.write_text(f"agents: tcp://127.0.0.1:{self.agents_port}\nclients: tcp://127.0.0.1:{self.clients_port}\n"
                          f"heartbeat_interval: 5s\nmisses: 6\nsynchronous: {synchronous}\nauth: none\n")
        self.endpoint = f"tcp://127.0.0.1:{self.clients_port}"
        self.procs: list[subprocess.Popen] = []
        self._spawn("scheduler", "scheduler", "--config", str(config))
        from rade.client import SchedulerClient

        self.client = SchedulerClient(self.endpoint, timeout=120)
        self._wait(lambda: self.client.stats() is not None, 60)
        if agents:
            per = NODES // AGENT_PROCESSES
            for i in range(AGENT_PROCESSES):
                self._spawn(f"agents{i}", "agent", "--simulate", "--scheduler", f"tcp://127.0.0.1:{self.agents_port}",
                            "--cpus", str(CPUS), "--memory", "256G", "--count", str(per), "--prefix", f"s{i}n")
            self._wait(lambda: self.client.stats()["nodes"].get("IDLE", 0) == NODES, 300)

    def _spawn(self, name: str, *args: str) -> None:
        with open(self.root / f"{name}.log", "ab") as log:
            self.procs.append(subprocess.Popen([sys.executable, "-m", "rade", "--root", str(self.root), *args],
                                               stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=TOP,
                                               close_fds=True))

    def _wait(self, condition, timeout: float, every: float = 0.05) -> None:
        # Each look costs the scheduler a count over every job: while it places, look less often.
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):  # not answering yet
                if condition():
                    return
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: timed out; see the logs in {self.root}")
            time.sleep(every)

    def clients(self, count: int, jobs: int, window: int) -> float:
        """Run `count` client processes of `jobs` submissions each; jobs per second over all of them."""
        start_at = time.time() + 1.5
        procs = [subprocess.Popen([sys.executable, __file__, "--worker", self.endpoint, str(jobs), str(start_at),
                                   str(window)], stdout=subprocess.PIPE, text=True, cwd=TOP, close_fds=True)
                 for _ in range(count)]
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=900)
            if proc.returncode != 0:
                raise SystemExit(f"bench: a client failed (exit {proc.returncode})")
            results.append(json.loads(out.strip().splitlines()[-1]))
        return sum(r["count"] for r in results) / max(r["seconds"] for r in results)

    def close(self) -> None:
        self.client.close()
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def placement_alone() -> float:
    """The daemon's pass by itself (the site policy's backfill pass, as configured by default), in this
    process: 20,000 one-task jobs over 1,000 empty nodes."""
    import gc

    from scheduler.daemon import GC_THRESHOLDS
    from scheduler.policy import SchedulingPolicy
    from scheduler.queue import QueuedJob
    from scheduler.resources import JobDemand, NodeView, TaskDemand

    views = {f"n{i:04d}": NodeView(f"n{i:04d}", tuple(range(CPUS)), 256 << 30) for i in range(NODES)}
    jobs = [QueuedJob(i, 0, i, JobDemand(i, TaskDemand(1000, 512 << 20))) for i in range(JOBS)]
    previous = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)  # as the daemon runs its passes
    try:
        began = time.perf_counter()
        result = SchedulingPolicy().run(jobs, views, {}, list, time.time())
        elapsed = time.perf_counter() - began
    finally:
        gc.set_threshold(*previous)
    assert len(result.plans) == JOBS
    return JOBS / elapsed


def best_of(action, rounds: int = 7, count: int = 300) -> float:
    """CPU microseconds one call of `action` takes, the best of several rounds: CPU time, not the clock's,
    so that other processes' load does not count (it shows in the rest of the measured round trip)."""
    best = float("inf")
    for _ in range(rounds):
        began = time.thread_time()
        for _ in range(count):
            action()
        best = min(best, (time.thread_time() - began) / count)
    return best * 1e6


def round_trip_parts(root: Path) -> list[tuple[str, float]]:
    """What one synchronous submission costs, piece by piece, measured here without sockets: the client's
    encoding, the daemon's decoding, checking and recording of the spec, its commit, the reply."""
    from jobs.messages import Reply, Submit, decode, encode
    from jobs.spec import JobSpec
    from rade.client import wire_spec
    from scheduler.clock import SystemClock
    from scheduler.state import ClusterState
    from scheduler.store import Store

    spec = job_spec(0)
    frame = encode(Submit(spec=wire_spec(spec), user="bench", cwd=os.getcwd()))
    reply = encode(Reply(data={"jobs": [12345]}))
    store = Store(str(root / "parts.db"), "normal")
    state = ClusterState(store, SystemClock())
    try:
        def submit_and_commit() -> None:
            state.submit(decode(frame).spec, "bench")
            store.commit()

        whole = best_of(submit_and_commit)
        parts = [("client: spec without defaults, encode", best_of(lambda: encode(Submit(
                      spec=wire_spec(spec), user="bench", cwd=os.getcwd())))),
                 ("daemon: decode", best_of(lambda: decode(frame))),
                 ("daemon: check, record and commit the job", whole - best_of(lambda: decode(frame))),
                 ("  of which checking the spec (from_dict)", best_of(lambda: JobSpec.from_dict(
                      decode(frame).spec))),
                 ("daemon: encode reply; client: decode it", best_of(lambda: decode(encode(Reply(
                      data={"jobs": [12345]}))))), ]
        assert decode(reply).data == {"jobs": [12345]}
        return parts
    finally:
        store.close()


ECHO = """
import sys, zmq
sock = zmq.Context().socket(zmq.ROUTER)
sock.bind("tcp://127.0.0.1:*")
print(sock.getsockopt_string(zmq.LAST_ENDPOINT), flush=True)
while True:
    frames = sock.recv_multipart()
    if frames[-1] == b"stop":
        break
    sock.send_multipart(frames)
"""


def transport_floor(count: int = 3000) -> float:
    """Request/reply round trips per second from one client to an echo process: the floor under any
    one-at-a-time client on this machine, measured now (the machine's load moves it a lot)."""
    import zmq

    echo = subprocess.Popen([sys.executable, "-c", ECHO], stdout=subprocess.PIPE, text=True, close_fds=True)
    try:
        endpoint = echo.stdout.readline().strip()
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        payload = b"x" * 600  # about a submitted spec's size
        began = time.perf_counter()
        for _ in range(count):
            sock.send_multipart([b"id", payload])
            sock.recv_multipart()
        rate = count / (time.perf_counter() - began)
        sock.send_multipart([b"id", b"stop"])
        sock.close(0)
        return rate
    finally:
        echo.wait(timeout=30)


def main() -> None:
    rows: list[tuple[str, float, str]] = [("ZeroMQ round trips, 1 client (floor)", transport_floor(), "req/s"),
                                          ("placement pass alone (no I/O)", placement_alone(), "jobs/s")]
    with tempfile.TemporaryDirectory(prefix="rade-bench-") as tmp:
        parts = round_trip_parts(Path(tmp))
        full = Cluster(Path(tmp) / "full", "full", agents=False)
        try:
            rows.append(("submit, 1 client, synchronous=full", full.clients(1, SEQUENTIAL_FULL, 1), "jobs/s"))
        finally:
            full.close()
        cluster = Cluster(Path(tmp) / "normal", "normal", agents=True)
        try:
            names = [row["name"] for row in cluster.client.nodes()]
            cluster.client.drain(names, "benchmark: queue first")
            submit_1 = cluster.clients(1, SEQUENTIAL_1, 1)
            submit_4 = cluster.clients(4, PER_CLIENT_4, 1)
            pipelined = cluster.clients(1, PIPELINED, 64)
            rows += [("submit, 1 client", submit_1, "jobs/s"), ("submit, 4 clients", submit_4, "jobs/s"),
                     ("submit, 1 client, 64 in flight", pipelined, "jobs/s")]
            queued = cluster.client.stats()["jobs"].get("PENDING", 0)
            assert queued == JOBS, f"{queued} jobs queued, not {JOBS}"
            began = time.perf_counter()
            cluster.client.resume(names)
            cluster._wait(lambda: cluster.client.stats()["placed"] >= JOBS, 600, every=0.1)
            placed = time.perf_counter() - began
            cluster._wait(lambda: cluster.client.stats()["jobs"].get("RUNNING", 0) >= JOBS, 600, every=0.1)
            running = time.perf_counter() - began
            rows += [("placement (resume -> all placed)", JOBS / placed, "jobs/s"),
                     ("resume -> all reported RUNNING", JOBS / running, "jobs/s")]
        finally:
            cluster.close()

    print(f"rade scheduler: {NODES} simulated nodes x {CPUS} CPUs, {JOBS} one-task jobs "
          f"(python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})")
    print()
    print(f"| {'measure':<38} | {'rade':>10} | unit   |")
    print(f"|{'-' * 40}|{'-' * 12}|--------|")
    for name, value, unit in rows:
        print(f"| {name:<38} | {value:>10.0f} | {unit:<6} |")
    print(f"| {'Slurm sbatch, 1 client (this machine)':<38} | {SLURM_SBATCH_1:>10.0f} | jobs/s |")
    print(f"| {'Slurm sbatch, 8 clients (this machine)':<38} | {SLURM_SBATCH_8:>10.0f} | jobs/s |")
    print(f"| {'Slurm 1,000 jobs end to end, best':<38} | {SLURM_END_TO_END:>10.0f} | jobs/s |")
    print()
    values = {name: value for name, value, _ in rows}
    # Where one synchronous submission's time goes: the pieces measured alone (best of rounds, so what
    # load adds shows up in the rest), ZeroMQ's own round trip, and what remains of the measured one.
    measured = 1e6 / values["submit, 1 client"]
    floor = 1e6 / values["ZeroMQ round trips, 1 client (floor)"]
    print(f"| {'one submission, 1 client (measured)':<44} | {measured:>8.0f} | us |")
    print(f"|{'-' * 46}|{'-' * 10}|----|")
    spent = floor
    print(f"| {'ZeroMQ round trip (the floor above)':<44} | {floor:>8.0f} | us |")
    for name, micros in parts:
        if not name.startswith(" "):  # an indented line is part of the one above it
            spent += micros
        print(f"| {name:<44} | {micros:>8.0f} | us |")
    print(f"| {'the rest (daemon loop, its pass, load)':<44} | {measured - spent:>8.0f} | us |")
    print()
    print(f"ratio rade/slurm submit-1-client {values['submit, 1 client'] / SLURM_SBATCH_1:.1f}")
    print(f"ratio rade/slurm submit-4-vs-8-clients {values['submit, 4 clients'] / SLURM_SBATCH_8:.1f}")
    print(f"ratio rade/slurm placement-vs-end-to-end "
          f"{values['placement (resume -> all placed)'] / SLURM_END_TO_END:.1f}")
    print(f"ratio rade/zmq-floor submit-1-client "
          f"{values['submit, 1 client'] / values['ZeroMQ round trips, 1 client (floor)']:.2f}")
    print(f"ratio rade/goal submit-1-client {values['submit, 1 client'] / GOAL_SUBMIT:.2f}")
    print(f"ratio rade/goal placement {values['placement (resume -> all placed)'] / GOAL_PLACE:.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--worker":
        submit_worker(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
