"""Containers of this node that no task owns any more: found and removed by the agent's periodic sweep.

Every task container is removed when its task's end is reported. A removal that fails (an error the
agent logged, a crash between report and removal in a previous agent whose task file was already gone)
would otherwise leave the container in the store for good, with its overlay directories and its name.
Like slurmd clearing the steps it no longer knows, the agent looks every `SWEEP_EVERY` seconds for
containers labelled with its node that none of its tasks holds and no supervisor runs, keeps their log
where `rade logs` finds it, and removes them. Running ones are left alone: stopping a task that runs is
the scheduler's decision (fencing), never a sweep's.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from typing import Any

from jobs.errors import RadeError

log = logging.getLogger(__name__)

SWEEP_EVERY = 15.0


def task_key(record: Any) -> tuple[int, int, int] | None:
    """The (job, task, attempt) of a task container, from its labels; None for another container."""
    labels = dict(record.config.labels)
    try:
        return int(labels["rade.job"]), int(labels["rade.task"]), int(labels["rade.attempt"])
    except (KeyError, ValueError):
        return None


def sweep(store: Any, root: str, node: str, owned: Iterable[str]) -> list[str]:
    """Remove the ended containers of `node` whose ids are not in `owned` (the containers of the tasks
    the agent tracks); the ids of those removed."""
    from agent.leftovers import reclaim
    from agent.state import task_log_path
    from engine.containers import lifecycle
    from engine.containers.status import is_active

    keep = set(owned)
    removed = []
    for record in store.all():
        if record.id in keep or dict(record.config.labels).get("rade.node") != node:
            continue
        key = task_key(record)
        try:
            record = lifecycle.refresh(store, reclaim(store, record))
            if is_active(record.status) or lifecycle.is_supervised(store, record):
                continue  # running, or being started by its supervisor
            log.warning("container %s (job %s task %s attempt %s) outlived its task: removing it",
                        record.id[:12], *(key or ("?", "?", "?")))
            if key is not None:
                target = task_log_path(root, *key)
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with contextlib.suppress(FileNotFoundError):
                        os.replace(store.dir(record.id).log, target)
            lifecycle.remove(store, record, force=True, volumes=True)
            removed.append(record.id)
        except (RadeError, OSError) as err:
            log.warning("container %s: removing a container no task owns: %s", record.id[:12], err)
    return removed
