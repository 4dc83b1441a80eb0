"""The daemon's promise, watched from outside its store: a client hears of a submission, and an agent gets
a launch, only once another connection to the database can read it. The daemon runs in this process (its
loop in a thread) so every send can be checked at the moment it happens."""

from __future__ import annotations

import gc
import sqlite3
import threading
from collections.abc import Iterator

import pytest
import zmq

from jobs.messages import Launch, Register, Reply, decode, encode
from rade.client import SchedulerClient
from scheduler.config import load_config
from scheduler.daemon import SchedulerDaemon

from .conftest import GIB, spec
from .daemons import wait_until


class Watched:
    """A daemon serving in a thread, whose every send is checked against a second database connection."""

    def __init__(self, root) -> None:
        config = root / "scheduler.yaml"
        config.write_text("agents: tcp://127.0.0.1:*\nclients: tcp://127.0.0.1:*\nheartbeat_interval: 1s\n"
                          "misses: 5\nauth: none\n")
        self.daemon = SchedulerDaemon(load_config(str(config), str(root)))
        self.reader = sqlite3.connect(f"file:{self.daemon.config.state}?mode=ro", uri=True,
                                      check_same_thread=False)
        self.seen: list[tuple[str, int, bool]] = []  # (what, job, readable elsewhere when sent)
        self.unbuffered = True
        send = self.daemon._send

        def watched_send(sock, frames, peer):
            self.unbuffered &= not self.daemon.store.has_pending
            if sock is self.daemon.clients:
                for frame in frames[2::2]:
                    reply = decode(frame)
                    data = reply.data if isinstance(reply, Reply) and isinstance(reply.data, dict) else {}
                    jobs = data.get("jobs")  # a submission's answer; stats carry a map of counts here
                    for job in jobs if isinstance(jobs, list) else ():
                        self.seen.append(("reply", job, self._row("SELECT 1 FROM jobs WHERE id=?", job)))
            else:
                for frame in frames[1:]:
                    order = decode(frame)
                    if isinstance(order, Launch):
                        self.seen.append(("launch", order.job_id, self._row(
                            "SELECT 1 FROM tasks WHERE job_id=? AND attempt=?", order.job_id, order.attempt)))
            send(sock, frames, peer)

        self.daemon._send = watched_send
        self.thread = threading.Thread(target=self.daemon.serve, name="scheduler")
        self.thread.start()

    def _row(self, query: str, *args: object) -> bool:
        return self.reader.execute(query, args).fetchone() is not None

    def close(self) -> None:
        self.daemon.stop()
        self.thread.join(timeout=30)
        self.reader.close()


@pytest.fixture
def watched(tmp_path) -> Iterator[Watched]:
    w = Watched(tmp_path)
    try:
        yield w
    finally:
        w.close()


def test_submissions_are_answered_and_launched_only_once_committed(watched):
    agent = zmq.Context.instance().socket(zmq.DEALER)
    agent.setsockopt(zmq.LINGER, 0)
    agent.setsockopt(zmq.ROUTING_ID, b"n1")
    client = SchedulerClient(watched.daemon.endpoints["clients"], timeout=20)
    try:
        agent.connect(watched.daemon.endpoints["agents"])
        agent.send(encode(Register(node="n1", cpus=4, memory=16 * GIB, gpus=0, arch="x86_64")))
        wait_until(lambda: client.stats()["nodes"].get("IDLE") == 1, what="the node registered")
        one = [client.submit(spec(f"one-{i}", cpus=1), user="alice")[0] for i in range(3)]
        many = client.submit_many([spec(f"many-{i}", cpus=1) for i in range(20)], user="alice", window=8)
        wait_until(lambda: client.stats()["placed"] == 4, what="four jobs placed (4 cpus)")
        wait_until(lambda: sum(1 for what, *_ in watched.seen if what == "launch") == 4, what="four launches")
    finally:
        client.close()
        agent.close(0)
    replies = {job for what, job, _ in watched.seen if what == "reply"}
    assert replies == set(one) | set(many)
    assert all(readable for _, _, readable in watched.seen), [s for s in watched.seen if not s[2]]
    assert watched.unbuffered


def test_serving_leaves_the_collector_as_it_found_it(tmp_path):
    before = gc.get_threshold()
    w = Watched(tmp_path)
    try:
        wait_until(lambda: gc.get_threshold() != before, what="the daemon's collector settings")
    finally:
        w.close()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
