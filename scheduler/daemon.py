"""The scheduler daemon: two ZeroMQ ROUTER sockets (agents, clients) owned by one thread, one poll loop.

Each turn of the loop reads what has arrived (a bounded batch from each socket), lets the state change
and runs the clock's checks, commits the store, and only then sends what that decided: replies to clients
and orders to agents. Then it runs a scheduling pass, commits again, and sends the pass's launches. So
every answer and every order stands on committed state, one commit covers a whole batch of submissions
(group commit) and a whole pass's placements, and a client is answered without waiting for the pass its
job joins. After answering, the pass waits a moment (a millisecond, 32 requests at most) for the next
request, so a stream of submissions is answered back to back and placed by one pass. Timers come from the
clock and the poll timeout; nothing sleeps.

Durability: the store is SQLite in WAL mode, `synchronous: normal` by default, so a commit is in the WAL
file before anything is sent and survives any death of this process (SIGKILL included); only a power cut
or a kernel crash may lose the last commits. `synchronous: full` in the configuration adds an fsync to
every commit for sites that want those too (see `scheduler.store`). The WAL's pages are copied into the
database file by a thread of its own (`scheduler.checkpoint`, with `normal`), so no client's commit waits
for that copy.

Frames: an agent (a DEALER whose routing id is its node name) sends messages, one protocol message a
frame. A client sends pairs of frames: a request id it chose and the message; the reply carries the same
id, so a client may keep many requests in flight. Either way the daemon may put several in one ZeroMQ
message (several frames) to the same peer. A frame that does not decode is logged and dropped (a client still gets an error
reply when its request id was readable): the daemon keeps serving whatever arrives. What an agent's message
means is `scheduler.agents`'s to say, what a client's request does and answers `scheduler.requests`'s.

With `auth: curve` both sockets are CURVE servers and a ZAP handler (`scheduler.auth`) polled in this
same loop decides who connects; a client request is then made by the user its connection's key
belongs to (the message's User-Id), whatever the request claims, and `scheduler.access` decides what
that user may do. Launch orders carry the uid and gid the owner's tasks run as and the pids limit.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import threading
import time
import uuid
from typing import Any

import zmq

from jobs.errors import ProtocolError, RadeError
from jobs.messages import ErrorReply, Heartbeat, Message, Register, TaskUpdate, decode, encode
from scheduler import views
from scheduler.access import Access
from scheduler.agents import AgentDesk
from scheduler.auth import AGENTS_DOMAIN, CLIENTS_DOMAIN, ZAP_ENDPOINT, Gatekeeper
from scheduler.checkpoint import WRITER_LIMIT, Checkpointer
from scheduler.clock import Clock, SystemClock
from scheduler.config import SchedulerConfig
from scheduler.drain import next_deadline
from scheduler.metrics import SchedulerMetrics
from scheduler.nodes import Liveness
from scheduler.policy import SchedulingPolicy
from scheduler.requests import ClientDesk, Outgoing
from scheduler.state import ClusterState
from scheduler.store import Store

log = logging.getLogger(__name__)

BATCH = 2000
NOBODY = 65534
PLACEMENTS_PER_PASS = 5000
PASSES_DEFERRED = 32  # turns in a row a pass may wait for client requests
REQUEST_GAP_MS = 1  # how long after answering a pass waits for a next request (zmq counts whole ms)
GC_THRESHOLDS = (100_000, 50, 100)


class SchedulerDaemon:
    """The daemon: build it with a config, call `serve()`; `stop()` from a signal handler or another thread."""

    def __init__(self, config: SchedulerConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.store = Store(config.state, config.synchronous)
        self.state = ClusterState(self.store, self.clock, Liveness(config.heartbeat_interval, config.misses),
                                  policy=SchedulingPolicy(config.policy))
        self.metrics: SchedulerMetrics | None = None
        self.desk = AgentDesk(self.state)
        self._owners: dict[str, tuple[int, int]] = {}
        self.state.run_as = self._run_as
        self.state.pids_limit = config.pids_limit
        self.instance = uuid.uuid4().hex[:12]
        self._stopping = threading.Event()
        self._replies: list[Outgoing] = []
        root = config.root or os.path.dirname(os.path.dirname(config.state))
        protected = [os.path.dirname(config.state), config.keys] + [
            os.path.join(root, d) for d in ("scheduler", "keys", "agent", "containers", "images", "logs", "cluster",
                                            "volumes")]
        self.access = Access(config.admins, config.users, config.allowed_volumes, protected)
        self.client_desk = ClientDesk(self.state, self.access, self.clock)
        self.context = zmq.Context()
        self.gate: Gatekeeper | None = None
        self.zap: zmq.Socket | None = None
        self._curve: tuple[bytes, str] | None = None
        if config.auth == "curve":
            self._start_zap()
        self.agents = self._bind(config.agents, AGENTS_DOMAIN)
        self.clients = self._bind(config.clients, CLIENTS_DOMAIN)
        self.endpoints = {"agents": self.agents.getsockopt_string(zmq.LAST_ENDPOINT),
                          "clients": self.clients.getsockopt_string(zmq.LAST_ENDPOINT)}
        if self._curve is not None:
            self.endpoints["server_key"] = self._curve[1]
        else:
            log.warning("auth: none: anyone who reaches %s and %s is believed; use 'auth: curve' outside a test "
                        "network", config.agents, config.clients)
        if config.policy.metrics_port is not None:
            self.metrics = SchedulerMetrics()
            host = _host(config.clients)
            port = self.metrics.serve(config.policy.metrics_port, host)
            self.endpoints["metrics"] = f"http://{host}:{port}/metrics"
        self._write_endpoints()
        log.info("scheduler %s: agents on %s, clients on %s, state in %s", self.instance,
                 self.endpoints["agents"], self.endpoints["clients"], config.state)

    def _start_zap(self) -> None:
        """The ZAP handler's socket, bound before any CURVE socket so no handshake finds it missing."""
        from jobs.keyfiles import KeyDir, read_key_file

        keys = KeyDir(_as_path(self.config.keys))
        pair = read_key_file(keys.scheduler_secret, secret=True)
        assert pair.secret is not None
        self._curve = (pair.secret.encode(), pair.public)
        self.gate = Gatekeeper(keys, self.clock.monotonic)
        self.zap = self.context.socket(zmq.REP)
        self.zap.setsockopt(zmq.LINGER, 0)
        self.zap.bind(ZAP_ENDPOINT)
        log.info("auth: curve: %d agent keys and %d user keys known (%s)", len(self.gate.agents),
                 len(self.gate.users), self.config.keys)

    def _bind(self, address: str, domain: str) -> zmq.Socket:
        sock = self.context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        if self._curve is not None:
            sock.setsockopt(zmq.CURVE_SERVER, 1)
            sock.setsockopt(zmq.CURVE_SECRETKEY, self._curve[0])
            sock.setsockopt(zmq.ZAP_DOMAIN, domain.encode())
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
        # The state is a great many small immutable objects that live long and rarely form cycles; with
        # the collector's default thresholds its scans of them took a third of a busy scheduler's time.
        # What was loaded is set aside for good (frozen), and collections come after far more allocations.
        previous = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        # WAL pages are copied into the database file by a thread of its own, not inside a commit. Not with
        # `synchronous: full`: there every commit waits for an fsync of the WAL, and the thread's own fsyncs
        # beside them made those commits slower than the copies it took off them.
        checkpointer = None
        if self.store.path != ":memory:" and self.config.synchronous.upper() == "NORMAL":
            checkpointer = Checkpointer(self.store.path)
        if checkpointer is not None:
            self.store.checkpoint_at(WRITER_LIMIT)
            checkpointer.start()
        poller = zmq.Poller()
        poller.register(self.agents, zmq.POLLIN)
        poller.register(self.clients, zmq.POLLIN)
        if self.zap is not None:
            poller.register(self.zap, zmq.POLLIN)
        gap = zmq.Poller()  # the client socket alone, kept: `Socket.poll` builds a poller on every call
        gap.register(self.clients, zmq.POLLIN)
        next_tick = self.clock.monotonic()
        deferred = 0
        known: dict[zmq.Socket, int] | None = None  # what is ready, when the turn before found out
        try:
            while not self._stopping.is_set():
                if known is not None:
                    ready, known = known, None
                else:
                    timeout = max(0.0, min(next_tick - self.clock.monotonic(), 0.25))
                    if self.state.dirty:
                        timeout = 0.0
                    ready = dict(poller.poll(timeout * 1000))
                if self.zap is not None and self.zap in ready:
                    self._answer_zap()
                if self.agents in ready:
                    self._read_agents()
                asked = self.clients in ready and self._read_clients()
                if self.clock.monotonic() >= next_tick:
                    self.state.tick()
                    next_tick = self.clock.monotonic() + self._tick_every()
                    if self.metrics is not None:
                        counts = views.stats(self.state)
                        self.metrics.update(counts["jobs"], counts["nodes"], counts["placed"], counts["ended"])
                self._replies.extend(self.client_desk.answer_waiters())
                # What was read is answered before the pass: a client's next request (or its encoding)
                # overlaps the pass, and the pass's launches get a commit of their own below.
                self.store.commit()
                self._flush()
                # Requests first: after answering, the pass waits for a next request that comes within a
                # moment (a few turns at most), so a stream of submissions is answered back to back and one
                # pass takes them all; a lone submission is placed a moment later.
                if asked and deferred < PASSES_DEFERRED and gap.poll(REQUEST_GAP_MS):
                    deferred += 1
                    known = {self.clients: zmq.POLLIN}  # agents wait for the pass's turn (32 at most)
                    continue
                deferred = 0
                passes, began = self.state.passes, time.perf_counter()
                self.state.schedule(limit=PLACEMENTS_PER_PASS)
                if self.metrics is not None and self.state.passes != passes:
                    self.metrics.observe_cycle(time.perf_counter() - began)
                self.store.commit()
                self._flush()
        finally:
            if checkpointer is not None:
                checkpointer.stop()
            gc.set_threshold(*previous)
            gc.unfreeze()
            self.close()

    def _tick_every(self) -> float:
        every = self.state.liveness.interval / 2
        ahead = next_deadline(self.state.nodes.values(), self.clock.time())
        return max(0.05, min(every, ahead) if ahead is not None else every)

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
        self.store.close()
        self.agents.close(0)
        self.clients.close(0)
        if self.zap is not None:
            self.zap.close(0)
        self.context.term()

    def _answer_zap(self) -> None:
        assert self.zap is not None and self.gate is not None
        for _ in range(BATCH):
            try:
                frames = self.zap.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                reply = self.gate.answer(frames)
            except Exception:  # a handshake refused, the loop keeps serving
                log.exception("ZAP request failed")
                reply = [b"1.0", frames[1] if len(frames) > 1 else b"", b"500", b"internal error", b"", b""]
            self.zap.send_multipart(reply)

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

    def _read_clients(self) -> bool:
        """Read a batch of requests and queue their replies; whether any request was read."""
        asked = False
        for turn in range(BATCH):
            # The first is there (the poll said so); whether more wait is asked rather than learnt from
            # zmq.Again: one request a turn is the common case, and an exception cost more than the question.
            if turn and not self.clients.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                return asked
            # Frames as bytes (cheaper for small ones), except with CURVE, whose user id only a Frame carries.
            curve = self._curve is not None
            try:
                parts = self.clients.recv_multipart(zmq.NOBLOCK, copy=not curve)
            except zmq.Again:
                return asked
            frames = [part.bytes for part in parts] if curve else parts
            if len(frames) < 3 or len(frames) % 2 == 0:
                log.warning("client socket: a message of %d frames dropped (expected id, message pairs)",
                            len(frames))
                continue
            # Who asks: the key's owner as the ZAP handler said, never the user a request names.
            user = parts[1].get("User-Id") if curve else None
            peer = frames[0]
            asked = True
            for request, frame in zip(frames[1::2], frames[2::2]):
                try:
                    reply = self.client_desk.answer(peer, request, decode(frame), user)
                except RadeError as err:
                    reply = ErrorReply(message=err.message, hint=err.hint)
                except Exception as err:
                    log.exception("client request failed")
                    reply = ErrorReply(message=f"internal error: {type(err).__name__}: {err}")
                if reply is not None:
                    self._replies.append((peer, request, reply))
        return asked

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
        self._owners.clear()  # the passwd is read again next turn
        for node, frames in orders.items():
            self._send(self.agents, [node.encode(), *frames], node)

    def _run_as(self, user: str) -> tuple[int, int]:
        """The uid and gid a user's tasks run as: one passwd lookup per user per turn, not one per launch."""
        ids = self._owners.get(user)
        if ids is None:
            try:
                ids = self.access.ids(user)
            except RadeError as err:
                # Never root by default: an owner without a uid (gone from the passwd since, or named by
                # an unauthenticated request) runs as nobody.
                log.warning("%s: the user's tasks started now run as nobody", err.message)
                ids = (NOBODY, NOBODY)
            self._owners[user] = ids
        return ids

    def _send(self, sock: zmq.Socket, frames: list[bytes], peer: Any) -> None:
        try:
            sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as err:
            # Not connected (EHOSTUNREACH) or gone: orders are resent when the agent registers again.
            log.info("nothing sent to %r: %s", peer, err)


def _host(endpoint: str) -> str:
    """The host of a tcp:// endpoint (0.0.0.0 for `*`), where the metrics endpoint listens too."""
    host = endpoint.split("://", 1)[-1].rpartition(":")[0] or "127.0.0.1"
    return "0.0.0.0" if host == "*" else host.strip("[]")


def _as_path(text: str):
    from pathlib import Path

    return Path(text)
