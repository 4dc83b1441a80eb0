"""Random and malformed frames at the daemons' sockets, before authentication (raw bytes at the TCP
port, ZeroMQ without a key, an unknown key) and after it (an admitted user's and agent's connection):
the daemon never dies and keeps answering a well-formed request."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.messages import MESSAGE_TYPES, PROTOCOL_VERSION, Heartbeat, Launch, Registered, decode, encode
from rade.commands.keys import new_pair

from .secure import agent_socket, the_agent_key

FIELDS = sorted({name for cls in MESSAGE_TYPES.values() for name in cls.__dataclass_fields__})
SCALARS = st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=20) \
    | st.binary(max_size=20)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                              max_size=4), max_leaves=12)


@st.composite
def message_like(draw) -> bytes:
    """A msgpack map that looks like a protocol message: a real or bogus type and version, fields of any
    type (most frames then pass the first checks and reach the field checks)."""
    body = {"v": draw(st.sampled_from([PROTOCOL_VERSION, 0, 2, "1", None])),
            "t": draw(st.sampled_from([*MESSAGE_TYPES, "nope", 7]))}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=6)):
        body[name] = draw(VALUES)
    return msgpack.packb(body, use_bin_type=True)


FRAME = st.binary(max_size=300) | message_like()
FRAMES = st.lists(FRAME, min_size=0, max_size=5)
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _still_serving(secure_scheduler) -> None:
    assert secure_scheduler.thread.is_alive(), "the scheduler's loop died"
    with secure_scheduler.client("carol", timeout=20) as client:
        assert isinstance(client.nodes(), list)


def _port(endpoint: str) -> tuple[str, int]:
    parts = urlsplit(endpoint)
    return parts.hostname or "127.0.0.1", parts.port or 0


@FUZZ
@given(data=st.lists(st.binary(min_size=1, max_size=400), min_size=1, max_size=4), which=st.sampled_from(["clients", "agents"]))
def test_raw_bytes_at_the_ports_before_any_handshake(secure_scheduler, data, which) -> None:
    address = _port(getattr(secure_scheduler, which))
    with socket.create_connection(address, timeout=5) as raw:
        for chunk in data:
            try:
                raw.sendall(chunk)
            except OSError:
                break  # the daemon hung up on us: what it should do
    assert secure_scheduler.thread.is_alive()


@FUZZ
@given(frames=FRAMES, keyed=st.booleans())
def test_frames_from_unauthenticated_peers(secure_scheduler, frames, keyed) -> None:
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if keyed:
        pair = new_pair()
        sock.setsockopt(zmq.CURVE_SERVERKEY, secure_scheduler.server_key.encode())
        sock.setsockopt(zmq.CURVE_PUBLICKEY, pair.public.encode())
        sock.setsockopt(zmq.CURVE_SECRETKEY, pair.secret.encode())
    sock.connect(secure_scheduler.clients)
    try:
        if frames:
            with contextlib.suppress(zmq.Again):  # refused before the frames could be queued
                sock.send_multipart(frames, zmq.NOBLOCK)
        assert not sock.poll(50), "an unauthenticated peer got an answer"
    finally:
        sock.close(0)
        context.term()
    assert secure_scheduler.thread.is_alive()


@FUZZ
@given(frames=FRAMES, request_ids=st.lists(st.binary(max_size=12), min_size=1, max_size=3))
def test_frames_from_an_admitted_user(secure_scheduler, frames, request_ids) -> None:
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    creds = secure_scheduler.credentials("alice")
    sock.setsockopt(zmq.CURVE_SERVERKEY, creds.server.encode())
    sock.setsockopt(zmq.CURVE_PUBLICKEY, creds.public.encode())
    sock.setsockopt(zmq.CURVE_SECRETKEY, creds.secret.encode())
    sock.connect(secure_scheduler.clients)
    try:
        message = [part for pair in zip(request_ids, frames) for part in pair] or frames or [b""]
        sock.send_multipart(message)
        if sock.poll(2000):  # the answers that come are replies or errors, never anything else
            for frame in sock.recv_multipart()[1::2]:
                assert type(decode(frame)).__name__ in ("Reply", "ErrorReply")
    finally:
        sock.close(0)
        context.term()
    assert secure_scheduler.thread.is_alive()


@FUZZ
@given(frames=FRAMES, node=st.text(min_size=1, max_size=12))
def test_frames_from_an_admitted_agent(secure_scheduler, frames, node) -> None:
    context, sock = agent_socket(secure_scheduler, the_agent_key(secure_scheduler), node)
    try:
        sock.send_multipart(frames or [b""])
    finally:
        sock.close(0)
        context.term()
    assert secure_scheduler.thread.is_alive()


def test_scheduler_serves_after_all_that(secure_scheduler) -> None:
    for _ in range(20):
        with socket.create_connection(_port(secure_scheduler.clients), timeout=5) as raw:
            raw.sendall(os.urandom(256))
    _still_serving(secure_scheduler)


# -- the agent ------------------------------------------------------------------------------------------------

class FakeScheduler:
    """A CURVE ROUTER with the scheduler's key where a real `rade agent` connects; it answers the agent's
    registration, then sends whatever the test says."""

    def __init__(self, keys_dir: Path) -> None:
        from jobs.keyfiles import KeyDir, read_key_file

        pair = read_key_file(KeyDir(keys_dir).scheduler_secret, secret=True)
        self.context = zmq.Context()
        self.sock = self.context.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.CURVE_SERVER, 1)
        self.sock.setsockopt(zmq.CURVE_SECRETKEY, pair.secret.encode())
        self.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.node = b""

    def receive(self, timeout: float, until=lambda got: bool(got)) -> list[object]:
        """What the agent sends, until `until(got)` holds or `timeout` passes."""
        got: list[object] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(got):
            if self.sock.poll(50):
                frames = self.sock.recv_multipart()
                self.node = frames[0]
                for frame in frames[1:]:
                    got.append(decode(frame))
                    if isinstance(got[-1], Heartbeat):  # echoed, as the scheduler does, so the link stays
                        self.sock.send_multipart([self.node, frame])
        return got

    def close(self) -> None:
        self.sock.close(0)
        self.context.term()


@pytest.mark.root
@pytest.mark.slow
def test_agent_survives_random_and_malformed_orders(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the real agent needs root (cgroups, containers)")
    from jobs.keyfiles import KeyDir
    from rade.commands.keys import init_keys

    init_keys(KeyDir(tmp_path / "keys"))
    fake = FakeScheduler(tmp_path / "keys")
    with open(tmp_path / "agent.log", "wb") as log:
        agent = subprocess.Popen([sys.executable, "-m", "rade", "--root", str(tmp_path), "agent", "--scheduler",
                                  fake.endpoint, "--name", "fuzzed"], stdout=log, stderr=log,
                                 stdin=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[2])
    try:
        registered = fake.receive(30, lambda got: any(type(m).__name__ == "Register" for m in got))
        assert registered, (tmp_path / "agent.log").read_text()
        fake.sock.send_multipart([fake.node, encode(Registered(node="fuzzed", heartbeat_interval=0.3))])

        @settings(max_examples=150, deadline=None)
        @given(frames=st.lists(FRAME, min_size=1, max_size=4))
        def orders(frames: list[bytes]) -> None:
            fake.sock.send_multipart([fake.node, *frames])
            assert agent.poll() is None, (tmp_path / "agent.log").read_text()[-2000:]

        orders()
        # Still the agent it was: a launch of an image it lacks fails cleanly, and it keeps heartbeating.
        launch = Launch(job_id=987654321, task_id=0, attempt=0, spec={"name": "x", "image": "missing", "command": ["true"]},
                        nodes=("fuzzed",), cpus=(), memory=0)
        fake.sock.send_multipart([fake.node, encode(Registered(node="fuzzed", heartbeat_interval=0.3))])
        fake.receive(5, lambda got: any(isinstance(m, Heartbeat) for m in got))
        def failed(got: list[object]) -> bool:
            return any(type(m).__name__ == "TaskUpdate" and m.job_id == launch.job_id and m.state.value == "FAILED"
                       for m in got)
        answered = []
        for _ in range(20):  # resent as the scheduler would, should a reconnect have lost it
            fake.sock.send_multipart([fake.node, encode(launch)])
            answered += fake.receive(1, failed)
            if failed(answered):
                break
        assert failed(answered), (tmp_path / "agent.log").read_text()[-2000:]
        assert fake.receive(10, lambda got: any(isinstance(m, Heartbeat) for m in got))
        assert agent.poll() is None
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
        fake.close()
        from agent.tasks import stop_leftovers

        stop_leftovers(str(tmp_path), "fuzzed")
    assert json.dumps(agent.returncode) == "0"


SPEC_KEYS = ["name", "image", "command", "workdir", "env", "resources", "mpi", "tasks", "network", "volumes",
             "placement", "time_limit", "priority", "requeue", "depends_on", "array", "bogus"]
BASE_SPEC = {"name": "fz", "image": "busybox", "command": ["true"], "resources": {"cpus": 1, "memory": "64M"}}


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(SPEC_KEYS), VALUES, max_size=4),
       dropped=st.lists(st.sampled_from(list(BASE_SPEC)), max_size=2))
def test_random_job_specs_are_queued_or_refused_clearly(secure_scheduler, changes, dropped) -> None:
    from rade.client import SchedulerRefused

    spec = {k: v for k, v in {**BASE_SPEC, **changes}.items() if k not in dropped}
    with secure_scheduler.client("alice", timeout=20) as client:
        try:
            ids = client.submit(spec)
        except SchedulerRefused as refused:
            assert refused.message and not refused.message.startswith("internal error"), refused.message
        else:
            assert ids and all(isinstance(i, int) for i in ids)
    assert secure_scheduler.thread.is_alive()
