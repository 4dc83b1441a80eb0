"""Cluster commands: submit, queue (q), show, cancel, nodes, drain, resume, and the daemons `rade scheduler`
and `rade agent --simulate`.

Each handler parses nothing itself beyond its options: specs are read by `jobs.loader`, requests go through
`rade.client`, and tables are printed aligned for a terminal, or as JSON with `--json`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from jobs.errors import UsageError

# What `submit --wait` exits with when the job ended without an exit code of its own (Docker's and
# coreutils' conventions, so scripts can tell them apart).
EXIT_FOR_STATE = {"TIMEOUT": 124, "OOM": 137, "CANCELLED": 130, "NODE_FAIL": 125}


def register(subparsers: argparse._SubParsersAction) -> None:
    def client_parser(name: str, help_text: str, aliases: Sequence[str] = ()) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(name, help=help_text, aliases=list(aliases))
        parser.add_argument("--scheduler", metavar="ADDR", help="the scheduler's client address "
                            "(default: $RADE_SCHEDULER, or the local cluster's)")
        return parser

    p = client_parser("submit", "submit a job YAML to the scheduler")
    p.add_argument("job", metavar="JOB.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the spec, e.g. --set resources.memory=4G")
    p.add_argument("--wait", action="store_true", help="wait for the job to end and exit with its exit code")
    p.add_argument("--json", action="store_true", help="print the job ids as JSON")
    p.set_defaults(func=cmd_submit)

    p = client_parser("queue", "list jobs: ID NAME USER STATE NODES TIME REASON", aliases=["q"])
    p.add_argument("--all", action="store_true", help="every user's jobs, and those that ended today")
    p.add_argument("--user", help="only this user's jobs")
    p.add_argument("--priority", action="store_true",
                   help="pending jobs' priority and its factors (job, age, fair share), highest first")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_queue)

    p = client_parser("show", "one job in full: tasks, nodes, exit codes, why it waits")
    p.add_argument("job", type=int, metavar="JOB")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = client_parser("cancel", "cancel jobs (123 cancels a whole array, 123_7 one job of it)")
    p.add_argument("jobs", nargs="+", metavar="JOB")
    p.set_defaults(func=cmd_cancel)

    p = client_parser("nodes", "list nodes: NAME STATE CPUS MEM GPUS LABELS REASON")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_nodes)

    p = client_parser("drain", "give nodes no new work; their running work finishes (or stops at --deadline)")
    p.add_argument("nodes", nargs="+", metavar="NODE")
    p.add_argument("--reason", required=True, metavar="TEXT")
    p.add_argument("--deadline", metavar="DURATION", help="stop and requeue what still runs after this long")
    p.set_defaults(func=cmd_drain)

    p = client_parser("resume", "return drained nodes to service")
    p.add_argument("nodes", nargs="+", metavar="NODE")
    p.set_defaults(func=cmd_resume)

    p = subparsers.add_parser("scheduler", help="run the central scheduler daemon (in the foreground)")
    p.add_argument("--config", metavar="FILE", help="YAML: agents, clients, heartbeat_interval, misses, state")
    p.set_defaults(func=cmd_scheduler)

    p = subparsers.add_parser("agent", help="run this node's agent; --simulate runs simulated nodes for testing")
    p.add_argument("--scheduler", metavar="ADDR", help="the scheduler's agent address (default: the local one)")
    p.add_argument("--name", metavar="NODE", help="the node's name (default: the host name)")
    p.add_argument("--config", metavar="FILE", help="the agent's YAML configuration")
    p.add_argument("--simulate", action="store_true",
                   help="simulated nodes: tasks 'run' for their command's sleep, without containers")
    p.add_argument("--cpus", type=int, default=4, help="with --simulate: CPUs of each node")
    p.add_argument("--memory", default="8G", help="with --simulate: memory of each node")
    p.add_argument("--count", type=int, default=1, help="with --simulate: how many nodes")
    p.add_argument("--prefix", default="sim", help="with --simulate: nodes are named PREFIX001, PREFIX002...")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="with --simulate: a label on every node")
    p.set_defaults(func=cmd_agent)


def _client(args: argparse.Namespace):
    from rade.client import SchedulerClient, find_scheduler

    return SchedulerClient(find_scheduler(args.scheduler, args.root), root=args.root)


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")


# -- jobs -----------------------------------------------------------------------------------------------------

def cmd_submit(args: argparse.Namespace) -> int:
    from jobs.loader import load_spec

    spec = load_spec(args.job, args.overrides)
    with _client(args) as client:
        ids = client.submit(spec.to_dict())
        if args.json and not args.wait:
            _print_json({"jobs": ids})
        elif not args.json:
            sys.stdout.write("\n".join(map(str, ids)) + "\n")
            sys.stdout.flush()
        if not args.wait:
            return 0
        worst = 0
        ends = []
        for job_id in ids:
            end = client.wait(job_id)
            ends.append({"job": job_id, "state": end["state"], "exit_code": end["exit_code"]})
            code = end["exit_code"] if end["exit_code"] is not None else EXIT_FOR_STATE.get(end["state"], 125)
            if end["state"] != "COMPLETED":
                detail = "" if end["exit_code"] is None else f" (exit {end['exit_code']})"
                sys.stderr.write(f"rade: job {job_id} ended {end['state']}{detail}\n")
            worst = max(worst, code)
        if args.json:
            _print_json({"jobs": ids, "ended": ends})
        return worst


def _elapsed(seconds: float | None) -> str:
    from jobs.units import format_duration

    return "" if seconds is None else format_duration(seconds)


def cmd_queue(args: argparse.Namespace) -> int:
    from rade.client import current_user

    user = args.user if args.user else (None if args.all else current_user())
    with _client(args) as client:
        rows = client.queue(user=user, include_ended=args.all)
    if args.json:
        _print_json(rows)
        return 0
    if args.priority:
        pending = sorted((r for r in rows if r.get("factors")), key=lambda r: (-r["factors"]["priority"], r["id"]))
        _table(["ID", "NAME", "USER", "PRIORITY", "JOB", "AGE", "FAIRSHARE"],
               [[r["id"], r["name"], r["user"], r["factors"]["priority"], f"{r['factors']['job']:.4f}",
                 f"{r['factors']['age']:.4f}", f"{r['factors']['fairshare']:.4f}"] for r in pending])
        return 0
    from scheduler.arrays import fold_queue

    _table(["ID", "NAME", "USER", "STATE", "NODES", "TIME", "REASON"],
           [[r["label"], r["name"], r["user"], r["state"], ",".join(r["nodes"]) or "-", _elapsed(r["time"]),
             r["reason"] or ""] for r in fold_queue(rows, {r["array_of"]: r.get("array_limit") for r in rows})])
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.show(args.job)
    if args.json:
        _print_json(job)
        return 0
    out = sys.stdout
    out.write(f"Job {job['id']}: {job['name']}  user {job['user']}  state {job['state']}"
              f"{'  exit ' + str(job['exit_code']) if job['exit_code'] is not None else ''}\n")
    out.write(f"  priority {job['priority']}  attempt {job['attempt']}  time {_elapsed(job['time']) or '-'}\n")
    if job.get("reason"):
        out.write(f"  reason: {job['reason']}\n")
    if job.get("expected_start") is not None:
        import time

        out.write(f"  expected start: {time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(job['expected_start']))}"
                  " (at the latest, from running jobs' time limits)\n")
    if job.get("hops") is not None:
        out.write(f"  switch hops between its nodes: {job['hops']}\n")
    pending = job.get("pending")
    if pending:
        out.write(f"  waiting: {pending['reason']}: {pending['detail']}\n")
        for node, why in sorted(pending["nodes"].items()):
            out.write(f"    {node}: {why}\n")
    if job["tasks"]:
        out.write("  tasks:\n")
        _table(["    TASK", "ATTEMPT", "NODE", "STATE", "EXIT", "CPUS", "CPUSET", "RANKS", "DETAIL"],
               [[f"    {t['task']}", t["attempt"], t["node"], t["state"], t["exit_code"], t["cpus"], t["cpuset"],
                 t["ranks"], t["detail"]] for t in job["tasks"]])
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from scheduler.arrays import parse_job_ref, resolve

    refs = [parse_job_ref(text) for text in args.jobs]
    with _client(args) as client:
        ids: dict[str, int] = {}
        if any(ref.index is not None for ref in refs):
            # One job of an array is named by its index: the queue says which job holds it.
            from types import SimpleNamespace

            live = [SimpleNamespace(**r) for r in client.queue(user=None, include_ended=False)]
        for ref in refs:
            if ref.index is None:
                ids[str(ref)] = ref.job
                continue
            found = resolve(ref, live)
            if not found:
                raise UsageError(f"no live job {ref}", f"see 'rade queue' for the jobs of array {ref.job}")
            ids[str(ref)] = found[0]
        results = client.cancel(list(dict.fromkeys(ids.values())))
    for name, job_id in ids.items():
        sys.stdout.write(f"{name}: {results.get(str(job_id), '?')}\n")
    return 0


# -- nodes ----------------------------------------------------------------------------------------------------

def cmd_nodes(args: argparse.Namespace) -> int:
    from jobs.units import format_size

    with _client(args) as client:
        rows = client.nodes()
    if args.json:
        _print_json(rows)
        return 0
    _table(["NAME", "STATE", "CPUS", "MEM", "GPUS", "LABELS", "REASON"],
           [[r["name"], r["state"], f"{r['cpus_alloc']:g}/{r['cpus_total']}",
             f"{format_size(r['memory_alloc']) if r['memory_alloc'] else 0}/{format_size(r['memory_total'])}",
             f"{r['gpus_alloc']}/{r['gpus_total']}", ",".join(f"{k}={v}" for k, v in sorted(r["labels"].items())),
             r["reason"]] for r in rows])
    return 0


def cmd_drain(args: argparse.Namespace) -> int:
    from jobs.units import parse_duration

    deadline = float(parse_duration(args.deadline)) if args.deadline else None
    with _client(args) as client:
        results = client.drain(args.nodes, args.reason, deadline)
    for node in args.nodes:
        sys.stdout.write(f"{node}: {results.get(node, '?')}\n")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    with _client(args) as client:
        results = client.resume(args.nodes)
    for node in args.nodes:
        sys.stdout.write(f"{node}: {results.get(node, '?')}\n")
    return 0


# -- daemons --------------------------------------------------------------------------------------------------

def _daemon_logging(debug: bool) -> None:
    # Daemons say what they decide and why: INFO by default, to stderr (the caller keeps it).
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for handler in root.handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))


def cmd_scheduler(args: argparse.Namespace) -> int:
    from scheduler.config import load_config
    from scheduler.daemon import SchedulerDaemon

    _daemon_logging(args.debug)
    daemon = SchedulerDaemon(load_config(args.config, args.root))
    daemon.install_signal_handlers()
    daemon.serve()
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    from agent.daemon import run_agent, scheduler_endpoint

    if not args.simulate:
        _daemon_logging(args.debug)
        return run_agent(args.scheduler, args.name, args.config, args.root)
    import os
    import signal

    from agent.daemon import agent_keys
    from agent.simulate import SimulatedCluster
    from jobs.units import parse_size
    from scheduler.clock import SystemClock

    if args.count < 1 or args.cpus < 1:
        raise UsageError("--count and --cpus must be at least 1")
    labels = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--label {item!r}: write KEY=VALUE")
        labels[key] = value
    _daemon_logging(args.debug)
    cluster = SimulatedCluster(scheduler_endpoint(args.scheduler, args.root), args.cpus, parse_size(args.memory),
                               args.count, SystemClock(), prefix=args.prefix, labels=labels,
                               curve=agent_keys(os.path.join(args.root, "keys")))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: cluster.stop())
    cluster.run()
    return 0
