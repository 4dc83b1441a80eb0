"""`rade pause`/`unpause` on real containers: the state `ps` and `inspect` show, no CPU used while
paused (by the container's cgroup), and stop, kill and rm -f of a paused container working."""

from __future__ import annotations

import json
import time

import pytest

from engine.cgroups import open_cgroup
from tests.engine.containers.conftest import wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]

SPIN = ("sh", "-c", "while :; do :; done")


def _state(rade, name: str) -> dict:
    return json.loads(rade.out("inspect", name))[0]["State"]


def _cpu(cid: str) -> float:
    return open_cgroup(cid).stats().cpu_seconds



def test_paused_container_uses_no_cpu_and_shows_paused(rade):
    cid = rade.out("run", "-d", "--network", "none", "--name", "spin-pause", "busybox", *SPIN)
    wait_for(lambda: _cpu(cid) > 0.02, what="the container to use CPU")
    assert rade.out("pause", "spin-pause") == "spin-pause"
    state = _state(rade, "spin-pause")
    assert state["Status"] == "paused" and state["Paused"] is True and state["Running"] is True
    assert "(Paused)" in rade.out("ps")
    before = _cpu(cid)
    time.sleep(0.5)  # a running spinner would use most of a CPU in this window
    assert _cpu(cid) - before < 0.005

    again = rade("pause", "spin-pause", check=False)
    assert again.returncode == 125 and b"already paused" in again.stderr
    refused = rade("exec", "spin-pause", "true", check=False)
    assert refused.returncode == 125 and b"is paused" in refused.stderr

    assert rade.out("unpause", "spin-pause") == "spin-pause"
    state = _state(rade, "spin-pause")
    assert state["Status"] == "running" and state["Paused"] is False
    resumed = _cpu(cid)
    wait_for(lambda: _cpu(cid) > resumed + 0.02, what="the unpaused container to use CPU again")
    not_paused = rade("unpause", "spin-pause", check=False)
    assert not_paused.returncode == 125 and b"not paused" in not_paused.stderr
    rade("rm", "-f", "spin-pause")


def test_stop_kill_and_rm_f_of_a_paused_container_work(rade):
    for name in ("p-stop", "p-kill", "p-rm"):
        rade("run", "-d", "--network", "none", "--name", name, "busybox", "sleep", "1000")
        rade("pause", name)
    rade("stop", "-t", "5", "p-stop")
    assert _state(rade, "p-stop")["Status"] == "exited"
    rade("kill", "p-kill")
    assert rade.out("wait", "p-kill") == "137"
    rade("rm", "-f", "p-rm")
    assert "p-rm" not in rade.out("ps", "-a")
    rade("rm", "p-stop", "p-kill")


def test_pause_of_a_stopped_container_is_one_clear_line(rade):
    rade("create", "--name", "never-started", "busybox", "true")
    result = rade("pause", "never-started", check=False)
    assert result.returncode == 125
    assert result.stderr.decode() == "rade: error: container never-started is not running (it is created)\n"
    rade("rm", "never-started")


def test_engine_api_pauses_and_unpauses(rade, image_root):
    from engine.api import Engine
    from engine.containers.status import ContainerStatus

    engine = Engine(image_root)
    started = engine.run("busybox", ["sleep", "1000"], network="none")
    try:
        assert engine.pause(started.id).status is ContainerStatus.PAUSED
        assert engine.inspect(started.id).status is ContainerStatus.PAUSED
        assert engine.unpause(started.id).status is ContainerStatus.RUNNING
    finally:
        engine.remove(started.id, force=True)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_a_paused_container_whose_supervisor_died_is_cleaned_up(rade):
    import os
    import signal

    cid = rade.out("run", "-d", "--network", "none", "--name", "p-orphan", "busybox", "sleep", "1000")
    rade("pause", "p-orphan")
    record = json.loads((rade.root / "containers" / cid / "state.json").read_text())["container"]
    os.kill(record["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: not _alive(record["supervisor_pid"]), what="the supervisor to die")
    # The next look corrects the record and kills what was left frozen (the freezer thawed to let it die).
    assert _state(rade, "p-orphan")["Status"] == "exited"
    wait_for(lambda: not _alive(record["pid"]), what="the frozen container process to be killed")
    rade("rm", "p-orphan")
