"""An agent's connection to the scheduler: a DEALER socket, registration, heartbeats both ways, reconnects.

The link owns one socket whose routing id is the node's name, so the scheduler addresses orders by node.
It registers on start and whenever the scheduler asks (`Reregister`: it restarted, or had declared the node
down), sending with the registration the tasks still running and then each task's latest update again.
It heartbeats every interval; the scheduler echoes each heartbeat after committing everything received
before it, so a finished task's final update is forgotten only once an echo proves it durable. When no
echo comes for `misses` intervals, the link drops the socket, makes a new one and registers again.

Orders are idempotent by (job, task, attempt): a second `Launch` of a task already seen is not passed on;
a `Kill` of a task this node never started is answered CANCELLED so the scheduler stops waiting for it.
The link does no I/O loop of its own: the caller polls `socket` (it changes on reconnect, see
`generation`) and calls `on_readable()` and `on_timer()`; `next_due()` says when the timer is next due.

Given `CurveKeys`, the socket is a CURVE client: the scheduler checks the agent key against the keys it
knows, and the link checks that it talks to the scheduler whose public key it was given.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import zmq

from jobs.errors import ProtocolError
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
from jobs.states import TaskState, is_terminal

log = logging.getLogger(__name__)

RECENT_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class CurveKeys:
    """The agent's key pair and the scheduler's public key, Z85."""

    public: str
    secret: str
    server: str


class Clock(Protocol):
    def monotonic(self) -> float: ...


class TaskRunner(Protocol):
    """What runs the tasks the link receives orders for (the engine, or a simulation)."""

    def launch(self, order: Launch) -> None:
        """Start the task; report its states through `AgentLink.report`."""

    def kill(self, order: Kill) -> None:
        """Stop the task; report its end through `AgentLink.report`."""


class AgentLink:
    """One node's link to the scheduler."""

    def __init__(self, context: zmq.Context, endpoint: str, describe: Callable[[], Register], runner: TaskRunner,
                 clock: Clock, interval: float = 2.0, misses: int = 3, curve: CurveKeys | None = None) -> None:
        self.context = context
        self.endpoint = endpoint
        self.describe = describe
        self.runner = runner
        self.clock = clock
        self.interval = interval
        self.misses = misses
        self.curve = curve
        self.node = describe().node
        self.socket: zmq.Socket | None = None
        self.generation = 0
        self.registered = False
        # Sequence numbers outlive a restart of the agent without being stored: they start from the clock.
        self._seq = time.time_ns() // 1000
        self._beat = 0
        self._latest: dict[tuple[int, int, int], TaskUpdate] = {}
        self._sent_at_beat: dict[tuple[int, int, int], int] = {}
        self._recent: OrderedDict[tuple[int, int, int], None] = OrderedDict()
        # Launched here, no state reported yet: a Kill in that window must still reach the runner.
        self._unreported: set[tuple[int, int, int]] = set()
        self._next_beat = 0.0
        self._last_echo = 0.0
        self.sent = 0

    # -- connection -----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and register."""
        self._connect()

    def _connect(self) -> None:
        if self.socket is not None:
            self.socket.close(0)
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, self.node.encode())
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        if self.curve is not None:
            sock.setsockopt(zmq.CURVE_SERVERKEY, self.curve.server.encode())
            sock.setsockopt(zmq.CURVE_PUBLICKEY, self.curve.public.encode())
            sock.setsockopt(zmq.CURVE_SECRETKEY, self.curve.secret.encode())
        sock.connect(self.endpoint)
        self.socket = sock
        self.generation += 1
        now = self.clock.monotonic()
        self._last_echo = now
        self._register()
        self._next_beat = now + self.interval

    def _register(self) -> None:
        running = tuple(TaskRef(*key) for key, update in self._latest.items() if not is_terminal(update.state))
        self._send(replace(self.describe(), running=running))
        for update in list(self._latest.values()):
            self._send(update)
            self._sent_at_beat[(update.job_id, update.task_id, update.attempt)] = self._beat
        log.info("node %s: registering with %s (%d tasks running)", self.node, self.endpoint, len(running))

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(0)
            self.socket = None

    def _send(self, msg: Register | Heartbeat | TaskUpdate) -> None:
        assert self.socket is not None
        try:
            self.socket.send(encode(msg), zmq.NOBLOCK)
            self.sent += 1
        except zmq.Again:
            log.warning("node %s: send queue full; %s dropped (resent on registration)", self.node, type(msg).__name__)

    # -- reports --------------------------------------------------------------------------------------------

    def report(self, job_id: int, task_id: int, attempt: int, state: TaskState, exit_code: int | None = None,
               reason: str = "", cpu_seconds: float = 0.0, peak_memory: int = 0) -> None:
        """Tell the scheduler what a task is now; kept (and resent after a reconnect) until it is safe."""
        self._seq += 1
        update = TaskUpdate(job_id=job_id, task_id=task_id, attempt=attempt, seq=self._seq, state=state,
                            node=self.node, exit_code=exit_code, reason=reason, cpu_seconds=cpu_seconds,
                            peak_memory=peak_memory)
        key = (job_id, task_id, attempt)
        self._unreported.discard(key)
        self._latest[key] = update
        self._sent_at_beat[key] = self._beat
        self._send(update)

    # -- incoming -------------------------------------------------------------------------------------------

    def on_readable(self) -> None:
        """Handle every message waiting on the socket."""
        while self.socket is not None:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            for frame in frames:  # the scheduler sends a burst of orders as one message, a frame each
                try:
                    msg = decode(frame)
                except ProtocolError as err:
                    log.warning("node %s: bad frame from the scheduler dropped: %s", self.node, err)
                    continue
                self._on_message(msg)

    def _on_message(self, msg: object) -> None:
        if isinstance(msg, Launch):
            key = (msg.job_id, msg.task_id, msg.attempt)
            if key in self._latest or key in self._recent:
                log.debug("node %s: launch of job %d task %d attempt %d again: already known", self.node, *key)
                if key in self._latest:
                    self._send(self._latest[key])
                return
            self._remember(key)
            self._unreported.add(key)
            self.runner.launch(msg)
        elif isinstance(msg, Kill):
            key = (msg.job_id, msg.task_id, msg.attempt)
            if key in self._unreported or (key in self._latest and not is_terminal(self._latest[key].state)):
                self.runner.kill(msg)
            elif key not in self._latest and key not in self._recent:
                self._remember(key)
                self.report(*key, TaskState.CANCELLED, reason=f"never started here: {msg.reason}")
        elif isinstance(msg, Heartbeat):
            self._last_echo = self.clock.monotonic()
            self._forget_confirmed(msg.seq)
        elif isinstance(msg, Reregister):
            log.info("node %s: the scheduler asks to register again (%s)", self.node, msg.reason)
            self._register()
        elif isinstance(msg, Registered):
            self.registered = True
            self._last_echo = self.clock.monotonic()
            if msg.heartbeat_interval > 0:
                # The scheduler's interval wins: it counts missed heartbeats by its own.
                self.interval = msg.heartbeat_interval
                self._next_beat = min(self._next_beat, self._last_echo + self.interval)
        else:
            log.warning("node %s: a %s is not an order for an agent: dropped", self.node, type(msg).__name__)

    def _remember(self, key: tuple[int, int, int]) -> None:
        self._recent[key] = None
        if len(self._recent) > RECENT_LIMIT:
            self._recent.popitem(last=False)

    def _forget_confirmed(self, beat: int) -> None:
        """Drop finished tasks whose final update went out before heartbeat `beat`: it is committed."""
        for key, update in list(self._latest.items()):
            if is_terminal(update.state) and self._sent_at_beat.get(key, beat + 1) < beat:
                del self._latest[key]
                self._sent_at_beat.pop(key, None)

    # -- time -----------------------------------------------------------------------------------------------

    def next_due(self) -> float:
        return self._next_beat

    def on_timer(self) -> None:
        """Heartbeat when due; reconnect when the scheduler has been silent for `misses` intervals."""
        now = self.clock.monotonic()
        if now < self._next_beat:
            return
        if now - self._last_echo >= self.interval * self.misses:
            log.warning("node %s: no answer from the scheduler for %.1fs: reconnecting%s", self.node,
                        now - self._last_echo, " (if it never answers: is this node's agent key among the "
                        "scheduler's, and its scheduler key the scheduler's?)" if self.curve and not self.registered
                        else "")
            self.registered = False
            self._connect()
            return
        self._beat += 1
        running = tuple(TaskRef(*key) for key, update in self._latest.items() if not is_terminal(update.state))
        self._send(Heartbeat(node=self.node, seq=self._beat, running=running))
        self._next_beat = now + self.interval
