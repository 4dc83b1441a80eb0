"""Fixtures for launching real containers: a busybox root, and a launcher that cleans up after itself.

Every container a test starts is killed, its cgroup removed and its state dir deleted at teardown, even
when the test fails; no mount under the state dirs or the layer may be left in the host's table.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import pytest

from engine.launch import ContainerProcess, LaunchConfig, launch

BUSYBOX = "/bin/busybox"


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: namespaces, mounts and cgroups of the real kernel")
    if not os.path.exists(BUSYBOX):
        pytest.skip("needs Debian's busybox-static for a container root")


@pytest.fixture(scope="session")
def busybox_layer() -> Iterator[str]:
    """An image layer: /bin/busybox with relative applet links, and the usual top-level dirs."""
    _require_root()
    layer = tempfile.mkdtemp(prefix="rade-test-layer-")
    try:
        os.makedirs(f"{layer}/bin")
        shutil.copy2(BUSYBOX, f"{layer}/bin/busybox")
        applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout
        for applet in applets.split():
            if applet != "busybox":
                os.symlink("busybox", f"{layer}/bin/{applet}")
        for d in ("tmp", "etc", "root", "proc", "sys", "dev", "mnt"):
            os.makedirs(f"{layer}/{d}", exist_ok=True)
        os.chmod(f"{layer}/tmp", 0o1777)
        os.chmod(f"{layer}/root", 0o700)
        with open(f"{layer}/etc/passwd", "w") as f:
            f.write("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/tmp:/bin/sh\n")
        yield layer
    finally:
        shutil.rmtree(layer, ignore_errors=True)


def host_mounts_under(*paths: str) -> list[str]:
    """Mount points in the host's table under any of `paths` (other work on the host may mount elsewhere)."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if any(p == path or p.startswith(path + "/") for path in paths)]


@dataclass
class Run:
    """A finished container's result."""

    status: int
    out: str
    err: str


@dataclass
class Launcher:
    """Makes LaunchConfigs on a fresh state dir, launches them, and remembers what to clean up."""

    layer: str
    base: str
    processes: list[ContainerProcess] = field(default_factory=list)

    def config(self, argv: tuple[str, ...] | list[str], **overrides: object) -> LaunchConfig:
        cid = f"test-{uuid.uuid4().hex[:12]}"
        state = f"{self.base}/{cid}"
        os.makedirs(state)
        lower = overrides.pop("lower_dirs", (self.layer,))
        config = LaunchConfig(container_id=cid, lower_dirs=tuple(lower), upper_dir=f"{state}/upper",
                              work_dir=f"{state}/work", rootfs_dir=f"{state}/rootfs", argv=tuple(argv))
        return replace(config, **overrides)

    def start(self, config: LaunchConfig) -> ContainerProcess:
        process = launch(config)
        self.processes.append(process)
        return process

    def run(self, argv: tuple[str, ...] | list[str], **overrides: object) -> Run:
        """Launch, wait, and return the status and output (stdout and stderr to files)."""
        out_path = f"{self.base}/out-{uuid.uuid4().hex[:8]}"
        with open(out_path + ".1", "w+") as out, open(out_path + ".2", "w+") as err, \
                open(os.devnull) as null:
            overrides.setdefault("stdin", null.fileno())
            config = self.config(argv, stdout=out.fileno(), stderr=err.fileno(), **overrides)
            process = self.start(config)
            status = process.wait()
            process.cleanup()
            out.seek(0)
            err.seek(0)
            return Run(status, out.read(), err.read())


@pytest.fixture
def launcher(busybox_layer: str) -> Iterator[Launcher]:
    base = tempfile.mkdtemp(prefix="rade-test-state-")
    state = Launcher(busybox_layer, base)
    try:
        yield state
    finally:
        for process in state.processes:
            process.cleanup()
        shutil.rmtree(base, ignore_errors=True)
    for process in state.processes:
        for path in process.cgroup.paths():
            assert not os.path.exists(path), f"cgroup {path} left behind"
    assert host_mounts_under(base, busybox_layer) == [], "container mounts leaked into the host's table"
