"""Task cgroup slices on the real cgroup tree: made with the task's limits, named apart per root, and
removed even when a failed container start left its own empty cgroup below them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.slices import make_slice, node_slices, remove_slice, slice_prefix, task_limits
from jobs.messages import Launch

pytestmark = pytest.mark.root


@pytest.fixture
def slice_name(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("cgroups need root")
    name = f"{slice_prefix(str(tmp_path), 'n1')}.1.0.0"
    try:
        yield name
    finally:
        remove_slice(name)


def test_two_roots_never_share_a_slice_name(tmp_path):
    assert slice_prefix(str(tmp_path / "a"), "node1") != slice_prefix(str(tmp_path / "b"), "node1")
    assert slice_prefix(str(tmp_path / "a"), "node1").startswith("node1-")


def test_a_slice_is_made_with_the_tasks_limits_and_removed_with_what_a_failed_start_left(tmp_path, slice_name):
    order = Launch(job_id=1, task_id=0, attempt=0, spec={"resources": {"cpus": 0.5}}, nodes=("n1",), cpus=(0,),
                   memory=64 << 20, pids_limit=64)
    limits = task_limits(order)
    assert (limits.cpus, limits.cpuset_cpus, limits.memory, limits.pids) == (0.5, "0", 64 << 20, 64)
    driver = make_slice(slice_name, limits)
    assert node_slices(str(tmp_path), "n1") == [slice_name]
    paths = driver.paths()
    leftover = Path(paths[0], "c" * 64)
    leftover.mkdir()  # an engine cgroup left behind, empty
    older = Path(paths[0], "task", "d" * 64)
    older.mkdir(parents=True)  # and an older agent's `task` level with one in it
    remove_slice(slice_name)
    assert not [p for p in paths if os.path.exists(p)]
    assert node_slices(str(tmp_path), "n1") == []
