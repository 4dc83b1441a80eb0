"""A job's logs are its owner's: a non-root user (`nobody`, a real uid with its own key) reads its own
job's output with `rade logs`, and neither the command nor the file system gives it anyone else's; a
multi-task job's lines come labelled with their task, interleaved as they were written, with and
without -f."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.state import task_log_path
from rade import devcluster

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
USER, UID, GID = "nobody", 65534, 65534

# The interpreter may live where only root can reach it (a version manager under /root), so it starts as
# root and runs the command once with its output thrown away, which loads every module the command needs
# (with the user's key, the scheduler answers that run as it answers the user), then becomes the user
# for good and runs it again: that run is the one tested.
AS_USER = """
import os, sys
sys.path.insert(0, {repo!r})
import rade.cli
saved = os.dup(1), os.dup(2)
devnull = os.open(os.devnull, os.O_WRONLY)
os.dup2(devnull, 1)
os.dup2(devnull, 2)
try:
    rade.cli.main(sys.argv[1:])
except SystemExit:
    pass
sys.stdout.flush()
sys.stderr.flush()
os.dup2(saved[0], 1)
os.dup2(saved[1], 2)
os.setgroups([])
os.setgid({gid})
os.setuid({uid})
assert os.getuid() == {uid} and os.geteuid() == {uid}
sys.exit(rade.cli.main(sys.argv[1:]))
"""


@pytest.fixture
def user_access(cluster) -> Iterator[dict[str, str]]:
    """The environment `nobody` runs `rade` with (its key, the scheduler's address), the cluster's root
    made traversable (not readable) for it on the way; every mode put back after."""
    from rade.commands.keys import issue_user_key

    changed: list[tuple[Path, int]] = []
    key_dir = cluster.root.parent / f"{cluster.root.name}-{USER}"
    try:
        for path in [cluster.root, *cluster.root.parents]:
            mode = path.stat().st_mode
            if not mode & stat.S_IXOTH:
                changed.append((path, mode))
                os.chmod(path, stat.S_IMODE(mode) | stat.S_IXOTH)
        key_dir.mkdir(mode=0o700)
        os.chown(key_dir, UID, GID)
        key = key_dir / "key"
        issue_user_key(devcluster.key_dir(str(cluster.root)), USER, str(key))
        os.chown(key, UID, GID)
        address = devcluster.load_state(str(cluster.root))
        assert address is not None
        yield {"RADE_KEY": str(key), "SCHEDULER": f"tcp://{address.gateway_ip}:{devcluster.CLIENT_PORT}"}
    finally:
        for path, mode in reversed(changed):
            os.chmod(path, stat.S_IMODE(mode))
        subprocess.run(["rm", "-rf", str(key_dir)], check=False)


def rade_as_user(cluster, access: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "RADE_KEY": access["RADE_KEY"], "HOME": "/nonexistent",
           "PYTHONDONTWRITEBYTECODE": "1"}
    code = AS_USER.format(repo=str(REPO), uid=UID, gid=GID)
    return subprocess.run([sys.executable, "-c", code, "--root", str(cluster.root), *args[:1], "--scheduler",
                           access["SCHEDULER"], *args[1:]], env=env, cwd="/", capture_output=True, text=True,
                          timeout=120, check=False)


def submit_as_user(cluster, access: dict[str, str], command: str) -> int:
    from jobs.keyfiles import read_key_file
    from rade.client import Credentials, SchedulerClient

    key = read_key_file(access["RADE_KEY"], secret=True)
    assert key.secret is not None
    credentials = Credentials(key.public, key.secret, key.metadata["scheduler-key"], access["RADE_KEY"])
    spec = {"name": "mine", "image": "busybox", "command": ["sh", "-c", command],
            "resources": {"cpus": 1, "memory": "64M"}}
    with SchedulerClient(access["SCHEDULER"], timeout=30, credentials=credentials) as client:
        (job,) = client.submit(spec)
    return job


def read_as_user(path: Path) -> subprocess.CompletedProcess:
    busybox = "/bin/busybox" if os.path.exists("/bin/busybox") else "busybox"
    return subprocess.run(["setpriv", f"--reuid={UID}", f"--regid={GID}", "--clear-groups", busybox, "cat",
                           str(path)],
                          capture_output=True, text=True, timeout=30, check=False)


def test_a_user_reads_its_own_jobs_logs_and_nobody_elses(cluster, user_access):
    mine = submit_as_user(cluster, user_access, "echo my-output; echo my-error >&2")
    theirs = cluster.submit(name="roots", command=["sh", "-c", "echo root-secret"])
    assert cluster.wait_state(mine, "COMPLETED") and cluster.wait_state(theirs, "COMPLETED")

    result = rade_as_user(cluster, user_access, "logs", str(mine))
    assert (result.returncode, result.stdout, result.stderr) == (0, "my-output\n", "my-error\n")

    refused = rade_as_user(cluster, user_access, "logs", str(theirs))
    assert refused.returncode == 125 and "root-secret" not in refused.stdout
    assert refused.stderr.startswith("rade: error:") and "Traceback" not in refused.stderr

    # The files themselves: the user's own, 0600, in directories it may pass through but not list.
    own_file = task_log_path(cluster.root, mine, 0, 0)
    assert (own_file.stat().st_uid, stat.S_IMODE(own_file.stat().st_mode)) == (UID, 0o600)
    modes = {stat.S_IMODE(path.stat().st_mode) for path in (own_file.parent, own_file.parent.parent)}
    assert modes == {0o711}
    assert read_as_user(own_file).stdout.count("my-output") == 1
    other = read_as_user(task_log_path(cluster.root, theirs, 0, 0))
    assert other.returncode != 0 and "root-secret" not in other.stdout
    assert read_as_user(own_file.parent.parent).returncode != 0  # ROOT/logs cannot be listed


def test_a_multi_task_jobs_lines_are_labelled_and_interleaved_as_written(cluster):
    # Each task writes a line, waits for the other's, then writes again: the order in time is fixed.
    script = ('i=$RADE_TASK_ID; echo first-$i; '
              'until [ -e /shared/first-$((1 - i)) ]; do touch /shared/first-$i; sleep 0.1; done; '
              'touch /shared/first-$i; sleep 0.3; echo second-$i')
    shared = cluster.root.parent / f"{cluster.root.name}-shared-logs"
    shared.mkdir()
    try:
        job = cluster.submit(name="pair", tasks=2, command=["sh", "-c", script],
                             volumes=[{"source": str(shared), "target": "/shared"}])
        follow = cluster.rade("logs", "-f", str(job), timeout=60).stdout.splitlines()
        assert cluster.show(job)["state"] == "COMPLETED"
        after = cluster.rade("logs", str(job)).stdout.splitlines()
    finally:
        subprocess.run(["rm", "-rf", str(shared)], check=False)
    for lines in (follow, after):
        assert sorted(lines) == ["0: first-0", "0: second-0", "1: first-1", "1: second-1"]
        assert {lines[0], lines[1]} == {"0: first-0", "1: first-1"}  # both firsts before either second
