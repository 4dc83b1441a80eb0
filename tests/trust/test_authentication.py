"""CURVE on both scheduler sockets: known keys get in, unknown ones get a clear refusal and a log line,
and the scheduler keeps serving."""

from __future__ import annotations

import logging
import time

import pytest
import zmq

from agent.link import AgentLink, CurveKeys
from jobs.keyfiles import read_key_file
from jobs.messages import Register
from rade.client import AuthenticationFailed
from rade.commands.keys import issue_user_key, new_pair

from .secure import register_as

SPEC = {"name": "t", "image": "busybox", "command": ["true"], "resources": {"cpus": 1, "memory": "64M"}}


def refusals(caplog: pytest.LogCaptureFixture, domain: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and r.getMessage().startswith(f"{domain} socket: connection from")]


def test_known_user_key_is_served(secure_scheduler) -> None:
    with secure_scheduler.client("alice") as client:
        assert client.queue() == []


def test_client_without_a_key_is_refused_in_one_clear_line(secure_scheduler, caplog) -> None:
    with secure_scheduler.client(None, timeout=30) as client:
        started = time.monotonic()
        with pytest.raises(AuthenticationFailed) as refused:
            client.queue()
    assert "refused this client: it has no key" in refused.value.message
    assert time.monotonic() - started < 30  # the monitor saw it: not the request's timeout
    with secure_scheduler.client("bob") as client:
        assert client.nodes() == []  # still serving


def test_unknown_user_key_is_refused_and_logged_never_a_crash(secure_scheduler, caplog) -> None:
    for _ in range(3):
        with secure_scheduler.stranger(timeout=30) as client:
            with pytest.raises(AuthenticationFailed) as refused:
                client.queue()
            assert "refused the key in stranger.key" in refused.value.message
    lines = refusals(caplog, "clients")
    assert lines and "unknown user key" in lines[0]
    assert secure_scheduler.daemon.gate.refused >= 3
    with secure_scheduler.client("alice") as client:
        assert client.queue() == []


def test_a_user_key_issued_while_running_is_accepted_without_restart(secure_scheduler) -> None:
    issue_user_key(secure_scheduler.keys, "dave", str(secure_scheduler.root / "dave.key"))
    with secure_scheduler.client("dave") as client:
        assert client.queue() == []


def test_client_expecting_another_scheduler_key_fails_the_handshake(secure_scheduler) -> None:
    from rade.client import Credentials, SchedulerClient

    mine = secure_scheduler.credentials("alice")
    wrong = Credentials(mine.public, mine.secret, new_pair().public, mine.source)
    with SchedulerClient(secure_scheduler.clients, timeout=30, credentials=wrong) as client, \
            pytest.raises(AuthenticationFailed) as failed:
        client.queue()
    assert "the scheduler's key is not the one this client expects" in failed.value.hint


def test_user_key_is_refused_on_the_agent_socket_and_agent_key_on_the_client_socket(secure_scheduler, caplog) -> None:
    from rade.client import Credentials, SchedulerClient

    agent = read_key_file(secure_scheduler.keys.agent_secret, secret=True)
    as_agent = Credentials(agent.public, agent.secret, secure_scheduler.server_key, "agent.key_secret")
    with SchedulerClient(secure_scheduler.clients, timeout=30, credentials=as_agent) as client, \
            pytest.raises(AuthenticationFailed):
        client.queue()
    alice = secure_scheduler.credentials("alice")
    register_as(secure_scheduler, CurveKeys(alice.public, alice.secret, secure_scheduler.server_key), "intruder")
    deadline = time.monotonic() + 20
    while not refusals(caplog, "agents") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any("unknown agent key" in line for line in refusals(caplog, "agents"))
    with secure_scheduler.client("carol") as client:
        assert "intruder" not in {n["name"] for n in client.nodes()}


def test_agent_with_the_agent_key_registers_and_unknown_agent_does_not(secure_scheduler, caplog) -> None:
    agent = read_key_file(secure_scheduler.keys.agent_secret, secret=True)
    assert register_as(secure_scheduler, CurveKeys(agent.public, agent.secret, agent.metadata["scheduler-key"]),
                       "good", wait=10)
    stranger = new_pair()
    assert not register_as(secure_scheduler, CurveKeys(stranger.public, stranger.secret, secure_scheduler.server_key),
                           "evil", wait=1.5)
    assert not register_as(secure_scheduler, None, "plain", wait=1.5)
    with secure_scheduler.client("carol") as client:
        names = {n["name"] for n in client.nodes()}
    assert "good" in names and not names & {"evil", "plain"}
    assert any("unknown agent key" in line for line in refusals(caplog, "agents"))


def test_agent_link_registers_over_curve(secure_scheduler) -> None:
    """The agent's own link (not a hand-made socket) with the agent key."""
    from agent.daemon import agent_keys

    keys = agent_keys(str(secure_scheduler.keys.path))
    assert keys is not None
    context = zmq.Context()
    registered = []

    class Clock:
        def monotonic(self) -> float:
            return time.monotonic()

    def describe() -> Register:
        return Register(node="linked", cpus=2, memory=1 << 30, gpus=0, arch="x86_64")

    link = AgentLink(context, secure_scheduler.agents, describe, runner=None, clock=Clock(), interval=0.5,  # type: ignore[arg-type]
                     curve=keys)
    try:
        link.start()
        deadline = time.monotonic() + 20
        while not link.registered and time.monotonic() < deadline:
            assert link.socket is not None
            if link.socket.poll(100):
                link.on_readable()
            registered.append(link.registered)
        assert link.registered
    finally:
        link.close()
        context.term()


def test_request_after_the_handshake_already_failed_is_refused_not_hung(secure_scheduler) -> None:
    """A request made once the refusal is in: ZeroMQ has dropped the connection, so there is nothing to
    queue it on and a plain send would wait forever."""
    with secure_scheduler.stranger(timeout=3) as client:
        client._sock()
        assert client._monitor is not None and client._monitor.poll(10_000)  # the refusal arrived
        with pytest.raises(AuthenticationFailed):
            client.queue()
