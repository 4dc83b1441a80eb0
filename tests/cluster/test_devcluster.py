"""`rade cluster up|status|down` through the command, as a developer runs it: detached daemons that outlive
the command, a second `up` refused, and `down` leaving nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rade import devcluster
from tests.cluster.conftest import REPO, leftovers

pytestmark = [pytest.mark.root, pytest.mark.slow]


def rade(root, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rade", "--root", str(root), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)


def test_cluster_up_status_down_through_the_command(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the dev cluster needs root")
    state = None
    try:
        up = rade(tmp_path, "cluster", "up", "--nodes", "1")
        assert up.returncode == 0, up.stderr
        state = devcluster.load_state(str(tmp_path))
        status = json.loads(rade(tmp_path, "cluster", "status", "--json").stdout)
        assert [(r["role"], r["name"], r["running"]) for r in status] == \
            [("scheduler", "scheduler", True), ("agent", "node1", True)]
        nodes = json.loads(rade(tmp_path, "nodes", "--json").stdout)  # found without --scheduler
        assert [n["name"] for n in nodes] == ["node1"]
        again = rade(tmp_path, "cluster", "up", "--nodes", "1")
        assert again.returncode == 125 and "already up" in again.stderr and "Traceback" not in again.stderr
    finally:
        down = rade(tmp_path, "cluster", "down")
    assert down.returncode == 0 and "removed bridge" in down.stdout
    assert rade(tmp_path, "cluster", "status").stdout == "no dev cluster is up\n"
    assert state is not None
    procs = [state.scheduler] + [n.agent for n in state.nodes]
    assert not [p.pid for p in procs if devcluster.is_alive(p)]
    assert not leftovers(str(tmp_path), ["node1"], [n.netns for n in state.nodes],
                         [n.host_link for n in state.nodes] + [state.bridge])
