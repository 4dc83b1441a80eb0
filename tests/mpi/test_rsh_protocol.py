"""The rsh protocol: frames and handshake without I/O, the `rade-rsh` client against a peer on a socket
pair, and the agent's server refusing what it must refuse (over loopback TCP, no container needed)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import rsh, rsh_server, rsh_service
from agent.state import AgentState, TaskFile

KEY = bytes(range(32))


@given(st.lists(st.tuples(st.sampled_from(sorted(rsh.FRAME_TYPES)), st.binary(max_size=300)), max_size=8),
       st.integers(min_value=1, max_value=50))
def test_frames_come_out_as_they_went_in_whatever_the_chunking(frames, chunk):
    wire = b"".join(rsh.encode_frame(kind, payload) for kind, payload in frames)
    reader = rsh.FrameReader()
    out = []
    for start in range(0, len(wire), chunk):
        out += reader.feed(wire[start:start + chunk])
    assert out == frames and reader.pending == 0


def test_unknown_or_oversized_frames_are_protocol_errors():
    with pytest.raises(rsh.RshProtocolError, match="unknown frame"):
        rsh.FrameReader().feed(b"Z\x00\x00\x00\x00")
    with pytest.raises(rsh.RshProtocolError, match="over the"):
        rsh.FrameReader().feed(b"O\x7f\x00\x00\x00")
    assert rsh.decode_exit(rsh.FrameReader().feed(rsh.encode_exit(-3))[0][1]) == -3


def test_a_hello_is_authentic_only_under_its_own_jobs_secret():
    nonce = os.urandom(32)
    secret = rsh.job_secret(KEY, 7, 0)
    request, body, mac = rsh.read_hello(rsh.make_hello(secret, nonce, {"op": "run", "job": 7, "attempt": 0,
                                                                      "argv": ["orted"]}))
    assert request["job"] == 7 and request["argv"] == ["orted"]
    assert rsh.is_authentic(secret, nonce, body, mac)
    assert not rsh.is_authentic(rsh.job_secret(KEY, 8, 0), nonce, body, mac)
    assert not rsh.is_authentic(rsh.job_secret(KEY, 7, 1), nonce, body, mac)
    assert not rsh.is_authentic(secret, os.urandom(32), body, mac)  # a replay under another challenge


def test_a_malformed_hello_is_refused():
    secret, nonce = rsh.job_secret(KEY, 1, 0), b"n"
    for request, why in (({"op": "shell", "job": 1, "attempt": 0}, "unknown operation"),
                         ({"op": "run", "job": "1", "attempt": 0, "argv": ["x"]}, "job is not a number"),
                         ({"op": "run", "job": 1, "attempt": 0, "argv": []}, "no command")):
        with pytest.raises(rsh.RshProtocolError, match=why):
            rsh.read_hello(rsh.make_hello(secret, nonce, request))
    with pytest.raises(rsh.RshProtocolError, match="not JSON"):
        rsh.read_hello(b"{" + b"x" * 40)


def test_rsh_arguments_skip_ssh_options_before_the_host():
    assert rsh.parse_rsh_args(["n2", "orted", "-mca", "x"]) == ("n2", ["orted", "-mca", "x"])
    assert rsh.parse_rsh_args(["-x", "-l", "root", "-p", "22", "n2", "hydra_pmi_proxy"]) == ("n2", ["hydra_pmi_proxy"])
    with pytest.raises(ValueError, match="usage"):
        rsh.parse_rsh_args(["-x"])
    with pytest.raises(ValueError, match="no command"):
        rsh.parse_rsh_args(["n2"])


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    (tmp_path / rsh.KEY_FILE).write_text(rsh.job_secret(KEY, 5, 2).hex())
    (tmp_path / rsh.JOB_FILE).write_text(json.dumps({"job": 5, "attempt": 2, "node": "n1", "port": 0,
                                                     "addresses": {"n2": "127.0.0.1"}}))
    return tmp_path


def run_client(job_dir: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    job = json.loads((job_dir / rsh.JOB_FILE).read_text())
    (job_dir / rsh.JOB_FILE).write_text(json.dumps({**job, "port": port}))
    return subprocess.run([sys.executable, "-I", "-S", rsh.__file__, *args], input="to the ranks\n",
                          capture_output=True, text=True, timeout=60, env={"RADE_MPI_DIR": str(job_dir)},
                          check=False)


def test_client_carries_stdio_both_ways_and_exits_with_the_remote_status(job_dir: Path):
    """A scripted peer on the other end: it checks the handshake, echoes stdin to stdout, exits 7."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: dict[str, object] = {}

    def peer() -> None:
        conn, _ = listener.accept()
        with conn:
            nonce = os.urandom(32)
            conn.sendall(rsh.encode_frame(rsh.CHALLENGE, nonce))
            reader, stdin = rsh.FrameReader(), b""
            while True:
                frames = reader.feed(conn.recv(65536))
                for kind, payload in frames:
                    if kind == rsh.HELLO:
                        request, body, mac = rsh.read_hello(payload)
                        seen["request"] = request
                        seen["authentic"] = rsh.is_authentic(rsh.job_secret(KEY, 5, 2), nonce, body, mac)
                    elif kind == rsh.STDIN and payload:
                        stdin += payload
                    elif kind == rsh.STDIN:
                        conn.sendall(rsh.encode_frame(rsh.STDOUT, stdin) + rsh.encode_frame(rsh.STDERR, b"warn\n")
                                     + rsh.encode_exit(7))
                        return

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    try:
        result = run_client(job_dir, listener.getsockname()[1], "-x", "n2", "orted", "--hnp-uri", "'a b'")
    finally:
        thread.join(30)
        listener.close()
    assert seen["authentic"] is True
    assert seen["request"] == {"op": "run", "job": 5, "attempt": 2, "argv": ["orted --hnp-uri 'a b'"], "v": 1}
    assert (result.returncode, result.stdout, result.stderr) == (7, "to the ranks\n", "warn\n")


@contextlib.contextmanager
def service(root: Path) -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    stop_r, stop_w = os.pipe()
    server = rsh_service.RshService(str(root), "n2", listener, KEY)
    thread = threading.Thread(target=server.serve_forever, args=(stop_r,), daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        os.close(stop_w)
        thread.join(30)
        os.close(stop_r)
        listener.close()


def test_server_refuses_another_jobs_secret_and_jobs_it_does_not_run(job_dir: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(rsh_service, "START_WAIT", 0.5)  # how long a start waits for the container
    root = tmp_path / "root"
    AgentState(root, "n2").tasks.mkdir(parents=True)
    AgentState(root, "n2").save(TaskFile(5, 1, 2, container_id="c" * 64, cgroup_slice="s"))
    with service(root) as port:
        forged = job_dir / "forged"
        forged.mkdir()
        (forged / rsh.KEY_FILE).write_text(rsh.job_secret(KEY, 6, 2).hex())  # job 6's secret
        (forged / rsh.JOB_FILE).write_text(json.dumps({"job": 5, "attempt": 2, "addresses": {"n2": "127.0.0.1"}}))
        refused = run_client(forged, port, "n2", "id")
        assert refused.returncode == rsh.FAILED and "not authenticated for job 5" in refused.stderr
        stopped = run_client(job_dir, port, "n2", "id")  # job 5 attempt 2 has a task here, not running
        assert stopped.returncode == rsh.FAILED and "job 5 has no running container on node n2" in stopped.stderr
        (job_dir / rsh.KEY_FILE).write_text(rsh.job_secret(KEY, 5, 3).hex())
        job = json.loads((job_dir / rsh.JOB_FILE).read_text())
        (job_dir / rsh.JOB_FILE).write_text(json.dumps({**job, "attempt": 3}))
        absent = run_client(job_dir, port, "n2", "id")
        assert absent.returncode == rsh.FAILED and "job 5 runs nothing on node n2" in absent.stderr
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.recv(100)
            sock.sendall(b"garbage!")
            assert b"unknown frame type" in sock.recv(1000)


def test_the_agents_key_is_made_once_and_shared(tmp_path: Path):
    first = rsh_server.load_cluster_key(tmp_path)
    assert len(first) == 32 and rsh_server.load_cluster_key(tmp_path) == first
    assert os.stat(rsh_server.cluster_key_path(tmp_path)).st_mode & 0o777 == 0o600
