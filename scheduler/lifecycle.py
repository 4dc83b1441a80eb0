"""How work ends: task updates recorded, jobs finished, failed, cancelled or requeued, nodes lost, deadlines.

This is the part of `ClusterState` (the scheduler's one writer) that moves placed work on to its end: a
task's new state, from its agent or NODE_FAIL from the scheduler; the orders that stop a job's other tasks
when one fails; the job's end (or its return to the queue) once every task of its attempt has ended; and
what time alone decides, silent nodes going down and drain deadlines stopping work. `ClusterState` holds the
records and mixes this in, so each change is still made by the one writer and written to its store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from jobs.messages import Kill, Message
from jobs.states import JobState, TaskState, advance
from scheduler.clock import Clock
from scheduler.drain import overdue
from scheduler.nodes import HeartbeatBook, Liveness
from scheduler.placement import Rejection
from scheduler.policy import SchedulingPolicy
from scheduler.records import Desired, JobRecord, NodeRecord, Outcome, TaskRecord
from scheduler.resources import NodeView, evolve
from scheduler.store import Store

log = logging.getLogger(__name__)

TaskKey = tuple[int, int, int]
_OUTCOME_OF_TASK = {TaskState.FAILED: Outcome.FAILED, TaskState.TIMEOUT: Outcome.TIMEOUT,
                    TaskState.OOM: Outcome.OOM, TaskState.CANCELLED: Outcome.FAILED,
                    TaskState.NODE_FAIL: Outcome.NODE_FAIL}


class Lifecycle:
    """Task updates, job endings and requeues, node failures and drain deadlines, for `ClusterState`."""

    # The records this works on, kept by `ClusterState` (with `put_node`, `refresh_node` and `_set_view`).
    store: Store
    clock: Clock
    liveness: Liveness
    policy: SchedulingPolicy
    heartbeats: HeartbeatBook
    jobs: dict[int, JobRecord]
    ended: dict[int, tuple[JobState, int | None]]
    tasks: dict[TaskKey, TaskRecord]
    current: dict[int, list[TaskKey]]
    on_node: dict[str, set[TaskKey]]
    nodes: dict[str, NodeRecord]
    views: dict[str, NodeView]
    connected: set[str]
    why: dict[int, Rejection]
    outbox: list[tuple[str, Message]]
    dirty: bool
    _limited: dict[int, tuple[int, set[int]]]
    _arrays: dict[int, set[int]]

    # -- tasks and jobs -------------------------------------------------------------------------------------

    def apply_task_state(self, task: TaskRecord, state: TaskState, exit_code: int | None, detail: str,
                         seq: int, usage: tuple[float, int] | None = None) -> None:
        """Record what a task is now (from its agent, or NODE_FAIL from the scheduler), and what follows.
        `usage` is the CPU seconds and peak memory its agent measured, when it did."""
        now = self.clock.time()
        cpu, peak = usage if usage and any(usage) else (task.cpu_seconds, task.peak_memory)
        task = evolve(task, state=advance(task.state, state), exit_code=exit_code, detail=detail,
                       seq=max(seq, task.seq),
                       started_at=now if state is TaskState.RUNNING else task.started_at,
                       ended_at=now if _ends(state) else task.ended_at, cpu_seconds=cpu, peak_memory=peak)
        self.tasks[task.key] = task
        self.store.put_task(task)
        job = self.jobs.get(task.job_id)
        if task.is_ended:
            self._release(task)
        if job is None or task.attempt != job.attempt:
            return
        all_running = all(self.tasks[k].state is TaskState.RUNNING for k in self.current[job.id])
        if state is TaskState.RUNNING and job.state is JobState.STARTING and all_running:
            self._set_job(evolve(job, state=advance(job.state, JobState.RUNNING), started_at=now))
            log.debug("job %d: running", job.id)
        if task.is_ended:
            failed = state is not TaskState.COMPLETED or (exit_code or 0) != 0
            if failed and job.outcome is None and task.desired is Desired.RUN:
                outcome = _OUTCOME_OF_TASK.get(state, Outcome.FAILED)
                self._set_job(evolve(self.jobs[job.id], outcome=outcome, outcome_code=exit_code))
                log.info("job %d: task %d ended %s (exit %s): stopping the others", job.id, task.task,
                         state.value, exit_code)
                self._stop_tasks(job.id, f"task {task.task} of job {job.id} ended {state.value}")
            self._maybe_finish(job.id)

    def _release(self, task: TaskRecord) -> None:
        keys = self.on_node.get(task.grant.node)
        if keys is not None and task.key in keys:
            keys.discard(task.key)
            self._set_view(self.views[task.grant.node].give_back(task.grant))
            self.dirty = True

    def _stop_tasks(self, job_id: int, reason: str, keys: Iterable[TaskKey] | None = None) -> None:
        """Order the job's live tasks (or the given ones) stopped; each order is sent once, resent on register."""
        for key in list(keys if keys is not None else self.current.get(job_id, ())):
            task = self.tasks[key]
            if task.is_ended or task.desired is Desired.STOP:
                continue
            task = evolve(task, desired=Desired.STOP)
            self.tasks[key] = task
            self.store.put_task(task)
            self.outbox.append((task.grant.node, kill_order(task, reason)))

    def _maybe_finish(self, job_id: int) -> None:
        """When every task of the job's attempt has ended, the job ends (or goes back to the queue)."""
        job = self.jobs.get(job_id)
        keys = self.current.get(job_id, [])
        if job is None or not keys or not all(self.tasks[k].is_ended for k in keys):
            return
        outcome = job.outcome
        if outcome is None:
            self._end_job(job, JobState.COMPLETED, 0, "")
        elif outcome is Outcome.REQUEUE or (outcome is Outcome.NODE_FAIL and job.requeue):
            self._requeue(job)
        else:
            self._end_job(job, JobState(outcome.value), job.outcome_code, job.reason)

    def _requeue(self, job: JobRecord) -> None:
        cause = "its node failed" if job.outcome is Outcome.NODE_FAIL else "its node's drain deadline passed"
        state = advance(advance(job.state, JobState.NODE_FAIL), JobState.PENDING)
        for key in self.current.pop(job.id, []):
            self.tasks.pop(key, None)
        self._set_job(evolve(job, state=state, attempt=job.attempt + 1, outcome=None, outcome_code=None,
                              reason=f"requeued: {cause}", started_at=None))
        self.dirty = True
        log.info("job %d: requeued as attempt %d (%s)", job.id, job.attempt + 1, cause)

    def _end_job(self, job: JobRecord, state: JobState, exit_code: int | None, reason: str) -> None:
        job = evolve(job, state=advance(job.state, state), exit_code=exit_code, reason=reason,
                      ended_at=self.clock.time())
        self.store.update_job(job)
        if self.current.get(job.id):
            self.policy.charge(job, [self.tasks[k] for k in self.current.get(job.id, ()) if k in self.tasks],
                               job.ended_at or self.clock.time())
        self.policy.forget(job.id)
        del self.jobs[job.id]
        self.ended[job.id] = (job.state, exit_code)
        if job.array_of in self._arrays:
            self._arrays[job.array_of].discard(job.id)
            if not self._arrays[job.array_of]:
                del self._arrays[job.array_of]
        if job.array_of in self._limited:
            members = self._limited[job.array_of][1]
            members.discard(job.id)
            if not members:
                del self._limited[job.array_of]
        self.why.pop(job.id, None)
        for key in self.current.pop(job.id, []):
            self.tasks.pop(key, None)
        self.dirty = True
        log.info("job %d: %s%s", job.id, state.value, f" (exit {exit_code})" if exit_code is not None else "")

    def _set_job(self, job: JobRecord) -> None:
        self.jobs[job.id] = job
        self.store.update_job(job)

    # -- nodes and time -------------------------------------------------------------------------------------

    def node_down(self, name: str, why: str) -> None:
        """A node stopped answering: it is DOWN, its tasks NODE_FAIL, their jobs stopped and maybe requeued."""
        node = self.nodes.get(name)
        if node is None or node.down:
            return
        self.connected.discard(name)
        self.put_node(evolve(node, down=True, down_reason=why))
        self.refresh_node(name)
        log.warning("node %s: DOWN (%s); failing its %d tasks", name, why, len(self.on_node.get(name, ())))
        for key in sorted(self.on_node.get(name, set())):
            task = self.tasks.get(key)
            if task is not None and not task.is_ended:
                self.apply_task_state(task, TaskState.NODE_FAIL, None, f"node {name} down: {why}", task.seq)

    def tick(self) -> None:
        """What time alone decides: silent nodes go down, drain deadlines stop work."""
        for name in self.heartbeats.silent():
            self.node_down(name, f"no heartbeat for {self.liveness.timeout:g}s")
        running = {name: sorted(keys) for name, keys in self.on_node.items() if keys}
        for decision in overdue(self.nodes.values(), running, self.clock.time()):
            for key in decision.tasks:
                task = self.tasks[key]
                job = self.jobs.get(task.job_id)
                if task.desired is Desired.STOP or job is None:
                    continue
                log.info("node %s: drain deadline passed; stopping job %d to requeue it", decision.node, job.id)
                if job.outcome is None:
                    self._set_job(evolve(job, outcome=Outcome.REQUEUE, reason="drain deadline"))
                self._stop_tasks(job.id, f"node {decision.node} drain deadline")


def kill_order(task: TaskRecord, reason: str) -> Kill:
    return Kill(job_id=task.job_id, task_id=task.task, attempt=task.attempt, reason=reason)


def _ends(state: TaskState) -> bool:
    return state not in (TaskState.PENDING, TaskState.STARTING, TaskState.RUNNING)
