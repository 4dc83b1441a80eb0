"""Fixtures for the scheduler's tests: a hand-moved clock, a state on a temporary database, and helpers that
speak to it the way agents and clients do (messages in, orders out), with no socket and no sleep."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobs.messages import Heartbeat, Kill, Launch, Register, TaskRef, TaskUpdate
from jobs.states import TaskState
from scheduler.agents import AgentDesk
from scheduler.nodes import Liveness
from scheduler.state import ClusterState
from scheduler.store import Store

GIB = 1024**3


class FakeClock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.wall = 1_800_000_000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall += seconds


def spec(name: str = "job", command: tuple[str, ...] = ("sleep", "10"), cpus: float = 1, memory: str = "1G",
         **extra: object) -> dict:
    """A job spec in its plain (to_dict) form."""
    from jobs.spec import JobSpec

    data = {"name": name, "image": "busybox", "command": list(command),
            "resources": {"cpus": cpus, "memory": memory}, **extra}
    return JobSpec.from_dict(data).to_dict()


class Harness:
    """A ClusterState with an agent desk, and the orders it sent, as a test drives them."""

    def __init__(self, path: str, clock: FakeClock) -> None:
        self.path = path
        self.clock = clock
        self.open()
        self.seq = 0

    def open(self) -> None:
        self.store = Store(self.path)
        self.state = ClusterState(self.store, self.clock, Liveness(interval=1.0, misses=3))
        self.desk = AgentDesk(self.state)

    def restart(self) -> None:
        """Drop everything in memory and uncommitted, and start again from the database (what SIGKILL leaves)."""
        self.store.close(commit=False)
        self.open()

    def commit(self) -> None:
        self.store.commit()

    def register(self, name: str, cpus: int = 4, memory: int = 16 * GIB, labels: dict | None = None,
                 running: tuple[tuple[int, int, int], ...] = (), numa: tuple = ()) -> None:
        self.desk.register(name, Register(node=name, cpus=cpus, memory=memory, gpus=0, arch="x86_64",
                                          labels=labels or {}, running=tuple(TaskRef(*r) for r in running),
                                          numa_nodes=numa))

    def beat(self, *names: str) -> None:
        for name in names:
            self.desk.heartbeat(name, Heartbeat(node=name, seq=1))

    def update(self, node: str, key: tuple[int, int, int], state: TaskState, exit_code: int | None = None,
               seq: int | None = None) -> None:
        self.seq += 1
        self.desk.task_update(node, TaskUpdate(*key, seq=self.seq if seq is None else seq, state=state, node=node,
                                               exit_code=exit_code))

    def schedule(self) -> int:
        placed = self.state.schedule()
        self.store.commit()
        return placed

    def orders(self, kind: type | None = None) -> list[tuple[str, object]]:
        """The orders sent since the last call (of one kind, when given); the outbox is emptied."""
        sent = list(self.state.outbox)
        self.state.outbox.clear()
        return [(node, msg) for node, msg in sent if kind is None or isinstance(msg, kind)]

    def launches(self) -> list[tuple[str, tuple[int, int, int]]]:
        return [(node, (m.job_id, m.task_id, m.attempt)) for node, m in self.orders(Launch)]  # type: ignore[attr-defined]

    def kills(self) -> list[tuple[str, tuple[int, int, int]]]:
        return [(node, (m.job_id, m.task_id, m.attempt)) for node, m in self.orders(Kill)]  # type: ignore[attr-defined]

    def run_all(self, launches: list[tuple[str, tuple[int, int, int]]]) -> None:
        for node, key in launches:
            self.update(node, key, TaskState.RUNNING)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def harness(tmp_path, clock) -> Iterator[Harness]:
    h = Harness(str(tmp_path / "state.db"), clock)
    try:
        yield h
    finally:
        h.store.close()


@pytest.fixture
def daemons(tmp_path) -> Iterator[object]:
    """A real scheduler (started) with room for simulated agents; every process killed by PID afterwards."""
    from .daemons import Daemons

    d = Daemons(tmp_path)
    try:
        d.start_scheduler()
        yield d
    finally:
        d.close()
