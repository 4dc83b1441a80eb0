"""Simulated nodes for testing the scheduler at scale: `rade agent --simulate --cpus C --memory M --count K`.

K nodes in one process, each with its own link (its own ZeroMQ connection and routing id), exactly as K
real agents would appear to the scheduler. Their tasks run no container: a task "runs" for the time its
command says (`sleep 2`, or `sh -c "sleep 0.5; exit 3"`), then ends with that exit code (0 by default,
1 for `false`), or TIMEOUT when its time limit comes first. It exists to test the scheduler; nothing else.
"""

from __future__ import annotations

import heapq
import logging
import platform
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import zmq

from agent.link import AgentLink, Clock, CurveKeys
from jobs.messages import Kill, Launch, Register
from jobs.states import TaskState
from jobs.units import parse_duration

log = logging.getLogger(__name__)

_SLEEP = re.compile(r"(?:^|[\s;&|])sleep\s+(\d+(?:\.\d+)?)")
_EXIT = re.compile(r"(?:^|[\s;&|])exit\s+(\d+)")


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a simulated task ends: after how long, with which state and exit code."""

    seconds: float
    state: TaskState
    exit_code: int | None


def simulated_outcome(command: Sequence[str], time_limit: str | int | None) -> Outcome:
    """What the command would do: its `sleep` is how long it runs, its `exit N` (or `false`) its code."""
    text = " ".join(command)
    match = _SLEEP.search(text)
    seconds = float(match.group(1)) if match else 0.0
    exit_match = _EXIT.search(text)
    code = int(exit_match.group(1)) if exit_match else (1 if text.strip() == "false" else 0)
    if time_limit:
        limit = float(parse_duration(time_limit))
        if seconds > limit:
            return Outcome(limit, TaskState.TIMEOUT, None)
    return Outcome(seconds, TaskState.COMPLETED if code == 0 else TaskState.FAILED, code)


class SimulatedNode:
    """One node's task runner: keeps its tasks' end times; the cluster's loop ends them when due."""

    def __init__(self, cluster: SimulatedCluster, name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.link: AgentLink | None = None
        self.running: dict[tuple[int, int, int], Outcome] = {}
        # What each task holds (cores, memory): a simulated task uses all of it, for accounting.
        self.held: dict[tuple[int, int, int], tuple[int, int]] = {}

    def launch(self, order: Launch) -> None:
        key = (order.job_id, order.task_id, order.attempt)
        outcome = simulated_outcome(order.spec.get("command") or (), order.spec.get("time_limit"))
        self.running[key] = outcome
        self.held[key] = (len(order.cpus), order.memory)
        log.info("node %s: job %d task %d attempt %d runs for %gs", self.name, *key, outcome.seconds)
        assert self.link is not None
        self.link.report(*key, TaskState.RUNNING)
        self.cluster.schedule_end(self.cluster.clock.monotonic() + outcome.seconds, self, key)

    def kill(self, order: Kill) -> None:
        key = (order.job_id, order.task_id, order.attempt)
        log.info("node %s: killing job %d task %d attempt %d (%s)", self.name, *key, order.reason)
        self.held.pop(key, None)
        if self.running.pop(key, None) is not None and self.link is not None:
            self.link.report(*key, TaskState.CANCELLED, reason=order.reason or "killed")

    def finish(self, key: tuple[int, int, int]) -> None:
        outcome = self.running.pop(key, None)
        cores, memory = self.held.pop(key, (0, 0))
        if outcome is not None and self.link is not None:
            self.link.report(*key, outcome.state, outcome.exit_code, cpu_seconds=outcome.seconds * cores,
                             peak_memory=memory)


class SimulatedCluster:
    """K simulated nodes sharing one thread and one poller."""

    def __init__(self, endpoint: str, cpus: int, memory: int, count: int, clock: Clock, prefix: str = "sim",
                 labels: dict[str, str] | None = None, interval: float = 2.0, misses: int = 3,
                 curve: CurveKeys | None = None) -> None:
        self.clock = clock
        self.context = zmq.Context()
        self.context.setsockopt(zmq.MAX_SOCKETS, max(1024, count * 2 + 16))
        self.nodes: list[SimulatedNode] = []
        self._ends: list[tuple[float, int, SimulatedNode, tuple[int, int, int]]] = []
        self._counter = 0
        self._stopping = threading.Event()
        width = max(3, len(str(count)))
        for i in range(1, count + 1):
            node = SimulatedNode(self, f"{prefix}{i:0{width}d}")
            node.link = AgentLink(self.context, endpoint, _describer(node.name, cpus, memory, labels or {}), node,
                                  clock, interval, misses, curve=curve)
            self.nodes.append(node)

    def schedule_end(self, when: float, node: SimulatedNode, key: tuple[int, int, int]) -> None:
        self._counter += 1
        heapq.heappush(self._ends, (when, self._counter, node, key))

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        """Serve until `stop()`: orders in, task ends and heartbeats out."""
        links = [node.link for node in self.nodes if node.link is not None]
        for link in links:
            link.start()
        poller, sockets, generations = self._poller()
        next_timer = min(link.next_due() for link in links) if links else float("inf")
        try:
            while not self._stopping.is_set():
                now = self.clock.monotonic()
                due = min(next_timer, now + 0.2)
                if self._ends:
                    due = min(due, self._ends[0][0])
                for sock, _ in poller.poll(max(0.0, due - now) * 1000):
                    link = sockets[sock].link
                    link.on_readable()
                    next_timer = min(next_timer, link.next_due())  # a Registered may bring it forward
                now = self.clock.monotonic()
                while self._ends and self._ends[0][0] <= now:
                    _, _, node, key = heapq.heappop(self._ends)
                    node.finish(key)
                if now >= next_timer:
                    for link in links:
                        if link.next_due() <= now:
                            link.on_timer()
                    next_timer = min(link.next_due() for link in links)
                    if [link.generation for link in links] != generations:
                        poller, sockets, generations = self._poller()
        finally:
            for node in self.nodes:
                if node.link:
                    node.link.close()
            self.context.term()

    def _poller(self) -> tuple[zmq.Poller, dict[zmq.Socket, SimulatedNode], list[int]]:
        poller = zmq.Poller()
        sockets = {}
        for node in self.nodes:
            assert node.link is not None and node.link.socket is not None
            poller.register(node.link.socket, zmq.POLLIN)
            sockets[node.link.socket] = node
        return poller, sockets, [n.link.generation for n in self.nodes if n.link]


def _describer(name: str, cpus: int, memory: int, labels: dict[str, str]):
    def describe() -> Register:
        return Register(node=name, cpus=cpus, memory=memory, gpus=0, arch=platform.machine(),
                        labels={"simulated": "true", **labels}, cpu_ids=tuple(range(cpus)), address="simulated",
                        agent_version="simulated")
    return describe
