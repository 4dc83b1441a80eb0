"""Jobs on a real 3-node dev cluster: busybox containers started by the node agents through the engine."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import zmq

from agent.slices import container_parent
from engine.cgroups import CGROUP_ROOT, host_version
from engine.cgroups.v1 import hierarchies
from rade import devcluster

pytestmark = [pytest.mark.root, pytest.mark.slow]


def test_submit_wait_exits_with_the_jobs_exit_code_and_logs_show_its_output(cluster):
    path = cluster.job_file("hello", command=["sh", "-c", "echo out-line; echo err-line >&2; exit 3"])
    result = cluster.rade("submit", "--wait", path, check=False)
    assert result.returncode == 3, result.stderr
    job = int(result.stdout.split()[0])
    shown = cluster.show(job)
    assert shown["state"] == "FAILED" and shown["exit_code"] == 3
    logs = cluster.rade("logs", str(job))
    assert logs.stdout == "out-line\n" and logs.stderr == "err-line\n"


def test_a_completed_job_exits_zero_through_submit_wait(cluster):
    result = cluster.rade("submit", "--wait", cluster.job_file("ok", command=["true"]), check=False)
    assert result.returncode == 0, result.stderr
    assert cluster.show(int(result.stdout.split()[0]))["state"] == "COMPLETED"


def test_four_task_job_is_placed_across_nodes_at_once(cluster):
    job = cluster.submit(name="four", tasks=4, command=["sleep", "30"])
    shown = cluster.wait_running(job, tasks=4)
    nodes = {t["node"] for t in shown["tasks"]}
    assert len(nodes) >= 2  # two CPUs a node: four one-CPU tasks need two nodes at least
    cpusets = {(t["node"], t["cpuset"]) for t in shown["tasks"]}
    assert len(cpusets) == 4  # no two tasks share a core
    cluster.rade("cancel", str(job))
    assert cluster.wait_state(job, "CANCELLED")


def test_tasks_see_rade_variables_and_the_node_as_hostname(cluster):
    script = ('echo "$RADE_JOB_ID $RADE_JOB_NAME $RADE_TASK_ID $RADE_NODE $RADE_NODELIST ${RADE_ARRAY_INDEX:-none} '
              '$(hostname)"')
    result = cluster.rade("submit", "--wait", cluster.job_file("vars", command=["sh", "-c", script], tasks=2),
                          check=False)
    assert result.returncode == 0, result.stderr
    job = int(result.stdout.split()[0])
    shown = cluster.show(job)
    nodelist = ",".join(dict.fromkeys(t["node"] for t in sorted(shown["tasks"], key=lambda t: t["task"])))
    for task in shown["tasks"]:
        out = cluster.rade("logs", str(job), "--task", str(task["task"])).stdout.split()
        assert out == [str(job), "vars", str(task["task"]), task["node"], nodelist, "none", task["node"]]


def test_an_array_job_sees_its_index(cluster):
    out = cluster.rade("submit", "--wait", cluster.job_file("arr", command=["sh", "-c", "echo $RADE_ARRAY_INDEX"],
                                                            array="0-1"), check=False)
    assert out.returncode == 0, out.stderr
    jobs = [int(x) for x in out.stdout.split()]
    assert [cluster.rade("logs", str(j)).stdout for j in jobs] == ["0\n", "1\n"]


def test_the_tasks_cgroup_has_its_cpuset_and_memory_limit(cluster):
    job = cluster.submit(name="limits", command=["sleep", "30"], resources={"cpus": 1, "memory": "48M"})
    shown = cluster.wait_running(job)
    task = shown["tasks"][0]
    (file,) = [f for f in cluster.task_files(task["node"]) if f.job_id == job]
    name = f"{container_parent(file.cgroup_slice)}/{file.container_id}"
    if host_version() == 2:
        base = Path(CGROUP_ROOT if Path(CGROUP_ROOT, "cgroup.controllers").exists() else f"{CGROUP_ROOT}/unified")
        cpus = (base / name / "cpuset.cpus").read_text().strip()
        memory = int((base / name / "memory.max").read_text())
    else:
        cpus = Path(hierarchies()["cpuset"], name, "cpuset.cpus").read_text().strip()
        memory = int(Path(hierarchies()["memory"], name, "memory.limit_in_bytes").read_text())
    assert cpus == task["cpuset"]
    assert memory == 48 * 1024 * 1024
    cluster.rade("cancel", str(job))
    cluster.wait_state(job, "CANCELLED")


def test_usage_is_reported_when_a_task_ends(cluster):
    job = cluster.submit(name="usage", command=["sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
    cluster.wait_state(job, "COMPLETED")
    log = (cluster.root / "cluster" / f"{cluster.show(job)['tasks'][0]['node']}.log").read_text()
    line = next(x for x in log.splitlines() if f"job {job} task 0 attempt 0: COMPLETED" in x)
    cpu = float(line.split("exit 0, ")[1].split(" cpu s")[0])
    peak = int(line.split("peak ")[1].split(" bytes")[0])
    assert cpu > 0.01 and peak > 0


def test_constraints_and_exclude_choose_the_nodes(cluster):
    ssd = cluster.submit(name="ssd", command=["true"], placement={"constraints": {"disk": "ssd"}})
    assert {t["node"] for t in cluster.wait_state(ssd, "COMPLETED")["tasks"]} == {"node3"}
    avoid = cluster.submit(name="avoid", tasks=2, command=["true"], placement={"exclude": ["node1"]})
    assert "node1" not in {t["node"] for t in cluster.wait_state(avoid, "COMPLETED")["tasks"]}
    never = cluster.submit(name="never", command=["true"], placement={"constraints": {"disk": "tape"}})
    shown = cluster.show(never)
    assert shown["state"] == "PENDING" and shown["pending"]
    cluster.rade("cancel", str(never))


def test_time_limit_ends_the_task_as_timeout(cluster):
    result = cluster.rade("submit", "--wait", cluster.job_file("slow", command=["sleep", "60"], time_limit="2s"),
                          check=False)
    assert result.returncode == 124, result.stderr
    shown = cluster.show(int(result.stdout.split()[0]))
    assert shown["state"] == "TIMEOUT"


def test_a_task_ignoring_sigterm_is_killed_after_the_grace_period(cluster):
    # The dev cluster's agents give 10 s of grace; `trap '' TERM` makes the shell ignore the first signal.
    path = cluster.job_file("stubborn", command=["sh", "-c", "trap '' TERM; while true; do sleep 1; done"],
                            time_limit="1s")
    result = cluster.rade("submit", "--wait", path, check=False, timeout=60)
    assert result.returncode == 124
    assert cluster.show(int(result.stdout.split()[0]))["state"] == "TIMEOUT"


def test_an_image_that_does_not_exist_fails_the_job_with_the_reason(cluster):
    result = cluster.rade("submit", "--wait", cluster.job_file("noimage", image="no-such-image"), check=False)
    assert result.returncode == 125
    shown = cluster.show(int(result.stdout.split()[0]))
    assert shown["state"] == "FAILED"
    assert "no-such-image" in json.dumps(shown)


def test_json_output_parses(cluster):
    out = cluster.rade("submit", "--json", "--wait", cluster.job_file("js"), check=False)
    data = json.loads(out.stdout)
    job = data["jobs"][0]
    assert data["ended"][0]["state"] == "COMPLETED"
    for args in (["queue", "--all", "--json"], ["show", str(job), "--json"], ["nodes", "--json"],
                 ["cluster", "status", "--json"]):
        json.loads(cluster.rade(*args).stdout)
    status = json.loads(cluster.rade("cluster", "status", "--json").stdout)
    assert [r["name"] for r in status] == ["scheduler", "node1", "node2", "node3"]
    assert all(r["running"] for r in status)


def test_malformed_frames_leave_the_daemons_running(cluster):
    context = zmq.Context()
    try:
        garbage = [b"", b"\x00", b"\xff" * 64, b"\x81\xa1v\x01", b"\x82\xa1v\x01\xa1t\xa6launch", b"x" * 70000]
        for port, identity in ((devcluster.AGENT_PORT, b"node1"), (devcluster.AGENT_PORT, b"intruder"),
                               (devcluster.CLIENT_PORT, b"client")):
            sock = context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.ROUTING_ID, identity + b"-fuzz")
            sock.connect(f"tcp://{cluster.state().gateway_ip}:{port}")
            for frame in garbage:
                sock.send(frame)
                sock.send_multipart([frame, frame])
            sock.close()
    finally:
        context.term()
    for port in (devcluster.AGENT_PORT, devcluster.CLIENT_PORT):  # not even ZMTP
        with socket.create_connection((cluster.state().gateway_ip, port), timeout=5) as raw:
            raw.sendall(b"GET / HTTP/1.0\r\n\r\n" + bytes(range(256)))
    result = cluster.rade("submit", "--wait", cluster.job_file("after"), check=False)
    assert result.returncode == 0, result.stderr
    assert all(r["running"] for r in devcluster.status(str(cluster.root)))


def test_logs_follow_prints_the_output_as_it_comes_and_ends_with_the_job(cluster):
    job = cluster.submit(name="chatty", command=["sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.5; done"])
    follow = cluster.rade("logs", "-f", str(job), timeout=60)
    assert follow.stdout == "line 1\nline 2\nline 3\n"
    assert cluster.show(job)["state"] == "COMPLETED"


def test_logs_of_a_job_number_nobody_submitted_is_one_clear_error(cluster):
    result = cluster.rade("logs", "99999", check=False)
    assert result.returncode == 125
    assert result.stderr.startswith("rade: error:") and "Traceback" not in result.stderr
