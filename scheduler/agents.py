"""What agents tell the scheduler, and what it answers: registration, heartbeats, task updates, fencing.

An agent registers with its node's capacity and the tasks it still runs. The scheduler compares that with
its own records: a task the agent runs that the scheduler has moved elsewhere (a newer attempt), ended or
ordered stopped is killed (fencing: a job never runs twice at once); a task it should have started but
does not know is launched again (the order is idempotent); a task it ran but no longer reports, and for
which no final update follows before its next heartbeat, is lost. Task updates carry a sequence number;
one not newer than what is recorded is stale and dropped. Heartbeats are echoed once every change before
them is committed, which tells the agent its earlier updates are safe to forget.
"""

from __future__ import annotations

import logging

from jobs.messages import Heartbeat, Register, Registered, Reregister, TaskUpdate
from jobs.states import TaskState, can_advance
from scheduler.lifecycle import kill_order
from scheduler.records import Desired, NodeRecord, TaskRecord
from scheduler.resources import Grant, evolve
from scheduler.state import ClusterState

log = logging.getLogger(__name__)


class AgentDesk:
    """The scheduler's side of the agent protocol, over a `ClusterState`."""

    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self._unaccounted: dict[str, set[tuple[int, int, int]]] = {}

    def register(self, peer: str, msg: Register) -> None:
        state = self.state
        name = msg.node
        if peer != name:
            log.warning("register from connection %r names node %r: refused", peer, name)
            state.outbox.append((peer, Reregister(node=name, reason="connection identity must be the node name")))
            return
        old = state.nodes.get(name)
        cores = msg.cpu_ids or tuple(range(msg.cpus))
        node = NodeRecord(name=name, cores=tuple(cores), memory=msg.memory, gpus=tuple(range(msg.gpus)),
                          labels={"arch": msg.arch, **msg.labels}, address=msg.address, down=False,
                          drain=old.drain if old else None, registered_at=state.clock.time(),
                          boot=msg.agent_version, numa=tuple(tuple(group) for group in msg.numa_nodes))
        state.put_node(node)
        state.connected.add(name)
        state.heartbeats.heard(name)
        state._rebuild_view(name)
        if old is None:
            log.info("node %s: registered (%d cpus, %d bytes)", name, len(cores), msg.memory)
        elif old.down:
            log.info("node %s: back after being DOWN (%s)", name, old.down_reason)
        else:
            log.info("node %s: registered again", name)
        state.outbox.append((name, Registered(node=name, heartbeat_interval=state.liveness.interval)))
        self._reconcile(name, {(r.job_id, r.task_id, r.attempt) for r in msg.running})

    def _reconcile(self, name: str, reported: set[tuple[int, int, int]]) -> None:
        state = self.state
        self._fence(name, reported, stopping_too=True)
        missing = set()
        for key in sorted(state.on_node.get(name, set()) - reported):
            task = state.tasks[key]
            job = state.jobs.get(task.job_id)
            if task.state is TaskState.STARTING and task.desired is Desired.RUN and job is not None:
                log.info("node %s: launching job %d task %d again (never confirmed)", name, *key[:2])
                state.outbox.append((name, state.launch_order(job, task)))
            else:
                missing.add(key)
        if missing:
            self._unaccounted[name] = missing

    def _fence(self, name: str, reported: set[tuple[int, int, int]], stopping_too: bool) -> None:
        """Kill what a node runs that it should not: an old attempt, a task moved or ended, and (after a
        registration, when an earlier order may have been lost) a task already ordered to stop."""
        state = self.state
        for key in sorted(reported):
            task = state.tasks.get(key)
            job = state.jobs.get(key[0])
            current = job is not None and key[2] == job.attempt and task is not None
            stray = not current or task.grant.node != name or task.is_ended
            if stray or (stopping_too and task.desired is Desired.STOP):
                why = "an old attempt" if job is not None and key[2] != job.attempt else "not to run here"
                if not stray:
                    why = "ordered to stop"
                log.warning("node %s: fencing job %d task %d attempt %d (%s)", name, *key, why)
                state.outbox.append((name, kill_order(task or _ref_task(key, name), f"fenced: {why}")))

    def heartbeat(self, peer: str, msg: Heartbeat) -> None:
        state = self.state
        if peer not in state.connected or msg.node != peer:
            state.outbox.append((peer, Reregister(node=peer, reason="the scheduler does not know this node's work")))
            return
        state.heartbeats.heard(peer)
        if msg.running:
            self._fence(peer, {(r.job_id, r.task_id, r.attempt) for r in msg.running}, stopping_too=False)
        for key in self._unaccounted.pop(peer, set()):
            task = state.tasks.get(key)
            if task is not None and not task.is_ended:
                state.apply_task_state(task, TaskState.NODE_FAIL, None, "lost: the agent no longer has it", task.seq)
        state.outbox.append((peer, Heartbeat(node=peer, seq=msg.seq)))

    def task_update(self, peer: str, msg: TaskUpdate) -> None:
        state = self.state
        key = (msg.job_id, msg.task_id, msg.attempt)
        unaccounted = self._unaccounted.get(peer)
        if unaccounted:
            unaccounted.discard(key)
        task = state.tasks.get(key)
        if task is None or task.grant.node != peer:
            if msg.state in (TaskState.STARTING, TaskState.RUNNING):
                log.warning("node %s: job %d task %d attempt %d is not its to run: fencing", peer, *key)
                state.outbox.append((peer, kill_order(_ref_task(key, peer), "fenced: not to run here")))
            return
        if msg.seq <= task.seq:
            log.debug("node %s: stale update %d for job %d task %d dropped", peer, msg.seq, *key[:2])
            return
        if task.state is msg.state:
            state.tasks[key] = evolve(task, seq=msg.seq)
            return
        if not can_advance(task.state, msg.state):
            log.warning("node %s: job %d task %d cannot go %s -> %s: dropped", peer, *key[:2], task.state.value,
                        msg.state.value)
            if task.is_ended and msg.state in (TaskState.STARTING, TaskState.RUNNING):
                state.outbox.append((peer, kill_order(task, "fenced: the task was already ended")))
            return
        state.apply_task_state(task, msg.state, msg.exit_code, msg.reason, msg.seq,
                               usage=(msg.cpu_seconds, msg.peak_memory))


def _ref_task(key: tuple[int, int, int], node: str) -> TaskRecord:
    """A record for a task the scheduler no longer holds, enough to address a Kill to it."""
    return TaskRecord(key[0], key[1], key[2], Grant(node, (), 0, 0))
