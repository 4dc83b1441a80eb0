"""Isolation on a real dev cluster node: a job cannot harm its node, its neighbours or rade itself.

Jobs run as `nobody` (a real uid, not root) through its own key; the probe also runs as root's job to
show the hardening holds for a root owner too (no capabilities, no_new_privs, seccomp)."""

from __future__ import annotations

import contextlib
import glob
import os
from pathlib import Path

import pytest

from rade.client import SchedulerRefused

pytestmark = [pytest.mark.root, pytest.mark.slow]

PROBE = r"""
echo "uid $(id -u) gid $(id -g)"
grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status
grep -E ' / | /data | /ro ' /proc/mounts | sed 's/^/mnt /'
if mount -t tmpfs none /mnt 2>/dev/null; then echo "mount: allowed"; else echo "mount: refused"; fi
printf 'x' > /tmp/m.ko 2>/dev/null
if insmod /tmp/m.ko 2>/dev/null; then echo "insmod: allowed"; else echo "insmod: refused"; fi
if echo 1 > /proc/sys/kernel/modules_disabled 2>/dev/null; then echo "sysctl: written"; else echo "sysctl: refused"; fi
for f in {state} {keys} {agent}; do if test -e "$f"; then echo "state: visible $f"; else echo "state: hidden"; fi; done
if echo mine > /data/own-$RADE_JOB_ID; then echo "volume: written"; else echo "volume: refused"; fi
if echo x > /ro/x 2>/dev/null; then echo "ro volume: written"; else echo "ro volume: refused"; fi
mkdir -p {hostdir} 2>/dev/null; echo pwned > {hostfile} 2>/dev/null
echo "cmdlines: $(for p in /proc/[0-9]*; do [ "$p" = /proc/1 ] || tr '\0' ' ' < $p/cmdline; echo; done 2>/dev/null | tr '\n' '|')"
echo "end"
"""


def _probe(node, as_user: bool, tmp: Path) -> dict[str, list[str]]:
    data, ro = node.shared / f"data-{as_user}", node.shared / "ro"
    for directory in (data, ro):
        directory.mkdir(exist_ok=True)
        os.chmod(directory, 0o777)
    hostfile = node.root.parent / "host-secret"
    hostfile.write_text("original\n")
    script = PROBE.format(state=node.root / "scheduler" / "state.db", keys=node.root / "cluster" / "keys",
                          agent=node.root / "agent", hostdir=hostfile.parent, hostfile=hostfile)
    neighbour = node.submit("exec sleep 4321", name="neighbour", as_user=not as_user)
    node.wait_state(neighbour, {"RUNNING"})
    job = node.submit(script, as_user=as_user, volumes=[f"{data}:/data", f"{ro}:/ro:ro"])
    shown = node.wait_end(job)
    node.cancel_all()  # the neighbour: the node has two CPUs
    assert shown["state"] == "COMPLETED", shown
    lines: dict[str, list[str]] = {}
    for line in node.log(job).splitlines():
        key, _, value = line.partition(":") if ":" in line.split(" ")[0] or line.startswith("ro volume:") \
            else line.partition(" ")
        lines.setdefault(key.strip(), []).append(value.strip())
    assert (data / f"own-{job}").read_text() == "mine\n"
    assert hostfile.read_text() == "original\n", "a job wrote a host file outside its volumes"
    return lines


@pytest.fixture(scope="module")
def probes(one_node, tmp_path_factory) -> dict[bool, dict[str, list[str]]]:
    try:
        return {as_user: _probe(one_node, as_user, tmp_path_factory.mktemp("probe")) for as_user in (True, False)}
    finally:
        one_node.cancel_all()


def test_job_runs_as_its_owners_uid_never_root(probes) -> None:
    assert probes[True]["uid"] == ["65534 gid 65534"]  # nobody's uid and gid from the passwd
    assert probes[False]["uid"] == ["0 gid 0"]  # root's job: root, as its owner is


@pytest.mark.parametrize("as_user", [True, False], ids=["nobody", "root"])
def test_job_has_no_capabilities_no_new_privs_and_seccomp(probes, as_user) -> None:
    found = probes[as_user]
    assert found["CapEff"] == ["0000000000000000"] and found["CapPrm"] == ["0000000000000000"]
    assert found["CapBnd"] == ["0000000000000000"]
    assert found["NoNewPrivs"] == ["1"] and found["Seccomp"] == ["2"]


@pytest.mark.parametrize("as_user", [True, False], ids=["nobody", "root"])
def test_job_cannot_mount_load_modules_or_write_sysctls(probes, as_user) -> None:
    found = probes[as_user]
    assert found["mount"] == ["refused"]
    assert found["insmod"] == ["refused"]
    assert found["sysctl"] == ["refused"]


@pytest.mark.parametrize("as_user", [True, False], ids=["nobody", "root"])
def test_image_and_volumes_are_nosuid_nodev_and_ro_volume_refuses_writes(probes, as_user) -> None:
    found = probes[as_user]
    mounts = {fields.split()[1]: fields.split()[3].split(",") for fields in found["mnt"]}
    for target in ("/", "/data", "/ro"):
        assert {"nosuid", "nodev"} <= set(mounts[target]), (target, mounts[target])
    assert "ro" in mounts["/ro"]
    assert found["volume"] == ["written"] and found["ro volume"] == ["refused"]


@pytest.mark.parametrize("as_user", [True, False], ids=["nobody", "root"])
def test_job_cannot_see_rade_state_or_other_jobs_processes(probes, as_user) -> None:
    found = probes[as_user]
    assert found["state"] == ["hidden"] * 3
    (cmdlines,) = found["cmdlines"]
    assert "sleep 4321" not in cmdlines  # the neighbour job on the same node
    # Nor the agent: PID 1 is the container's own init (forked from the agent, so its command line is the
    # agent's), every other process is the job's.
    assert "rade" not in cmdlines


def test_volume_holding_rade_state_or_outside_allowed_paths_is_refused(node) -> None:
    for source, expected in ((node.root / "cluster" / "keys", "holds rade's own state"),
                             (node.root.parent, "holds rade's own state"),
                             (Path("/etc"), "not under a path this cluster allows (/home, /scratch, /tmp)")):
        with pytest.raises(SchedulerRefused) as refused:
            node.submit("true", volumes=[f"{source}:/x"])
        assert expected in refused.value.message


def pids_refusals(node, job: int) -> int:
    """How many forks the pids limit refused in the job's cgroups (pids.events `max`, v1 or v2)."""
    from agent.tasks import slice_prefix

    slice_name = f"{slice_prefix(str(node.root), 'node1')}.{job}.0.0"
    total = 0
    for pattern in (f"/sys/fs/cgroup/pids/rade-agent/{slice_name}/**/pids.events",
                    f"/sys/fs/cgroup/rade-agent/{slice_name}/**/pids.events"):
        for path in glob.glob(pattern, recursive=True):
            with contextlib.suppress(OSError):
                for line in Path(path).read_text().splitlines():
                    if line.startswith("max "):
                        total = max(total, int(line.split()[1]))
    return total


def test_fork_bomb_is_stopped_by_its_pids_limit_while_its_neighbour_finishes(node) -> None:
    bomb = node.submit("b() { b | b & }; b; sleep 120", name="bomb", time_limit="90s",
                       resources={"cpus": 1, "memory": "512M"})
    node.wait_state(bomb, {"RUNNING"})
    node.wait_for("the bomb to hit its pids limit", lambda: pids_refusals(node, bomb) > 0, timeout=60)
    neighbour = node.submit("for i in 1 2 3 4 5 6 7 8; do sleep 0.2 & done; wait; echo neighbour-done",
                            name="neighbour")
    shown = node.wait_end(neighbour)
    assert shown["state"] == "COMPLETED" and "neighbour-done" in node.log(neighbour)
    assert node.show(bomb)["state"] == "RUNNING"  # contained, not crashed into its node
    assert "can't fork" in node.log(bomb)
    with node.client() as client:
        client.cancel([bomb])
    assert node.wait_end(bomb)["state"] == "CANCELLED"


def test_memory_hog_is_oom_killed_and_reported_while_its_neighbour_is_untouched(node) -> None:
    neighbour = node.submit("sleep 3; echo neighbour-done", name="neighbour")
    hog = node.submit("x=$(dd if=/dev/zero bs=1M count=400 2>/dev/null | tr '\\0' a); echo survived",
                      name="hog", resources={"cpus": 1, "memory": "32M"})
    assert node.wait_end(hog)["state"] == "OOM"
    shown = node.wait_end(neighbour)
    assert shown["state"] == "COMPLETED" and "neighbour-done" in node.log(neighbour)


def test_another_users_job_logs_and_cancel_are_refused_by_the_command(node) -> None:
    import subprocess
    import sys

    job = node.submit("echo secret-output; sleep 60", name="roots", as_user=False)
    node.wait_state(job, {"RUNNING"})
    env = {**os.environ, "RADE_KEY": node.user_credentials().source}
    for args in (["logs", str(job)], ["cancel", str(job)], ["show", str(job)]):
        result = subprocess.run([sys.executable, "-m", "rade", "--root", str(node.root), *args], env=env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 125
        assert result.stderr.splitlines() == [
            f"rade: error: job {job} belongs to root, not nobody (you may see and cancel only your own jobs)"]
        assert "secret-output" not in result.stdout
    assert node.show(job)["state"] == "RUNNING"
