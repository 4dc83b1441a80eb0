"""A launch without root: a user namespace maps root inside to the caller's uid outside.

The launch runs in a child process as an unprivileged user (65534), with an interpreter that user may
execute, on a busybox layer and state dir that user owns.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

pytestmark = pytest.mark.root

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
NOBODY = 65534
SCRIPT = textwrap.dedent("""
    import json, os, sys
    from engine.cgroups import Limits
    from engine.errors import RadeError
    from engine.launch import LaunchConfig, launch

    base, argv, network, limits, uid = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    out = os.open(f"{base}/out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    config = LaunchConfig(container_id="rootless", lower_dirs=(f"{base}/layer",), upper_dir=f"{base}/upper",
                          work_dir=f"{base}/work", rootfs_dir=f"{base}/rootfs", argv=tuple(argv), network=network,
                          stdout=out, stderr=out, uid=uid, gid=uid,
                          limits=Limits(memory=64 << 20) if limits == "yes" else Limits())
    try:
        process = launch(config)
    except RadeError as err:
        print(json.dumps({"error": str(err), "code": err.exit_code}))
        raise SystemExit(0)
    entered = None
    if argv[0] == "sleep":  # a running container to enter
        from engine import nsenter
        entered = nsenter.enter(process.pid, process.cgroup, config, ("sh", "-c", "id -u; ps -o pid,args"),
                                stdout=out).wait()
        process.kill(9)
    status = process.wait()
    process.cleanup()
    print(json.dumps({"status": status, "entered": entered, "out": open(f"{base}/out").read()}))
""")


def _interpreter() -> str:
    """A Python the unprivileged user may run (a venv in root's home is not)."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        probe = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                                candidate, "-c", "pass"], check=False, capture_output=True)
        if probe.returncode == 0:
            return candidate
    pytest.skip("no Python interpreter an unprivileged user can execute")


@pytest.fixture
def rootless(busybox_layer):
    if shutil.which("setpriv") is None:
        pytest.skip("needs util-linux's setpriv to drop to an unprivileged user")
    python = _interpreter()
    base = tempfile.mkdtemp(prefix="rade-test-rootless-")
    try:
        shutil.copytree(busybox_layer, f"{base}/layer", symlinks=True)
        for root, dirs, files in os.walk(base):
            for name in (root, *(os.path.join(root, n) for n in dirs + files)):
                os.lchown(name, NOBODY, NOBODY)

        def run(argv: list[str], network: str = "none", limits: str = "no", uid: int = 0) -> dict:
            done = subprocess.run(
                ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", python, "-c", SCRIPT,
                 base, json.dumps(argv), network, limits, str(uid)],
                check=False, capture_output=True, text=True, env={"PYTHONPATH": REPO, "PATH": "/usr/bin:/bin"},
                timeout=60)
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)
        yield run
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_rootless_container_is_root_inside_with_its_own_pids_and_filters(rootless):
    script = ("id -u; echo $$; hostname; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; "
              "ls /sys/class/net; echo hello > /made && cat /made; test -c /dev/null && echo devnull")
    result = rootless(["sh", "-c", script])
    assert result["status"] == 0, result
    lines = result["out"].split("\n")
    assert lines[0:3] == ["0", "2", "rootless"], lines
    assert "Seccomp:\t2" in result["out"] and "NoNewPrivs:\t1" in result["out"]
    assert "lo\nhello\ndevnull" in result["out"]


def test_rootless_host_network_binds_the_hosts_sysfs(rootless):
    result = rootless(["sh", "-c", "ls /sys/class/net; touch /sys/x || echo sys-read-only"], network="host")
    assert "lo" in result["out"].split() and "sys-read-only" in result["out"]


def test_rootless_refuses_limits_and_other_users_clearly(rootless):
    limited = rootless(["true"], limits="yes")
    assert limited["code"] == 125 and "limits" in limited["error"]
    other = rootless(["true"], uid=1000)
    assert other["code"] == 125 and "only user is root" in other["error"]


def test_rootless_container_can_be_entered(rootless):
    result = rootless(["sleep", "30"])
    assert result["entered"] == 0, result
    assert result["out"].split("\n")[0] == "0"
    assert "sleep 30" in result["out"]  # the container's own processes: its PID namespace
