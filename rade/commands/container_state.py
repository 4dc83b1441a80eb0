"""`rade pause`, `unpause`, `rename` and `port`: a running container frozen and thawed, a container's
name changed, its published ports listed, as Docker users type them. Parsing only; the rules are in
`engine.containers.pause`, `engine.containers.rename` and `engine.containers.views`."""

from __future__ import annotations

import argparse


def _store(args: argparse.Namespace):
    from engine.containers.store import ContainerStore

    return ContainerStore(args.root)


def _each(args: argparse.Namespace, action) -> int:
    """`action(store, record)` on every container named, each printed once done, as Docker does."""
    store = _store(args)
    for ref in args.containers:
        action(store, store.find(ref))
        print(ref)
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    from engine.containers.pause import pause

    return _each(args, pause)


def cmd_unpause(args: argparse.Namespace) -> int:
    from engine.containers.pause import unpause

    return _each(args, unpause)


def cmd_rename(args: argparse.Namespace) -> int:
    from engine.containers.rename import rename

    rename(_store(args), args.container, args.new_name)
    return 0


def cmd_port(args: argparse.Namespace) -> int:
    from engine.containers.lifecycle import refresh
    from engine.containers.views import port_lines
    from engine.errors import ContainerError
    from jobs.errors import UsageError

    store = _store(args)
    record = refresh(store, store.find(args.container))
    private = args.private
    if private is not None:
        number, _, protocol = private.partition("/")
        if not number.isdigit() or protocol not in ("", "tcp", "udp", "sctp"):
            raise UsageError(f"{private!r} is not a container port", "use PORT or PORT/PROTO, e.g. 80/tcp")
    lines = port_lines(record, private)
    if private is not None and not lines:
        shown = private if "/" in private else f"{private}/tcp"
        raise ContainerError(f"no public port {shown!r} published for {args.container}",
                             "see 'rade port " + args.container + "'")
    for line in lines:
        print(line)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pause", help="freeze every process of running containers")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_pause)
    p = sub.add_parser("unpause", help="let paused containers run again")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_unpause)
    p = sub.add_parser("rename", help="give a container a new name")
    p.add_argument("container")
    p.add_argument("new_name", metavar="NEW_NAME")
    p.set_defaults(func=cmd_rename)
    p = sub.add_parser("port", help="the published ports of a container")
    p.add_argument("container")
    p.add_argument("private", nargs="?", metavar="PRIVATE_PORT[/PROTO]")
    p.set_defaults(func=cmd_port)
