"""The node's task runner: each task of a job as one container made and supervised by the engine.

Each task runs under a cgroup slice of its own with its allocation (`agent.slices`, which also gives its
usage at the end). Containers use the node's network (`host`) unless the job asks otherwise, the node
name as hostname, and the RADE_* variables the scheduler put in the order. They run hardened: as the
uid and gid the order names (the job owner's), with no capabilities, no_new_privs, the seccomp filter,
masked /proc paths, nosuid and nodev on the image and the volumes, and the order's pids limit.

Nothing here blocks on a container or polls: the engine's supervisor reports the start on a pipe, and
the end by closing the control connection the runner keeps to it; the daemon watches both descriptors
in its poller and calls back. Time limits and kill grace periods are timers the daemon fires through
`next_due()`/`on_timer()`. Every end is reported with exit code, OOM, CPU seconds and peak memory, then
the container's log moves to ROOT/logs and the container, its slice and its task file are removed
(`agent.ending`, which the runner mixes in). What a stopped agent left is taken back in `agent.leftovers`.
"""

from __future__ import annotations

import logging
import os
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from agent import mpi
from agent.ending import TaskEnding
from agent.leftovers import reclaim, stop_leftovers
from agent.purge import Purger
from agent.slices import SLICE_PARENT, container_parent, make_slice, open_slice, slice_prefix, task_limits
from agent.state import AgentState, TaskFile, create_task_log
from jobs.errors import RadeError
from jobs.messages import Kill, Launch
from jobs.states import TaskState
from jobs.units import parse_duration

log = logging.getLogger(__name__)

# SLICE_PARENT too: tools and tests find the task cgroups through this module; the node's leftovers are
# stopped and reclaimed through it as well.
__all__ = ["SLICE_PARENT", "EngineRunner", "Task", "container_options", "reclaim", "stop_leftovers"]


class Reporter(Protocol):
    def report(self, job_id: int, task_id: int, attempt: int, state: TaskState, exit_code: int | None = None,
               reason: str = "", cpu_seconds: float = 0.0, peak_memory: int = 0) -> None: ...


class Watcher(Protocol):
    """The daemon's poller, as the runner sees it: call `callback` whenever `fd` is readable."""

    def watch(self, fd: int, callback: Callable[[], None]) -> None: ...

    def unwatch(self, fd: int) -> None: ...


class Clock(Protocol):
    def monotonic(self) -> float: ...


@dataclass(slots=True)
class Task:
    """One task attempt on this node, from its launch until its end is reported."""

    file: TaskFile
    slice: Any  # a CgroupDriver
    ready: Any = None  # the engine's ReadyReader until the start is reported
    ready_buffer: bytes = b""
    control: Any = None  # an AttachClient while the container runs
    stop_state: TaskState | None = None  # why it is being stopped: CANCELLED or TIMEOUT
    stop_reason: str = ""
    kill_at: float | None = None  # when SIGKILL follows the SIGTERM already sent
    pending_signal: int | None = None  # asked for before the container had started
    pending_grace: float = 0.0
    reattach_at: float | None = None  # when to connect to its supervisor again (it turned us away)
    start_error: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, int, int]:
        return self.file.key


def container_options(order: Launch, node: str, slice_name: str) -> Any:
    """What the engine is asked to create for a task."""
    from engine.containers.lifecycle import CreateOptions
    from engine.containers.record import Resources

    spec = order.spec
    limits = task_limits(order)
    env = {**(spec.get("env") or {}), **order.env}
    volumes = tuple(f"{v['source']}:{v['target']}{':ro' if v.get('read_only') else ''}"
                    for v in spec.get("volumes") or ())
    return CreateOptions(
        image=str(spec["image"]), command=tuple(spec.get("command") or ()),
        user=f"{order.uid}:{order.gid}" if order.uid >= 0 else None, nosuid=True,
        name=f"{node}.{order.job_id}.{order.task_id}.{order.attempt}", env=tuple(f"{k}={v}" for k, v in env.items()),
        volumes=volumes, network=str(spec.get("network") or "host"), workdir=spec.get("workdir"), hostname=node,
        resources=Resources(cpus=limits.cpus, memory=limits.memory, cpuset_cpus=limits.cpuset_cpus,
                            pids_limit=order.pids_limit or None, cgroup_parent=container_parent(slice_name)),
        default_capabilities=False,
        labels=(("rade.node", node), ("rade.job", str(order.job_id)), ("rade.task", str(order.task_id)),
                ("rade.attempt", str(order.attempt))))


class EngineRunner(TaskEnding):
    """Runs the tasks of one node (a `TaskRunner` for `AgentLink`)."""

    def __init__(self, root: str, node: str, state: AgentState, watcher: Watcher, clock: Clock,
                 kill_grace: float = 10.0, launcher: Any = None) -> None:
        from engine.containers.store import ContainerStore

        self.root = root
        self.node = node
        self.state = state
        self.watcher = watcher
        self.clock = clock
        self.kill_grace = kill_grace
        self.launcher = launcher  # an agent.launcher.Launcher, or None to start through a fresh interpreter
        self.store = ContainerStore(root)
        self.purger = Purger(self.store)
        self.link: Reporter | None = None
        self.tasks: dict[tuple[int, int, int], Task] = {}
        self.starting: deque[Task] = deque()  # asked of the launcher, in the order of the requests
        self._launcher_fd: int | None = None

    def _report(self, key: tuple[int, int, int], state: TaskState, exit_code: int | None = None, reason: str = "",
                cpu_seconds: float = 0.0, peak_memory: int = 0) -> None:
        assert self.link is not None
        self.link.report(*key, state, exit_code, reason, cpu_seconds, peak_memory)

    # -- launch ---------------------------------------------------------------------------------------------

    def launch(self, order: Launch) -> None:
        from engine.containers import lifecycle

        key = (order.job_id, order.task_id, order.attempt)
        if key in self.tasks:
            return
        slice_name = f"{slice_prefix(self.root, self.node)}.{order.job_id}.{order.task_id}.{order.attempt}"
        task = Task(TaskFile(*key, container_id="", cgroup_slice=slice_name, grace=self.kill_grace),
                    open_slice(slice_name))
        self.tasks[key] = task
        log.info("job %d task %d attempt %d: starting %s on cpus %s", *key, order.spec.get("image"),
                 ",".join(map(str, order.cpus)) or "-")
        try:
            limit = order.spec.get("time_limit")
            deadline = self.clock.monotonic() + float(parse_duration(limit)) if limit else None
            # The memory limit is the container's alone, so an OOM kill is counted where the engine looks.
            make_slice(slice_name, replace(task_limits(order), memory=None))
            options = container_options(order, self.node, slice_name)
            options = mpi.task_options(self.root, self.node, order, options)
            record = lifecycle.create(self.store, options)
            task.file = TaskFile(*key, container_id=record.id, cgroup_slice=slice_name, deadline=deadline,
                                 grace=self.kill_grace)
            self.state.save(task.file)
            create_task_log(self.root, key, order.uid, order.gid, self.store.dir(record.id).log)
            if self.launcher is not None and self.launcher.sock is not None:
                self._request_start(task)
                return
            # The agent has threads (ZeroMQ's): without its launcher, through a fresh interpreter.
            ready = lifecycle.start(self.store, record, threaded_caller=True)
        except RadeError as err:
            log.warning("job %d task %d attempt %d: could not start: %s", *key, err.message)
            self._end(task, TaskState.FAILED, err.exit_code, err.message)
            return
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            # The spec travels as free-form data: a scheduler bug or a forged order must fail the task, not
            # leave it unanswered.
            log.warning("job %d task %d attempt %d: malformed order: %r", *key, err)
            self._end(task, TaskState.FAILED, 125, f"the order could not be read: {type(err).__name__}: {err}")
            return
        except OSError as err:
            log.warning("job %d task %d attempt %d: could not make its log: %s", *key, err)
            self._end(task, TaskState.FAILED, 125, f"its log could not be made: {err}")
            return
        self._await_start(task, ready)

    def _request_start(self, task: Task) -> None:
        """Ask the launcher for the task's supervisor; its reply comes to `_on_launcher`, in order."""
        try:
            self.launcher.request(task.file.container_id)
        except RadeError as err:
            # Gone: what was asked of it before will not be answered either.
            self._fail_starting(err)
            raise
        self.starting.append(task)
        if self._launcher_fd is None:
            self._launcher_fd = self.launcher.fileno()
            self.watcher.watch(self._launcher_fd, self._on_launcher)

    def _fail_starting(self, err: RadeError) -> None:
        if self._launcher_fd is not None:
            self.watcher.unwatch(self._launcher_fd)
            self._launcher_fd = None
        while self.starting:
            task = self.starting.popleft()
            log.warning("job %d task %d attempt %d: could not start: %s", *task.key, err.message)
            self._end(task, TaskState.FAILED, err.exit_code, err.message)

    def _on_launcher(self) -> None:
        replies = self.launcher.replies()
        if self.launcher.sock is None and self._launcher_fd is not None:
            self.watcher.unwatch(self._launcher_fd)
            self._launcher_fd = None
        for reply in replies:
            task = self.starting.popleft()
            if isinstance(reply, RadeError):
                log.warning("job %d task %d attempt %d: could not start: %s", *task.key, reply.message)
                self._end(task, TaskState.FAILED, reply.exit_code, reply.message)
            else:
                self._await_start(task, reply)

    def _await_start(self, task: Task, ready: Any) -> None:
        """Watch the supervisor's ready pipe for its start report."""
        task.ready = ready
        os.set_blocking(ready.file.fileno(), False)
        self.watcher.watch(ready.file.fileno(), lambda: self._on_ready(task))

    def _on_ready(self, task: Task) -> None:
        """The supervisor's start report: `listening`, then `started` or `error` (JSON lines)."""
        import json

        fd = task.ready.file.fileno()
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        task.ready_buffer += chunk
        *lines, task.ready_buffer = task.ready_buffer.split(b"\n")
        outcome = None
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("state") in ("started", "error"):
                outcome = message
        if outcome is None and chunk:
            return
        self.watcher.unwatch(fd)
        task.ready.close()
        task.ready = None
        if outcome is not None and outcome["state"] == "error":
            task.start_error = outcome
        self._attach(task, report_running=outcome is not None and outcome["state"] == "started")

    def _attach(self, task: Task, report_running: bool) -> None:
        """Keep a control connection to the container's supervisor: it closes when the container is gone."""
        from engine.containers.client import AttachClient
        from engine.errors import ContainerError

        if report_running:
            # Said first: a container as short as `true` may be gone before the connection is made.
            log.info("job %d task %d attempt %d: running in container %s", *task.key, task.file.container_id[:12])
            self._report(task.key, TaskState.RUNNING)
        try:
            task.control = AttachClient(self.store.dir(task.file.container_id))
        except ContainerError:
            self._finish(task)  # already exited and cleaned up
            return
        task.control.sock.setblocking(False)
        self.watcher.watch(task.control.sock.fileno(), lambda: self._on_control(task))
        if task.pending_signal is not None:
            self._signal(task, task.pending_signal, task.pending_grace)

    def _on_control(self, task: Task) -> None:
        try:
            data = task.control.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._finish(task)

    # -- stopping -------------------------------------------------------------------------------------------

    def kill(self, order: Kill) -> None:
        key = (order.job_id, order.task_id, order.attempt)
        task = self.tasks.get(key)
        if task is None:
            self._report(key, TaskState.CANCELLED, reason=f"not running here: {order.reason}")
            return
        log.info("job %d task %d attempt %d: stopping (%s)", *key, order.reason or "killed")
        if task.stop_state is None:
            task.stop_state, task.stop_reason = TaskState.CANCELLED, order.reason or "cancelled"
        self._signal(task, order.signal or signal.SIGTERM, order.grace)

    def _signal(self, task: Task, signum: int, grace: float) -> None:
        if task.control is None:
            task.pending_signal, task.pending_grace = signum, grace
            return
        task.control.signal(signum)
        if signum != signal.SIGKILL:
            due = self.clock.monotonic() + max(0.0, grace)
            task.kill_at = due if task.kill_at is None else min(task.kill_at, due)

    def next_due(self) -> float:
        due = float("inf")
        for task in self.tasks.values():
            if task.reattach_at is not None:
                due = min(due, task.reattach_at)
            if task.kill_at is not None:
                due = min(due, task.kill_at)
            elif task.file.deadline is not None and task.stop_state is None:
                due = min(due, task.file.deadline)
        return due

    def on_timer(self) -> None:
        now = self.clock.monotonic()
        for task in list(self.tasks.values()):
            if task.reattach_at is not None and now >= task.reattach_at:
                task.reattach_at = None
                self._attach(task, report_running=False)
                continue
            if task.kill_at is not None and now >= task.kill_at:
                log.info("job %d task %d attempt %d: grace period over: SIGKILL", *task.key)
                task.kill_at = None
                self._signal(task, signal.SIGKILL, 0.0)
            elif task.file.deadline is not None and task.stop_state is None and now >= task.file.deadline:
                log.info("job %d task %d attempt %d: time limit reached: SIGTERM", *task.key)
                task.stop_state, task.stop_reason = TaskState.TIMEOUT, "time limit reached"
                self._signal(task, signal.SIGTERM, task.file.grace)

    # -- adoption after a restart ---------------------------------------------------------------------------

    def adopt(self) -> int:
        """Take back the tasks a previous agent of this node left: running ones are watched again and
        reported RUNNING, ended ones reported with how they ended. How many were found."""
        files, problems = self.state.load_all()
        for problem in problems:
            log.warning("unreadable task file left alone: %s", problem)
        for file in files:
            task = Task(file, open_slice(file.cgroup_slice))
            self.tasks[file.key] = task
            log.info("job %d task %d attempt %d: adopting container %s", *file.key, file.container_id[:12])
            if not file.container_id:
                self._end(task, TaskState.FAILED, 125, "the agent stopped while creating its container")
                continue
            self._attach(task, report_running=True)
        return len(files)

    def close(self) -> None:
        """Stop watching (the containers keep running; a restarted agent adopts them)."""
        if self._launcher_fd is not None:
            self.watcher.unwatch(self._launcher_fd)
            self._launcher_fd = None
        for task in self.tasks.values():
            if task.ready is not None:
                self.watcher.unwatch(task.ready.file.fileno())
                task.ready.close()
            if task.control is not None:
                self.watcher.unwatch(task.control.sock.fileno())
                task.control.close()
        self.purger.close()
