"""`rade acct [--user U] [--since T] [--json]`: what jobs used, from the scheduler's database (as sacct).

The scheduler answers an `acct` query (users see their own jobs, admins anyone's); this module only turns
`--since` into a time and the rows into a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from jobs.errors import UsageError

HEADERS = ("JOBID", "NAME", "USER", "STATE", "SUBMIT", "START", "END", "ELAPSED", "CPUS", "CPUTIME", "MAXRSS",
           "EXIT", "NODES")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("acct", help="accounting: what jobs used (CPU time, peak memory), how they ended")
    p.add_argument("--scheduler", metavar="ADDR", help="the scheduler's client address "
                   "(default: $RADE_SCHEDULER, or the local cluster's)")
    p.add_argument("--user", help="only this user's jobs (default: yours; --all for everyone's)")
    p.add_argument("--all", action="store_true", help="every user's jobs")
    p.add_argument("--since", metavar="T", help="jobs since T: a duration ago (2h, 3d), a date (2026-11-28), a "
                   "date and time (2026-11-28T14:00) or epoch seconds (default: since midnight)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_acct)


def parse_since(text: str | None, now: float) -> float:
    """The wall time `--since` names (see its help); midnight today when not given."""
    if text is None:
        local = time.localtime(now)
        return time.mktime((local.tm_year, local.tm_mon, local.tm_mday, 0, 0, 0, 0, 0, -1))
    value = text.strip()
    if value.replace(".", "", 1).isdigit() and len(value) >= 9:
        return float(value)
    from datetime import datetime

    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        pass
    from jobs.errors import UnitError
    from jobs.units import parse_duration

    try:
        return now - float(parse_duration(value))
    except UnitError:
        raise UsageError(f"--since {text!r} is neither a duration, a date nor epoch seconds",
                         "write e.g. --since 2h, --since 2026-11-28 or --since 2026-11-28T14:00") from None


def _when(stamp: float | None) -> str:
    return "-" if stamp is None else time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(stamp))


def _row(r: dict[str, Any]) -> list[str]:
    from jobs.units import format_duration, format_size

    return [r["job"], r["name"], r["user"], r["state"], _when(r["submitted_at"]), _when(r["started_at"]),
            _when(r["ended_at"]), "-" if r["elapsed"] is None else format_duration(r["elapsed"]),
            f"{r['alloc_cpus']:g}", f"{r['cpu_seconds']:.1f}s", format_size(r["peak_memory"]) if r["peak_memory"]
            else "0", "-" if r["exit_code"] is None else str(r["exit_code"]), ",".join(r["nodes"]) or "-"]


def cmd_acct(args: argparse.Namespace) -> int:
    from jobs.messages import Query
    from rade.client import SchedulerClient, current_user, find_scheduler

    since = parse_since(args.since, time.time())
    user = args.user if args.user else (None if args.all else current_user())
    with SchedulerClient(find_scheduler(args.scheduler, args.root), root=args.root) as client:
        rows = client.request(Query(what="acct", filters={"user": user, "since": since}))
    if args.json:
        json.dump(rows, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    cells = [list(HEADERS)] + [_row(r) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADERS))]
    for row in cells:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")
    return 0
