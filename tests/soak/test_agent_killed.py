"""Regression from the soak: an agent SIGKILLed left its forked rsh server running, holding the node's
rsh port, so the restarted agent ran without one (MPI jobs could not reach the node) and nothing ever
stopped the orphan. The server now ends with the agent that forked it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

SCRIPT = """
import os, signal, sys
from agent.rsh_server import start_rsh_server
server = start_rsh_server(sys.argv[1], "killed", int(sys.argv[2]))
print(server.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        return sock.getsockname()[1]


def test_rsh_server_ends_with_its_sigkilled_agent(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the rsh server's state dir is root's")
    port = free_port()
    agent = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path), str(port)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, cwd=Path(__file__).resolve().parents[2])
    assert agent.stdout is not None
    server = int(agent.stdout.readline())
    agent.stdout.close()
    try:
        agent.wait(timeout=30)
        deadline = time.monotonic() + 20
        while Path(f"/proc/{server}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{server}").exists(), "the rsh server outlived its agent"
        with socket.socket() as again:  # the port is free for the next agent
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            again.bind(("0.0.0.0", port))
    finally:
        if Path(f"/proc/{server}").exists():
            os.kill(server, 9)
