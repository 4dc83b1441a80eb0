"""The scheduler daemon: two ZeroMQ ROUTER sockets (agents, clients) owned by one thread, one poll loop.

Each turn of the loop reads what has arrived (a bounded batch from each socket), lets the state change,
runs the clock's checks and a scheduling pass, commits the store, and only then sends: replies to clients
and orders to agents. So every answer and every order stands on committed state, and one fsync covers a
whole batch. Timers come from the clock and the poll timeout; nothing sleeps.

Frames: an agent (a DEALER whose routing id is its node name) sends messages, one protocol message a
frame. A client sends pairs of frames: a request id it chose and the message; the reply carries the same
id, so a client may keep many requests in flight. Either way the daemon may put several in one ZeroMQ
message (several frames) to the same peer. A frame that does not decode is logged and dropped (a client still gets an error
reply when its request id was readable): the daemon keeps serving whatever arrives.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import uuid
from typing import Any

import zmq

from jobs.errors import ProtocolError, RadeError
from jobs.messages import (
    Cancel,
    Drain,
    ErrorReply,
    Heartbeat,
    Message,
    Query,
    Register,
    Reply,
    Resume,
    Submit,
    TaskUpdate,
    decode,
    encode,
)
from scheduler import views
from scheduler.agents import AgentDesk
from scheduler.clock import Clock, SystemClock
from scheduler.config import SchedulerConfig
from scheduler.drain import next_deadline
from scheduler.nodes import Liveness
from scheduler.state import ClusterState
from scheduler.store import Store

log = logging.getLogger(__name__)

BATCH = 2000
PLACEMENTS_PER_PASS = 5000
MAX_WAIT = 60.0


class SchedulerDaemon:
    """The daemon: build it with a config, call `serve()`; `stop()` from a signal handler or another thread."""

    def __init__(self, config: SchedulerConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.store = Store(config.state, config.synchronous)
        self.state = ClusterState(self.store, self.clock, Liveness(config.heartbeat_interval, config.misses))
        self.desk = AgentDesk(self.state)
        self.instance = uuid.uuid4().hex[:12]
        self._stopping = threading.Event()
        self._waiters: dict[int, list[tuple[bytes, bytes, float]]] = {}
        self._replies: list[tuple[bytes, bytes, Message]] = []
        self.context = zmq.Context()
        self.agents = self._bind(config.agents)
        self.clients = self._bind(config.clients)
        self.endpoints = {"agents": self.agents.getsockopt_string(zmq.LAST_ENDPOINT),
                          "clients": self.clients.getsockopt_string(zmq.LAST_ENDPOINT)}
        self._write_endpoints()
        log.info("scheduler %s: agents on %s, clients on %s, state in %s", self.instance,
                 self.endpoints["agents"], self.endpoints["clients"], config.state)

    def _bind(self, address: str) -> zmq.Socket:
        sock = self.context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        # An order to a node that is not connected must fail loudly here, not vanish in ZeroMQ.
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, 16 * 1024 * 1024 + 64)
        # A restarted agent reconnects under its node name before the old connection is noticed dead.
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        try:
            sock.bind(address)
        except zmq.ZMQError as err:
            sock.close()
            raise RadeError(f"cannot listen on {address}: {err}", "is another scheduler running there?") from None
        return sock

    def _write_endpoints(self) -> None:
        path = self.config.endpoints_file
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({**self.endpoints, "pid": os.getpid(), "instance": self.instance}, handle)
        os.replace(tmp, path)

    # -- the loop -------------------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())

    def serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self.agents, zmq.POLLIN)
        poller.register(self.clients, zmq.POLLIN)
        next_tick = self.clock.monotonic()
        try:
            while not self._stopping.is_set():
                timeout = max(0.0, min(next_tick - self.clock.monotonic(), 0.25))
                if self.state.dirty:
                    timeout = 0.0
                ready = dict(poller.poll(timeout * 1000))
                if self.agents in ready:
                    self._read_agents()
                if self.clients in ready:
                    self._read_clients()
                if self.clock.monotonic() >= next_tick:
                    self.state.tick()
                    next_tick = self.clock.monotonic() + self._tick_every()
                self.state.schedule(limit=PLACEMENTS_PER_PASS)
                self._answer_waiters()
                self.store.commit()
                self._flush()
        finally:
            self.close()

    def _tick_every(self) -> float:
        every = self.state.liveness.interval / 2
        ahead = next_deadline(self.state.nodes.values(), self.clock.time())
        return max(0.05, min(every, ahead) if ahead is not None else every)

    def close(self) -> None:
        self.store.close()
        self.agents.close(0)
        self.clients.close(0)
        self.context.term()

    # -- agents ---------------------------------------------------------------------------------------------

    def _read_agents(self) -> None:
        for _ in range(BATCH):
            try:
                frames = self.agents.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) < 2:
                log.warning("agent socket: a message without a frame after the peer's id dropped")
                continue
            peer = frames[0].decode("utf-8", "replace")
            for frame in frames[1:]:
                try:
                    self._on_agent(peer, decode(frame))
                except ProtocolError as err:
                    log.warning("agent %s: bad frame dropped: %s", peer, err)
                except RadeError as err:
                    log.warning("agent %s: %s", peer, err)
                except Exception:
                    # A bug in handling one message must not stop the cluster's scheduler.
                    log.exception("agent %s: message dropped after an internal error", peer)

    def _on_agent(self, peer: str, msg: Message) -> None:
        if isinstance(msg, TaskUpdate):
            self.desk.task_update(peer, msg)
        elif isinstance(msg, Heartbeat):
            self.desk.heartbeat(peer, msg)
        elif isinstance(msg, Register):
            self.desk.register(peer, msg)
        else:
            log.warning("agent %s: a %s is not an agent's message: dropped", peer, type(msg).__name__)

    # -- clients --------------------------------------------------------------------------------------------

    def _read_clients(self) -> None:
        for _ in range(BATCH):
            try:
                frames = self.clients.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) < 3 or len(frames) % 2 == 0:
                log.warning("client socket: a message of %d frames dropped (expected id, message pairs)",
                            len(frames))
                continue
            peer = frames[0]
            for request, frame in zip(frames[1::2], frames[2::2]):
                try:
                    reply = self._on_client(peer, request, decode(frame))
                except RadeError as err:
                    reply = ErrorReply(message=err.message, hint=err.hint)
                except Exception as err:
                    log.exception("client request failed")
                    reply = ErrorReply(message=f"internal error: {type(err).__name__}: {err}")
                if reply is not None:
                    self._replies.append((peer, request, reply))

    def _on_client(self, peer: bytes, request: bytes, msg: Message) -> Message | None:
        state = self.state
        if isinstance(msg, Submit):
            return Reply(data={"jobs": state.submit(msg.spec, msg.user or "nobody")})
        if isinstance(msg, Cancel):
            admin = msg.user == "root"
            return Reply(data={"results": {str(j): state.cancel(j, msg.user, admin) for j in msg.job_ids}})
        if isinstance(msg, Drain):
            return Reply(data={"results": {n: state.drain(n, msg.reason, msg.deadline) for n in msg.nodes}})
        if isinstance(msg, Resume):
            return Reply(data={"results": {n: state.resume(n) for n in msg.nodes}})
        if isinstance(msg, Query):
            return self._query(peer, request, msg.what, msg.filters)
        raise ProtocolError(f"a {type(msg).__name__} is not a client request")

    def _query(self, peer: bytes, request: bytes, what: str, filters: dict[str, Any]) -> Message | None:
        state = self.state
        if what == "queue":
            user = filters.get("user")
            return Reply(data=views.queue_rows(state, str(user) if user else None, bool(filters.get("all"))))
        if what == "show":
            return Reply(data=views.job_detail(state, _job_id(filters)))
        if what == "nodes":
            return Reply(data=views.node_rows(state))
        if what == "stats":
            return Reply(data=views.stats(state))
        if what == "wait":
            job_id = _job_id(filters)
            views.job_detail(state, job_id)  # NotFound for a job that never was
            timeout = min(float(filters.get("timeout") or MAX_WAIT), MAX_WAIT)
            self._waiters.setdefault(job_id, []).append((peer, request, self.clock.monotonic() + timeout))
            return None
        raise ProtocolError(f"unknown query {what!r} (queue, show, nodes, stats or wait)")

    def _answer_waiters(self) -> None:
        """Answer `wait` queries whose job ended, or whose time is up (the client asks again)."""
        if not self._waiters:
            return
        now = self.clock.monotonic()
        for job_id in list(self._waiters):
            ended = self.state.ended.get(job_id)
            keep = []
            for peer, request, until in self._waiters[job_id]:
                if ended is not None:
                    data = {"ended": True, "state": ended[0].value, "exit_code": ended[1]}
                    self._replies.append((peer, request, Reply(data=data)))
                elif now >= until:
                    self._replies.append((peer, request, Reply(data={"ended": False})))
                else:
                    keep.append((peer, request, until))
            if keep:
                self._waiters[job_id] = keep
            else:
                del self._waiters[job_id]

    # -- sending (after commit) -----------------------------------------------------------------------------

    def _flush(self) -> None:
        # One ZeroMQ message per peer per turn, each frame one protocol message, in order: a burst of
        # launches to one node then costs one wake-up of the sockets' I/O thread, not one per launch.
        replies: dict[bytes, list[bytes]] = {}
        for peer, request, reply in self._replies:
            replies.setdefault(peer, []).extend((request, encode(reply)))
        self._replies.clear()
        for peer, frames in replies.items():
            self._send(self.clients, [peer, *frames], peer)
        orders: dict[str, list[bytes]] = {}
        for node, msg in self.state.outbox:
            orders.setdefault(node, []).append(encode(msg))
        self.state.outbox.clear()
        for node, frames in orders.items():
            self._send(self.agents, [node.encode(), *frames], node)

    def _send(self, sock: zmq.Socket, frames: list[bytes], peer: Any) -> None:
        try:
            sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as err:
            # Not connected (EHOSTUNREACH) or gone: orders are resent when the agent registers again.
            log.info("nothing sent to %r: %s", peer, err)


def _job_id(filters: dict[str, Any]) -> int:
    value = filters.get("job")
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise ProtocolError(f"a job id is a number, not {value!r}")
    return int(value)
