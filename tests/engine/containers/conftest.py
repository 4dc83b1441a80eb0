"""Fixtures for real containers: a state root with a busybox image, the `rade` command run against it,
and a check after every test that no container, mount, netns, link, cgroup or process of it is left."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("real containers need root")
    if not shutil.which("busybox"):
        pytest.skip("busybox-static is not installed")


@pytest.fixture(scope="session")
def image_root(tmp_path_factory) -> Path:
    """A state root holding `busybox:latest`, shared by the tests of a session (images are read-only)."""
    _needs_root()
    root = tmp_path_factory.mktemp("rade-ctr")
    subprocess.run([sys.executable, "-m", "rade", "--root", str(root), "image", "bootstrap", "busybox",
                    "busybox:latest"], check=True, cwd=REPO, capture_output=True)
    return root


class Rade:
    """`rade --root ROOT ...` as a subprocess."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.children: list[subprocess.Popen] = []

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "rade", "--root", str(self.root), *args]

    def __call__(self, *args: str, input: bytes | None = None, timeout: float = 60,
                 check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(self.argv(*args), input=input, capture_output=True, timeout=timeout, cwd=REPO,
                                check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"rade {' '.join(args)} exited {result.returncode}: {result.stderr.decode()}")
        return result

    def out(self, *args: str, **kw) -> str:
        return self(*args, **kw).stdout.decode().strip()

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        child = subprocess.Popen(self.argv(*args), cwd=REPO, **kw)
        self.children.append(child)
        return child

    def end_children(self) -> None:
        """Kill the commands a test started and did not see finish (a failed or timed-out test)."""
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait()


def container_ids(root: Path) -> list[str]:
    base = root / "containers"
    return sorted(p.name for p in base.iterdir() if len(p.name) == 64) if base.is_dir() else []


def leftovers(root: Path, ids: list[str]) -> list[str]:
    """What the host still holds of these containers: mounts, netns, links, cgroups."""
    found = []
    with open("/proc/self/mountinfo") as fh:
        mounts = fh.read()
    for cid in ids:
        if cid in mounts:
            found.append(f"mount of {cid[:12]}")
        from engine.network.container import is_network_left

        if is_network_left(root, cid):
            found.append(f"netns or veth of {cid[:12]}")
        for base, _dirs, _files in os.walk("/sys/fs/cgroup"):
            if cid in os.path.basename(base):
                found.append(f"cgroup {base}")
    return found


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def rade(image_root: Path) -> Iterator[Rade]:
    """The command against the shared root; every container a test made is removed after it, and the
    test fails if anything of them is left on the host."""
    before = set(container_ids(image_root))
    runner = Rade(image_root)
    try:
        yield runner
    finally:
        runner.end_children()
        made = [c for c in container_ids(image_root) if c not in before]
        pids = []
        for cid in made:
            try:
                import json
                state = json.loads((image_root / "containers" / cid / "state.json").read_text())
                pids += [state["container"].get("supervisor_pid", 0)]
            except (OSError, ValueError):
                pass
            runner("rm", "-f", "-v", cid, check=False)
        left = leftovers(image_root, made)
        for pid in pids:
            if pid:
                try:
                    wait_for(lambda pid=pid: not _alive(pid), 10, f"supervisor {pid} to exit")
                except AssertionError:
                    os.kill(pid, signal.SIGKILL)
                    left.append(f"supervisor process {pid}")
        assert not left, f"left behind: {left}"


def wait_child(pid: int, timeout: float = 30.0) -> int:
    """The exit code of our child `pid`; killed (and the test failed) if it is not done in `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"child {pid} did not finish in {timeout} s")


def terminal_is_raw(master: int) -> bool:
    """Whether the program on the pty's other side has put it in raw mode (it reads keys one by one)."""
    import termios

    return not termios.tcgetattr(master)[3] & termios.ICANON


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
