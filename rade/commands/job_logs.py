"""`rade logs JOB [--task N] [-f]`: a cluster job's output, read where its agents write it.

The agents of a cluster share the state root's storage (the dev cluster's one root; a real cluster's
shared file system), so the client reads a task's log directly: ROOT/logs/job-J/task-T.attempt-A.log
once the task ended, the container's own log (found through the agent's task file) while it runs.
Nothing goes through the scheduler but the question of which tasks, attempts and nodes the job has, so
a large log costs the scheduler nothing. With -f it follows the log until the job ends.

`rade logs` is also the container command (`rade logs C`): a bare number is taken as a job id, anything
else as a container, so this module adds `--task` and the job case to that command when it exists.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobs.errors import RadeError, UsageError

JOB_CHECK_INTERVAL = 0.5


class JobLogError(RadeError):
    """No log for the task asked about."""


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


def task_log(root: str, job_id: int, task: dict[str, Any]) -> Path | None:
    """Where the task's output is now: its kept log once it ended, the container's while it runs."""
    from agent.state import AgentState, task_log_path

    done = task_log_path(root, job_id, task["task"], task["attempt"])
    if done.exists():
        return done
    if not task.get("node"):
        return None
    key = (job_id, task["task"], task["attempt"])
    files, _ = AgentState(root, task["node"]).load_all()
    for file in files:
        if file.key == key and file.container_id:
            live = Path(root, "containers", file.container_id, "ctr.log")
            return live if live.exists() else (done if done.exists() else None)
    return done if done.exists() else None


def cmd_job_logs(args: argparse.Namespace, job_id: int) -> int:
    from jobs.states import JobState, is_terminal
    from rade.client import SchedulerClient, find_scheduler

    with SchedulerClient(find_scheduler(args.scheduler, args.root), root=args.root) as client:
        job = client.show(job_id)
        tasks = [t for t in job["tasks"] if args.task is None or t["task"] == args.task]
        if args.task is not None and not tasks and job["state"] != "PENDING":
            raise JobLogError(f"job {job_id} has no task {args.task}",
                              f"its tasks are {', '.join(str(t['task']) for t in job['tasks']) or 'none yet'}")
        checked = [time.monotonic(), is_terminal(JobState(job["state"]))]

        def running() -> bool:
            # Asked at most every JOB_CHECK_INTERVAL: following a quiet log must not load the scheduler.
            if not checked[1] and time.monotonic() - checked[0] >= JOB_CHECK_INTERVAL:
                checked[:] = [time.monotonic(), is_terminal(JobState(client.show(job_id)["state"]))]
            return not checked[1]

        if args.follow and not tasks:
            while running() and not tasks:
                time.sleep(JOB_CHECK_INTERVAL)
                job = client.show(job_id)
                tasks = [t for t in job["tasks"] if args.task is None or t["task"] == args.task]
        prefix = len({t["task"] for t in tasks}) > 1
        for task in sorted(tasks, key=lambda t: (t["task"], t["attempt"])):
            _print_task(args.root, job_id, task, prefix, running if args.follow else None)
    return 0


def _print_task(root: str, job_id: int, task: dict[str, Any], prefix: bool,
                follow: Callable[[], bool] | None) -> None:
    from engine.containers.logs import read

    path = task_log(root, job_id, task)
    while path is None and follow is not None and follow():
        time.sleep(JOB_CHECK_INTERVAL)
        path = task_log(root, job_id, task)
    if path is None:
        return
    label = f"[task {task['task']}] ".encode() if prefix else b""
    out = sys.stdout.buffer
    # A running task's log moves to ROOT/logs when it ends: the open file follows it (same inode).
    for record in read(path, follow=follow):
        stream = out if record.stream == "stdout" else sys.stderr.buffer
        stream.write(label + record.data + (b"" if record.partial else b"\n"))
        if follow is not None:
            stream.flush()
    out.flush()
