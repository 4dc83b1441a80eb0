"""The real node agent's metrics endpoint: a busybox task running under the engine shows up with the CPU
time and memory its cgroup reports, and goes away when the task ends. Parsed with prometheus-client."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq

from agent.config import AgentConfig
from agent.daemon import AgentDaemon
from agent.node import discover
from agent.slices import node_slices
from agent.tasks import stop_leftovers
from jobs.messages import Heartbeat, Kill, Launch, Register, Registered, TaskUpdate, decode, encode
from jobs.spec import JobSpec
from jobs.states import TaskState, is_terminal

from ..daemons import free_port, scrape

pytestmark = [pytest.mark.root, pytest.mark.slow]

TOP = Path(__file__).resolve().parents[3]
NODE = "m1"



def serve_until(sock: zmq.Socket, done, timeout: float = 40.0) -> object:
    """Answer the agent (registration, heartbeats) until `done(msg)` holds for a message; that message."""
    deadline = time.monotonic() + timeout
    while sock.poll(max(0.0, deadline - time.monotonic()) * 1000):
        msg = decode(sock.recv_multipart()[1])
        if isinstance(msg, Register):
            sock.send_multipart([NODE.encode(), encode(Registered(node=NODE, heartbeat_interval=1.0))])
        elif isinstance(msg, Heartbeat):
            sock.send_multipart([NODE.encode(), encode(Heartbeat(node=NODE, seq=msg.seq))])
        if done(msg):
            return msg
    raise AssertionError("the agent did not say what was awaited")


def answer_for(sock: zmq.Socket, seconds: float) -> None:
    """Keep answering the agent's heartbeats for a while (the metrics are read every few seconds)."""
    deadline = time.monotonic() + seconds
    while sock.poll(max(0.0, deadline - time.monotonic()) * 1000):
        serve_until(sock, lambda m: True, timeout=0.0)


def test_agent_endpoint_shows_a_running_tasks_cpu_and_memory_then_drops_it(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the agent runs containers: it needs root")
    root = tmp_path / "root"
    subprocess.run([sys.executable, "-m", "rade", "--root", str(root), "image", "bootstrap", "busybox", "busybox"],
                   cwd=TOP, check=True, capture_output=True)
    context = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    metrics_port = free_port()
    daemon = AgentDaemon(f"tcp://127.0.0.1:{port}", str(root), discover(NODE, {}),
                         AgentConfig(kill_grace=1.0, metrics_port=metrics_port))
    thread = threading.Thread(target=daemon.serve, daemon=True)
    thread.start()
    try:
        serve_until(sock, lambda m: isinstance(m, Register))
        spec = JobSpec.from_dict({"name": "spin", "image": "busybox", "command": ["sh", "-c", "while :; do :; done"],
                                  "resources": {"cpus": 1, "memory": "64M"}}).to_dict()
        sock.send_multipart([NODE.encode(), encode(Launch(job_id=7, task_id=0, attempt=0, spec=spec, nodes=(NODE,),
                                                          cpus=(0,), memory=64 << 20))])
        serve_until(sock, lambda m: isinstance(m, TaskUpdate) and m.state is TaskState.RUNNING)
        task = (("attempt", "0"), ("job", "7"), ("node", NODE), ("task", "0"))

        def busy() -> dict | None:
            got = scrape(metrics_port)
            return got if got.get("rade_agent_task_cpu_seconds", {}).get(task, 0) > 0 else None

        got = None
        deadline = time.monotonic() + 30
        while got is None and time.monotonic() < deadline:
            answer_for(sock, 0.2)
            got = busy()
        assert got is not None, "no CPU time reported for the running task"
        assert got["rade_agent_tasks_running"][(("node", NODE),)] == 1
        assert got["rade_agent_task_memory_bytes"][task] > 0
        sock.send_multipart([NODE.encode(), encode(Kill(job_id=7, task_id=0, attempt=0, reason="test over"))])
        serve_until(sock, lambda m: isinstance(m, TaskUpdate) and is_terminal(m.state))
        deadline = time.monotonic() + 30
        while scrape(metrics_port)["rade_agent_tasks_running"][(("node", NODE),)] != 0:
            assert time.monotonic() < deadline, "the ended task is still counted"
            answer_for(sock, 0.2)
        assert task not in scrape(metrics_port).get("rade_agent_task_cpu_seconds", {})
    finally:
        daemon.stop()
        thread.join(30)
        stop_leftovers(str(root), NODE)
        sock.close()
        context.term()
        assert not node_slices(str(root), NODE), "cgroups left"
