"""`rade logs JOB [--task N] [-f]`: a cluster job's output, read where its agents write it.

The agents of a cluster share the state root's storage (the dev cluster's one root; a real cluster's
shared file system). Each task's log is ROOT/logs/job-J/task-T.attempt-A.log from the moment its
container is made until long after: the agent makes it owned by the job's user, mode 0600, in
directories anyone may traverse but not list, so the user running this command reads its own jobs' logs
directly and nobody else's. Only the question of which tasks and attempts the job has goes to the
scheduler (which answers a user about its own jobs only), so a large log costs the scheduler nothing.

A job of several tasks gets each line prefixed with its task (`0: `, as `srun --label`), the tasks' lines
in the order they were written (by their timestamps), and with -f followed together as they come, until
the job ends. The files are looked at again every FOLLOW_INTERVAL while quiet: the agents write them on
other machines of a shared file system, where no local event says that a file grew.

`rade logs` is also the container command (`rade logs C`): a bare number is taken as a job id, anything
else as a container, so this module adds `--task` and the job case to that command when it exists.
"""

from __future__ import annotations

import argparse
import heapq
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from jobs.errors import RadeError, UsageError

JOB_CHECK_INTERVAL = 0.5
FOLLOW_INTERVAL = 0.1


class JobLogError(RadeError):
    """No log for the task asked about, or one this user may not read."""


def register(subparsers: argparse._SubParsersAction) -> None:
    existing = subparsers.choices.get("logs")
    if existing is None:
        existing = subparsers.add_parser("logs", help="a job's output: rade logs JOB [--task N] [-f]")
        existing.add_argument("-f", "--follow", action="store_true")
        existing.add_argument("container", metavar="JOB")
        container_logs = None
    else:
        container_logs = existing.get_default("func")
    existing.add_argument("--task", type=int, metavar="N", help="a cluster job's task N only (default: all)")
    existing.add_argument("--scheduler", metavar="ADDR", help="the scheduler's client address (for a job)")

    def dispatch(args: argparse.Namespace) -> int:
        if args.container.isdigit():
            return cmd_job_logs(args, int(args.container))
        if args.task is not None or container_logs is None:
            raise UsageError(f"{args.container!r} is not a job id", "give the number 'rade submit' printed")
        return container_logs(args)

    existing.set_defaults(func=dispatch)


def task_log(root: str, job_id: int, task: dict[str, Any]) -> Path:
    """Where the task's output is, while it runs and after."""
    from agent.state import task_log_path

    return task_log_path(root, job_id, task["task"], task["attempt"])


class TaskLog:
    """One task's log as read so far: whole lines come out, a line still being written waits."""

    def __init__(self, path: Path, label: bytes, job_id: int, task: int) -> None:
        self.path = path
        self.label = label
        self.where = f"job {job_id} task {task}"
        self.file: IO[bytes] | None = None
        self.tail = b""  # the bytes after the last newline read
        self.parts: list[bytes] = []  # the data of partial (P) records of the line being put together

    def open(self) -> bool:
        """Whether the log is open now (False: not made yet, the task has not started)."""
        if self.file is None:
            try:
                self.file = open(self.path, "rb")  # noqa: SIM115 - read across calls, closed by `close`
            except FileNotFoundError:
                return False
            except PermissionError:
                raise JobLogError(f"the log of {self.where} is not yours to read ({self.path})",
                                  "a job's logs are readable by its owner only") from None
        return True

    def lines(self, final: bool = False) -> Iterator[tuple[str, str, bytes]]:
        """(time, stream, the line as printed) for each whole line written since the last call; with
        `final`, also what the writer left unfinished."""
        from engine.containers.logs import decode

        if not self.open():
            return
        assert self.file is not None
        data = self.tail + self.file.read()
        *complete, self.tail = data.split(b"\n")
        if final and self.tail:
            complete.append(self.tail)
            self.tail = b""
        for raw in complete:
            record = decode(raw)
            if record is None:
                continue
            if record.partial:
                self.parts.append(record.data)
                continue
            text = b"".join(self.parts) + record.data
            self.parts = []
            yield record.time, record.stream, self.label + text + b"\n"
        if final and self.parts:
            yield "~", "stdout", self.label + b"".join(self.parts)
            self.parts = []

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def cmd_job_logs(args: argparse.Namespace, job_id: int) -> int:
    from rade.client import SchedulerClient, find_scheduler

    with SchedulerClient(find_scheduler(args.scheduler, args.root), root=args.root) as client:
        job = client.show(job_id)
        tasks = _tasks(job, args.task)
        if args.task is not None and not tasks and job["state"] != "PENDING":
            raise JobLogError(f"job {job_id} has no task {args.task}",
                              f"its tasks are {', '.join(str(t['task']) for t in job['tasks']) or 'none yet'}")
        if args.follow:
            _follow(client, args, job_id, job)
        else:
            _print_all(args.root, job_id, tasks)
    return 0


def _tasks(job: dict[str, Any], only: int | None) -> list[dict[str, Any]]:
    return sorted((t for t in job["tasks"] if only is None or t["task"] == only),
                  key=lambda t: (t["task"], t["attempt"]))


def _logs(root: str, job_id: int, tasks: list[dict[str, Any]], known: dict[tuple[int, int], TaskLog],
          label: bool) -> None:
    """Add a TaskLog to `known` for each task not in it yet."""
    for task in tasks:
        key = (task["task"], task["attempt"])
        if key not in known:
            known[key] = TaskLog(task_log(root, job_id, task), f"{task['task']}: ".encode() if label else b"",
                                 job_id, task["task"])


def _print_all(root: str, job_id: int, tasks: list[dict[str, Any]]) -> None:
    logs: dict[tuple[int, int], TaskLog] = {}
    _logs(root, job_id, tasks, logs, len({t["task"] for t in tasks}) > 1)
    try:
        # Each task's lines are in time order already: merged, the job's are too.
        _write(heapq.merge(*(log.lines(final=True) for log in logs.values()), key=lambda line: line[0]))
    finally:
        for log in logs.values():
            log.close()


def _follow(client: Any, args: argparse.Namespace, job_id: int, job: dict[str, Any]) -> None:
    """Print every task's new lines as they come, interleaved, until the job has ended and all is read."""
    from jobs.states import JobState, is_terminal

    logs: dict[tuple[int, int], TaskLog] = {}
    checked = time.monotonic()
    try:
        while True:
            tasks = _tasks(job, args.task)
            _logs(args.root, job_id, tasks, logs, len({t["task"] for t in tasks}) > 1 or
                  any(log.label for log in logs.values()))
            ended = is_terminal(JobState(job["state"]))
            # After the job's end is known, one last read takes what the tasks wrote before it.
            lines = sorted((line for log in logs.values() for line in log.lines(final=ended)),
                           key=lambda line: line[0])
            _write(lines, flush=True)
            if ended:
                return
            if not lines:
                time.sleep(FOLLOW_INTERVAL)
            # Asked at most every JOB_CHECK_INTERVAL: following a quiet job must not load the scheduler.
            if time.monotonic() - checked >= JOB_CHECK_INTERVAL:
                job, checked = client.show(job_id), time.monotonic()
    finally:
        for log in logs.values():
            log.close()


def _write(lines: Any, flush: bool = False) -> None:
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for _, stream, text in lines:
        (out if stream == "stdout" else err).write(text)
    out.flush()
    if flush:
        err.flush()
