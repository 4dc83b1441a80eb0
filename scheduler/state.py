"""The cluster's state and its one writer: jobs, tasks and nodes in memory, every change written to the store.

Everything that changes the cluster comes through `ClusterState`: a submission, a cancel, a drain, an
agent's registration or task update, the clock (heartbeats missed, drain deadlines), and the scheduling
pass whose plans it re-checks against the live nodes before committing them. It never touches a socket:
orders for agents go to `outbox` as messages, and the daemon sends them only after `store.commit()`, so
nothing is acted on that a crash could forget.

What the agents' reports mean (registration, reconciliation, fencing) is in `scheduler.agents`; what
follows a task's update (jobs ending, failing, requeued), a node lost or a drain deadline passed is in
`scheduler.lifecycle`, which `ClusterState` mixes in so that it stays the one writer of the records.
"""

from __future__ import annotations

import bisect
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jobs.errors import RadeError
from jobs.messages import Launch, Message
from jobs.spec import JobSpec
from jobs.states import JobState, advance
from jobs.units import parse_array
from scheduler.backfill import BackfillResult
from scheduler.clock import Clock
from scheduler.drain import begin_drain
from scheduler.holds import array_limit, dependency_hold, over_array_limits
from scheduler.lifecycle import Lifecycle, TaskKey
from scheduler.nodes import HeartbeatBook, Liveness
from scheduler.placement import PendingReason, Plan, Rejection
from scheduler.policy import SchedulingPolicy
from scheduler.queue import QueuedJob
from scheduler.records import JobRecord, NodeRecord, Outcome, TaskRecord
from scheduler.resources import NodeView, demand_of, evolve
from scheduler.store import Store

log = logging.getLogger(__name__)


class NotFound(RadeError):
    """A job or node the request names does not exist."""


class NotAllowed(RadeError):
    """The request is refused for this user."""


class ClusterState(Lifecycle):
    """The single writer of the scheduler's state."""

    def __init__(self, store: Store, clock: Clock, liveness: Liveness | None = None,
                 policy: SchedulingPolicy | None = None) -> None:
        self.store = store
        self.clock = clock
        self.liveness = liveness or Liveness()
        self.policy = policy or SchedulingPolicy()
        # Who a job's tasks run as (uid, gid) and their pids limit: the site's answer, set by the daemon;
        # launch orders carry them (-1: as the image says; 0: no limit).
        self.run_as: Callable[[str], tuple[int, int]] = lambda user: (-1, -1)
        self.pids_limit = 0
        self.heartbeats = HeartbeatBook(clock, self.liveness)
        self.jobs: dict[int, JobRecord] = {}
        self.ended: dict[int, tuple[JobState, int | None]] = {}
        self.tasks: dict[TaskKey, TaskRecord] = {}
        self.current: dict[int, list[TaskKey]] = {}
        self.on_node: dict[str, set[TaskKey]] = defaultdict(set)
        self.nodes: dict[str, NodeRecord] = {}
        self.views: dict[str, NodeView] = {}
        self.order: list[str] = []
        self._open: list[str] = []
        self.connected: set[str] = set()
        self.why: dict[int, Rejection] = {}
        self.outbox: list[tuple[str, Message]] = []
        self.dirty = True
        self.placed_total = 0
        self.passes = 0  # scheduling passes run (the daemon times them)
        # Jobs submitted since the last pass: when nothing else changed, a pass need look only at them.
        self._fresh: list[int] = []
        # Arrays with a `%N` limit on how many of them run at once: first job -> (N, live member ids).
        self._limited: dict[int, tuple[int, set[int]]] = {}
        # Every array's live members, by the array's name (its first job's id): `rade cancel 123` ends them all.
        self._arrays: dict[int, set[int]] = {}
        self._last_pass: BackfillResult | None = None
        self._load()

    # -- loading --------------------------------------------------------------------------------------------

    def _load(self) -> None:
        loaded = self.store.load(finished_jobs=False)
        self.ended = self.store.ended_states()
        for node in loaded.nodes:
            self.nodes[node.name] = node
            if not node.down:
                self.heartbeats.expect(node.name)
        for job in loaded.jobs:
            self.jobs[job.id] = job
            self._track_array(job)
        for task in loaded.tasks:
            self.tasks[task.key] = task
            if task.attempt == self.jobs[task.job_id].attempt:
                self.current.setdefault(task.job_id, []).append(task.key)
            if not task.is_ended:
                self.on_node[task.grant.node].add(task.key)
        for name in self.nodes:
            self._rebuild_view(name)
        self._next_id = self.store.next_job_id()
        log.info("state loaded: %d live jobs, %d tasks, %d nodes", len(self.jobs), len(self.tasks), len(self.nodes))

    def _rebuild_view(self, name: str) -> None:
        node = self.nodes[name]
        view = NodeView(name=name, cores=node.cores, memory=node.memory, gpus=node.gpus, labels=node.labels,
                        blocked=self._blocked(node), numa=node.numa)
        for key in self.on_node.get(name, ()):
            try:
                view = view.with_grant(self.tasks[key].grant)
            except ValueError:
                # The node came back with fewer cores than a task of it holds: the task keeps running
                # (or is fenced), but the cores it names no longer count.
                log.warning("node %s: job %d task %d holds cores the node no longer reports", name, *key[:2])
        if name not in self.views:
            self.order = sorted([*self.views, name])
        self._set_view(view)
        self.dirty = True

    def _set_view(self, view: NodeView) -> None:
        """Replace a node's view, keeping the ordered list of nodes that take work and have room."""
        self.views[view.name] = view
        takes = view.blocked is None and not view.is_full
        where = bisect.bisect_left(self._open, view.name)
        listed = where < len(self._open) and self._open[where] == view.name
        if takes and not listed:
            self._open.insert(where, view.name)
        elif listed and not takes:
            del self._open[where]

    def _blocked(self, node: NodeRecord) -> str | None:
        if node.down:
            return "down"
        if node.name not in self.connected:
            return "not connected"
        if node.drain is not None:
            return "draining"
        return None

    def refresh_node(self, name: str) -> None:
        """Re-read whether a node takes work, after its record or connection changed."""
        self._set_view(evolve(self.views[name], blocked=self._blocked(self.nodes[name])))
        self.dirty = True

    def node_state(self, name: str) -> str:
        """The state `rade nodes` shows: DOWN, DRAINING/DRAINED, or IDLE/MIXED/ALLOCATED by load."""
        node, view = self.nodes[name], self.views[name]
        if node.down:
            return "DOWN"
        if node.drain is not None:
            return "DRAINING" if self.on_node.get(name) else "DRAINED"
        if name not in self.connected:
            return "UNKNOWN"
        if view.tasks == 0:
            return "IDLE"
        return "ALLOCATED" if view.is_full else "MIXED"

    def put_node(self, node: NodeRecord) -> None:
        self.nodes[node.name] = node
        self.store.put_node(node)

    # -- client requests ------------------------------------------------------------------------------------

    def submit(self, spec_data: Mapping[str, Any], user: str) -> list[int]:
        """Queue a job (or one per array index); returns the new ids. The spec is checked here, once: what
        is kept (its plain form and placement demand) is never checked again."""
        spec = JobSpec.from_dict(spec_data, origin="submitted spec")
        plain = spec.to_dict()
        # One job's demand is made with its id; an array's members share one, each given its own id.
        demand = demand_of(self._next_id, spec)
        indices: Iterable[int | None] = (None,)
        array_of = None
        if plain.get("array"):
            indices = parse_array(plain["array"]).indices
            array_of = self._next_id
        now = self.clock.time()
        ids = []
        for index in indices:
            job_id = self._next_id
            self._next_id += 1
            job = JobRecord(id=job_id, name=spec.name, user=user, spec=plain,
                            demand=demand if demand.job_id == job_id else evolve(demand, job_id=job_id),
                            priority=spec.priority, submitted_at=now, array_index=index, array_of=array_of)
            self.store.insert_job(job)
            self.jobs[job_id] = job
            self._track_array(job)
            self._fresh.append(job_id)
            ids.append(job_id)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("job %s submitted by %s: %s", ",".join(map(str, ids)), user, spec.name)
        return ids

    def cancel(self, job_id: int, user: str, admin: bool) -> str:
        """Cancel one job, or every live job of the array it names: at once when it waits, through its agents
        when it runs. Returns what happened."""
        members = self._arrays.get(job_id)
        if members:
            done = [self._cancel_one(member, user, admin) for member in sorted(members)]
            return "cancelled" if all(d == "cancelled" for d in done) else "cancelling"
        return self._cancel_one(job_id, user, admin)

    def _cancel_one(self, job_id: int, user: str, admin: bool) -> str:
        job = self.jobs.get(job_id)
        if job is None:
            if job_id in self.ended:
                return f"already {self.ended[job_id][0].value}"
            raise NotFound(f"no job {job_id}", "see 'rade queue --all'")
        if not admin and job.user != user:
            raise NotAllowed(f"job {job_id} belongs to {job.user}", "only its owner or root may cancel it")
        if job.state is JobState.PENDING:
            self._end_job(job, JobState.CANCELLED, None, "cancelled while pending")
            return "cancelled"
        self._set_job(evolve(job, outcome=Outcome.CANCELLED, outcome_code=None, reason=f"cancelled by {user}"))
        self._stop_tasks(job_id, f"job {job_id} cancelled by {user}")
        self._maybe_finish(job_id)
        return "cancelling"

    def drain(self, name: str, reason: str, deadline: float | None) -> str:
        node = self._node(name)
        self.put_node(evolve(node, drain=begin_drain(reason, self.clock.time(), deadline)))
        self.refresh_node(name)
        log.info("node %s: drained (%s)%s", name, reason, f", deadline in {deadline:g}s" if deadline else "")
        return "draining" if self.on_node.get(name) else "drained"

    def resume(self, name: str) -> str:
        node = self._node(name)
        if node.drain is None:
            return "was not drained"
        self.put_node(evolve(node, drain=None))
        self.refresh_node(name)
        log.info("node %s: resumed", name)
        return "resumed"

    def _node(self, name: str) -> NodeRecord:
        node = self.nodes.get(name)
        if node is None:
            raise NotFound(f"no node {name!r}", "see 'rade nodes'")
        return node

    # -- scheduling -----------------------------------------------------------------------------------------

    def schedule(self, limit: int | None = None) -> int:
        """A pass over the queue when something changed (only over new jobs when nothing else did); commits
        the plans; returns how many jobs it placed."""
        if self.dirty or self._last_pass is None:
            candidates, carried = list(self.jobs.values()), None
        elif self._fresh:
            candidates, carried = [self.jobs[i] for i in self._fresh if i in self.jobs], self._last_pass
        else:
            return 0
        self.dirty = False
        self._fresh.clear()
        queued = []
        over_limit = over_array_limits(self._limited.values(), self.jobs)
        now = self.clock.time()
        pending = [job for job in candidates if job.state is JobState.PENDING]
        priority = self.policy.priorities(pending, now)
        for job in pending:
            held = (PendingReason.ARRAY_LIMIT, "") if job.id in over_limit else \
                dependency_hold(job, self.jobs, self.ended)
            if held and held[0] is PendingReason.DEPENDENCY_NEVER_SATISFIED:
                # As Slurm's kill_invalid_depend: a job whose dependency can never be met ends, saying why.
                self._end_job(job, JobState.CANCELLED, None, f"DependencyNeverSatisfied ({held[1]})")
                continue
            queued.append(QueuedJob(job.id, priority[job.id], job.id, job.demand,
                                    held[0] if held else None, held[1] if held else ""))
        if not queued:
            return 0
        self.passes += 1
        result = self.policy.run(queued, self.views, self.jobs, self._running, now, limit, carried, self._open)
        lines: list[str] = []
        placed = sum(1 for plan in result.plans if self._commit_plan(plan, lines))
        if lines:
            # One record for the pass, a line for each job: a record per job cost as much as placing it.
            log.info("pass %d: %d job%s placed\n%s", self.passes, placed, "s" * (placed != 1), "\n".join(lines))
        self._last_pass = result
        for job_id, rejection in result.waiting.items():
            self.why[job_id] = rejection
            job = self.jobs[job_id]
            if job.reason != rejection.reason.value:
                # Not stored: a pending job's reason is worked out again by the first pass after a restart.
                self.jobs[job_id] = evolve(job, reason=rejection.reason.value)
        if limit is not None and len(result.plans) >= limit:
            self.dirty = True
        self.placed_total += placed
        return placed

    def _running(self) -> list[tuple[JobRecord, TaskRecord]]:
        """Every live task of a live job, with its job: what backfill releases in order of their ends."""
        return [(self.jobs[key[0]], self.tasks[key]) for keys in self.on_node.values() for key in keys
                if key[0] in self.jobs and key in self.tasks]

    def _track_array(self, job: JobRecord) -> None:
        if job.array_of is not None:
            self._arrays.setdefault(job.array_of, set()).add(job.id)
        limit = array_limit(job)
        if limit and job.array_of is not None:
            self._limited.setdefault(job.array_of, (limit, set()))[1].add(job.id)

    def _commit_plan(self, plan: Plan, lines: list[str]) -> bool:
        """Re-check a plan against the live nodes, then make it so: tasks recorded, launches queued, and a
        line for the log added to `lines`."""
        job = self.jobs.get(plan.job_id)
        if job is None or job.state is not JobState.PENDING:
            return False
        for grant in plan.grants:
            refusal = self.views[grant.node].admits(grant)
            if refusal is not None:
                log.info("job %d: plan dropped, node %s changed (%s)", job.id, grant.node, refusal)
                self.dirty = True
                return False
        keys = []
        for index, grant in enumerate(plan.grants):
            task = TaskRecord(job.id, index, job.attempt, grant)
            self.tasks[task.key] = task
            self.on_node[grant.node].add(task.key)
            self._set_view(self.views[grant.node].with_grant(grant))
            self.store.put_task(task)
            keys.append(task.key)
        self.current[job.id] = keys
        job = evolve(job, state=advance(job.state, JobState.STARTING), reason="")
        self._set_job(job)
        self.why.pop(job.id, None)
        lines.append(f"  job {job.id} attempt {job.attempt}: placed on {','.join(plan.nodes)}")
        for key in keys:
            self.outbox.append((self.tasks[key].grant.node, self.launch_order(job, self.tasks[key])))
        return True

    def launch_order(self, job: JobRecord, task: TaskRecord) -> Launch:
        """The order that starts one task; the same every time it is sent, so a resend is harmless."""
        nodes = tuple(self.tasks[key].grant.node for key in self.current[job.id])
        env = {"RADE_JOB_ID": str(job.id), "RADE_JOB_NAME": job.name, "RADE_TASK_ID": str(task.task),
               "RADE_NODE": task.grant.node, "RADE_NODELIST": ",".join(dict.fromkeys(nodes)),
               "RADE_ATTEMPT": str(task.attempt)}
        if job.array_index is not None:
            env["RADE_ARRAY_INDEX"] = str(job.array_index)
        if job.spec.get("mpi"):
            # Every node's ranks and address: the first node's hostfile and rsh agent need them all.
            grants = [self.tasks[key].grant for key in self.current[job.id]]
            env["RADE_NODE_RANKS"] = ",".join(str(g.ranks) for g in grants)
            env["RADE_NODE_ADDRESSES"] = ",".join(
                self.nodes[g.node].address if g.node in self.nodes else "" for g in grants)
        grant = task.grant
        uid, gid = self.run_as(job.user)
        return Launch(job_id=job.id, task_id=task.task, attempt=task.attempt, spec=_lean(job.spec), nodes=nodes,
                      cpus=grant.cores, memory=grant.memory, gpus=grant.gpus, ranks=grant.ranks, env=env, uid=uid,
                      gid=gid, pids_limit=self.pids_limit)


def _lean(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec without its empty fields (the agent reads it back with their defaults): a smaller frame."""
    return {key: value for key, value in spec.items() if value is not None and value != [] and value != {}}
