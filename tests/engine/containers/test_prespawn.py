"""A supervisor forked before its container exists (`prespawn`): it does nothing if the container never
comes, and a supervisor that cannot get ready says why on the ready pipe and to its preconnected client;
`rade run` works the same whether its supervisor is forked before the record is made or after.

Each case runs in a fresh interpreter, since `prespawn` forks its caller (which must have no threads)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

CANCEL = """
import json, os, sys
from engine.containers.spawn import prespawn

pending = prespawn(sys.argv[1], fork_once=True)
pid = pending.pid
pending.cancel()  # reaps it
try:
    os.kill(pid, 0)
    alive = True
except ProcessLookupError:
    alive = False
print(json.dumps({"alive": alive, "made": sorted(os.listdir(sys.argv[1]))}))
"""

BROKEN = """
import json, os, sys
sys.modules["engine.launch"] = None  # its import fails in the supervisor, as in a broken install
from engine.containers.attach import FrameDecoder
from engine.containers.spawn import prespawn

pending = prespawn(sys.argv[1], wait_attach=True, fork_once=True, preconnect=True)
reader = pending.start("0" * 64, None)
ready = reader.until_started()
sock = reader.attach
sock.settimeout(30)
data = b""
while chunk := sock.recv(65536):
    data += chunk
frames = [[int(m.kind), m.json()] for m in FrameDecoder().feed(data)]
reader.close()
_, status = os.waitpid(pending.pid, 0)
print(json.dumps({"ready": ready, "frames": frames, "status": os.waitstatus_to_exitcode(status)}))
"""


def run_script(script: str, root: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", script, str(root)], cwd=REPO, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_pending_supervisor_whose_container_never_comes_exits_having_made_nothing(tmp_path):
    out = run_script(CANCEL, tmp_path)
    assert out == {"alive": False, "made": []}


def test_a_pending_supervisor_that_cannot_get_ready_says_why_on_the_pipe_and_to_its_client(tmp_path):
    out = run_script(BROKEN, tmp_path)
    assert out["ready"]["state"] == "error"
    assert out["ready"]["exit_code"] == 125
    assert "supervisor could not start" in out["ready"]["message"]
    assert "engine.launch" in out["ready"]["message"]
    (kind, body), = out["frames"]
    assert kind == 20  # Frame.ERROR
    assert body["message"] == out["ready"]["message"] and body["exit_code"] == 125
    assert out["status"] == 125


RUN = """
import sys
import engine.containers.spawn as spawn

idle = sys.argv[1] == "idle"
spawn.has_idle_cpu = lambda: idle  # the branch under test, whatever the machine's load now
from rade.cli import run

sys.exit(run(["--root", sys.argv[2], *sys.argv[3:]]))
"""


def run_cli(root: Path, idle: bool, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", RUN, "idle" if idle else "busy", str(root), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.root
@pytest.mark.parametrize("idle", [True, False], ids=["supervisor-first", "record-first"])
def test_run_gives_output_and_exit_code_whichever_is_forked_first(rade, image_root, idle):
    result = run_cli(image_root, idle, "run", "--rm", "--network", "none", "busybox:latest",
                     "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    result = run_cli(image_root, idle, "run", "-d", "--network", "none", "busybox:latest", "sh", "-c", "exit 4")
    assert result.returncode == 0, result.stderr
    cid = result.stdout.strip()
    assert rade.out("wait", cid) == "4"
    result = run_cli(image_root, idle, "run", "--rm", "busybox:nope", "true")
    assert result.returncode == 125 and "no such image" in result.stderr
