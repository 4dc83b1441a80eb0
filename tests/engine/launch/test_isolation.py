"""What a launched container sees and may do: its own processes, hostname, mounts, devices, privileges."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

from engine import capabilities
from engine.cgroups import Limits
from engine.errors import LaunchError
from engine.launch_config import Mount

pytestmark = pytest.mark.root


def test_pid1_sees_only_its_own_processes(launcher):
    result = launcher.run(["sh", "-c", "echo $$; ls /proc"])
    assert result.status == 0, result.err
    lines = result.out.split()
    # PID 1 is rade's init, the shell is its first child.
    assert lines[0] == "2"
    pids = sorted(int(name) for name in lines[1:] if name.isdigit())
    assert pids[0] == 1 and pids[-1] < 10, pids


def test_hostname_is_the_containers_and_the_hosts_is_unchanged(launcher):
    host = socket.gethostname()
    result = launcher.run(["sh", "-c", "hostname; cat /etc/hostname"], hostname="box-one")
    assert result.out.split() == ["box-one", "box-one"]
    assert socket.gethostname() == host


def test_container_mounts_do_not_appear_on_the_host(launcher):
    config = launcher.config(["sleep", "30"])
    process = launcher.start(config)
    with open("/proc/self/mountinfo") as f:
        host_mounts = f.read()
    assert config.rootfs_dir not in host_mounts
    with open(f"/proc/{process.pid}/mountinfo") as f:
        inside = f.read()
    assert " / / " in inside and "overlay" in inside
    process.kill(9)
    assert process.wait() == 137


def test_minimal_dev_and_generated_etc_files(launcher):
    result = launcher.run(["sh", "-c", "ls /dev; cat /etc/hosts; echo x > /dev/null; head -c 4 /dev/zero | wc -c"],
                          hosts="127.0.0.1 localhost\n198.19.0.5 box\n", hostname="box")
    assert result.status == 0, result.err
    names = set(result.out.split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "mqueue"} <= names
    assert "console" not in names
    assert "198.19.0.5 box" in result.out
    assert result.out.split()[-1] == "4"


def test_default_capabilities_no_new_privs_and_seccomp(launcher):
    result = launcher.run(["cat", "/proc/self/status"])
    status = dict(line.split(":\t", 1) for line in result.out.splitlines() if ":\t" in line)
    assert int(status["CapEff"], 16) == capabilities.resolve("default")
    assert int(status["CapBnd"], 16) == capabilities.resolve("default")
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"


def test_cluster_job_has_no_capabilities_as_its_user(launcher):
    result = launcher.run(["sh", "-c", "id -u; id -g; id -G; grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status"],
                          uid=1000, gid=1000, groups=(1000, 44), capabilities=frozenset())
    lines = result.out.splitlines()
    assert lines[0:2] == ["1000", "1000"]
    assert set(lines[2].split()) == {"1000", "44"}
    assert all(line.split()[1] == "0000000000000000" for line in lines[3:]), lines


def test_seccomp_refuses_mount_and_namespaces_even_with_caps(launcher):
    result = launcher.run(["sh", "-c", "mount -t tmpfs none /mnt; echo m=$?; unshare -n true; echo u=$?"],
                          capabilities=frozenset({"SYS_ADMIN"}))
    assert "m=1" in result.out and "u=1" in result.out, result.out + result.err
    assert "Operation not permitted" in result.err


def test_device_nodes_cannot_be_made_but_fifos_can(launcher):
    script = "mknod /tmp/disk b 8 0 || echo no-block; mknod /tmp/mem c 1 1 || echo no-char; mkfifo /tmp/f && echo fifo"
    result = launcher.run(["sh", "-c", script])
    assert result.out.split() == ["no-block", "no-char", "fifo"], result.err


def test_masked_and_read_only_proc_paths(launcher):
    script = ("cat /proc/keys | wc -c; ls /sys/firmware | wc -l; "
              "echo x > /proc/sys/kernel/hostname && echo sys-writable; "
              "echo h > /proc/sysrq-trigger && echo sysrq-writable; echo done")
    result = launcher.run(["sh", "-c", script])
    lines = result.out.split()
    assert lines[0] == "0" and lines[1] == "0"
    assert "sys-writable" not in result.out and "sysrq-writable" not in result.out
    assert lines[-1] == "done"


def test_read_only_root_refuses_writes_but_tmpfs_volume_takes_them(launcher):
    result = launcher.run(["sh", "-c", "touch /x && echo root-writable; touch /scratch/y && echo scratch-ok"],
                          read_only=True, mounts=(Mount("", "/scratch", kind="tmpfs"),))
    assert "root-writable" not in result.out
    assert "Read-only file system" in result.err
    assert "scratch-ok" in result.out


def test_bind_volumes_read_write_and_read_only(launcher, tmp_path):
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "given").write_text("hello\n")
    result = launcher.run(
        ["sh", "-c", "echo out > /data/made; cat /in/given; echo x > /in/nope && echo ro-writable"],
        mounts=(Mount(str(rw), "/data"), Mount(str(ro), "/in", read_only=True)))
    assert (rw / "made").read_text() == "out\n"
    assert "hello" in result.out and "ro-writable" not in result.out
    assert not (ro / "nope").exists()


def test_volume_target_through_an_image_symlink_stays_inside_the_root(launcher, tmp_path, busybox_layer):
    layer = tmp_path / "layer"
    layer.mkdir()
    os.symlink("/etc/../../../../tmp/escape", layer / "link")  # absolute, climbing out
    source = tmp_path / "vol"
    source.mkdir()
    (source / "f").write_text("v\n")
    result = launcher.run(["cat", "/tmp/escape/f"], lower_dirs=(str(layer), busybox_layer),
                          mounts=(Mount(str(source), "/link"),))
    assert result.out == "v\n", result.err
    assert not os.path.exists("/tmp/escape/f")


def test_network_none_has_only_loopback_up_and_the_caller_keeps_its_namespaces(launcher):
    before = [os.readlink(f"/proc/self/ns/{ns}") for ns in ("net", "pid", "pid_for_children", "mnt", "uts")]
    result = launcher.run(["sh", "-c", "ls /sys/class/net; cat /sys/class/net/lo/flags"], network="none")
    assert [os.readlink(f"/proc/self/ns/{ns}") for ns in ("net", "pid", "pid_for_children", "mnt", "uts")] == before
    names = result.out.split()
    assert names[0] == "lo" and len(names) == 2
    assert int(names[1], 16) & 1  # IFF_UP


def test_console_for_tty(launcher):
    master, slave = os.openpty()
    try:
        result = launcher.run(["sh", "-c", "test -c /dev/console && echo console; tty -s && echo tty"],
                              tty=True, stdin=slave)
    finally:
        os.close(master)
        os.close(slave)
    assert "console" in result.out and "tty" in result.out.split(), result.out + result.err


@pytest.fixture
def netns():
    """A network namespace file with a veth pair in it, as the network code hands the launch."""
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's ip to make a test network namespace")
    name = f"rade-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "rade-probe", "type", "veth", "peer", "name", "rade-probe1"], check=True)
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_joins_the_network_namespace_it_is_given(launcher, netns):
    result = launcher.run(["ls", "/sys/class/net"], network=netns)
    assert set(result.out.split()) == {"lo", "rade-probe", "rade-probe1"}, result.err


def test_missing_network_namespace_is_refused_before_fork(launcher):
    with pytest.raises(LaunchError) as caught:
        launcher.run(["true"], network="/run/netns/rade-test-absent")
    assert caught.value.step == "join network namespace"


def test_without_seccomp_the_default_set_loses_mknod(launcher):
    script = "grep -E '^(CapEff|Seccomp):' /proc/self/status; mknod /tmp/disk b 8 0 || echo refused"
    result = launcher.run(["sh", "-c", script], seccomp=False)
    status = dict(line.split(":\t") for line in result.out.splitlines() if ":\t" in line)
    assert status["Seccomp"] == "0"
    assert not int(status["CapEff"], 16) >> capabilities.CAPABILITIES["MKNOD"] & 1
    assert "refused" in result.out


def test_container_sees_its_own_cgroups_read_only(launcher):
    script = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes; ls /sys/fs/cgroup; "
              "echo 1 > /sys/fs/cgroup/memory/memory.limit_in_bytes && echo writable; ls /sys/fs/cgroup/memory/rade")
    result = launcher.run(["sh", "-c", script], limits=Limits(memory=64 << 20))
    lines = result.out.split()
    assert lines[0] == str(64 << 20)  # its own limit: the hierarchy's root is the container's cgroup
    assert "memory" in lines and "cpuacct" in lines and "pids" not in lines  # no pids limit, no pids view
    assert "writable" not in result.out and "Read-only file system" in result.err


def test_a_volume_over_etc_hosts_replaces_the_generated_file(launcher, tmp_path):
    # As with Docker, a file the user mounts at /etc/hosts (or /etc/resolv.conf, /etc/hostname) wins over
    # the one the launch would write there.
    hosts = tmp_path / "hosts"
    hosts.write_text("198.18.0.11\tnode1\n")
    result = launcher.run(["sh", "-c", "cat /etc/hosts; cat /etc/hostname"], hostname="box",
                          mounts=(Mount(str(hosts), "/etc/hosts", read_only=True),))
    assert result.status == 0, result.err
    assert result.out == "198.18.0.11\tnode1\nbox\n"


def test_pid1_and_its_children_are_in_every_cgroup_the_limits_need(launcher):
    process = launcher.start(launcher.config(["sh", "-c", "sleep 30 & wait"],
                                             limits=Limits(cpus=1.5, pids=50, memory=64 << 20)))
    controllers = ("memory", "cpuacct", "freezer", "cpu", "pids") if process.cgroup.version == 1 else ("",)  # v2: "0::/path"
    deadline = time.monotonic() + 10
    while len(process.cgroup.procs()) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    pids = process.cgroup.procs()
    assert process.pid in pids and len(pids) == 3  # the init, sh and sleep
    for pid in pids:
        with open(f"/proc/{pid}/cgroup") as f:
            by_controller = {c: line.split(":", 2)[2] for line in f.read().splitlines()
                             for c in line.split(":")[1].split(",")}
        for controller in controllers:
            assert by_controller.get(controller) == "/" + process.cgroup.name, (pid, controller, by_controller)
    process.kill(9)
    process.wait()


def test_pid1_shows_as_rade_init_not_its_launchers_command_line(launcher):
    result = launcher.run(["sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline; echo; cat /proc/1/comm; ps -o pid,args"])
    cmdline, comm = result.out.splitlines()[:2]
    assert cmdline.strip() == "rade-init" and comm == "rade-init", result.out
    assert "python" not in result.out and "/work" not in result.out and "pytest" not in result.out, result.out
