"""When a task has ended, by the runner's rules, with a real busybox container and its real supervisor: not
while the supervisor still runs the container or holds its lock (a connection it turned away is not the
end), and then once, with the container's own exit status, the container removed."""

from __future__ import annotations

import signal
import time

import pytest

from agent.slices import open_slice
from agent.state import AgentState, TaskFile
from agent.tasks import EngineRunner, Task
from jobs.states import TaskState

pytestmark = pytest.mark.root


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class Watcher:
    def __init__(self) -> None:
        self.watched: dict[int, object] = {}

    def watch(self, fd: int, callback) -> None:
        self.watched[fd] = callback

    def unwatch(self, fd: int) -> None:
        self.watched.pop(fd, None)


class Reports:
    def __init__(self) -> None:
        self.ends: list[tuple] = []

    def report(self, job_id, task_id, attempt, state, exit_code=None, reason="", cpu_seconds=0.0,
               peak_memory=0):
        self.ends.append((job_id, task_id, attempt, state, exit_code))


def test_a_task_is_not_reported_ended_while_its_supervisor_still_runs_the_container(busybox_root):
    from engine.containers import lifecycle
    from engine.containers.store import ContainerStore

    store = ContainerStore(busybox_root)
    record = lifecycle.create(store, lifecycle.CreateOptions(image="busybox", command=("sleep", "30"),
                                                             network="host"))
    reader = lifecycle.start(store, record)
    assert reader.until_started()["state"] == "started"
    reader.close()
    clock, reports = Clock(), Reports()
    runner = EngineRunner(str(busybox_root), "n1", AgentState(busybox_root, "n1"), Watcher(), clock)
    runner.link = reports
    task = Task(TaskFile(1, 0, 0, container_id=record.id, cgroup_slice="n1-runner-test.1.0.0"),
                open_slice("n1-runner-test.1.0.0"))
    runner.tasks[task.key] = task
    try:
        runner._finish(task)  # as when its supervisor hangs up on the runner's connection
        assert reports.ends == [] and task.key in runner.tasks
        assert runner.next_due() == task.reattach_at

        lifecycle.signal_container(store, store.get(record.id), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not reports.ends and time.monotonic() < deadline:
            clock.now = max(clock.now, runner.next_due())
            runner.on_timer()  # connects again; a hang-up there is `_on_control`'s to see
            if task.control is not None:
                task.control.sock.setblocking(True)
                runner._on_control(task)
        assert reports.ends == [(1, 0, 0, TaskState.FAILED, 128 + signal.SIGKILL)]
        assert task.key not in runner.tasks
    finally:
        runner.close()
        for left in store.all():
            lifecycle.remove(store, lifecycle.refresh(store, store.get(left.id)), force=True)
    assert store.all() == []
