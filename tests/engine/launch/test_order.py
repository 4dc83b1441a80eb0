"""The launch's mount steps in order, checked through a recording fake of the syscall seam (no root)."""

from __future__ import annotations

import os
import stat

import pytest

from engine import capabilities, cgroups, child_errors, launch, seccomp
from engine.errors import CommandNotExecutable, CommandNotFound, LaunchError
from engine.launch_config import LaunchConfig, Mount
from engine.rootfs import resolve_in_root
from engine.syscalls import MS_BIND, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT

MOUNT_STEPS = [name for name, _ in launch.STEPS][
    [name for name, _ in launch.STEPS].index("make mounts private"):
    [name for name, _ in launch.STEPS].index("read-only root") + 1]


class RecordingSyscalls:
    """The Syscalls seam, recording each call instead of making it (mknod makes a plain file)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def mount(self, source, target, fstype, flags=0, data=None):
        self.calls.append(("mount", source, target, fstype, flags, data))

    def umount2(self, target, flags=0):
        self.calls.append(("umount2", target, flags))

    def pivot_root(self, new_root, put_old):
        self.calls.append(("pivot_root", os.getcwd(), put_old))

    def mknod(self, path, mode, device):
        open(path, "w").close()
        self.calls.append(("mknod", path, mode, device))

    def sethostname(self, name):
        self.calls.append(("sethostname", name))

    def unshare(self, flags):
        self.calls.append(("unshare", flags))

    def setns(self, fd, nstype):
        self.calls.append(("setns", fd, nstype))

    def prctl(self, option, arg2=0, arg3=0, arg4=0, arg5=0):
        self.calls.append(("prctl", option, arg2))
        return 0

    def capset(self, effective, permitted, inheritable):
        self.calls.append(("capset", effective, permitted, inheritable))

    def capget(self):
        return (0, 0, 0)

    def seccomp_filter(self, program):
        self.calls.append(("seccomp",))


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    """Run the mount steps of a launch with a volume (ro) and a read-only root; the recorded calls."""
    monkeypatch.chdir(tmp_path)
    layer = tmp_path / "layer"
    (layer / "etc").mkdir(parents=True)
    volume = tmp_path / "vol"
    volume.mkdir()
    state = tmp_path / "state"
    state.mkdir()
    config = LaunchConfig(container_id="c1", lower_dirs=(str(layer),), upper_dir=f"{state}/upper",
                          work_dir=f"{state}/work", rootfs_dir=f"{state}/rootfs", argv=("true",),
                          mounts=(Mount(str(volume), "/data", read_only=True),), read_only=True)
    fake = RecordingSyscalls()
    plan = launch.make_plan(config, fake)
    steps = dict(launch.STEPS)
    for name in MOUNT_STEPS:
        steps[name](plan)
    return config, fake.calls


def _index(calls, predicate) -> int:
    return next(i for i, call in enumerate(calls) if predicate(call))


def test_private_propagation_comes_before_any_mount(recorded):
    _, calls = recorded
    mounts = [c for c in calls if c[0] == "mount"]
    assert mounts[0][2] == "/" and mounts[0][4] == MS_REC | MS_PRIVATE


def test_root_then_proc_dev_etc_volumes_then_pivot_then_masks_then_read_only(recorded):
    config, calls = recorded
    root = config.rootfs_dir
    order = [
        _index(calls, lambda c: c[0] == "mount" and c[3] == "overlay"),
        _index(calls, lambda c: c[0] == "mount" and c[3] == "proc"),
        _index(calls, lambda c: c[0] == "mount" and c[3] == "sysfs"),
        _index(calls, lambda c: c[0] == "mount" and c[2] == f"{root}/dev"),
        _index(calls, lambda c: c[0] == "mount" and c[3] == "devpts"),
        _index(calls, lambda c: c[0] == "mount" and c[2] == f"{root}/etc/hosts"),
        _index(calls, lambda c: c[0] == "mount" and c[2] == f"{root}/data"),
        _index(calls, lambda c: c[0] == "pivot_root"),
        _index(calls, lambda c: c[0] == "umount2"),
        _index(calls, lambda c: c[0] == "mount" and c[2] == "/proc/kcore"),
        _index(calls, lambda c: c[0] == "mount" and c[2] == "/" and c[4] & MS_RDONLY),
    ]
    assert order == sorted(order)
    assert calls[order[7]][1] == root  # pivot_root(".", ".") from inside the new root


def test_read_only_volume_is_remounted_read_only_right_after_its_bind(recorded):
    config, calls = recorded
    target = f"{config.rootfs_dir}/data"
    i = _index(calls, lambda c: c[0] == "mount" and c[2] == target)
    assert calls[i][4] & MS_BIND and not calls[i][4] & MS_REMOUNT
    assert calls[i + 1][2] == target and calls[i + 1][4] & (MS_REMOUNT | MS_RDONLY) == MS_REMOUNT | MS_RDONLY


def test_every_mount_before_pivot_lands_inside_the_root(recorded):
    config, calls = recorded
    pivot = _index(calls, lambda c: c[0] == "pivot_root")
    targets = [c[2] for c in calls[1:pivot] if c[0] == "mount"]
    assert targets and all(t.startswith(config.rootfs_dir + "/") or t == config.rootfs_dir for t in targets)


def test_devices_are_the_oci_default_set(recorded):
    _, calls = recorded
    made = {os.path.basename(c[1]): (os.major(c[3]), os.minor(c[3])) for c in calls if c[0] == "mknod"}
    assert made == {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9),
                    "tty": (5, 0)}
    assert all(stat.S_ISCHR(c[2]) for c in calls if c[0] == "mknod")


def test_symlinks_in_the_image_resolve_inside_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    os.symlink("/real", root / "abs")
    os.symlink("../../../../etc", root / "climb")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    assert resolve_in_root(str(root), "/abs/x") == f"{root}/real/x"
    assert resolve_in_root(str(root), "/climb/passwd") == f"{root}/etc/passwd"
    with pytest.raises(LaunchError):
        resolve_in_root(str(root), "/loop1")


def test_capabilities_by_name_and_docker_default():
    assert capabilities.resolve(["CAP_NET_ADMIN", "chown"]) == 1 << 12 | 1 << 0
    assert capabilities.resolve(frozenset()) == 0
    assert capabilities.names(capabilities.resolve("default")) == sorted(
        (f"CAP_{n}" for n in capabilities.DOCKER_DEFAULT), key=lambda n: capabilities.CAPABILITIES[n[4:]])
    with pytest.raises(LaunchError) as caught:
        capabilities.resolve(["CAP_FLY"])
    assert "CAP_FLY" in str(caught.value)


def test_seccomp_filter_compiles_once_to_bpf():
    available, why = seccomp.availability()
    if not available:
        pytest.skip(why)
    program = seccomp.program()
    assert program is seccomp.program()
    assert len(program.bpf) % 8 == 0 and program.fprog.len == len(program.bpf) // 8 > 50


def test_child_reports_become_errors_with_docker_exit_codes():
    assert isinstance(child_errors.error_from(b"notfound\0exec\0'x' not found\0hint"), CommandNotFound)
    assert isinstance(child_errors.error_from(b"noexec\0exec\0denied\0"), CommandNotExecutable)
    error = child_errors.error_from(b"launch\0mount volumes\0/x: No such file or directory\0")
    assert type(error) is LaunchError and error.step == "mount volumes" and error.exit_code == 125


def test_config_without_command_or_layers_is_refused_before_fork(tmp_path):
    base = {"container_id": "c", "upper_dir": str(tmp_path / "u"), "work_dir": str(tmp_path / "w"),
            "rootfs_dir": str(tmp_path / "r")}
    with pytest.raises(LaunchError, match="no command"):
        launch.make_plan(LaunchConfig(lower_dirs=("/x",), argv=(), **base), RecordingSyscalls())
    with pytest.raises(LaunchError, match="no image layers"):
        launch.make_plan(LaunchConfig(lower_dirs=(), argv=("true",), **base), RecordingSyscalls())


def test_cgroup_view_is_mounted_inside_the_cgroup_namespace_before_seccomp():
    names = [name for name, _ in launch.STEPS]
    assert names.index("join the cgroup") < names.index("unshare cgroup namespace") \
        < names.index("mount /sys/fs/cgroup") < names.index("seccomp filter")


def test_cgroup_view_holds_the_joined_v1_hierarchies_co_mounted_ones_once(monkeypatch, tmp_path):
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", str(tmp_path))  # no cgroup.controllers: not pure v2
    monkeypatch.setattr(cgroups, "hierarchies", lambda: {
        "cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
        "memory": "/sys/fs/cgroup/memory", "freezer": "/sys/fs/cgroup/freezer", "pids": "/sys/fs/cgroup/pids"})
    assert cgroups.container_view(cgroups.Limits(cpus=1)) == (
        ("memory", "memory"), ("cpu,cpuacct", "cpu,cpuacct"), ("freezer", "freezer"))
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    assert cgroups.container_view(cgroups.Limits()) == (("", ""),)
