"""The fault-injection soak: on a 3-node dev cluster, 500 short jobs while the scheduler is SIGKILLed and
restarted 3 times, one agent SIGKILLed and restarted twice, and one node's link cut for longer than the
DOWN threshold, then restored.

Every job appends `JOB ATTEMPT start|end UPTIME` to a ledger on a shared volume. At the end: every job is
in a terminal state, none is lost, every COMPLETED job's attempt started and ended exactly once and no two
attempts of a job overlapped, the state database passes `PRAGMA integrity_check`. The run prints these
counts. Jobs do not requeue: a job on the cut node ends NODE_FAIL rather than running a second time while
the first may still run behind the cut, so "ran exactly once" is a property the cluster must keep, not
one a retry hides. Run it with `make soak`.
"""

from __future__ import annotations

import collections
import itertools
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from rade import devcluster
from rade.client import SchedulerUnreachable

from ..trust.cluster import TERMINAL, TrustCluster, trust_cluster

pytestmark = [pytest.mark.slow, pytest.mark.root]

JOBS = 500
HEARTBEAT, MISSES = 2.0, 3  # the dev cluster's: a node is DOWN after 6 s of silence
JOB = ('read t _ </proc/uptime; echo "$RADE_JOB_ID $RADE_ATTEMPT start $t" >> /ledger/ledger; sleep 1; '
       'read t _ </proc/uptime; echo "$RADE_JOB_ID $RADE_ATTEMPT end $t" >> /ledger/ledger')
# (fraction of jobs ended, fault): spread over the run so each lands while work is in flight.
PLAN = ((0.08, "kill scheduler"), (0.2, "kill agent"), (0.32, "kill scheduler"), (0.45, "cut node"),
        (0.6, "kill agent"), (0.72, "kill scheduler"))


def _ended_in_ledger(ledger: Path) -> int:
    try:
        return ledger.read_bytes().count(b" end ")
    except FileNotFoundError:
        return 0


def _kill(proc: devcluster.Process | None) -> None:
    assert proc is not None and devcluster.is_alive(proc)
    os.kill(proc.pid, signal.SIGKILL)
    os.waitpid(proc.pid, 0)  # started by this process (the dev cluster's up): collect it


def _inject(cluster: TrustCluster, fault: str, log: list[str]) -> None:
    root = str(cluster.root)
    state = cluster.state()
    started = time.monotonic()
    if fault == "kill scheduler":
        _kill(state.scheduler)
        devcluster.restart(root, scheduler=True)
    elif fault == "kill agent":
        node = next(n for n in state.nodes if n.name == "node2")
        _kill(node.agent)
        devcluster.restart(root, nodes=("node2",))
    elif fault == "cut node":
        from engine.network.testhost import cut_test_host, reconnect_test_host

        host = devcluster.host_of(state, next(n for n in state.nodes if n.name == "node3"))
        cut_test_host(host)
        try:
            time.sleep(HEARTBEAT * MISSES + 4)  # past the DOWN threshold, as a failure would be
        finally:
            reconnect_test_host(host)
    log.append(f"{fault} at {time.strftime('%H:%M:%S')} ({time.monotonic() - started:.1f}s)")


def _read_ledger(ledger: Path) -> dict[int, dict[int, dict[str, list[float]]]]:
    runs: dict[int, dict[int, dict[str, list[float]]]] = collections.defaultdict(
        lambda: collections.defaultdict(lambda: {"start": [], "end": []}))
    for line in ledger.read_text().splitlines():
        job, attempt, what, uptime = line.split()
        runs[int(job)][int(attempt)][what].append(float(uptime))
    return runs


@pytest.fixture(scope="module")
def three_nodes(tmp_path_factory: pytest.TempPathFactory):
    with trust_cluster(tmp_path_factory.mktemp("soak"), 3) as cluster:
        yield cluster


def test_soak_loses_nothing_and_runs_each_completed_job_once(three_nodes: TrustCluster) -> None:
    cluster = three_nodes
    ledger_dir = cluster.shared / "ledger"
    ledger_dir.mkdir()
    ledger = ledger_dir / "ledger"
    spec = {"image": "busybox", "command": ["sh", "-c", JOB], "resources": {"cpus": 0.5, "memory": "32M"},
            "volumes": [{"source": str(ledger_dir), "target": "/ledger", "read_only": False}], "requeue": False}
    began = time.monotonic()
    with cluster.client(as_user=False, timeout=60) as client:
        ids = client.submit_many([{"name": f"soak-{i}", **spec} for i in range(JOBS)])
    assert len(ids) == JOBS
    faults: list[str] = []
    for fraction, fault in PLAN:
        cluster.wait_for(f"{fraction:.0%} of the jobs to end before '{fault}'",
                         lambda f=fraction: _ended_in_ledger(ledger) >= f * JOBS, timeout=300)
        _inject(cluster, fault, faults)

    def all_ended() -> dict[int, dict] | None:
        try:
            with cluster.client(as_user=False, timeout=10) as client:
                rows = {r["id"]: r for r in client.queue(include_ended=True)}
        except SchedulerUnreachable:
            return None
        return rows if all(rows.get(i, {}).get("state") in TERMINAL for i in ids) else None

    rows = cluster.wait_for("every job to end", all_ended, timeout=360)
    elapsed = time.monotonic() - began

    states = collections.Counter(rows[i]["state"] for i in ids)
    runs = _read_ledger(ledger)
    lost = [i for i in ids if i not in rows]
    twice_started = [(j, a) for j, attempts in runs.items() for a, r in attempts.items() if len(r["start"]) > 1]
    completed = [i for i in ids if rows[i]["state"] == "COMPLETED"]
    not_once = [i for i in completed
                if sum(1 for r in runs.get(i, {}).values() if len(r["start"]) == 1 and len(r["end"]) == 1) != 1
                or len(runs.get(i, {})) != 1]
    overlapping = []
    for job, attempts in runs.items():
        spans = sorted((min(r["start"]), max(r["end"]) if r["end"] else float("inf")) for r in attempts.values())
        if any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans)):
            overlapping.append(job)
    db = cluster.root / "scheduler" / "state.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]

    print(f"\nsoak: {JOBS} jobs on 3 nodes in {elapsed:.0f}s; faults: {'; '.join(faults)}")
    print("soak: states " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
    print(f"soak: terminal {sum(states[s] for s in TERMINAL)}/{JOBS}, lost {len(lost)}, "
          f"attempts started {sum(len(a) for a in runs.values())}, "
          f"COMPLETED run to completion exactly once {len(completed) - len(not_once)}/{len(completed)}, "
          f"attempts started twice {len(twice_started)}, overlapping attempts {len(overlapping)}, "
          f"integrity_check {integrity}")
    assert not lost
    assert sum(states[s] for s in TERMINAL) == JOBS
    assert not twice_started, twice_started[:10]
    assert not not_once, [(i, dict(runs.get(i, {}))) for i in not_once[:5]]
    assert not overlapping, overlapping[:10]
    assert integrity == "ok"
    assert states["COMPLETED"] > JOBS // 2  # the faults cost some jobs (the cut node's), not most
