"""A CURVE scheduler for the trust tests (the fixture is in conftest.py): the real daemon in a thread of the test process, on 127.0.0.1,
with keys made by `rade keys` for three users (alice and bob, and carol the admin) and the agent key.

The daemon owns its sockets in its own thread as it does in production; the tests talk to it only over
ZeroMQ, with the real client library or raw sockets, and stop it (and check it did not die) at the end.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import zmq

from agent.link import CurveKeys
from jobs.keyfiles import KeyDir, read_key_file
from jobs.messages import Register, encode
from rade.client import Credentials, SchedulerClient
from rade.commands.keys import new_pair
from scheduler.daemon import SchedulerDaemon

USERS = {"alice": (1001, 1001), "bob": (1002, 1002), "carol": (1003, 1003)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class SecureScheduler:
    root: Path
    keys: KeyDir
    daemon: SchedulerDaemon
    thread: threading.Thread

    @property
    def clients(self) -> str:
        return self.daemon.endpoints["clients"]

    @property
    def agents(self) -> str:
        return self.daemon.endpoints["agents"]

    @property
    def server_key(self) -> str:
        return self.daemon.endpoints["server_key"]

    def credentials(self, user: str) -> Credentials:
        key = read_key_file(self.root / f"{user}.key", secret=True)
        assert key.secret is not None
        return Credentials(key.public, key.secret, key.metadata["scheduler-key"], str(self.root / f"{user}.key"))

    def client(self, user: str | None, timeout: float = 10.0) -> SchedulerClient:
        return SchedulerClient(self.clients, timeout=timeout,
                               credentials=self.credentials(user) if user else None)

    def stranger(self, timeout: float = 10.0) -> SchedulerClient:
        """A client with a well-formed key the scheduler never issued."""
        pair = new_pair()
        return SchedulerClient(self.clients, timeout=timeout,
                               credentials=Credentials(pair.public, pair.secret, self.server_key, "stranger.key"))


def agent_socket(scheduler: SecureScheduler, keys: CurveKeys | None, node: str) -> tuple[zmq.Context, zmq.Socket]:
    """A DEALER connected to the agent socket as node `node`, with `keys` (None: no CURVE)."""
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, node.encode())
    sock.setsockopt(zmq.SNDTIMEO, 2000)  # a refused handshake leaves nothing to queue a message on
    if keys is not None:
        sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server.encode())
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public.encode())
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret.encode())
    sock.connect(scheduler.agents)
    return context, sock


def register_as(scheduler: SecureScheduler, keys: CurveKeys | None, node: str, wait: float = 1.0) -> bool:
    """Register as agent `node` with `keys`; whether the scheduler answered within `wait` seconds."""
    context, sock = agent_socket(scheduler, keys, node)
    try:
        try:
            sock.send(encode(Register(node=node, cpus=2, memory=1 << 30, gpus=0, arch="x86_64")))
        except zmq.Again:
            return False
        return bool(sock.poll(wait * 1000))
    finally:
        sock.close(0)
        context.term()


def the_agent_key(scheduler: SecureScheduler) -> CurveKeys:
    agent = read_key_file(scheduler.keys.agent_secret, secret=True)
    assert agent.secret is not None
    return CurveKeys(agent.public, agent.secret, agent.metadata["scheduler-key"])
