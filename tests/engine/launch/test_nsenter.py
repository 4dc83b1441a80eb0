"""Running a second process inside a running container, as `rade exec` and the MPI rsh agent do."""

from __future__ import annotations

import os
import signal
import time

import pytest

from engine import nsenter
from engine.errors import CommandNotFound, LaunchError

pytestmark = pytest.mark.root


def test_entered_process_sees_the_containers_root_pids_and_limits(launcher, tmp_path):
    config = launcher.config(["sh", "-c", "echo marker > /tmp/m; exec sleep 30"], hostname="inner",
                             network="none")
    process = launcher.start(config)
    with open(tmp_path / "out", "w+") as out:
        deadline_probe = ("i=0; while [ ! -e /tmp/m ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done; "
                          "cat /tmp/m; hostname; ps -o pid,args; ls /sys/class/net; "
                          "grep -E '^(CapEff|Seccomp):' /proc/self/status")
        entered = nsenter.enter(process.pid, process.cgroup, config, ("sh", "-c", deadline_probe),
                                stdout=out.fileno())
        assert entered.wait() == 0
        out.seek(0)
        text = out.read()
    assert "marker" in text and "inner" in text
    assert "sleep 30" in text  # the container's PID 1 child is visible: same PID namespace
    assert "\n    1 " in text
    assert "Seccomp:\t2" in text
    assert text.split("\n")[-4:-3] == ["lo"] or "lo\n" in text
    process.kill(9)
    process.wait()


def test_entered_missing_command_is_127(launcher):
    config = launcher.config(["sleep", "30"])
    process = launcher.start(config)
    with pytest.raises(CommandNotFound):
        nsenter.enter(process.pid, process.cgroup, config, ("nope",))
    process.kill(9)
    process.wait()


def test_entering_an_exited_container_is_a_clear_error(launcher):
    config = launcher.config(["true"])
    process = launcher.start(config)
    process.wait()
    with pytest.raises(LaunchError) as caught:
        nsenter.enter(process.pid, process.cgroup, config, ("true",))
    assert caught.value.step == "enter container" and "running" in (caught.value.hint or "")


def test_entered_process_takes_the_given_workdir_and_environment(launcher, tmp_path):
    config = launcher.config(["sleep", "30"], cwd="/tmp")
    process = launcher.start(config)
    with open(tmp_path / "out", "w+") as out:
        entered = nsenter.enter(process.pid, process.cgroup, config, ("sh", "-c", "pwd; echo $GREETING"),
                                env={"GREETING": "hello", "PATH": "/bin"}, cwd="/bin", stdout=out.fileno())
        assert entered.wait() == 0
        out.seek(0)
        assert out.read() == "/bin\nhello\n"
    process.kill(9)
    process.wait()


def test_signal_to_an_entered_process_reaches_its_command(launcher, tmp_path):
    config = launcher.config(["sleep", "30"])
    process = launcher.start(config)
    script = 'trap "exit 9" TERM; touch /tmp/ready; while :; do sleep 0.05; done'
    entered = nsenter.enter(process.pid, process.cgroup, config, ("sh", "-c", script))
    deadline = time.monotonic() + 10
    while not os.path.exists(f"/proc/{process.pid}/root/tmp/ready"):
        assert time.monotonic() < deadline, "the entered shell never became ready"
        time.sleep(0.01)
    entered.kill(signal.SIGTERM)
    assert entered.wait() == 9
    process.kill(9)
    process.wait()


def test_entered_process_joins_every_cgroup_of_the_container_through_a_driver_opened_afresh(launcher):
    from engine.cgroups import Limits, open_cgroup

    config = launcher.config(["sleep", "30"], limits=Limits(memory=64 << 20, pids=50))
    process = launcher.start(config)
    controllers = ("memory", "cpuacct", "freezer", "pids") if process.cgroup.version == 1 else ("",)  # v2: "0::/path"
    fresh = open_cgroup(config.container_id)  # as `rade exec` from another process opens it
    entered = nsenter.enter(process.pid, fresh, config, ("sleep", "30"))
    try:
        with open(f"/proc/{entered.pid}/cgroup") as f:
            by_controller = {c: line.split(":", 2)[2] for line in f.read().splitlines()
                             for c in line.split(":")[1].split(",")}
        for controller in controllers:
            assert by_controller.get(controller) == "/" + process.cgroup.name, (controller, by_controller)
        assert entered.pid in process.cgroup.procs()
    finally:
        process.kill(9)
        entered.wait()
        process.wait()
