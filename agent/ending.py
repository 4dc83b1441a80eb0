"""How a task ends on this node: its end found once the container's supervisor is done, reported with
exit code, OOM, CPU seconds and peak memory, and what it leaves cleaned up (its log kept in ROOT/logs, the
container, its slice, its MPI files and its task file removed).

This is the part of `EngineRunner` every way out of a task goes through (a failed start, a malformed
order, an exited container, an adopted one found ended). The runner holds the tasks and mixes this in.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from agent import mpi
from agent.leftovers import reclaim
from agent.slices import remove_slice
from agent.state import AgentState, keep_task_log
from jobs.errors import RadeError
from jobs.states import TaskState

if TYPE_CHECKING:
    from agent.purge import Purger
    from agent.tasks import Clock, Task, Watcher

log = logging.getLogger(__name__)

# After a supervisor hung up before its container's end was recorded (see `_finish`).
REATTACH_DELAY = 0.02


class TaskEnding:
    """The end of a task and its clean-up, for `EngineRunner`."""

    # What this works with, kept by `EngineRunner` (with `_report`).
    root: str
    node: str
    state: AgentState
    watcher: Watcher
    clock: Clock
    launcher: Any
    store: Any
    purger: Purger
    tasks: dict[tuple[int, int, int], Task]

    def _finish(self, task: Task) -> None:
        """The container has exited and its supervisor cleaned up: report how it ended."""
        from engine.containers import lifecycle
        from engine.containers.status import is_active
        from engine.errors import ContainerError

        if task.control is not None:
            self.watcher.unwatch(task.control.sock.fileno())
            task.control.close()
            task.control = None
        try:
            record = lifecycle.refresh(self.store, self.store.get(task.file.container_id))
        except ContainerError as err:
            self._end(task, TaskState.FAILED, 125, f"the container's record is gone: {err.message}")
            return
        if is_active(record.status) or lifecycle.is_being_started(self.store, record):
            # The connection ended before the supervisor was done (a supervisor of an older rade, still
            # running a container adopted across an upgrade, turned clients away while it drained the
            # output). Reported now, the end would come from the running record, and the container, which
            # cannot be removed while it says running or is locked, would outlive its task: look again.
            log.info("job %d task %d attempt %d: its end is still being recorded: looking again", *task.key)
            task.reattach_at = self.clock.monotonic() + REATTACH_DELAY
            return
        code, reason = record.exit_code, record.error or task.start_error.get("message", "")
        # A task stopped by rade (time limit, cancel) or by the OOM killer has no exit code of its own:
        # its state says how it ended, and the signal's status goes in the reason.
        if task.stop_state is not None:
            state, reason, code = task.stop_state, f"{task.stop_reason} (exit status {code})", None
        elif record.oom_killed:
            state, reason, code = TaskState.OOM, f"out of memory at its limit (exit status {code})", None
        elif task.start_error:
            state = TaskState.FAILED
        else:
            state = TaskState.COMPLETED if code == 0 else TaskState.FAILED
        self._end(task, state, code, reason, record)

    def _end(self, task: Task, state: TaskState, code: int | None, reason: str, record: Any = None) -> None:
        from engine.containers import lifecycle

        cpu_seconds, peak = 0.0, 0
        try:
            stats = task.slice.stats()
            cpu_seconds, peak = stats.cpu_seconds, stats.memory_peak
        except (RadeError, OSError) as err:
            log.warning("job %d task %d attempt %d: reading usage: %s", *task.key, err)
        if record is not None:
            try:
                keep_task_log(self.root, task.key, self.store.dir(record.id).log)
            except OSError as err:
                log.warning("job %d task %d attempt %d: keeping the log: %s", *task.key, err)
        log.info("job %d task %d attempt %d: %s (exit %s, %.2f cpu s, peak %d bytes)%s", *task.key, state.value,
                 code, cpu_seconds, peak, f": {reason}" if reason else "")
        # Reported before the clean-up, which the next task on these CPUs need not wait for. Until the task
        # file goes, a restarted agent would find the exited container and report this end again (the
        # scheduler drops the repeat).
        self._report(task.key, state, code, reason, cpu_seconds, peak)
        # Only the rename that takes the container out of the store happens here; its files and the
        # slice are deleted by the launcher (or without one, on the purger's thread).
        key, slice_name = task.key, task.file.cgroup_slice
        retired = None
        if record is not None:
            try:
                retired = lifecycle.retire_exited(self.store, reclaim(self.store, record), volumes=True)
            except RadeError as err:
                log.warning("job %d task %d attempt %d: removing container: %s", *key, err.message)
        elif task.file.container_id:
            self._remove_unstarted(task.file.container_id)
        mpi.remove_files(self.root, self.node, task.key)
        self.tasks.pop(task.key, None)
        if retired is not None:
            path, lock_fd = retired
            if self.launcher is not None and self.launcher.purge(path, lock_fd, slice_name, self.state.path(key)):
                os.close(lock_fd)
                return
            self.purger.put(path, lock_fd, lambda: _remove_slice(key, slice_name))
        else:
            _remove_slice(key, slice_name)
        self.state.forget(key)

    def _remove_unstarted(self, container_id: str) -> None:
        from engine.containers import lifecycle

        try:
            lifecycle.remove(self.store, self.store.get(container_id), force=True, volumes=True)
        except RadeError as err:
            log.warning("container %s: removing after a failed start: %s", container_id[:12], err.message)


def _remove_slice(key: tuple[int, int, int], slice_name: str) -> None:
    try:
        remove_slice(slice_name)
    except (RadeError, OSError) as err:
        log.warning("job %d task %d attempt %d: removing its cgroup: %s", *key, err)
