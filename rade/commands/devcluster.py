"""`rade cluster up [--nodes N] | down | status`: the local multi-node dev cluster (see `rade.devcluster`)."""

from __future__ import annotations

import argparse
import json
import sys

from jobs.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("cluster", help="a dev cluster on this machine: scheduler + N agents in namespaces")
    sub = p.add_subparsers(dest="action", metavar="up|down|status", required=True)
    up = sub.add_parser("up", help="start the scheduler and N node agents, each in its own netns and UTS namespace")
    up.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
    up.add_argument("--label", action="append", default=[], metavar="NODE:KEY=VALUE",
                    help="a label on one node, e.g. node2:disk=ssd")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for every node to register")
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop every process the cluster started; remove its namespaces and links")
    down.set_defaults(func=cmd_down)
    status = sub.add_parser("status", help="the cluster's processes, namespaces and logs")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)


def _labels(items: list[str]) -> dict[str, dict[str, str]]:
    labels: dict[str, dict[str, str]] = {}
    for item in items:
        node, _, pair = item.partition(":")
        key, sep, value = pair.partition("=")
        if not node or not key or not sep:
            raise UsageError(f"--label {item!r}: write NODE:KEY=VALUE, e.g. node2:disk=ssd")
        labels.setdefault(node, {})[key] = value
    return labels


def cmd_up(args: argparse.Namespace) -> int:
    from rade import devcluster

    labels = _labels(args.label)
    try:
        state = devcluster.up(args.root, args.nodes, labels, timeout=args.timeout)
    except devcluster.ClusterAlreadyUp:
        raise
    except BaseException:
        if devcluster.state_path(args.root).exists():
            sys.stderr.write("rade: the cluster did not come up; what was made is left for 'rade cluster down' "
                             "and its logs\n")
        raise
    sys.stdout.write(f"cluster up: scheduler at {state.gateway_ip}, nodes "
                     f"{', '.join(n.name for n in state.nodes)}; logs in {devcluster.cluster_dir(state.root)}\n")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from rade import devcluster

    removed = devcluster.down(args.root)
    for line in removed:
        sys.stdout.write(f"removed {line}\n")
    if not removed:
        sys.stdout.write("no dev cluster is up\n")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from rade import devcluster

    rows = devcluster.status(args.root)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not rows:
        sys.stdout.write("no dev cluster is up\n")
        return 0
    cells = [["ROLE", "NAME", "PID", "STATE", "ADDRESS", "NETNS", "LOG"]]
    cells += [[r["role"], r["name"], str(r["pid"] or "-"), "running" if r["running"] else "exited", r["address"],
               r["netns"] or "-", r["log"]] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    for row in cells:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")
    return 0
