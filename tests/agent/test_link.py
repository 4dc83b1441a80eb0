"""The agent's link over real ZeroMQ on 127.0.0.1, against a scripted scheduler socket and a hand-moved
clock: registration, heartbeats both ways, idempotent orders, resends after re-registration, reconnect."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq

from agent.link import AgentLink
from jobs.messages import (
    Heartbeat,
    Kill,
    Launch,
    Register,
    Registered,
    Reregister,
    TaskRef,
    TaskUpdate,
    decode,
    encode,
)
from jobs.states import TaskState


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def monotonic(self) -> float:
        return self.now


class Runner:
    def __init__(self) -> None:
        self.launched: list[tuple[int, int, int]] = []
        self.killed: list[tuple[int, int, int]] = []

    def launch(self, order: Launch) -> None:
        self.launched.append((order.job_id, order.task_id, order.attempt))

    def kill(self, order: Kill) -> None:
        self.killed.append((order.job_id, order.task_id, order.attempt))


class Scheduler:
    """A ROUTER socket the test speaks through, as the scheduler would."""

    def __init__(self, context: zmq.Context) -> None:
        self.sock = context.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.pending: list[tuple[bytes, bytes]] = []

    def recv(self) -> tuple[bytes, object]:
        """The next protocol message from the link (several may come in one ZeroMQ message)."""
        if not self.pending:
            assert self.sock.poll(5000), "nothing arrived from the link"
            peer, *frames = self.sock.recv_multipart()
            self.pending = [(peer, frame) for frame in frames]
        peer, frame = self.pending.pop(0)
        return peer, decode(frame)

    def send(self, peer: bytes, msg: object) -> None:
        self.sock.send_multipart([peer, encode(msg)])


def describe() -> Register:
    return Register(node="n1", cpus=4, memory=1 << 30, gpus=0, arch="x86_64")


def launch(job: int) -> Launch:
    return Launch(job_id=job, task_id=0, attempt=0, spec={}, nodes=("n1",), cpus=(0,), memory=1)


def pump(link: AgentLink) -> None:
    """Let the link read what the scheduler sent (waiting on the socket, not sleeping)."""
    assert link.socket is not None and link.socket.poll(5000)
    link.on_readable()


@pytest.fixture
def setup() -> Iterator[tuple[Scheduler, AgentLink, Runner, Clock]]:
    context = zmq.Context()
    scheduler = Scheduler(context)
    clock, runner = Clock(), Runner()
    link = AgentLink(context, scheduler.endpoint, describe, runner, clock, interval=1.0, misses=3)
    try:
        link.start()
        yield scheduler, link, runner, clock
    finally:
        link.close()
        scheduler.sock.close(0)
        context.term()


def test_link_registers_under_its_node_name_and_heartbeats_when_due(setup):
    scheduler, link, _, clock = setup
    peer, msg = scheduler.recv()
    assert peer == b"n1" and isinstance(msg, Register)
    scheduler.send(peer, Registered(node="n1", heartbeat_interval=1.0))
    pump(link)
    link.on_timer()
    clock.now += 1.0
    link.on_timer()
    _, beat = scheduler.recv()
    assert isinstance(beat, Heartbeat) and beat.seq == 1


def test_launch_is_passed_on_once_and_unknown_kill_is_answered_cancelled(setup):
    scheduler, link, runner, _ = setup
    peer, _ = scheduler.recv()
    scheduler.send(peer, launch(7))
    scheduler.send(peer, launch(7))
    scheduler.send(peer, Kill(job_id=9, task_id=0, attempt=0, reason="cancel"))
    pump(link)
    while link.socket.poll(200):
        link.on_readable()
    assert runner.launched == [(7, 0, 0)]
    _, update = scheduler.recv()
    assert isinstance(update, TaskUpdate) and update.job_id == 9 and update.state is TaskState.CANCELLED


def test_kill_between_launch_and_first_report_reaches_the_runner(setup):
    # A gang job whose other task fails at once is stopped while this task is still starting: the Kill
    # comes before the runner has reported anything, and must not be dropped (the task would run forever).
    scheduler, link, runner, _ = setup
    peer, _ = scheduler.recv()
    scheduler.send(peer, launch(7))
    scheduler.send(peer, Kill(job_id=7, task_id=0, attempt=0, reason="task 1 of job 7 ended FAILED"))
    pump(link)
    while link.socket.poll(200):
        link.on_readable()
    assert runner.launched == [(7, 0, 0)] and runner.killed == [(7, 0, 0)]


def test_kill_of_a_task_that_ended_here_is_not_passed_on(setup):
    scheduler, link, runner, _ = setup
    peer, _ = scheduler.recv()
    scheduler.send(peer, launch(7))
    pump(link)
    link.report(7, 0, 0, TaskState.COMPLETED, exit_code=0)
    scheduler.send(peer, Kill(job_id=7, task_id=0, attempt=0, reason="late"))
    pump(link)
    assert runner.killed == []


def test_reregister_sends_running_tasks_then_their_latest_updates(setup):
    scheduler, link, _, _ = setup
    peer, _ = scheduler.recv()
    link.report(7, 0, 0, TaskState.RUNNING)
    link.report(8, 0, 0, TaskState.COMPLETED, 0)
    scheduler.recv(), scheduler.recv()
    scheduler.send(peer, Reregister(node="n1", reason="restarted"))
    pump(link)
    _, register = scheduler.recv()
    assert isinstance(register, Register) and register.running == (TaskRef(7, 0, 0),)
    resent = {scheduler.recv()[1].job_id, scheduler.recv()[1].job_id}
    assert resent == {7, 8}


def test_finished_update_is_forgotten_once_a_later_heartbeat_is_echoed(setup):
    scheduler, link, _, clock = setup
    peer, _ = scheduler.recv()
    link.report(8, 0, 0, TaskState.COMPLETED, 0)
    scheduler.recv()
    clock.now += 1.0
    link.on_timer()
    _, beat = scheduler.recv()
    scheduler.send(peer, Heartbeat(node="n1", seq=beat.seq))
    pump(link)
    scheduler.send(peer, Reregister(node="n1"))
    pump(link)
    scheduler.recv()  # the Register
    assert not scheduler.pending and not scheduler.sock.poll(300), "a confirmed final update was sent again"


def test_silent_scheduler_makes_the_link_reconnect_and_register_again(setup):
    scheduler, link, _, clock = setup
    scheduler.recv()
    generation = link.generation
    clock.now += 3.5
    link.on_timer()
    assert link.generation == generation + 1
    _, msg = scheduler.recv()
    assert isinstance(msg, Register)
