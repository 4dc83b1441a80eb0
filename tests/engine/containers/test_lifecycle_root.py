"""Real containers through the `rade` command: run, exit codes, detached runs, logs, stop/start, kill,
wait, --rm, stdin, a terminal, and a killed CLI that loses nothing."""

from __future__ import annotations

import json
import os
import select
import signal
import time

import pytest

from tests.engine.containers.conftest import container_ids, terminal_is_raw, wait_child, wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]


def inspect(rade, ref):
    return json.loads(rade.out("inspect", ref))[0]


@pytest.mark.parametrize(("command", "code"), [
    (["true"], 0), (["false"], 1), (["sh", "-c", "exit 7"], 7), (["no-such-command"], 127), (["/etc/passwd"], 126),
])
def test_exit_codes_are_the_containers_or_dockers(rade, command, code):
    result = rade("run", "--network", "none", "busybox", *command, check=False)
    assert result.returncode == code, result.stderr
    if code >= 126:
        assert result.stderr.decode().startswith("rade: error: ")


def test_bad_option_value_exits_125_with_one_line(rade):
    result = rade("run", "--memory", "12Q", "busybox", "true", check=False)
    assert result.returncode == 2 and result.stderr.count(b"\n") == 1
    result = rade("run", "-v", "rel:dir", "busybox", "true", check=False)
    assert result.returncode == 125 and b"must be absolute" in result.stderr


def test_unknown_image_is_125(rade):
    result = rade("run", "nosuchimage:1", "true", check=False)
    assert result.returncode == 125 and b"nosuchimage" in result.stderr


def test_stdin_reaches_the_container(rade):
    result = rade("run", "-i", "--rm", "--network", "none", "busybox", "cat", input=b"hi\nthere\n")
    assert result.stdout == b"hi\nthere\n"


def test_output_streams_stay_apart(rade):
    result = rade("run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert result.stdout == b"out\n" and result.stderr == b"err\n"


def test_rm_removes_the_container(rade, image_root):
    before = container_ids(image_root)
    rade("run", "--rm", "--network", "none", "busybox", "true")
    assert container_ids(image_root) == before


def test_detached_then_logs_follow_stop_start(rade):
    cid = rade.out("run", "-d", "--network", "none", "busybox", "sh", "-c",
                   "trap 'echo bye; exit 3' TERM; echo started; while true; do sleep 0.1; done")
    assert len(cid) == 64
    wait_for(lambda: b"started" in rade("logs", cid).stdout, what="the first line")
    follower = rade.popen("logs", "-f", cid, stdout=__import__("subprocess").PIPE)
    assert rade.out("ps", "-q") .split().count(cid[:12]) == 1
    rade("stop", "-t", "5", cid)
    out, _ = follower.communicate(timeout=10)
    assert out == b"started\nbye\n"
    state = inspect(rade, cid)["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 3 and not state["Running"]
    rade("start", cid)
    wait_for(lambda: rade("logs", cid).stdout.count(b"started") == 2, what="the restart's output")
    assert inspect(rade, cid)["State"]["Status"] == "running"
    rade("kill", "-s", "KILL", cid)
    assert rade.out("wait", cid) == "137"
    assert cid[:12] in rade.out("ps", "-a")


def test_logs_tail_and_timestamps(rade):
    cid = rade.out("run", "-d", "--network", "none", "busybox", "sh", "-c", "echo a; echo b; echo c")
    rade("wait", cid)
    assert rade.out("logs", "--tail", "2", cid) == "b\nc"
    line = rade.out("logs", "-t", "--tail", "1", cid)
    assert line.endswith(" c") and line[:4].isdigit() and "T" in line.split()[0]


def test_attach_sees_output_of_a_running_container(rade):
    import subprocess

    cid = rade.out("run", "-d", "-i", "--network", "none", "busybox", "sh", "-c", "read line; echo got $line")
    attached = rade.popen("attach", cid, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out, _ = attached.communicate(b"ping\n", timeout=15)
    assert out == b"got ping\n" and attached.returncode == 0


def test_killed_cli_loses_nothing(rade):
    import subprocess

    cli = rade.popen("run", "--network", "none", "busybox", "sh", "-c",
                     "echo one; sleep 1; echo two; exit 5", stdout=subprocess.PIPE)
    assert cli.stdout.readline() == b"one\n"
    cli.send_signal(signal.SIGKILL)
    cli.wait()
    cid = rade.out("ps", "-q")
    assert rade.out("wait", cid) == "5"
    assert rade.out("logs", cid) == "one\ntwo"
    assert inspect(rade, cid)["State"]["FinishedAt"] > inspect(rade, cid)["State"]["StartedAt"]


def test_tty_gives_a_terminal_and_its_size(rade):
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    pid = os.fork()
    if pid == 0:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        os.execv(rade.argv()[0], rade.argv("run", "-t", "-i", "--rm", "--network", "none", "busybox", "sh", "-c",
                                           "test -t 0 && echo is-a-tty; stty size; read x; echo got:$x"))
    os.close(slave)
    out = b""
    sent = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        # Typed only once `rade` has the terminal in raw mode and the container asked for input.
        if b"33 101" in out and not sent and terminal_is_raw(master):
            os.write(master, b"typed\r")
            sent = True
        ready, _, _ = select.select([master], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    code = wait_child(pid)
    os.close(master)
    assert code == 0
    assert b"is-a-tty\r\n33 101\r\n" in out and b"got:typed" in out


def test_inspect_is_docker_shaped(rade):
    cid = rade.out("create", "--name", "shape-test", "-e", "A=1", "--memory", "64M", "--network", "none",
                   "busybox", "echo", "x")
    doc = inspect(rade, "shape-test")
    assert doc["Id"] == cid and doc["Name"] == "/shape-test"
    assert doc["State"]["Status"] == "created" and doc["Config"]["Cmd"] == ["echo", "x"]
    assert "A=1" in doc["Config"]["Env"] and doc["HostConfig"]["Memory"] == 64 << 20
    assert set(doc) >= {"State", "Config", "HostConfig", "Mounts", "NetworkSettings"}
    result = rade("run", "--name", "shape-test", "busybox", "true", check=False)
    assert result.returncode == 125 and b"already in use" in result.stderr


def test_rm_refuses_a_running_container_without_force(rade):
    cid = rade.out("run", "-d", "--network", "none", "busybox", "sleep", "30")
    result = rade("rm", cid, check=False)
    assert result.returncode == 125 and b"rade rm -f" in result.stderr
    rade("rm", "-f", cid)
    assert cid[:12] not in rade.out("ps", "-a")


def test_memory_hog_is_oom_killed_and_reported(rade):
    result = rade("run", "--name", "oom-test", "--memory", "32M", "--memory-swap", "32M", "--network", "none",
                  "busybox", "sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
                  check=False, timeout=120)
    state = inspect(rade, "oom-test")["State"]
    assert result.returncode == 137 and state["OOMKilled"] is True and state["ExitCode"] == 137


def test_detached_rm_removes_after_exit(rade, image_root):
    before = container_ids(image_root)
    cid = rade.out("run", "-d", "--rm", "--network", "none", "busybox", "true")
    wait_for(lambda: cid not in container_ids(image_root), what="the --rm container to go")
    assert container_ids(image_root) == before


def test_start_attach_and_restart(rade):
    rade("create", "--name", "restart-test", "--network", "none", "busybox", "sh", "-c", "echo run; exit 2")
    result = rade("start", "-a", "restart-test", check=False)
    assert result.returncode == 2 and result.stdout == b"run\n"
    rade("restart", "restart-test")
    assert rade.out("wait", "restart-test") == "2"
    assert rade.out("logs", "restart-test") == "run\nrun"
    assert inspect(rade, "restart-test")["RestartCount"] == 1


def test_info_reports_what_the_host_has(rade):
    facts = json.loads(rade.out("info", "--json"))
    assert facts["CgroupVersion"] in ("1", "2") and facts["StorageDriver"] == "overlay"
    assert facts["Seccomp"].startswith(("available", "unavailable"))
    assert facts["KernelVersion"] == os.uname().release


def test_user_workdir_hostname_env_and_read_only(rade):
    out = rade.out("run", "--rm", "--network", "none", "-u", "1000:1001", "-w", "/tmp", "--hostname", "box",
                   "-e", "GREETING=hi there", "busybox", "sh", "-c", 'echo "$(id -u):$(id -g) $(pwd) $(hostname) $GREETING"')
    assert out == "1000:1001 /tmp box hi there"
    result = rade("run", "--rm", "--network", "none", "--read-only", "busybox", "touch", "/file", check=False)
    assert result.returncode == 1 and b"Read-only" in result.stderr
    assert rade.out("run", "--rm", "--network", "host", "busybox", "hostname") == os.uname().nodename


def test_limits_reach_the_containers_cgroup(rade):
    from engine.cgroups import host_version, open_cgroup

    cid = rade.out("run", "-d", "--network", "none", "--memory", "48M", "--cpus", "0.5", "--pids-limit", "40",
                   "--cpu-shares", "512", "busybox", "sleep", "60")
    paths = open_cgroup(cid).paths()

    def value(name: str) -> str:
        for path in paths:
            if os.path.exists(f"{path}/{name}"):
                with open(f"{path}/{name}") as fh:
                    return fh.read().strip()
        raise AssertionError(f"no {name} under {paths}")

    if host_version() == 1:
        assert value("memory.limit_in_bytes") == str(48 << 20)
        assert value("cpu.cfs_quota_us") == str(int(value("cpu.cfs_period_us")) // 2)
        assert value("cpu.shares") == "512"
    else:
        assert value("memory.max") == str(48 << 20)
        quota, period = value("cpu.max").split()
        assert int(quota) * 2 == int(period)
    assert value("pids.max") == "40"
    pid = inspect(rade, cid)["State"]["Pid"]
    assert str(pid) in value("cgroup.procs").split()
    rade("rm", "-f", cid)


def test_a_killed_supervisor_is_noticed_and_cleaned_up(rade):
    cid = rade.out("run", "-d", "--network", "none", "busybox", "sleep", "60")
    supervisor = json.loads((rade.root / "containers" / cid / "state.json").read_text())["container"]["supervisor_pid"]
    os.kill(supervisor, signal.SIGKILL)
    wait_for(lambda: rade.out("inspect", "-f", "{{.State.Status}}", cid) == "exited", what="the death to be noticed")
    state = inspect(rade, cid)["State"]
    assert state["ExitCode"] == 255 and "supervisor died" in state["Error"]
    rade("rm", cid)


def test_two_starts_at_once_launch_one_container(rade):
    import subprocess

    cid = rade.out("create", "--network", "none", "busybox", "sleep", "60")
    starters = [rade.popen("start", cid, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(3)]
    codes = sorted(p.wait(30) for p in starters)
    assert codes.count(0) >= 1

    def in_this_container(pid: str) -> bool:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if fh.read() != b"sleep\x0060\x00":
                    return False
            with open(f"/proc/{pid}/cgroup") as fh:
                return cid in fh.read()
        except OSError:
            return False

    assert len([p for p in os.listdir("/proc") if p.isdigit() and in_this_container(p)]) == 1
    rade("rm", "-f", cid)


def test_detach_keys_leave_the_container_running(rade):
    import fcntl
    import termios

    cid = rade.out("run", "-d", "-i", "-t", "--network", "none", "busybox", "sh")
    master, slave = os.openpty()
    pid = os.fork()
    if pid == 0:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        os.execv(rade.argv()[0], rade.argv("attach", cid))
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 30
    typed = detached = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if not typed and terminal_is_raw(master):
            os.write(master, b"echo via-attach\r")
            typed = True
        elif typed and out.count(b"via-attach") >= 2 and not detached:  # the shell's echo, then the output
            os.write(master, b"\x10\x11")
            detached = True
        if detached:
            break
    code = wait_child(pid)
    os.close(master)
    assert code == 0 and detached
    assert inspect(rade, cid)["State"]["Status"] == "running"
    rade("rm", "-f", cid)


def test_stats_shows_a_busy_container(rade):
    cid = rade.out("run", "-d", "--network", "none", "--memory", "64M", "busybox", "sh", "-c",
                   "while :; do :; done")
    lines = rade.out("stats", "--no-stream", cid).splitlines()
    assert lines[0].split()[:2] == ["CONTAINER", "ID"]
    fields = lines[1].split()
    assert fields[0] == cid[:12] and float(fields[2].rstrip("%")) > 0 and "64M" in lines[1]
    rade("rm", "-f", cid)


def test_rm_right_after_start_attach_returns_waits_for_the_clean_up(rade):
    # `start -a` returns once the output ends, while the supervisor may still be cleaning up: `rm` then
    # waits a moment for it instead of refusing the container as "being started".
    for round_ in range(15):
        rade("create", "--name", f"brief-{round_}", "busybox", "echo", "said")
        assert rade.out("start", "-a", f"brief-{round_}") == "said"
        rade("rm", f"brief-{round_}")
