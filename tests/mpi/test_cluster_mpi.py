"""MPI jobs on a real 2-node dev cluster: `mpirun` in the first node's container starts its daemons in the
job's container on the other node through `rade-rsh` and the agents, without sshd or MPI on the host."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import pytest

from agent.tasks import SLICE_PARENT, slice_prefix

pytestmark = [pytest.mark.slow, pytest.mark.root]

# Each rank reports what it sees, then waits for the test's go-ahead so the host can look at it alive.
PROBE = """
import json, os, socket, sys, time
from mpi4py import MPI
world = MPI.COMM_WORLD
shm = os.statvfs("/dev/shm")
print(json.dumps({"rank": world.rank, "size": world.size, "host": socket.gethostname(),
                  "sum": world.allreduce(world.rank + 1), "cgroup": open("/proc/self/cgroup").read(),
                  "shm_size": shm.f_blocks * shm.f_frsize, "shm_dev": os.stat("/dev/shm").st_dev,
                  "pidns": os.readlink("/proc/self/ns/pid")}), flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.1)
world.Barrier()
"""

SLEEPER = """
import time
from mpi4py import MPI
MPI.COMM_WORLD.Barrier()
print("ranks up", flush=True)
time.sleep(600)
"""

ABORT = """
import sys, time
from mpi4py import MPI
world = MPI.COMM_WORLD
world.Barrier()
if world.rank == world.size - 1:
    world.Abort(3)
time.sleep(600)
"""


def script(cluster, name: str, text: str) -> str:
    (cluster.files / name).write_text(text)
    return f"/files/{name}"


def rank_processes(job_processes, job: int) -> dict[int, dict[str, str]]:
    """The job's rank processes on the host (Open MPI gives each its rank in the environment)."""
    return {pid: env for pid, env in job_processes(job).items() if "OMPI_COMM_WORLD_RANK" in env}


def host_cgroup(pid: int) -> str:
    """The process's memory cgroup, as the host names it."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(",") or controllers == "":
            return path
    raise AssertionError(f"pid {pid} has no memory cgroup")


def test_four_ranks_over_two_nodes_are_one_world_each_in_its_nodes_container(mpi_cluster, job_processes):
    go = mpi_cluster.files / f"go-{secrets.token_hex(4)}"
    job = mpi_cluster.submit(["python3", script(mpi_cluster, "probe.py", PROBE), f"/files/{go.name}"])
    ranks = mpi_cluster.wait_for("4 ranks on the host", lambda: len(r := rank_processes(job_processes, job)) == 4 and r)
    shown = mpi_cluster.show(job)
    tasks = {t["node"]: t for t in shown["tasks"]}
    assert sorted(tasks) == ["node1", "node2"]
    for pid, env in ranks.items():
        node = env["RADE_NODE"]
        task = tasks[node]
        # The rank runs in its own node's task: under that task's slice, in that node's container.
        slice_name = f"{slice_prefix(str(mpi_cluster.root), node)}.{job}.{task['task']}.{task['attempt']}"
        # (directly, or in a level the agent makes inside the slice)
        assert re.search(rf"/{SLICE_PARENT}/{re.escape(slice_name)}/(\w+/)?[0-9a-f]{{64}}$", host_cgroup(pid)), \
            host_cgroup(pid)
    assert sorted(int(env["OMPI_COMM_WORLD_RANK"]) for env in ranks.values()) == [0, 1, 2, 3]
    go.touch()
    ended = mpi_cluster.wait_ended(job)
    assert (ended["state"], ended["exit_code"]) == ("COMPLETED", 0), ended
    # Each line as `rade logs` labels it with its task; the report is the JSON after the label.
    reports = [json.loads(line[line.index("{"):]) for line in mpi_cluster.logs(job).splitlines() if '"rank"' in line]
    assert sorted(r["rank"] for r in reports) == [0, 1, 2, 3]
    assert {r["size"] for r in reports} == {4}
    assert {r["sum"] for r in reports} == {1 + 2 + 3 + 4}
    # ranks_per_node 2 with the slots of the hostfile: ranks 0-1 on the first node, 2-3 on the second.
    assert {r["rank"]: r["host"] for r in reports} == {0: "node1", 1: "node1", 2: "node2", 3: "node2"}
    # Inside, every rank is at the root of its container's cgroup namespace: the container's own cgroup.
    assert all(line.endswith(":/") for r in reports for line in r["cgroup"].splitlines()), reports
    # A node's ranks share one PID namespace and one /dev/shm, sized from the task's memory (2 x 256M) / 2.
    for node in ("node1", "node2"):
        here = [r for r in reports if r["host"] == node]
        assert len({r["pidns"] for r in here}) == 1 and len({r["shm_dev"] for r in here}) == 1
    assert {r["shm_size"] for r in reports} == {256 << 20}


def test_heat_solver_over_four_ranks_matches_the_serial_run(mpi_cluster):
    job = mpi_cluster.submit(["python3", "/opt/examples/heat.py", "--nx", "192", "--ny", "160", "--steps", "60",
                              "--serial-check"])
    ended = mpi_cluster.wait_ended(job)
    out = mpi_cluster.logs(job)
    assert (ended["state"], ended["exit_code"]) == ("COMPLETED", 0), out
    assert "ranks         : 4 as a 2 x 2 grid on 2 host(s): node1, node2" in out
    diff = float(re.search(r"serial_max_diff=(\S+)", out).group(1))
    assert diff <= 1e-12


def test_cancel_mid_run_leaves_no_rank_on_any_node(mpi_cluster, job_processes):
    job = mpi_cluster.submit(["python3", script(mpi_cluster, "sleeper.py", SLEEPER)])
    mpi_cluster.wait_for("the ranks to be up", lambda: "ranks up" in mpi_cluster.logs(job))
    ranks = rank_processes(job_processes, job)
    assert {env["RADE_NODE"] for env in ranks.values()} == {"node1", "node2"}
    mpi_cluster.rade("cancel", str(job))
    ended = mpi_cluster.wait_ended(job)
    assert ended["state"] == "CANCELLED"
    mpi_cluster.wait_for("no process of the job left on the host", lambda: not job_processes(job), timeout=60)


def test_time_limit_stops_every_rank_on_every_node(mpi_cluster, job_processes):
    job = mpi_cluster.submit(["python3", script(mpi_cluster, "sleeper.py", SLEEPER)], time_limit="15s")
    mpi_cluster.wait_for("the ranks to be up", lambda: "ranks up" in mpi_cluster.logs(job))
    assert {env["RADE_NODE"] for env in rank_processes(job_processes, job).values()} == {"node1", "node2"}
    assert mpi_cluster.wait_ended(job)["state"] == "TIMEOUT"
    mpi_cluster.wait_for("no process of the job left on the host", lambda: not job_processes(job), timeout=60)


def test_a_rank_calling_mpi_abort_3_fails_the_job_with_code_3(mpi_cluster, job_processes):
    job = mpi_cluster.submit(["python3", script(mpi_cluster, "abort.py", ABORT)])
    ended = mpi_cluster.wait_ended(job)
    assert (ended["state"], ended["exit_code"]) == ("FAILED", 3), ended
    mpi_cluster.wait_for("no process of the job left on the host", lambda: not job_processes(job), timeout=60)



def test_mpich_ranks_on_two_nodes_start_through_hydra_and_rade_rsh(mpi_cluster, mpich_image):
    """MPICH's Hydra reaches the other node through `rade-rsh` too (its ssh launcher, by address)."""
    job = mpi_cluster.submit(["/opt/examples/ring", "10"], image=mpich_image, time_limit="2m",
                             mpi={"ranks": 2, "ranks_per_node": 1, "implementation": "mpich"})
    ended = mpi_cluster.wait_ended(job)
    out = mpi_cluster.logs(job)
    assert (ended["state"], ended["exit_code"]) == ("COMPLETED", 0), out
    assert "rank 0 on node1: 10 hops" in out and "rank 1 on node2: 10 hops" in out
    assert "token 20 after 20 hops (expected 20): OK" in out
