"""The real agent daemon against a scripted scheduler socket on 127.0.0.1: busybox containers started by
the engine, every end reported with its exit code and usage, kills, time limits, malformed orders, and
a restarted agent adopting what its predecessor left running."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import zmq

from agent.config import AgentConfig
from agent.daemon import AgentDaemon
from agent.node import discover
from agent.slices import node_slices
from agent.state import AgentState, task_log_path
from agent.tasks import stop_leftovers
from jobs.messages import Heartbeat, Kill, Launch, Register, Registered, Submit, TaskUpdate, decode, encode
from jobs.spec import JobSpec
from jobs.states import TaskState, is_terminal

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
NODE = "t1"


class Scheduler:
    """The scheduler's side of the agent socket, as a test speaks it: answers registrations and echoes
    heartbeats by itself, hands every task update to the test."""

    def __init__(self, context: zmq.Context) -> None:
        self.sock = context.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # as the scheduler: a restarted agent takes its name back
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.registrations: list[Register] = []

    def send(self, msg: object) -> None:
        self.sock.send_multipart([NODE.encode(), encode(msg)])

    def registered(self, count: int, timeout: float = 30.0) -> None:
        """Until the agent has registered `count` times: orders to a node not yet connected are dropped."""
        deadline = time.monotonic() + timeout
        while len(self.registrations) < count and self.sock.poll(max(0.0, deadline - time.monotonic()) * 1000):
            self.handle(decode(self.sock.recv_multipart()[1]))
        assert len(self.registrations) >= count, "the agent did not register"

    def handle(self, msg: object) -> None:
        if isinstance(msg, Register):
            self.registrations.append(msg)
            self.send(Registered(node=NODE, heartbeat_interval=1.0))
        elif isinstance(msg, Heartbeat):
            self.send(Heartbeat(node=NODE, seq=msg.seq))

    def update(self, key: tuple[int, int, int], timeout: float = 30.0) -> TaskUpdate:
        """The next update about task `key`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.sock.poll((deadline - time.monotonic()) * 1000):
                break
            _, frame = self.sock.recv_multipart()
            msg = decode(frame)
            if isinstance(msg, TaskUpdate) and (msg.job_id, msg.task_id, msg.attempt) == key:
                return msg
            self.handle(msg)
        raise AssertionError(f"no update about {key} within {timeout}s")

    def end(self, key: tuple[int, int, int]) -> TaskUpdate:
        while True:
            update = self.update(key)
            if is_terminal(update.state):
                return update


def launch(job: int, command: list[str], **extra: object) -> Launch:
    spec = JobSpec.from_dict({"name": f"j{job}", "image": "busybox", "command": command,
                              "resources": {"cpus": 1, "memory": "64M"}, **extra}).to_dict()
    return Launch(job_id=job, task_id=0, attempt=0, spec=spec, nodes=(NODE,), cpus=(0,), memory=64 << 20,
                  env={"RADE_JOB_ID": str(job), "RADE_NODE": NODE})


class Agent:
    def __init__(self, root: Path, endpoint: str) -> None:
        self.daemon = AgentDaemon(endpoint, str(root), discover(NODE, {}), AgentConfig(kill_grace=1.0))
        self.thread = threading.Thread(target=self.daemon.serve, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.daemon.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture
def env(tmp_path) -> Iterator[tuple[Path, Scheduler, list[Agent]]]:
    if os.geteuid() != 0:
        pytest.skip("the agent runs containers: it needs root")
    root = tmp_path / "root"
    subprocess.run([sys.executable, "-m", "rade", "--root", str(root), "image", "bootstrap", "busybox", "busybox"],
                   cwd=REPO, check=True, capture_output=True)
    context = zmq.Context()
    scheduler = Scheduler(context)
    agents: list[Agent] = []
    try:
        yield root, scheduler, agents
    finally:
        for agent in agents:
            agent.stop()
        stop_leftovers(str(root), NODE)
        scheduler.sock.close()
        context.term()
        containers = list((root / "containers").iterdir()) if (root / "containers").exists() else []
        assert not [c for c in containers if len(c.name) == 64], "containers left"
        assert not [c for c in containers if c.name.startswith(".removed-")], "removed containers' files left"
        slices = node_slices(str(root), NODE)
        assert not slices, f"cgroups left: {slices}"


def start_agent(root: Path, scheduler: Scheduler, agents: list[Agent]) -> Agent:
    agent = Agent(root, f"tcp://127.0.0.1:{scheduler.port}")
    agents.append(agent)
    scheduler.registered(len(scheduler.registrations) + 1)
    return agent


def test_a_task_runs_and_its_end_is_reported_with_exit_code_usage_and_log(env):
    root, scheduler, agents = env
    start_agent(root, scheduler, agents)
    script = "echo hi from $RADE_NODE; i=0; while [ $i -lt 50000 ]; do i=$((i+1)); done; exit 3"
    scheduler.send(launch(1, ["sh", "-c", script]))
    assert scheduler.update((1, 0, 0)).state is TaskState.RUNNING
    end = scheduler.end((1, 0, 0))
    assert (end.state, end.exit_code) == (TaskState.FAILED, 3)
    assert end.cpu_seconds > 0 and end.peak_memory > 0
    assert b"hi from t1" in task_log_path(root, 1, 0, 0).read_bytes()
    deadline = time.monotonic() + 10
    while AgentState(root, NODE).load_all()[0] and time.monotonic() < deadline:
        time.sleep(0.01)  # the task file goes right after the report
    assert not AgentState(root, NODE).load_all()[0]
    assert scheduler.registrations[0].node == NODE and scheduler.registrations[0].cpus == len(os.sched_getaffinity(0))


def test_tasks_gone_before_the_agent_attaches_report_their_own_exit_code_and_leave_no_container(env):
    # A container as short as this one often exits before the agent connects to its supervisor, which
    # then turns the agent away while it records the end: that is not the end yet.
    root, scheduler, agents = env
    start_agent(root, scheduler, agents)
    keys = [(job, 0, 0) for job in range(100, 124)]
    for job, _, _ in keys:
        scheduler.send(launch(job, ["sh", "-c", "exit 3"]))
    ends = {key: scheduler.end(key) for key in keys}
    assert {(e.state, e.exit_code) for e in ends.values()} == {(TaskState.FAILED, 3)}
    containers = root / "containers"
    deadline = time.monotonic() + 30
    while [c for c in containers.iterdir() if len(c.name) == 64] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [c.name for c in containers.iterdir() if len(c.name) == 64], "containers outlived their tasks"


def test_malformed_frames_and_orders_leave_the_agent_serving(env):
    root, scheduler, agents = env
    start_agent(root, scheduler, agents)
    for frame in (b"", b"\x00", b"\xff" * 100, b"\x81\xa1v\x01", b"\x83\xa1v\x01\xa1t\xa6launch\xa6job_id\xa1x",
                  encode(Submit(spec={}, user="x"))):
        scheduler.sock.send_multipart([NODE.encode(), frame])
    scheduler.send(Launch(job_id=2, task_id=0, attempt=0, spec={"no": "image"}, nodes=(NODE,), cpus=(0,),
                          memory=0))
    bad = scheduler.end((2, 0, 0))
    assert (bad.state, bad.exit_code) == (TaskState.FAILED, 125) and "order" in bad.reason
    scheduler.send(launch(3, ["true"]))
    assert scheduler.end((3, 0, 0)).state is TaskState.COMPLETED
    scheduler.send(launch(4, ["true"], image="no-such-image"))
    missing = scheduler.end((4, 0, 0))
    assert missing.state is TaskState.FAILED and "no-such-image" in missing.reason


def test_a_kill_stops_the_task_and_reports_it_cancelled(env):
    root, scheduler, agents = env
    start_agent(root, scheduler, agents)
    scheduler.send(launch(5, ["sleep", "60"]))
    assert scheduler.update((5, 0, 0)).state is TaskState.RUNNING
    scheduler.send(Kill(job_id=5, task_id=0, attempt=0, reason="cancelled by a test", grace=1.0))
    end = scheduler.end((5, 0, 0))
    assert (end.state, end.exit_code) == (TaskState.CANCELLED, None) and "cancelled by a test" in end.reason


def test_a_task_past_its_time_limit_gets_sigterm_then_sigkill_and_ends_timeout(env):
    root, scheduler, agents = env
    start_agent(root, scheduler, agents)
    scheduler.send(launch(6, ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"], time_limit="1s"))
    assert scheduler.update((6, 0, 0)).state is TaskState.RUNNING
    end = scheduler.end((6, 0, 0))
    assert (end.state, end.exit_code) == (TaskState.TIMEOUT, None) and "time limit" in end.reason


def test_a_restarted_agent_adopts_the_running_task_and_reports_its_end(env):
    root, scheduler, agents = env
    first = start_agent(root, scheduler, agents)
    scheduler.send(launch(7, ["sh", "-c", "sleep 3; exit 4"]))
    assert scheduler.update((7, 0, 0)).state is TaskState.RUNNING
    first.stop()
    agents.remove(first)
    assert [f.job_id for f in AgentState(root, NODE).load_all()[0]] == [7]
    start_agent(root, scheduler, agents)
    assert scheduler.update((7, 0, 0)).state is TaskState.RUNNING
    end = scheduler.end((7, 0, 0))
    assert (end.state, end.exit_code) == (TaskState.FAILED, 4)
    assert len(scheduler.registrations) == 2


def test_a_task_over_its_memory_limit_ends_oom(env):
    root, scheduler, agents = env
    start_agent(root, scheduler, agents)
    order = launch(8, ["sh", "-c", "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived"])
    scheduler.send(replace(order, memory=16 << 20))
    end = scheduler.end((8, 0, 0))
    assert (end.state, end.exit_code) == (TaskState.OOM, None), end.reason
    assert end.peak_memory >= 15 << 20
