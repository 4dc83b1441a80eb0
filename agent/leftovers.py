"""What a stopped agent leaves behind, and how it is taken back: task containers a removal killed half-way
left marked `removing` (`reclaim`), and, for a node taken out for good with no agent running, every
container, cgroup slice and task file it left (`stop_leftovers`).

Apart from the runner because both serve more than a running agent: the orphan sweep and the dev cluster's
`down` use them too, and neither needs the runner to do so.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from agent import mpi
from agent.slices import node_slices, remove_slice
from agent.state import AgentState, keep_task_log
from jobs.errors import RadeError

log = logging.getLogger(__name__)

__all__ = ["reclaim", "stop_leftovers"]


def reclaim(store: Any, record: Any) -> Any:
    """The record, taken back from a removal that an agent killed half-way left marked `removing` (which
    the engine would otherwise refuse to remove again, leaving the container forever): only this node's
    one agent (or, with none running, `stop_leftovers`) removes its task containers, so no one else is
    removing it now."""
    from engine.containers.status import ContainerStatus

    if record.status is not ContainerStatus.REMOVING:
        return record
    log.info("container %s: finishing a removal a stopped agent left half-way", record.id[:12])
    return store.update(record.id, lambda r: r.moved(ContainerStatus.EXITED))


def stop_leftovers(root: str, node: str, grace: float = 2.0) -> int:
    """With no agent running for `node`: stop every container it left (SIGTERM, `grace`, SIGKILL), keep
    their logs, remove them, their cgroup slices and task files. For taking a node out for good (the
    dev cluster's `down`); a restarted agent adopts them instead. How many containers were stopped."""
    from engine.containers import lifecycle
    from engine.containers.store import ContainerStore

    state = AgentState(root, node)
    store = ContainerStore(root)
    files, _ = state.load_all()
    by_container = {f.container_id: f for f in files if f.container_id}
    for record in store.all():
        if dict(record.config.labels).get("rade.node") == node:
            by_container.setdefault(record.id, None)  # made, but the agent stopped before its task file
    for container_id, file in by_container.items():
        try:
            record = lifecycle.stop(store, reclaim(store, store.get(container_id)), timeout=grace)
            if file is not None:
                with contextlib.suppress(OSError):
                    keep_task_log(root, file.key, store.dir(container_id).log)
            lifecycle.remove(store, record, force=True, volumes=True)
        except RadeError as err:
            log.warning("node %s: container %s: %s", node, container_id[:12], err.message)
    for file in files:
        mpi.remove_files(root, node, file.key)
        state.forget(file.key)
    for slice_name in node_slices(root, node):
        with contextlib.suppress(RadeError, OSError):
            remove_slice(slice_name)
    return len(by_container)
