"""The agent's on-disk state: one small file per task it runs, and where each task's log ends up.

    ROOT/agent/<node>/lock                        held by the running agent of <node> (one at a time)
    ROOT/agent/<node>/tasks/<job>.<task>.<attempt>.json   the task's container, slice and deadline
    ROOT/logs/job-<job>/task-<task>.attempt-<attempt>.log  the task's output (CRI format), the user's own

A task file is written (temp then rename) before its container starts and removed after its end has
been reported, so an agent restarted in between finds every container it may have left running and
adopts it. A task's log is made with its container, owned by the job's user with mode 0600 in
directories anyone may traverse but not list (0711), and linked as the container's own log
(ROOT/containers/<id>/ctr.log), so the user reads it with `rade logs`, on a shared root, while the task
runs and after its container is gone, and no one else can. The deadline is on the monotonic clock, which
counts from boot and so survives a restart of the agent (containers do not survive a reboot).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.filelock import try_lock
from jobs.errors import RadeError

STATE_VERSION = 1
_TASK_FILE = re.compile(r"^(\d+)\.(\d+)\.(\d+)\.json$")


class AgentStateError(RadeError):
    """The agent's state directory cannot be used."""


@dataclass(frozen=True, slots=True)
class TaskFile:
    """What a restarted agent needs to find one task again."""

    job_id: int
    task_id: int
    attempt: int
    container_id: str
    cgroup_slice: str
    deadline: float | None = None  # monotonic seconds, or None without a time limit
    grace: float = 10.0

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.job_id, self.task_id, self.attempt)


def task_log_path(root: str | os.PathLike[str], job_id: int, task_id: int, attempt: int) -> Path:
    return Path(root, "logs", f"job-{job_id}", f"task-{task_id}.attempt-{attempt}.log")


def job_log_dir(root: str | os.PathLike[str], job_id: int) -> Path:
    return Path(root, "logs", f"job-{job_id}")


def create_task_log(root: str | os.PathLike[str], key: tuple[int, int, int], uid: int, gid: int,
                    container_log: Path) -> bool:
    """Make the task's log file, owned by the job's user (`uid` -1: root's) and readable by it alone,
    and link it as the container's log, so the container writes its output there from the start and
    nothing moves at the end. True if linked; False when the two cannot be linked (another file system):
    the log is then moved at the end (`keep_task_log`). Its directories let anyone through and nobody
    list them, as Slurm's output files are the user's own: a user opens the files whose names it knows
    (its own jobs', from the scheduler) and that it owns."""
    path = task_log_path(root, *key)
    _make_traversable(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        if uid >= 0:
            os.fchown(fd, uid, gid if gid >= 0 else uid)
    finally:
        os.close(fd)
    try:
        os.link(path, container_log)
    except FileExistsError:
        return os.path.samefile(path, container_log)
    except OSError:
        return False
    return True


def keep_task_log(root: str | os.PathLike[str], key: tuple[int, int, int], container_log: Path) -> None:
    """Put the container's log where `rade logs` finds it once the container is gone, unless it is there
    already (linked at creation)."""
    path = task_log_path(root, *key)
    try:
        if os.path.samefile(path, container_log):
            return
    except FileNotFoundError:
        pass
    _make_traversable(path.parent)
    try:
        os.replace(container_log, path)
    except FileNotFoundError:
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))


def _make_traversable(job_dir: Path) -> None:
    """ROOT/logs and ROOT/logs/job-J: mode 0711, set after mkdir (past the umask), and on ROOT/logs each
    time a job's directory is made (one an older rade made listable is closed then)."""
    try:
        os.mkdir(job_dir, 0o711)
    except FileExistsError:
        return
    except FileNotFoundError:
        try:
            os.mkdir(job_dir.parent, 0o711)
        except FileExistsError:
            pass
        try:
            os.mkdir(job_dir, 0o711)
        except FileExistsError:
            return
    os.chmod(job_dir, 0o711)
    os.chmod(job_dir.parent, 0o711)


class AgentState:
    """The state directory of one node's agent."""

    def __init__(self, root: str | os.PathLike[str], node: str) -> None:
        self.root = Path(root)
        self.dir = self.root / "agent" / node
        self.tasks = self.dir / "tasks"
        self._lock_fd: int | None = None

    def lock(self) -> None:
        """Hold the node's lock for this process's life; AgentStateError if another agent has it."""
        self.tasks.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = try_lock(self.dir / "lock")
        if fd is None:
            raise AgentStateError(f"another agent runs node {self.dir.name} on this root ({self.dir})",
                                  "stop it first, or give this one another --name")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def path(self, key: tuple[int, int, int]) -> Path:
        """Where the task file of `key` is (`forget` deletes it, or whoever it is handed to)."""
        return self.tasks / "{}.{}.{}.json".format(*key)

    def save(self, task: TaskFile) -> None:
        # Temp then rename, so a killed agent leaves the old file or the new one. No fsync: the file is for
        # an agent restarted on a running machine (the page cache has it), and what a power cut loses
        # describes containers that died with the machine; an fsync per task costs more than its start.
        path = self.path(task.key)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({"version": STATE_VERSION, **asdict(task)}, handle)
        os.replace(tmp, path)

    def forget(self, key: tuple[int, int, int]) -> None:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            pass

    def load_all(self) -> tuple[list[TaskFile], list[str]]:
        """Every task file, and a problem line for each one that could not be read (left in place)."""
        found, problems = [], []
        try:
            entries = sorted(os.scandir(self.tasks), key=lambda e: e.name)
        except FileNotFoundError:
            return [], []
        for entry in entries:
            if not _TASK_FILE.match(entry.name):
                continue
            try:
                with open(entry.path, encoding="utf-8") as handle:
                    data = json.load(handle)
                if data.pop("version", None) != STATE_VERSION:
                    raise ValueError("unknown version")
                found.append(TaskFile(**data))
            except (OSError, ValueError, TypeError) as err:
                problems.append(f"{entry.path}: {err}")
        return found, problems
