"""A task's cgroup slice: `rade-agent/<node>-<root hash>.<job>.<task>.<attempt>`, where the engine makes
the container's own cgroup.

The slice holds the task's allocation (its cores as the cpuset, a CPU quota for a fraction of a CPU) and
outlives the container's cgroup, which the engine removes when the container exits while leaving the
slice, a nested parent, to the agent (`engine.cgroups.files.is_shared_parent`): the slice's counters,
which include its children's, then still give the task's CPU seconds and peak memory. The memory limit is
the container's alone, so an OOM kill is counted where the engine looks. The node's name and its state
root's hash keep two clusters' `node1` on one machine apart. One directory a hierarchy a task: every
directory made costs the kernel a cgroup (a memory cgroup is not small) and its removal.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Any

from jobs.messages import Launch

SLICE_PARENT = "rade-agent"


def task_limits(order: Launch) -> Any:
    """The cgroup limits of a task: its cores as the cpuset, its memory, and a CPU quota when the job
    asked for a fraction of a CPU (whole CPUs get exclusive cores, so no quota)."""
    from engine.cgroups.driver import Limits

    cpus = (order.spec.get("resources") or {}).get("cpus")
    fractional = isinstance(cpus, int | float) and not float(cpus).is_integer()
    # Every limit the container gets is set on the slice too: the engine's cgroup for it joins exactly
    # the hierarchies its limits need, and each of them must find the slice made above it.
    return Limits(cpus=float(cpus) if fractional else None,
                  cpuset_cpus=",".join(map(str, order.cpus)) if order.cpus else None,
                  memory=order.memory or None, pids=order.pids_limit or None)


def container_parent(slice_name: str) -> str:
    """The cgroup parent the engine makes the task's container under."""
    return f"{SLICE_PARENT}/{slice_name}"


def open_slice(slice_name: str) -> Any:
    from engine.cgroups import open_cgroup

    return open_cgroup(slice_name, SLICE_PARENT)


def make_slice(slice_name: str, limits: Any) -> Any:
    """Create the task's slice with the task's limits, so the container's cgroup finds every hierarchy it
    joins already made above it (and on cgroup v2, the controllers it needs delegated to it); the slice's
    driver."""
    from engine.cgroups import files

    driver = open_slice(slice_name)
    driver.create()
    driver.apply(limits)
    if driver.version == 2:
        offered = files.read(f"{driver.path}/cgroup.controllers", "").split()
        wanted = [c for c in ("cpu", "cpuset", "memory", "pids") if c in offered]
        if wanted:
            files.write(f"{driver.path}/cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
    return driver


def remove_slice(slice_name: str) -> None:
    """Remove what is left of the task's cgroups (what the engine left below the slice, then the slice; the
    agents' common parent goes with its last slice)."""
    # A container whose start failed half-way can leave its own cgroup below the slice (and a slice made
    # by an older agent has a `task` level), empty of processes but in the way of removing the slice:
    # empty cgroups go first, deepest first.
    driver = open_slice(slice_name)
    for path in driver.paths():
        for parent, children, _ in os.walk(path, topdown=False):
            for child in children:
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(parent, child))
    driver.remove()


def slice_prefix(root: str, node: str) -> str:
    """What the names of a node's task slices start with: the node, and its state root's hash, since nodes
    of two clusters on one machine (dev clusters, tests) may have the same name."""
    digest = hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:8]
    return f"{node}-{digest}"


def node_slices(root: str, node: str) -> list[str]:
    """The task slices of `node` on `root` present in the cgroup tree."""
    prefix = slice_prefix(root, node) + "."
    names = set()
    for path in open_slice(f"{prefix}0.0.0").paths():
        parent = os.path.dirname(path)
        with contextlib.suppress(OSError):
            names.update(e.name for e in os.scandir(parent) if e.is_dir() and e.name.startswith(prefix))
    return sorted(names)
